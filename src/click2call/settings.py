"""The one typed settings object, read once at start and passed to whoever needs it.

Sources, strongest first: environment variables `CLICK2CALL_<SECTION>__<KEY>` (for
example `CLICK2CALL_SERVER__PORT=8081`; lists such as `CLICK2CALL_TENANTS` take JSON),
then the TOML file, then the defaults below. `examples/click2call.toml` documents every key.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from click2call.calls import EVENT_TYPES
from click2call.webhooks.urls import check_url

CONFIG_ENV = "CLICK2CALL_CONFIG"
DEFAULT_CONFIG_FILE = "click2call.toml"
DEFAULT_DATABASE = "sqlite:///click2call.db"
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_NUMBER = re.compile(r"\+?[0-9]{1,20}")


def _caller_id(value: str) -> str:
    """A caller ID from the configuration: digits with an optional leading +."""
    if not _NUMBER.fullmatch(value):
        raise ValueError(f"caller ID {value!r} must be digits with an optional leading +")
    return value


def _networks(value: list[str]) -> list[str]:
    """Addresses or CIDRs, as allow-lists take them."""
    for entry in value:
        ipaddress.ip_network(entry, strict=False)  # raises ValueError naming the entry
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HostPort(_Section):
    host: str
    port: int

    @classmethod
    def parse(cls, text: str, default_port: int = 5060) -> HostPort:
        host, sep, port = text.rpartition(":")
        if not sep or "]" in port:
            return cls(host=text.strip("[]"), port=default_port)
        return cls(host=host.strip("[]"), port=int(port))

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    # A relative SQLite path is read against the configuration file's folder (the current
    # folder when there is no file), so every command finds the server's database.
    database: str = DEFAULT_DATABASE
    # This process among those sharing a database (default: host name and HTTP port); a
    # node recovers, and hangs up, only the calls it placed.
    node_id: str | None = Field(None, min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")
    # Each node writes a heartbeat to the database this often; a node silent for longer
    # than node_lease is lost, and a surviving node ends its live calls. Keep the lease
    # above a restart's length (a node back within it keeps its calls) and clock skew.
    heartbeat_interval: float = Field(2, gt=0)
    node_lease: float = Field(15, gt=0)
    # A request waits at most this long for the database (a hung host answers nothing and
    # closes nothing), then gets the 503 of an outage; health names the wait.
    database_timeout: float = Field(5, gt=0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Hostile clients: the call endpoints take a few hundred bytes; a request has this long
    # to send its head and body; one address holds at most this many connections.
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    request_timeout: float = Field(10, gt=0)
    max_connections_per_address: int = Field(100, ge=1)
    session_minutes: float = Field(480, gt=0)  # a dashboard sign-in lasts this long
    log_format: Literal["text", "json"] = "text"  # json: one object a line, with call ids
    # /metrics answers these addresses without a key (any tenant's API key also works).
    metrics_allowed_ips: list[str] = []
    # Reverse proxies whose X-Forwarded-For / X-Forwarded-Proto are believed: the client's
    # address in logs, audit and limits, and https (Secure cookies) when TLS ends at them.
    # "*" trusts any sender (only when nothing else can reach the port).
    forwarded_allow_ips: list[str] = ["127.0.0.1", "::1"]

    @field_validator("metrics_allowed_ips")
    @classmethod
    def _metrics_networks(cls, value: list[str]) -> list[str]:
        return _networks(value)

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _proxies(cls, value: list[str]) -> list[str]:
        if value == ["*"]:
            return value
        for entry in value:
            try:  # a network as uvicorn takes it: no host bits set (10.0.0.0/8, not 10.0.0.1/8)
                ipaddress.ip_network(entry) if "/" in entry else ipaddress.ip_address(entry)
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not an IP address or network (or '*' alone)"
                ) from None
        return value

    @model_validator(mode="after")
    def _lease_outlasts_beats(self) -> ServerSettings:
        if self.node_lease < 2 * self.heartbeat_interval:
            raise ValueError("node_lease must be at least twice heartbeat_interval")
        return self


class SipStackSettings(_Section):
    """The built-in SIP user agent: where it listens and how it names itself."""

    host: str = "127.0.0.1"
    port: int = Field(5060, ge=0, le=65535)
    user_agent: str = "click2call"
    log_messages: bool = False  # log every SIP message (noisy; for debugging)
    tls_port: int = Field(5061, ge=1, le=65535)  # TLS listener, when a certificate is set
    tls_cert_file: str = ""  # PEM certificate (chain) for incoming TLS; "" = no TLS listener
    tls_key_file: str = ""  # its private key
    tls_ca_file: str = ""  # CAs trusted for trunks/PBXs reached over TLS; "" = the system's
    tls_verify: bool = True  # verify TLS peers' certificates and names (keep it on)
    options_interval: float = Field(30, ge=0)  # OPTIONS probe of each pbx/trunk; 0 = off
    max_connections: int = Field(1024, ge=1)  # TCP/TLS connections peers may hold open
    connection_idle_timeout: float = Field(600, gt=0)  # a peer's quiet connection: closed

    @model_validator(mode="after")
    def _tls_pair(self) -> SipStackSettings:
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("tls_cert_file and tls_key_file go together")
        return self


def sip_target(value: str) -> tuple[HostPort, str]:
    """A pbx/trunk address and its transport: `host:port`, or a `sip:`/`sips:` URI.

    `sip:pbx.example:5060;transport=tcp` → TCP; `sips:trunk.example` → TLS on 5061.
    """
    if any(c in value for c in ' \t\r\n\x00<>"@'):
        raise ValueError(f"{value!r} is not a host:port or sip:/sips: URI")
    scheme, colon, rest = value.partition(":")
    secure = colon and scheme.lower() == "sips"
    if not colon or scheme.lower() not in ("sip", "sips"):
        rest = value
    hostport, *params = rest.split(";")
    transport = "tls" if secure else "udp"
    for param in params:
        name, _, setting = param.partition("=")
        if name.lower() == "transport":
            transport = setting.lower()
    if transport not in ("udp", "tcp", "tls"):
        raise ValueError(f"transport must be udp, tcp or tls, not {transport!r}")
    address = HostPort.parse(hostport, 5061 if transport == "tls" else 5060)
    if not address.host:
        raise ValueError(f"{value!r} has no host")
    return address, transport


class TenantSip(_Section):
    pbx: str = "127.0.0.1:5070"
    trunk: str = "127.0.0.1:5080"
    username: str = ""
    password: SecretStr = SecretStr("")
    ringback: Literal["auto", "off"] = "auto"  # auto: the tenant region's tone, else silence

    @field_validator("pbx", "trunk")
    @classmethod
    def _address(cls, value: str) -> str:
        sip_target(value)  # raises on a bad port or transport
        return value

    @property
    def pbx_address(self) -> HostPort:
        return sip_target(self.pbx)[0]

    @property
    def trunk_address(self) -> HostPort:
        return sip_target(self.trunk)[0]

    @property
    def pbx_transport(self) -> str:
        return sip_target(self.pbx)[1]

    @property
    def trunk_transport(self) -> str:
        return sip_target(self.trunk)[1]


class TenantAsterisk(_Section):
    """An Asterisk/FreePBX reached over AMI (engine = "asterisk")."""

    host: str = "127.0.0.1"
    port: int = Field(5038, ge=1, le=65535)
    username: str = "click2call"
    secret: SecretStr = SecretStr("")
    context: str = "from-internal"  # where the destination is dialled
    mobile_channel: str = "Local/{phone}@from-internal"  # the agent leg of dial_external.php
    connect_timeout: float = Field(5, gt=0)
    action_timeout: float = Field(5, gt=0)  # how long to wait for a reply to an action
    reconnect_max_delay: float = Field(30, gt=0)  # backoff ceiling between reconnects
    end_grace: float = Field(30, gt=0)  # after an overdue call's Hangup, wait this for its end

    @field_validator("username", "context", "mobile_channel")
    @classmethod
    def _no_control(cls, value: str) -> str:
        if any(c in value for c in "\r\n\x00"):
            raise ValueError("must not contain CR, LF or NUL")
        return value

    @field_validator("mobile_channel")
    @classmethod
    def _template(cls, value: str) -> str:
        if "{phone}" not in value:
            raise ValueError("must contain {phone}")
        return value


class TenantAuth(_Section):
    """Who may place and read this tenant's calls. With nothing set, nobody may."""

    allow_unauthenticated: bool = False  # anyone who can reach the server (toll fraud risk)
    link_secret: SecretStr = SecretStr("")  # HMAC-SHA256 key for signed links (exp + sig)
    allowed_ips: list[str] = []  # addresses or CIDRs allowed without a key

    @field_validator("allowed_ips")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        return _networks(value)

    @property
    def networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(entry, strict=False) for entry in self.allowed_ips]


class TenantPolicy(_Section):
    """Where this tenant may call. Israeli defaults: see README, "Destination policy"."""

    extension_only: bool = False  # only internal numbers; no calls out through the trunk
    allow: list[str] = []  # "+9725…" E.164 prefixes or "re:<regex on E.164>"; beat defaults
    deny: list[str] = []  # same forms; beat everything
    allow_international: bool = False  # numbers outside the tenant's region
    allow_premium: bool = False  # premium-rate numbers (1-900 in Israel)
    allow_special: bool = False  # shared-cost, UAN, personal, pager, voicemail numbers
    allowed_caller_ids: list[str] = []  # outboundcid values a request may present; [] = any

    @field_validator("allow", "deny")
    @classmethod
    def _rules(cls, value: list[str]) -> list[str]:
        for rule in value:
            if rule.startswith("re:"):
                try:
                    re.compile(rule[3:])
                except re.error as exc:
                    raise ValueError(f"rule {rule!r} is not a valid regex: {exc}") from None
            elif not _NUMBER.fullmatch(rule) or not rule.startswith("+"):
                raise ValueError(f"rule {rule!r} is neither +<digits> nor re:<regex>")
        return value

    @field_validator("allowed_caller_ids")
    @classmethod
    def _caller_ids(cls, value: list[str]) -> list[str]:
        return [_caller_id(number) for number in value]


class TenantLimits(_Section):
    """Limits that hold across all endpoints."""

    calls_per_second: float = Field(5, gt=0)  # sustained rate of new calls (token bucket)
    burst: int = Field(10, ge=1)  # calls allowed at once above that rate
    max_concurrent_calls: int = Field(100, ge=1)  # calls not yet ended, per tenant
    max_calls_per_agent: int = Field(2, ge=1)  # per extension or agent phone
    key_requests_per_minute: int = Field(120, ge=1)  # any request, per API key


def _webhook_secret(value: SecretStr) -> SecretStr:
    """A Standard Webhooks secret: `whsec_` and base64 of at least 24 random bytes."""
    text = value.get_secret_value()
    if not text:
        return value
    try:
        key = base64.b64decode(text.removeprefix("whsec_"), validate=True)
    except binascii.Error:
        key = b""
    if len(key) < 24:
        # Not echoed: it is a secret. `click2call webhooks new-secret` makes a good one.
        raise ValueError("must be whsec_ followed by base64 of at least 24 bytes")
    return value


def _event_types(value: list[str]) -> list[str]:
    for name in value:
        if name not in EVENT_TYPES:
            raise ValueError(f"unknown event type {name!r}; known: {', '.join(EVENT_TYPES)}")
    return value


class WebhookSubscription(_Section):
    """A tenant's webhook: every call event of the tenant (or those in `events`) goes here."""

    url: str
    secret: SecretStr  # signs the deliveries (Standard Webhooks)
    events: list[str] = []  # event types to send; [] = all

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_url(value)

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("a webhook needs a secret")
        return _webhook_secret(value)

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[str]) -> list[str]:
        return _event_types(value)


class TenantCallbacks(_Section):
    """A call's own `callback_url`: accepted only when this tenant can sign for it."""

    secret: SecretStr = SecretStr("")  # signs per-call callbacks; empty = callback_url refused
    allowed_hosts: list[str] = []  # host names, or "*.example.com"; [] = any host
    events: list[str] = []  # event types sent to callbacks; [] = all

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        return _webhook_secret(value)

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[str]) -> list[str]:
        return _event_types(value)


class DeliverySettings(_Section):
    """How webhooks are delivered (all tenants)."""

    connect_timeout: float = Field(5, gt=0)
    read_timeout: float = Field(10, gt=0)
    # Seconds to wait before each retry; after the last one the delivery is given up.
    retry_schedule: list[float] = [5, 300, 1800, 7200, 18000, 36000, 36000]
    jitter: float = Field(0.1, ge=0, le=0.5)  # each wait varies by up to this fraction
    max_in_flight: int = Field(64, ge=1)  # requests at once, all endpoints
    max_in_flight_per_endpoint: int = Field(8, ge=1)  # one slow receiver stalls only itself
    # One tenant's receivers (or its callers' callback URLs) never take every slot.
    max_in_flight_per_tenant: int = Field(32, ge=1)
    poll_interval: float = Field(1.0, gt=0)  # how often due retries are looked for

    @field_validator("retry_schedule")
    @classmethod
    def _schedule(cls, value: list[float]) -> list[float]:
        if any(v < 0 for v in value):
            raise ValueError("waits must not be negative")
        return value


class TenantWidget(_Section):
    """The click-to-call widget: which pages may use this tenant's widget tokens."""

    allowed_origins: list[str] = []  # e.g. ["https://crm.example.com"]; [] = no widget
    token_max_minutes: float = Field(60, gt=0)  # longest life a minted token may ask for

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        from click2call.auth import origin_of

        return [origin_of(entry) for entry in value]


class ExtensionSettings(_Section):
    outbound_cid: str | None = None

    @field_validator("outbound_cid")
    @classmethod
    def _number(cls, value: str | None) -> str | None:
        return None if value is None else _caller_id(value)


class TenantSettings(_Section):
    name: str
    engine: Literal["sip", "asterisk"] = "sip"
    default_outbound_cid: str = ""
    region: str = "IL"
    agent_ring_timeout: float = Field(30, gt=0, le=600)
    destination_ring_timeout: float = Field(45, gt=0, le=600)
    max_call_seconds: float = Field(7200, gt=0)
    trunk_number_format: Literal["national", "e164"] = "national"
    sip: TenantSip = TenantSip()
    asterisk: TenantAsterisk = TenantAsterisk()
    auth: TenantAuth = TenantAuth()
    policy: TenantPolicy = TenantPolicy()
    limits: TenantLimits = TenantLimits()
    widget: TenantWidget = TenantWidget()
    extensions: dict[str, ExtensionSettings] = {}
    webhooks: list[WebhookSubscription] = []
    callbacks: TenantCallbacks = TenantCallbacks()

    @field_validator("webhooks")
    @classmethod
    def _unique_urls(cls, value: list[WebhookSubscription]) -> list[WebhookSubscription]:
        urls = [w.url for w in value]
        if len(set(urls)) != len(urls):
            raise ValueError("each webhook url may appear once per tenant")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError("must be 1-64 letters, digits, '_', '.' or '-'")
        return value

    @field_validator("default_outbound_cid")
    @classmethod
    def _cid(cls, value: str) -> str:
        return _caller_id(value) if value else value

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        import phonenumbers

        if value.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown region {value!r}")
        return value.upper()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CLICK2CALL_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    server: ServerSettings = ServerSettings()
    sip: SipStackSettings = SipStackSettings()
    webhooks: DeliverySettings = DeliverySettings()
    tenants: list[TenantSettings] = [TenantSettings(name="default")]

    @model_validator(mode="after")
    def _unique_tenants(self) -> Settings:
        names = [t.name for t in self.tenants]
        if len(set(names)) != len(names):
            raise ValueError("tenant names must be unique")
        if not names:
            raise ValueError("at least one tenant is needed")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file arrives as init values; the environment overrides it.
        return env_settings, init_settings

    def tenant(self, name: str) -> TenantSettings | None:
        return next((t for t in self.tenants if t.name == name), None)

    @property
    def compat_tenant(self) -> TenantSettings:
        """The tenant dial.php serves: the one named 'default', else the first."""
        return self.tenant("default") or self.tenants[0]


class ConfigFileError(ValueError):
    """A configuration file that cannot be read or parsed; the message names the file."""


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Read the TOML file (explicit path, $CLICK2CALL_CONFIG, or ./click2call.toml if present)."""
    chosen = path or os.environ.get(CONFIG_ENV)
    if not chosen and Path(DEFAULT_CONFIG_FILE).is_file():
        chosen = DEFAULT_CONFIG_FILE
    if not chosen:
        return Settings()
    file = Path(chosen).absolute()
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(f"{file}: {exc}") from None  # tomllib says the line and column
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigFileError(f"{file}: {exc}") from None
    server = data.get("server")
    if server is None or isinstance(server, dict):
        server = data["server"] = dict(server or {})
        database = server.get("database", DEFAULT_DATABASE)
        if isinstance(database, str):
            server["database"] = sqlite_beside(database, file.parent)
    return Settings(**data)


def sqlite_beside(url: str, folder: Path) -> str:
    """`url` with a relative SQLite file path made absolute against `folder`."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return url  # the settings' own check reports it
    database = parsed.database
    if (
        parsed.get_backend_name() != "sqlite"
        or not database
        or database == ":memory:"
        or database.startswith("file:")
        or Path(database).is_absolute()
    ):
        return url
    return parsed.set(database=str(folder / database)).render_as_string(hide_password=False)

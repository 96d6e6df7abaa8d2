"""Deciding who a request speaks for. Pure: the caller passes the key lookup and the clock.

A request may carry, and is checked in this order:
    an API key       X-API-Key, Authorization: Bearer, or key= (GET links from CRMs)
    a signed link    exp= (unix time) and sig= = HMAC-SHA256(tenant link_secret,
                     canonical query), so a CRM template can hold a link that expires
                     and cannot be altered
    its address      in the tenant's allowed_ips
A tenant with none of these configured accepts nothing unless `allow_unauthenticated`.

The dashboard and the widget add two credentials of their own, decided here too:
    a session        the dashboard's HttpOnly cookie, a random token the store maps to the
                     API key that signed in; forms carry csrf_token(session) beside it
    a widget token   minted for one tenant, one agent, an expiry and a list of page
                     origins, signed with HMAC-SHA256 under the server's widget secret
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from click2call.errors import Forbidden, Unauthorized, UnknownTenant
from click2call.settings import Settings, TenantSettings
from click2call.store import ApiKey

SIGNATURE_PARAMS = frozenset({"sig"})
SECRET_PARAMS = frozenset({"key", "sig"})  # never logged or echoed


@dataclass(frozen=True, slots=True)
class Credentials:
    key: str | None
    params: tuple[tuple[str, str], ...]  # the query as sent (sig included)
    client_ip: str | None
    session: str | None = None  # the dashboard's cookie; the edge passes it on reads only

    def get(self, name: str) -> str | None:
        return next((v for k, v in self.params if k == name), None)


@dataclass(frozen=True, slots=True)
class Identity:
    tenant: str
    method: str  # "key", "session", "widget token", "signed link", "allowed address", ...
    key_id: int | None = None


def canonical_query(params: Iterable[tuple[str, str]]) -> str:
    """Every parameter but sig, sorted, percent-encoded: what a signature covers."""
    kept = sorted((k, v) for k, v in params if k not in SIGNATURE_PARAMS)
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in kept)


def sign(params: Iterable[tuple[str, str]], secret: str) -> str:
    message = canonical_query(params).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def authenticate(
    settings: Settings,
    credentials: Credentials,
    claimed_tenant: str | None,
    lookup_key: Callable[[str], ApiKey | None],
    now: float,
    lookup_session: Callable[[str], ApiKey | None] | None = None,
) -> Identity:
    """The tenant this request may act for; raises Unauthorized, Forbidden or UnknownTenant.

    A session that has ended counts as no credential: the other ways in are tried."""
    if credentials.key:
        key = lookup_key(credentials.key)
        if key is None:
            raise Unauthorized("invalid or revoked API key")
        return claim(Identity(key.tenant, "key", key.id), claimed_tenant)
    if credentials.session and lookup_session is not None:
        key = lookup_session(credentials.session)
        if key is not None:
            return claim(Identity(key.tenant, "session", key.id), claimed_tenant)
    tenant = settings.tenant(claimed_tenant or settings.compat_tenant.name)
    if tenant is None:
        raise UnknownTenant(claimed_tenant or "")
    if credentials.get("sig") is not None or credentials.get("exp") is not None:
        _check_signature(tenant, credentials, now)
        return Identity(tenant.name, "signed link")
    if _address_allowed(tenant, credentials.client_ip):
        return Identity(tenant.name, "allowed address")
    if tenant.auth.allow_unauthenticated:
        return Identity(tenant.name, "unauthenticated")
    raise Unauthorized(
        "authentication required: an API key (X-API-Key header, Bearer token or key=), "
        "a signed link, or an allowed address"
    )


def claim(identity: Identity, claimed_tenant: str | None) -> Identity:
    """`identity`, if it may act for the tenant the request names (a key acts for its own)."""
    if claimed_tenant is not None and claimed_tenant != identity.tenant:
        raise Forbidden(f"this API key does not belong to client '{claimed_tenant}'")
    return identity


def same_secret(expected: str, given: str) -> bool:
    """Constant-time equality of a secret we computed and one a client sent, whatever the
    client sent: on str, compare_digest raises TypeError for non-ASCII (a 500, not a 401)."""
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "surrogateescape"))


def _check_signature(tenant: TenantSettings, credentials: Credentials, now: float) -> None:
    secret = tenant.auth.link_secret.get_secret_value()
    if not secret:
        raise Unauthorized("signed links are not enabled for this client")
    expires, signature = credentials.get("exp"), credentials.get("sig")
    if expires is None or signature is None:
        raise Unauthorized("a signed link needs both exp and sig")
    if not expires.isdigit():
        raise Unauthorized("exp must be a unix time in seconds")
    expected = sign(credentials.params, secret)
    if not same_secret(expected, signature.lower()):
        raise Unauthorized("the link's signature does not match: it was altered or forged")
    if int(expires) < now:
        raise Unauthorized("the link has expired")


def _address_allowed(tenant: TenantSettings, client_ip: str | None) -> bool:
    if client_ip is None or not tenant.auth.allowed_ips:
        return False
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return False
    return any(address in network for network in tenant.auth.networks)


def needs_setup(tenant: TenantSettings, has_keys: bool) -> bool:
    """True when nothing lets anyone place this tenant's calls."""
    auth = tenant.auth
    return not (
        has_keys
        or auth.link_secret.get_secret_value()
        or auth.allowed_ips
        or auth.allow_unauthenticated
    )


# --- dashboard sessions ------------------------------------------------------------------


def csrf_token(session_token: str) -> str:
    """The token every dashboard form carries. Derived from the HttpOnly session token, so a
    page on another site, which cannot read that cookie, cannot compute it."""
    return hmac.new(session_token.encode(), b"click2call csrf", hashlib.sha256).hexdigest()


def csrf_matches(session_token: str | None, given: str | None) -> bool:
    if not session_token or not given:
        return False
    return same_secret(csrf_token(session_token), given)


# --- widget tokens -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WidgetClaims:
    """What a widget token allows: calls for one agent of one tenant, from given origins."""

    token_id: str  # random; the calls a token placed are stored under it
    tenant: str
    key_id: int  # the API key that minted it: revoking the key revokes its tokens
    agent_kind: str  # "extension" or "external"
    agent_tech: str | None
    agent_number: str
    origins: tuple[str, ...]
    expires: int  # unix seconds


def origin_of(text: str) -> str:
    """`scheme://host[:port]` in lower case, as browsers send it; ValueError otherwise."""
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"origin {text!r} must be http(s)://host[:port]")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(f"origin {text!r} must be only scheme, host and port")
    port = f":{parts.port}" if parts.port else ""
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host.lower()}{port}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _widget_signature(payload: str, secret: bytes) -> str:
    return _b64(hmac.new(secret, b"widget:" + payload.encode(), hashlib.sha256).digest())


def mint_widget_token(claims: WidgetClaims, secret: bytes) -> str:
    """`<payload>.<signature>`, both base64url; the payload is readable, not secret."""
    body = {
        "id": claims.token_id,
        "tenant": claims.tenant,
        "key": claims.key_id,
        "agent": [claims.agent_kind, claims.agent_tech, claims.agent_number],
        "origins": list(claims.origins),
        "exp": claims.expires,
    }
    payload = _b64(json.dumps(body, separators=(",", ":")).encode())
    return f"{payload}.{_widget_signature(payload, secret)}"


def read_widget_token(token: str, secret: bytes, now: float) -> WidgetClaims:
    """The claims of a token this server signed and that has not expired; else Unauthorized."""
    payload, dot, signature = token.partition(".")
    if not dot or not payload or not signature:
        raise Unauthorized("malformed widget token")
    if not same_secret(_widget_signature(payload, secret), signature):
        raise Unauthorized("the widget token's signature does not match: it was altered or forged")
    try:
        body = json.loads(_unb64(payload))
        kind, tech, number = body["agent"]
        claims = WidgetClaims(
            str(body["id"]),
            str(body["tenant"]),
            int(body["key"]),
            str(kind),
            None if tech is None else str(tech),
            str(number),
            tuple(str(o) for o in body["origins"]),
            int(body["exp"]),
        )
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise Unauthorized("malformed widget token") from None
    if claims.expires < now:
        raise Unauthorized("the widget token has expired: the page must fetch a new one")
    return claims


def check_widget_origin(claims: WidgetClaims, origin: str | None, allowed: Iterable[str]) -> None:
    """The page must come from one of the token's origins that the tenant still allows."""
    if origin is None:
        raise Forbidden("a widget token is accepted only from a web page (no Origin header)")
    try:
        normalised = origin_of(origin)
    except ValueError:
        raise Forbidden("the page's origin is malformed") from None
    if normalised not in claims.origins or normalised not in set(allowed):
        raise Forbidden(f"pages on {normalised} may not use this widget token")

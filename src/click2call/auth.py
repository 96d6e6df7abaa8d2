"""Deciding who a request speaks for. Pure: the caller passes the key lookup and the clock.

A request may carry, and is checked in this order:
    an API key       X-API-Key, Authorization: Bearer, or key= (GET links from CRMs)
    a signed link    exp= (unix time) and sig= = HMAC-SHA256(tenant link_secret,
                     canonical query), so a CRM template can hold a link that expires
                     and cannot be altered
    its address      in the tenant's allowed_ips
A tenant with none of these configured accepts nothing unless `allow_unauthenticated`.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import quote

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

    def get(self, name: str) -> str | None:
        return next((v for k, v in self.params if k == name), None)


@dataclass(frozen=True, slots=True)
class Identity:
    tenant: str
    method: str  # "key", "signed link", "allowed address", "unauthenticated"
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
) -> Identity:
    """The tenant this request may act for; raises Unauthorized, Forbidden or UnknownTenant."""
    if credentials.key:
        key = lookup_key(credentials.key)
        if key is None:
            raise Unauthorized("invalid or revoked API key")
        return claim(Identity(key.tenant, "key", key.id), claimed_tenant)
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
    if not hmac.compare_digest(expected, signature.lower()):
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

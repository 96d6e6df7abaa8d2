"""Which URLs call events may be sent to. Pure checks, shared by the settings and the API."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

import idna

MAX_URL_LENGTH = 2048


def check_url(value: str) -> str:
    """`value` if it is a URL we may POST call events to: http(s), a host, no credentials,
    no spaces or control characters, at most 2048 characters. Raises ValueError saying why."""
    if len(value) > MAX_URL_LENGTH:
        raise ValueError(f"must be at most {MAX_URL_LENGTH} characters")
    if any(ord(c) < 0x21 or 0x7F <= ord(c) <= 0x9F for c in value):
        raise ValueError("must not contain spaces or control characters")
    if not value.isascii():
        raise ValueError("must be ASCII (percent-encode other characters; punycode hosts)")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError:
        raise ValueError("is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("must be an http or https URL")
    if not parts.hostname:
        raise ValueError("must name a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry credentials")
    if literal_address(value) is None:
        try:
            # The same IDNA rules httpx applies when it connects (stricter than the codec).
            idna.encode(parts.hostname, uts46=True)
        except idna.IDNAError:
            raise ValueError("has a host name that is not valid") from None
    return value


def host_allowed(url: str, allowed_hosts: list[str]) -> bool:
    """True when the URL's host is in `allowed_hosts` (exact, or `*.suffix`); [] allows all."""
    if not allowed_hosts:
        return True
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    for allowed in allowed_hosts:
        allowed = allowed.lower().rstrip(".")
        if host == allowed or (allowed.startswith("*.") and host.endswith(allowed[1:])):
            return True
    return False


def listed(url: str, allowed_hosts: list[str]) -> bool:
    """True when the URL's host is named in a non-empty `allowed_hosts`."""
    return bool(allowed_hosts) and host_allowed(url, allowed_hosts)


def is_public(address: str) -> bool:
    """True for a globally routable address; False for loopback, private, link-local,
    reserved and the like, which a caller's callback_url must not reach unless listed."""
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_global
    except ValueError:
        return False


def literal_address(url: str) -> str | None:
    """The URL's host if it is an IP address literal."""
    host = urlsplit(url).hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    return host

"""A caller's callback_url is reached at an address that was checked, not one looked up again.

The check that a callback host is public and the connection used to resolve the name each
on their own: a name whose DNS answer changes between the two (DNS rebinding: a TTL of 0,
first a public address, then 127.0.0.1) passed the check and was then connected to a
private address. Here the name is resolved once, every address it has is checked, and the
request goes to one of those addresses with the URL's own Host header and TLS server name,
so virtual hosting works and the certificate is still verified against the host name.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from click2call.webhooks.urls import is_public

# host, port → the addresses it resolves to, in the resolver's order of preference
Resolve = Callable[[str, int], Awaitable[list[str]]]


async def resolve(host: str, port: int) -> list[str]:
    """The host's addresses for a TCP connection (getaddrinfo, off the event loop)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True, slots=True)
class Target:
    """Where one attempt connects: the URL as given (trusted) or pinned to an address."""

    url: httpx.URL
    headers: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, Any] = field(default_factory=dict)

    @property
    def pinned(self) -> bool:
        return "Host" in self.headers


class Refused(Exception):
    """The callback host may not be reached; the message says why."""


async def pinned_targets(
    url: str, resolver: Resolve, allowed: Callable[[str], bool] = is_public
) -> list[Target]:
    """The URL pinned to each of its host's addresses, in order; Refused when the host
    does not resolve or any of its addresses is not `allowed` (one private address is
    enough to refuse: which one a connection would take is not ours to choose)."""
    parsed = httpx.URL(url)
    # The ASCII (xn--) form: given the Unicode one, getaddrinfo and ssl re-encode it with
    # IDNA 2003, which maps straße.de to strasse.de, another domain.
    host = parsed.raw_host.decode("ascii")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        addresses = await resolver(host, port)
    except OSError as exc:
        raise Refused(f"callback host {host} does not resolve ({exc})") from exc
    if not addresses:
        raise Refused(f"callback host {host} does not resolve")
    private = sorted(address for address in addresses if not allowed(address))
    if private:
        raise Refused(f"callback host resolves to a private or local address ({private[0]})")
    headers = {"Host": parsed.netloc.decode("ascii")}
    extensions: dict[str, Any] = {"sni_hostname": host} if parsed.scheme == "https" else {}
    return [
        Target(parsed.copy_with(host=a.split("%", 1)[0]), headers, extensions) for a in addresses
    ]

"""The SIP socket and name lookups: the only place of the SIP engine that does network I/O.

One UDP socket, bound without SO_REUSEADDR/SO_REUSEPORT: the SIP port is ours alone, and
a second server on a taken port refuses to start instead of stealing the first one's
replies. Host names are resolved once and kept (`Resolver`), never per message.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
from collections.abc import Callable
from typing import cast

from click2call.errors import EngineUnavailable

log = logging.getLogger("click2call.sip")
Peer = tuple[str, int]
_DNS_TTL = 300.0  # getaddrinfo gives no TTL; names are looked up again after this


class UdpTransport(asyncio.DatagramProtocol):
    def __init__(
        self,
        on_datagram: Callable[[bytes, Peer], None],
        on_unreachable: Callable[[Peer, str], None],
    ) -> None:
        self._on_datagram = on_datagram
        self._on_unreachable = on_unreachable
        self._transport: asyncio.DatagramTransport | None = None
        self.bound: Peer | None = None

    async def bind(self, host: str, port: int) -> Peer:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise EngineUnavailable(
                    f"SIP port {host}:{port}/udp is already in use by another process: "
                    "stop it or set another [sip] port"
                ) from None
            raise EngineUnavailable(f"cannot listen for SIP on {host}:{port}/udp: {exc}") from None
        sock.setblocking(False)
        await loop.create_datagram_endpoint(lambda: self, sock=sock)
        bound = sock.getsockname()
        self.bound = (bound[0], bound[1])
        return self.bound

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self._on_datagram(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        log.debug("SIP socket error: %s", exc)

    def send(self, data: bytes, peer: Peer) -> None:
        if self._transport is None or self._transport.is_closing():
            raise EngineUnavailable("SIP socket is closed")
        self._transport.sendto(data, peer)

    @property
    def running(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class Resolver:
    """Host name → address, looked up once and kept for `_DNS_TTL` seconds."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, int], tuple[Peer, float]] = {}

    def cached(self, host: str, port: int) -> Peer | None:
        """The address at once when `host` is a literal or still cached."""
        try:
            ipaddress.ip_address(host.strip("[]"))
            return host.strip("[]"), port
        except ValueError:
            pass
        hit = self._cache.get((host, port))
        loop = asyncio.get_running_loop()
        if hit is not None and hit[1] > loop.time():
            return hit[0]
        return None

    async def resolve(self, host: str, port: int) -> Peer:
        """Raises OSError (socket.gaierror) for a name that does not resolve."""
        known = self.cached(host, port)
        if known is not None:
            return known
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        address = infos[0][4]
        peer = (str(address[0]), int(address[1]))
        self._cache[(host, port)] = (peer, loop.time() + _DNS_TTL)
        return peer

"""SIP over UDP, TCP and TLS, and name lookups: the only SIP module that touches the network.

`Transports` owns one UDP socket, a TCP listener on the same port and, when a
certificate is configured, a TLS listener. Messages are framed here (a datagram each,
or Content-Length on streams, message.py) and handed up with the `Flow` they came on;
whatever is sent to a flow goes back on the same connection when one is open, and
connections opened towards a peer are reused (RFC 3261 §18). Nothing binds with
SO_REUSEADDR/SO_REUSEPORT: the SIP port is ours alone, and a second server on a taken
port refuses to start instead of stealing the first one's replies.

When a peer cannot be reached (ICMP port unreachable on UDP, a refused connection,
a failed TLS handshake), `on_unreachable(flow, cause)` says so at once.

Connections peers open are bounded: at most `max_connections` at once (more are closed
as they open), and one that carries no whole message nor a CRLF keep-alive (RFC 5626
§3.5.1) for `idle_timeout` seconds is closed, so a peer that opens and never speaks, or
trickles a message byte by byte, does not hold a descriptor for ever; it opens a new one
when it has something to say. The connections we open towards a pbx or trunk stay open
however quiet: a connected call sends nothing for minutes, and a peer that only answers
over the connection it was reached on must still be able to send its BYE.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import cast

from click2call.engines.sip.message import (
    ParseError,
    Request,
    Response,
    StreamReader,
    bad_request,
)
from click2call.engines.sip.message import parse_datagram as parse
from click2call.errors import EngineUnavailable

log = logging.getLogger("click2call.sip")
Peer = tuple[str, int]
_DNS_TTL = 300.0  # getaddrinfo gives no TTL: a name is looked up again after this
_CONNECT_TIMEOUT = 5.0
# Linux reports ICMP errors on an unconnected UDP socket only with IP_RECVERR (11; the
# socket module names it from Python 3.12 on).
_IP_RECVERR = getattr(socket, "IP_RECVERR", 11 if sys.platform == "linux" else None)
_DRAIN = 256  # datagrams read at once when the socket is readable
_RECEIVE_BUFFER = 4 * 1024 * 1024  # bytes asked of the kernel (capped by rmem_max)


@dataclass(frozen=True, slots=True)
class Flow:
    transport: str  # "udp", "tcp" or "tls"
    peer: Peer

    def __str__(self) -> str:
        return f"{self.peer[0]}:{self.peer[1]}/{self.transport}"


OnMessage = Callable[[Request | Response, Flow], None]
OnUnreachable = Callable[[Flow, str], None]


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, owner: Transports, sock: socket.socket) -> None:
        self._owner = owner
        self.sock = sock

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self._handle(data, addr)
        # asyncio reads one datagram per loop turn; under a burst the rest would wait
        # behind every other callback while retransmission timers fire. Drain them now.
        for _ in range(_DRAIN):
            try:
                data, addr = self.sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.error_received(exc)
                return
            self._handle(data, addr)

    def _handle(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        flow = Flow("udp", (str(addr[0]), int(addr[1])))
        if not data.strip(b"\r\n\x00 "):
            return  # keep-alive
        try:
            message = parse(data)
        except ParseError as exc:
            answer = bad_request(data)
            log.info(
                "%s a malformed SIP message from %s: %s",
                "answered 400 to" if answer else "dropped",
                flow,
                exc,
            )
            if answer is not None:
                self._owner.send(answer, flow)
            return
        self._owner.on_message(message, flow)

    def error_received(self, exc: Exception) -> None:
        # With IP_RECVERR the ICMP error waits in the error queue, with the address
        # of the datagram that caused it: that names the peer that is down.
        while True:
            try:
                _data, _anc, _flags, address = self.sock.recvmsg(1, 512, socket.MSG_ERRQUEUE)
            except OSError:
                break
            peer = (str(address[0]), int(address[1]))
            reason = getattr(exc, "strerror", None) or exc
            self._owner.on_unreachable(Flow("udp", peer), f"port unreachable ({reason})")


class _Stream(asyncio.Protocol):
    """One TCP or TLS connection, either way."""

    def __init__(self, owner: Transports, transport: str, accepted: bool = False) -> None:
        self._owner = owner
        self._kind = transport
        self._reader = StreamReader()
        self._transport: asyncio.Transport | None = None
        self._pending: list[bytes] = []
        self.flow: Flow | None = None
        self.accepted = accepted  # opened by the peer, not by us
        self.heard_at = 0.0  # loop time of the last whole message or keep-alive

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self.heard_at = asyncio.get_running_loop().time()
        name = transport.get_extra_info("peername")
        self.flow = Flow(self._kind, (str(name[0]), int(name[1])))
        if self.accepted and not self._owner.admit(self.flow):
            self._transport.close()
            return
        self._owner.connections[self.flow] = self
        for data in self._pending:
            self._transport.write(data)
        self._pending.clear()

    def data_received(self, data: bytes) -> None:
        assert self.flow is not None
        try:
            messages = self._reader.feed(data)
        except ParseError as exc:
            log.info("closing SIP connection %s: %s", self.flow, exc)
            self.close()
            return
        if messages or not data.strip(b"\r\n"):
            self.heard_at = asyncio.get_running_loop().time()
        for message in messages:
            self._owner.on_message(message, self.flow)
        if self._reader.error is not None:  # after good messages in the same read
            log.info("closing SIP connection %s: %s", self.flow, self._reader.error)
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.flow is not None and self._owner.connections.get(self.flow) is self:
            del self._owner.connections[self.flow]

    def write(self, data: bytes) -> None:
        if self._transport is None:
            self._pending.append(data)
        else:
            self._transport.write(data)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class Transports:
    def __init__(
        self,
        on_message: OnMessage,
        on_unreachable: OnUnreachable,
        client_tls: ssl.SSLContext | None = None,
        server_tls: ssl.SSLContext | None = None,
        max_connections: int = 1024,
        idle_timeout: float = 600.0,
    ) -> None:
        self.on_message = on_message
        self.on_unreachable = on_unreachable
        self.connections: dict[Flow, _Stream] = {}
        self._max_connections = max_connections
        self._idle_timeout = idle_timeout
        self._refusing = False  # at the cap: said once until under it again
        self._sweeper: asyncio.TimerHandle | None = None
        self._client_tls = client_tls
        self._server_tls = server_tls
        self._udp: asyncio.DatagramTransport | None = None
        self._datagrams: _Datagrams | None = None
        self._servers: list[asyncio.Server] = []
        self._connecting: dict[Flow, _Stream] = {}

    async def bind(self, host: str, port: int, tls_port: int | None) -> int:
        """Listen on UDP and TCP `port` (and TLS `tls_port`); the UDP port actually bound."""
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        udp = socket.socket(family, socket.SOCK_DGRAM)
        binding, setting = f"{host}:{port} (UDP)", "port"  # what a failure names
        try:
            udp.bind((host, port))
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RECEIVE_BUFFER)
            if _IP_RECVERR is not None and family == socket.AF_INET:
                udp.setsockopt(socket.IPPROTO_IP, _IP_RECVERR, 1)
            port = udp.getsockname()[1]
            binding = f"{host}:{port} (TCP)"
            self._servers.append(await self._listen(host, port, "tcp", None))
            if tls_port is not None and self._server_tls is not None:
                binding, setting = f"{host}:{tls_port} (TLS)", "tls_port"
                self._servers.append(await self._listen(host, tls_port, "tls", self._server_tls))
        except OSError as exc:
            udp.close()
            self.close()
            if exc.errno == errno.EADDRINUSE:
                raise EngineUnavailable(
                    f"SIP port {binding} is already in use by another process: "
                    f"stop it or set another [sip] {setting}"
                ) from None
            raise EngineUnavailable(f"cannot listen for SIP on {binding}: {exc}") from None
        udp.setblocking(False)
        datagrams = self._datagrams = _Datagrams(self, udp)
        transport, _ = await loop.create_datagram_endpoint(lambda: datagrams, sock=udp)
        self._udp = transport
        self._sweep()
        return int(port)

    def admit(self, flow: Flow) -> bool:
        """Whether a connection the peer opened may stay (under `max_connections`)."""
        accepted = sum(1 for stream in self.connections.values() if stream.accepted)
        if accepted < self._max_connections:
            self._refusing = False
            return True
        if not self._refusing:
            self._refusing = True
            log.warning(
                "%d SIP connections already open ([sip] max_connections): closing new ones"
                " (first: %s)",
                accepted,
                flow,
            )
        return False

    def _sweep(self) -> None:
        """Close the connections peers opened and left quiet for longer than
        `idle_timeout`; again in a while."""
        loop = asyncio.get_running_loop()
        quiet_since = loop.time() - self._idle_timeout
        for stream in list(self.connections.values()):
            if stream.accepted and stream.heard_at < quiet_since:
                log.info(
                    "closing SIP connection %s: quiet for %g s", stream.flow, self._idle_timeout
                )
                stream.close()
        self._sweeper = loop.call_later(max(0.1, self._idle_timeout / 4), self._sweep)

    async def _listen(
        self, host: str, port: int, kind: str, context: ssl.SSLContext | None
    ) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.bind((host, port))  # no SO_REUSEADDR: a live listener keeps its port
        except OSError:
            sock.close()
            raise
        sock.listen(128)
        sock.setblocking(False)
        return await loop.create_server(
            lambda: _Stream(self, kind, accepted=True), sock=sock, ssl=context
        )

    @property
    def running(self) -> bool:
        return self._udp is not None and not self._udp.is_closing()

    def send(self, data: bytes, flow: Flow, server_name: str | None = None) -> None:
        if flow.transport == "udp":
            self._send_datagram(data, flow.peer)
            return
        stream = self.connections.get(flow) or self._connecting.get(flow)
        if stream is None:
            stream = self._connect(flow, server_name)
        stream.write(data)

    def _send_datagram(self, data: bytes, peer: Peer) -> None:
        if self._udp is None or self._udp.is_closing() or self._datagrams is None:
            raise EngineUnavailable("SIP socket is closed")
        if cast(asyncio.WriteTransport, self._udp).get_write_buffer_size():
            self._udp.sendto(data, peer)  # keep the order of what already waits
            return
        # An ICMP error about another peer is reported on the next send (IP_RECVERR),
        # and asyncio would drop the datagram with it: take the error, send again.
        for _ in range(8):
            try:
                self._datagrams.sock.sendto(data, peer)
                return
            except (BlockingIOError, InterruptedError):
                self._udp.sendto(data, peer)
                return
            except OSError as exc:
                self._datagrams.error_received(exc)
        log.warning("SIP datagram to %s:%d not sent: the socket keeps failing", *peer)

    def _connect(self, flow: Flow, server_name: str | None) -> _Stream:
        stream = _Stream(self, flow.transport)
        self._connecting[flow] = stream
        context = self._client_tls if flow.transport == "tls" else None
        if flow.transport == "tls" and context is None:
            context = ssl.create_default_context()

        async def connect() -> None:
            loop = asyncio.get_running_loop()
            try:
                async with asyncio.timeout(_CONNECT_TIMEOUT):
                    await loop.create_connection(
                        lambda: stream,
                        *flow.peer,
                        ssl=context,
                        server_hostname=(server_name or flow.peer[0]) if context else None,
                    )
            except (OSError, TimeoutError, ssl.SSLError) as exc:
                self.on_unreachable(flow, _connect_failure(flow, exc))
            finally:
                self._connecting.pop(flow, None)

        asyncio.get_running_loop().create_task(connect())
        return stream

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._udp is not None:
            self._udp.close()
        for server in self._servers:
            server.close()
        for stream in list(self.connections.values()):
            stream.close()


def _connect_failure(flow: Flow, exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS handshake with {flow} failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake with {flow} failed: {exc.reason or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {flow}"
    if isinstance(exc, TimeoutError):
        return f"no connection to {flow} within {_CONNECT_TIMEOUT:g} s"
    return f"cannot connect to {flow}: {exc}"


def client_tls_context(ca_file: str | None, verify: bool) -> ssl.SSLContext:
    """How we check trunks we connect to: verified against `ca_file` (or the system's)."""
    context = ssl.create_default_context(cafile=ca_file or None)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def server_tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context


@lru_cache(maxsize=256)
def _literal(host: str) -> str | None:
    """`host` without brackets when it is an IP address, else None (a name to look up)."""
    bare = host.strip("[]")
    try:
        ipaddress.ip_address(bare)
    except ValueError:
        return None
    return bare


class Resolver:
    """Host name → address, looked up once and kept for `_DNS_TTL` seconds."""

    def __init__(self, family: socket.AddressFamily = socket.AF_INET) -> None:
        # Only addresses our socket can send to: a dual-stack name gives IPv6 first, which
        # an IPv4 socket cannot reach (each request dropped, then a 408 after 32 s).
        self._family = family
        self._cache: dict[tuple[str, int], tuple[Peer, float]] = {}

    def cached(self, host: str, port: int) -> Peer | None:
        """The address at once when `host` is a literal or still cached."""
        literal = _literal(host)
        if literal is not None:
            return literal, port
        hit = self._cache.get((host, port))
        if hit is not None and hit[1] > asyncio.get_running_loop().time():
            return hit[0]
        return None

    async def resolve(self, host: str, port: int) -> Peer:
        """Raises OSError (socket.gaierror) for a name that does not resolve."""
        known = self.cached(host, port)
        if known is not None:
            return known
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, family=self._family, type=socket.SOCK_DGRAM)
        address = infos[0][4]
        peer = (str(address[0]), int(address[1]))
        self._cache[(host, port)] = (peer, loop.time() + _DNS_TTL)
        return peer

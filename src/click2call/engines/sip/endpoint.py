"""The SIP endpoint: one socket, its transactions and the legs placed through it.

The asyncio shell around the pure layers. It parses what arrives (message.py), hands
it to the matching transaction (transaction.py) and the leg that owns the dialog
(leg.py), and carries their outputs out: bytes to the socket, timers to the loop,
leg events to the call that owns the leg. It decides nothing about a call itself.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from click2call.engines.sip import leg as lg
from click2call.engines.sip import third_party as tp
from click2call.engines.sip import transaction as tx
from click2call.engines.sip.dialog import reply
from click2call.engines.sip.message import Request, Response, SipUri
from click2call.engines.sip.timers import Timer, Timers
from click2call.engines.sip.transport import (
    Flow,
    Resolver,
    Transports,
    client_tls_context,
    server_tls_context,
)
from click2call.settings import SipStackSettings

log = logging.getLogger("click2call.sip")
_SECRET_HEADERS = re.compile(rb"^((?:Proxy-)?Authorization:).*$", re.MULTILINE | re.IGNORECASE)


class LegOwner(Protocol):
    def leg_event(self, event: tp.LegEvent) -> None: ...
    def leg_changed(self) -> None: ...


class TransactionUser(Protocol):
    """Who a client transaction reports to: a call leg, or an OPTIONS probe."""

    def on_response(self, response: Response) -> list[lg.Output]: ...
    def on_timeout(self, request: Request) -> list[lg.Output]: ...
    def on_transport_error(self, request: Request, cause: str) -> list[lg.Output]: ...


Armed = list[tuple[str, Timer]]


@dataclass(slots=True)
class _Client:
    transaction: tx.ClientTransaction
    user: TransactionUser
    flow: Flow
    server_name: str
    timers: Armed = field(default_factory=list)  # what is armed, by timer name


@dataclass(slots=True)
class _Server:
    transaction: tx.ServerTransaction
    flow: Flow
    ack: tuple[str, int] | None = None  # (Call-ID, CSeq) of the 2xx waiting for its ACK
    timers: Armed = field(default_factory=list)


def _arm(clock: Timers, timers: Armed, name: str, timer: Timer) -> None:
    for i, (armed, earlier) in enumerate(timers):
        if armed == name:
            clock.cancel(earlier)  # it fired (re-armed from its own callback) or is replaced
            del timers[i]
            break
    timers.append((name, timer))


def _settle(
    clock: Timers, timers: Armed, transaction: tx.ClientTransaction | tx.ServerTransaction
) -> None:
    """Cancel the timers the transaction no longer expects (B once a response came, all of
    them once it ended): a pending timer holds the transaction and its messages for up to
    32 s, which thousands of calls set up a minute would otherwise keep."""
    if timers and not all(transaction.expects(name) for name, _ in timers):
        for name, timer in timers:
            if not transaction.expects(name):
                clock.cancel(timer)
        timers[:] = [(name, t) for name, t in timers if transaction.expects(name)]


class SipEndpoint:
    def __init__(
        self, settings: SipStackSettings, tokens: Callable[[], str] = lambda: secrets.token_hex(8)
    ) -> None:
        self.settings = settings
        self.tokens = tokens
        client_tls = client_tls_context(settings.tls_ca_file, settings.tls_verify)
        server_tls = None
        if settings.tls_cert_file and settings.tls_key_file:
            server_tls = server_tls_context(settings.tls_cert_file, settings.tls_key_file)
        self.transports = Transports(
            self._on_message,
            self._on_unreachable,
            client_tls,
            server_tls,
            settings.max_connections,
            settings.connection_idle_timeout,
        )
        family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
        self.resolver = Resolver(family)  # addresses of the family our sockets bind
        self.timers = Timers()  # transactions' and calls' timers, thousands at once
        self.error: str | None = None
        self._starting: asyncio.Task[None] | None = None
        self._legs: dict[str, tuple[lg.UacLeg, LegOwner]] = {}
        # Legs that ended while a 2xx they answered may still come again (until their
        # INVITE's timer M): by Call-ID, so that 2xx is ACKed again (see _accepted).
        self._acking: dict[str, lg.UacLeg] = {}
        self._clients: dict[tuple[str, str], _Client] = {}
        self._servers: dict[tuple[str, str, str], _Server] = {}
        self._awaiting_ack: dict[tuple[str, int], tuple[str, str, str]] = {}
        self._port = settings.port
        self._locals: dict[str, lg.Local] = {}

    async def start(self) -> None:
        """Bind once; every tenant's engine shares this endpoint."""
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._bind())
        await asyncio.shield(self._starting)

    async def _bind(self) -> None:
        settings = self.settings
        try:
            self._port = await self.transports.bind(settings.host, settings.port, settings.tls_port)
            self._locals.clear()  # port 0 became a real port
        except Exception as exc:
            self.error = str(exc)
            raise

    def local(self, transport: str = "udp") -> lg.Local:
        """How we appear in Via and Contact on `transport` (one object, shared by every leg)."""
        local = self._locals.get(transport)
        if local is None:
            port = self.settings.tls_port if transport == "tls" else self._port
            local = lg.Local(self.settings.host, port, transport.upper(), self.settings.user_agent)
            self._locals[transport] = local
        return local

    @property
    def running(self) -> bool:
        return self.transports.running

    def stop(self) -> None:
        self.transports.close()

    # --- legs --------------------------------------------------------------------------

    def place(self, leg: lg.UacLeg, owner: LegOwner, sdp: str | None) -> None:
        outputs = leg.start(sdp)
        self._legs[leg.call_id] = (leg, owner)
        self.run(leg, outputs)

    def adopt(self, leg: lg.UacLeg, owner: LegOwner) -> None:
        """Follow a leg a previous process placed (rebuilt from its snapshot). An
        unanswered one gets its INVITE transaction back, to ACK the 487 its CANCEL brings."""
        self._legs[leg.call_id] = (leg, owner)
        invite = leg.invite
        if invite is not None and leg.acks_kept:
            # Its 2xx may come again: ACKed as long as it would have been without the
            # restart (no 2xx is resent longer than 64*T1 after it was first sent).
            number = invite.cseq()[0]
            self.timers.call_later(64 * tx.T1, SipEndpoint._accepted_over, self, leg, number)
        if leg.dialog is not None or invite is None:
            return

        def start(flow: Flow) -> None:
            transaction = tx.ClientInvite(invite, reliable=flow.transport != "udp")
            client = _Client(transaction, leg, flow, destination.host)
            key = tx.client_key(invite)
            self._clients[key] = client
            self._client_outputs(key, client, transaction.resume())

        destination = SipUri.parse(invite.uri)
        self._flow_to(destination, start, lambda cause: None)

    def run(self, leg: lg.UacLeg, outputs: list[lg.Output]) -> None:
        self._run(leg, outputs)
        entry = self._legs.get(leg.call_id)
        if entry is not None:
            entry[1].leg_changed()

    def _run(self, leg: lg.UacLeg, outputs: list[lg.Output]) -> None:
        for output in outputs:
            match output:
                case lg.SendRequest(request=request, destination=destination):
                    self._send_request(leg, request, destination)
                case lg.SendAck(request=request, destination=destination, data=data):
                    self._send_stateless(request, data, destination)
                case lg.Report(event=event):
                    entry = self._legs.get(leg.call_id)
                    if entry is not None:
                        entry[1].leg_event(event)
                case lg.RetryLater(seconds=seconds):
                    loop = asyncio.get_running_loop()
                    loop.call_later(seconds, lambda: self.run(leg, leg.retry()))
                case lg.LegEnded():
                    self._legs.pop(leg.call_id, None)
                    if leg.acks_kept:
                        self._acking[leg.call_id] = leg

    def send_request(self, user: TransactionUser, request: Request, destination: SipUri) -> None:
        """Send `request` in a new client transaction; its outcome goes to `user`."""
        self._send_request(user, request, destination)

    def _carry(self, user: TransactionUser, outputs: list[lg.Output]) -> None:
        if isinstance(user, lg.UacLeg):
            self.run(user, outputs)

    def _send_request(self, user: TransactionUser, request: Request, destination: SipUri) -> None:
        def unreachable(cause: str) -> None:
            log.warning("SIP %s to %s failed: %s", request.method, destination, cause)
            self._carry(user, user.on_transport_error(request, cause))

        def start(flow: Flow) -> None:
            self._start_client(user, request, flow, destination.host)

        self._flow_to(destination, start, unreachable)

    def _flow_to(
        self, destination: SipUri, then: Callable[[Flow], None], failed: Callable[[str], None]
    ) -> None:
        """`then(flow)` towards `destination`: at once when its address is known, else
        after one lookup (cached); `failed(cause)` when the name does not resolve."""
        transport = destination.transport
        port = destination.port or (5061 if transport == "tls" else 5060)
        peer = self.resolver.cached(destination.host, port)
        if peer is not None:
            then(Flow(transport, peer))
            return

        async def resolve() -> None:
            try:
                found = await self.resolver.resolve(destination.host, port)
            except OSError as exc:
                failed(f"cannot resolve {destination.host}: {exc.strerror or exc}")
                return
            then(Flow(transport, found))

        asyncio.get_running_loop().create_task(resolve())

    def _start_client(self, user: TransactionUser, request: Request, flow: Flow, name: str) -> None:
        transaction = tx.client_transaction(request, reliable=flow.transport != "udp")
        client = _Client(transaction, user, flow, name)
        key = tx.client_key(request)
        self._clients[key] = client
        self._client_outputs(key, client, transaction.start())
        if request.method == "CANCEL":  # its INVITE's transaction: same branch (§9.1)
            invite = self._clients.get((key[0], "INVITE"))
            if invite is not None and isinstance(invite.transaction, tx.ClientInvite):
                self._client_outputs((key[0], "INVITE"), invite, invite.transaction.cancelled())

    def _send_stateless(self, request: Request, data: bytes, destination: SipUri) -> None:
        def unreachable(cause: str) -> None:
            log.warning("SIP %s to %s not sent: %s", request.method, destination, cause)

        def write(flow: Flow) -> None:
            self._write_bytes(data, flow, destination.host)

        self._flow_to(destination, write, unreachable)

    # --- transactions ------------------------------------------------------------------

    def _client_outputs(self, key: tuple[str, str], client: _Client, out: list[tx.Output]) -> None:
        for output in out:
            match output:
                case tx.Send(message=message):
                    self._write(message, client.flow, client.server_name)
                case tx.Deliver(response=response):
                    self._carry(client.user, client.user.on_response(response))
                case tx.Arm(timer="M", seconds=seconds) if isinstance(client.user, lg.UacLeg):
                    self._accepted(key, client, client.user, seconds)
                case tx.Arm(timer=timer, seconds=seconds):
                    armed = self.timers.call_later(seconds, self._client_timer, key, client, timer)
                    _arm(self.timers, client.timers, timer, armed)
                case tx.TimedOut():
                    request = client.transaction.request
                    self._carry(client.user, client.user.on_timeout(request))
                case tx.Terminated():
                    if self._clients.get(key) is client:
                        del self._clients[key]
                    request = client.transaction.request
                    if request.method == "INVITE" and isinstance(client.user, lg.UacLeg):
                        client.user.invite_over(request.cseq()[0])
        _settle(self.timers, client.timers, client.transaction)

    def _accepted(
        self, key: tuple[str, str], client: _Client, leg: lg.UacLeg, seconds: float
    ) -> None:
        """A 2xx answered the leg's INVITE: its transaction (RFC 6026's Accepted state)
        would only pass retransmissions of that 2xx up for `seconds` (timer M), and those
        reach the leg by its Call-ID without it (_on_response). So the transaction is
        forgotten at once and only the end of that wait is kept: a call connected in the
        last 32 s held ~1.2 KB per INVITE in it (its timers, keys, flow and request)."""
        if self._clients.get(key) is client:
            del self._clients[key]
        for _name, timer in client.timers:
            self.timers.cancel(timer)
        client.timers.clear()
        number = client.transaction.request.cseq()[0]
        # The function and the endpoint as arguments: no bound method kept per timer.
        self.timers.call_later(seconds, SipEndpoint._accepted_over, self, leg, number)

    def _accepted_over(self, leg: lg.UacLeg, number: int) -> None:
        leg.invite_over(number)
        if not leg.acks_kept and self._acking.get(leg.call_id) is leg:
            del self._acking[leg.call_id]

    def _client_timer(self, key: tuple[str, str], client: _Client, timer: str) -> None:
        self._client_outputs(key, client, client.transaction.on_timer(timer))

    def _server_outputs(
        self, key: tuple[str, str, str], server: _Server, out: list[tx.Output]
    ) -> None:
        for output in out:
            match output:
                case tx.Send(message=message):
                    self._write(message, server.flow)
                case tx.Arm(timer=timer, seconds=seconds):
                    armed = self.timers.call_later(seconds, self._server_timer, key, server, timer)
                    _arm(self.timers, server.timers, timer, armed)
                case tx.Terminated():
                    if self._servers.get(key) is server:
                        del self._servers[key]
                    if server.ack is not None:
                        self._awaiting_ack.pop(server.ack, None)
        _settle(self.timers, server.timers, server.transaction)

    def _server_timer(self, key: tuple[str, str, str], server: _Server, timer: str) -> None:
        self._server_outputs(key, server, server.transaction.on_timer(timer))

    # --- the wire ----------------------------------------------------------------------

    def _write(self, message: Request | Response, flow: Flow, name: str | None = None) -> None:
        self._write_bytes(bytes(message), flow, name)

    def _write_bytes(self, data: bytes, flow: Flow, name: str | None = None) -> None:
        if self.settings.log_messages:
            log.debug("SIP to %s\n%s", flow, _SECRET_HEADERS.sub(rb"\1 (hidden)", data))
        try:
            self.transports.send(data, flow, name)
        except Exception as exc:  # a closed socket while stopping: nothing left to tell
            log.debug("SIP send to %s failed: %s", flow, exc)

    def _on_message(self, message: Request | Response, flow: Flow) -> None:
        if self.settings.log_messages:
            data = _SECRET_HEADERS.sub(rb"\1 (hidden)", bytes(message))
            log.debug("SIP from %s\n%s", flow, data)
        if isinstance(message, Response):
            self._on_response(message)
        else:
            self._on_request(message, flow)

    def _on_unreachable(self, flow: Flow, cause: str) -> None:
        """End at once every transaction still waiting for a first answer from `flow`."""
        waiting = (tx.State.CALLING, tx.State.TRYING)
        for key, client in list(self._clients.items()):
            if client.flow == flow and client.transaction.state in waiting:
                del self._clients[key]
                client.transaction.abandon()
                _settle(self.timers, client.timers, client.transaction)
                request = client.transaction.request
                log.warning("SIP %s to %s failed: %s", request.method, flow, cause)
                self._carry(client.user, client.user.on_transport_error(request, cause))

    def _on_response(self, response: Response) -> None:
        key = tx.client_key(response)
        client = self._clients.get(key)
        if client is not None:
            self._client_outputs(key, client, client.transaction.on_response(response))
            return
        if 200 <= response.code < 300:  # a 2xx again (its ACK was lost): ACK it again
            entry = self._legs.get(response.call_id)
            leg = self._acking.get(response.call_id) if entry is None else entry[0]
            if leg is not None:
                self.run(leg, leg.on_response(response))

    def _on_request(self, request: Request, flow: Flow) -> None:
        key = tx.server_key(request)
        known = self._servers.get(key)
        if known is not None:
            self._server_outputs(key, known, known.transaction.on_request(request))
            return
        entry = self._legs.get(request.call_id)
        if request.method == "ACK":
            waiting = self._awaiting_ack.pop((request.call_id, request.cseq()[0]), None)
            server = None if waiting is None else self._servers.get(waiting)
            if waiting is not None and server is not None:
                self._server_outputs(waiting, server, server.transaction.on_request(request))
            return
        if entry is None:
            # Outside our dialogs: one stateless reply (RFC 3261 §8.2.7). A transaction
            # would resend a 405 to a spoofable address for 32 s and keep state per branch.
            self._write(_out_of_dialog(request, self.tokens()), flow)
            return
        reliable = flow.transport != "udp"
        server = _Server(tx.server_transaction(request, reliable), flow)
        self._servers[key] = server
        response, outputs = entry[0].on_request(request)
        if response is not None:
            if request.method == "INVITE" and 200 <= response.code < 300:
                server.ack = (request.call_id, request.cseq()[0])
                self._awaiting_ack[server.ack] = key
            self._server_outputs(key, server, server.transaction.respond(response))
        self.run(entry[0], outputs)


def _out_of_dialog(request: Request, to_tag: str) -> Response:
    """We only place calls: outside our dialogs we answer keep-alive OPTIONS, nothing else.
    A final response carries a To tag of ours when the request had none (§8.2.6.2)."""
    if request.method == "OPTIONS":
        response = reply(request, 200, to_tag)
        response.add("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE")
        return response
    if request.to().tag is not None or request.method == "CANCEL":
        return reply(request, 481, to_tag)
    return reply(request, 405, to_tag)

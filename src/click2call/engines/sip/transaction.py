"""SIP transactions (RFC 3261 §17, with RFC 6026's Accepted state). Pure: timers are outputs.

Each transaction is fed messages and timer firings and answers with outputs:

    Send(message)      put it on the wire (to the transaction's peer)
    Deliver(response)  a response for the transaction user (client side)
    Arm(timer, secs)   call `on_timer(timer)` after `secs`; a timer the state no longer
                       expects is ignored, so the shell need not cancel one (it may, to
                       free what the timer holds at once: `expects(timer)` says)
    TimedOut()         timer B, F or H: the peer never answered (the TU reports 408)
    Terminated()       the transaction is over; forget it

Client INVITE:  calling ─1xx→ proceeding ─2xx→ accepted (M) ─→ terminated
                         └─300-699→ completed (ACK sent; D absorbs retransmissions)
Client other:   trying ─1xx→ proceeding ─final→ completed (K) ─→ terminated
Server INVITE:  proceeding ─2xx→ accepted (2xx resent on G until ACK, L)
                           └─300-699→ completed (G resends, H) ─ACK→ confirmed (I)
Server other:   trying ─final→ completed (J absorbs retransmitted requests)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from click2call.engines.sip.message import Request, Response

T1, T2, T4 = 0.5, 4.0, 5.0  # RFC 3261 §17.1.1.1 defaults, seconds


@dataclass(frozen=True, slots=True)
class Send:
    message: Request | Response


@dataclass(frozen=True, slots=True)
class Deliver:
    response: Response


@dataclass(frozen=True, slots=True)
class Arm:
    timer: str
    seconds: float


@dataclass(frozen=True, slots=True)
class TimedOut:
    pass


@dataclass(frozen=True, slots=True)
class Terminated:
    pass


Output = Send | Deliver | Arm | TimedOut | Terminated


class State(enum.Enum):
    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    ACCEPTED = "accepted"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


def client_key(message: Request | Response) -> tuple[str, str]:
    """What a response shares with its client transaction (§17.1.3): branch and method."""
    return message.top_via().branch or "", message.cseq()[1]


def server_key(request: Request) -> tuple[str, str, str]:
    """What a retransmission or ACK shares with its server transaction (§17.2.3)."""
    via = request.top_via()
    method = "INVITE" if request.method == "ACK" else request.method
    return via.branch or "", f"{via.host}:{via.port or 5060}", method


def _copy(request: Request, method: str, to: str) -> Request:
    """ACK or CANCEL built from an INVITE (§17.1.1.3, §9.1): same Via, Route, Call-ID."""
    number, _ = request.cseq()
    headers = [("Via", request.values("Via")[0]), ("Max-Forwards", "70")]
    headers += [("Route", route) for route in request.values("Route")]
    headers += [
        ("From", request.required("From")),
        ("To", to),
        ("Call-ID", request.call_id),
        ("CSeq", f"{number} {method}"),
    ]
    return Request(headers=headers, method=method, uri=request.uri)


def ack_for(invite: Request, response: Response) -> Request:
    """The ACK of a non-2xx final response: part of the INVITE transaction."""
    return _copy(invite, "ACK", response.required("To"))


def cancel_for(invite: Request) -> Request:
    return _copy(invite, "CANCEL", invite.required("To"))


@dataclass(slots=True)
class _Transaction:
    request: Request
    reliable: bool = False  # TCP/TLS: no retransmissions, no absorbing waits
    state: State = State.TRYING
    _armed: dict[str, float] = field(default_factory=dict)

    def _arm(self, timer: str, seconds: float) -> Arm:
        self._armed[timer] = seconds
        return Arm(timer, seconds)

    def _end(self) -> list[Output]:
        self.state = State.TERMINATED
        self._armed.clear()
        return [Terminated()]

    def expects(self, timer: str) -> bool:
        """Whether `timer`, armed before, still matters: the shell may cancel it if not."""
        return timer in self._armed

    def abandon(self) -> None:
        """The peer cannot be reached: stop at once (no retransmission, no timer)."""
        self._end()

    def _wait(self, timer: str, seconds: float) -> list[Output]:
        """Linger `seconds` (zero on reliable transports) before ending."""
        if self.reliable:
            return self._end()
        self._armed = {}
        return [self._arm(timer, seconds)]

    def _due(self, timer: str) -> float | None:
        """The interval of `timer` if this state still expects it."""
        return self._armed.pop(timer, None)


@dataclass(slots=True)
class ClientInvite(_Transaction):
    state: State = State.CALLING
    last_ack: Request | None = None
    cancel_sent: bool = False

    def cancelled(self) -> list[Output]:
        """Our CANCEL left: without a final response within 64*T1 the INVITE is given up
        (§9.1). A peer that lost its 487, or a connection gone, left it waiting for ever."""
        self.cancel_sent = True
        if self.state in (State.CALLING, State.PROCEEDING) and "B" not in self._armed:
            return [self._arm("B", 64 * T1)]
        return []

    def start(self) -> list[Output]:
        out: list[Output] = [Send(self.request), self._arm("B", 64 * T1)]
        if not self.reliable:
            out.append(self._arm("A", T1))
        return out

    def resume(self) -> list[Output]:
        """The transaction of an INVITE a previous process sent, rebuilt to ACK its final
        non-2xx (the 487 after our CANCEL); it gives up after 64*T1 without one."""
        self.state = State.PROCEEDING
        return [self._arm("B", 64 * T1)]

    def on_response(self, response: Response) -> list[Output]:
        code = response.code
        if self.state in (State.CALLING, State.PROCEEDING):
            if code < 200:
                self.state = State.PROCEEDING
                given_up_at = self._armed.get("B") if self.cancel_sent else None
                self._armed.clear()
                if given_up_at is not None:  # a ringing after our CANCEL: B still runs
                    self._armed["B"] = given_up_at
                return [Deliver(response)]
            if code < 300:
                self.state = State.ACCEPTED
                return [Deliver(response), *self._wait("M", 64 * T1)]
            self.state = State.COMPLETED
            self.last_ack = ack_for(self.request, response)
            return [Send(self.last_ack), Deliver(response), *self._wait("D", 32.0)]
        if self.state is State.ACCEPTED and 200 <= code < 300:
            return [Deliver(response)]  # a retransmitted 2xx: the TU ACKs it again
        if self.state is State.COMPLETED and code >= 300 and self.last_ack is not None:
            return [Send(self.last_ack)]
        return []

    def on_timer(self, timer: str) -> list[Output]:
        interval = self._due(timer)
        if interval is None:
            return []
        if timer == "A" and self.state is State.CALLING:
            return [Send(self.request), self._arm("A", 2 * interval)]
        if timer == "B" and self.state in (State.CALLING, State.PROCEEDING):
            return [TimedOut(), *self._end()]  # PROCEEDING: cancelled or resumed
        return self._end()  # D or M


@dataclass(slots=True)
class ClientNonInvite(_Transaction):
    def start(self) -> list[Output]:
        out: list[Output] = [Send(self.request), self._arm("F", 64 * T1)]
        if not self.reliable:
            out.append(self._arm("E", T1))
        return out

    def on_response(self, response: Response) -> list[Output]:
        if self.state not in (State.TRYING, State.PROCEEDING):
            return []  # retransmitted final response: absorbed
        if response.code < 200:
            self.state = State.PROCEEDING
            return [Deliver(response)]
        self.state = State.COMPLETED
        return [Deliver(response), *self._wait("K", T4)]

    def on_timer(self, timer: str) -> list[Output]:
        interval = self._due(timer)
        if interval is None:
            return []
        if timer == "E":
            following = T2 if self.state is State.PROCEEDING else min(2 * interval, T2)
            return [Send(self.request), self._arm("E", following)]
        if timer == "F":
            return [TimedOut(), *self._end()]
        return self._end()  # K


@dataclass(slots=True)
class ServerInvite(_Transaction):
    state: State = State.PROCEEDING
    last_response: Response | None = None

    def respond(self, response: Response) -> list[Output]:
        if self.state is not State.PROCEEDING:
            return []
        self.last_response = response
        if response.code < 200:
            return [Send(response)]
        self.state = State.ACCEPTED if response.code < 300 else State.COMPLETED
        out: list[Output] = [Send(response)]
        if not self.reliable:
            out.append(self._arm("G", T1))
        timer = "L" if self.state is State.ACCEPTED else "H"
        return [*out, self._arm(timer, 64 * T1)]

    def on_request(self, request: Request) -> list[Output]:
        """A retransmitted INVITE, or the ACK of our final response."""
        if request.method == "ACK":
            if self.state is State.COMPLETED:
                self.state = State.CONFIRMED
                return self._wait("I", T4)
            if self.state is State.ACCEPTED:
                return self._end()  # the 2xx was acknowledged: stop resending it
            return []
        if self.last_response is not None and self.state is not State.CONFIRMED:
            return [Send(self.last_response)]
        return []

    def on_timer(self, timer: str) -> list[Output]:
        interval = self._due(timer)
        if interval is None:
            return []
        if timer == "G" and self.last_response is not None:
            return [Send(self.last_response), self._arm("G", min(2 * interval, T2))]
        if timer in ("H", "L"):
            return [TimedOut(), *self._end()]
        return self._end()  # I


@dataclass(slots=True)
class ServerNonInvite(_Transaction):
    last_response: Response | None = None

    def respond(self, response: Response) -> list[Output]:
        if self.state is State.COMPLETED or self.state is State.TERMINATED:
            return []
        self.last_response = response
        if response.code < 200:
            self.state = State.PROCEEDING
            return [Send(response)]
        self.state = State.COMPLETED
        return [Send(response), *self._wait("J", 64 * T1)]

    def on_request(self, _request: Request) -> list[Output]:
        return [] if self.last_response is None else [Send(self.last_response)]

    def on_timer(self, timer: str) -> list[Output]:
        return [] if self._due(timer) is None else self._end()


ClientTransaction = ClientInvite | ClientNonInvite
ServerTransaction = ServerInvite | ServerNonInvite


def client_transaction(request: Request, reliable: bool) -> ClientTransaction:
    if request.method == "INVITE":
        return ClientInvite(request, reliable)
    return ClientNonInvite(request, reliable)


def server_transaction(request: Request, reliable: bool) -> ServerTransaction:
    if request.method == "INVITE":
        return ServerInvite(request, reliable)
    return ServerNonInvite(request, reliable)

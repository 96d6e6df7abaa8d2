"""One call leg we place (a UAC INVITE session): pure, fed responses and requests.

The leg turns the controller's wishes (dial, ACK with an answer, re-INVITE, hang up)
into SIP requests, and what the peer does into the controller's `LegEvent`s:

    calling ─1xx→ early ─2xx→ confirmed ─BYE (either side)→ ended
       └───────────┴─ 300-699, timeout ─────────────────────→ ended

Digest challenges are answered as challenges.py decides. Hanging up before an
answer CANCELs once a provisional response has come (§9.1); a 2xx crossing that
CANCEL is ACKed and then ended with BYE. A re-INVITE meeting ours gets 491, and a 491
to ours retries it after 2.1-4 s (§14.1). Requests inside the dialog are answered:
BYE ends the leg; re-INVITE and UPDATE (session-timer refreshes, RFC 4028) get our
current SDP; OPTIONS and INFO get 200.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from click2call.engines.sip import third_party as tp
from click2call.engines.sip.challenges import CHALLENGES, Answers, answer_header
from click2call.engines.sip.dialog import Dialog, reply
from click2call.engines.sip.message import ParseError, Request, Response, SipUri
from click2call.engines.sip.targets import LegTarget
from click2call.engines.sip.transaction import cancel_for


@dataclass(frozen=True, slots=True)
class Local:
    """How we appear on the wire: our address, transport and name."""

    host: str
    port: int
    transport: str = "UDP"
    user_agent: str = "click2call"

    def via(self, branch: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"SIP/2.0/{self.transport} {host}:{self.port};branch={branch};rport"

    @property
    def contact(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        tail = "" if self.transport == "UDP" else f";transport={self.transport.lower()}"
        return f"<sip:click2call@{host}:{self.port}{tail}>"


@dataclass(frozen=True, slots=True)
class SendRequest:
    """Start a client transaction for `request` towards `destination`."""

    request: Request
    destination: SipUri


@dataclass(frozen=True, slots=True)
class SendAck:
    """The ACK of a 2xx: sent as is, outside any transaction (§13.2.2.4)."""

    request: Request
    destination: SipUri
    data: bytes  # `request` on the wire, serialised once


@dataclass(frozen=True, slots=True)
class Report:
    event: tp.LegEvent


@dataclass(frozen=True, slots=True)
class RetryLater:
    """Call `retry()` after `seconds` (a re-INVITE refused with 491)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class LegEnded:
    pass


Output = SendRequest | SendAck | Report | RetryLater | LegEnded


class Phase(enum.Enum):
    CALLING = "calling"
    EARLY = "early"
    CONFIRMED = "confirmed"
    ENDING = "ending"
    ENDED = "ended"


# What a leg keeps of an answered INVITE: the rest lives in the dialog. A connected call
# holds nothing else of its set-up (thousands of them stay up at once).
_KEPT = ("From", "Call-ID", "CSeq")


@dataclass(slots=True)
class UacLeg:
    role: tp.Leg
    target: LegTarget
    local: Local
    tokens: Callable[[], str]  # fresh random hex for tags, branches, Call-IDs, cnonces
    correlation_id: str = ""
    phase: Phase = Phase.CALLING
    dialog: Dialog | None = None
    invite: Request | None = None
    local_sdp: str | None = None
    call_id: str = ""
    _cancel_wanted: bool = False
    _reinvite: Request | None = None
    _glare_sdp: str | None = None
    # What each ACK is made of besides the dialog, until invite_over(): its CSeq, Via
    # branch and body. A call set up a second ago keeps them for 32 s, and rebuilding an
    # ACK (only when its 2xx comes again) gives the same bytes. A tuple, not a dict (one
    # of ~240 bytes per leg, or 64 empty, with thousands of legs up).
    _acks: tuple[tuple[int, str, str | None], ...] = ()
    _acked: bool = False  # an ACK left (so hanging up sends no second one)
    _answers: Answers | None = None  # made by the first challenge answered
    _forks_ended: tuple[str, ...] = ()  # To tags of other forks' 2xx we sent BYE to

    # --- what the controller asks ------------------------------------------------------

    def start(self, sdp: str | None) -> list[Output]:
        self.call_id = f"{self.tokens()}@{self.local.host}"
        uri = self.target.uri
        request = Request(
            method="INVITE",
            uri=uri,
            headers=[
                ("Via", self.local.via(self._branch())),
                ("Max-Forwards", "70"),
                ("From", f"<sip:{self.target.caller_id}@{self._local_host()}>;tag={self.tokens()}"),
                ("To", f"<{uri.partition(';')[0]}>"),
                ("Call-ID", self.call_id),
                ("CSeq", "1 INVITE"),
                ("Contact", self.local.contact),
                ("User-Agent", self.local.user_agent),
                ("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE"),
            ],
        )
        if self.correlation_id:
            request.add("X-Click2Call-Id", self.correlation_id)
        self._with_body(request, sdp)
        self.local_sdp = sdp
        self.invite = request
        return [SendRequest(request, SipUri.parse(uri))]

    def ack(self, sdp: str) -> list[Output]:
        """ACK the 2xx of our offer-less INVITE with our answer (RFC 3725 flow)."""
        if self.phase is not Phase.CONFIRMED or self.invite is None:
            return []
        self.local_sdp = sdp
        return self._send_ack(self.invite.cseq()[0], sdp)

    def reinvite(self, sdp: str) -> list[Output]:
        if self.phase is not Phase.CONFIRMED or self.dialog is None:
            return []
        self.local_sdp = sdp
        request = self.dialog.request("INVITE", self.local.via(self._branch()))
        request.add("Contact", self.local.contact)
        self._with_body(request, sdp)
        self._reinvite = request
        return [SendRequest(request, self.dialog.next_hop())]

    def retry(self) -> list[Output]:
        """The 491 back-off ended: send the re-INVITE again."""
        sdp, self._glare_sdp = self._glare_sdp, None
        return [] if sdp is None else self.reinvite(sdp)

    def hangup(self) -> list[Output]:
        if self.phase is Phase.CALLING:
            self._cancel_wanted = True  # CANCEL waits for a provisional response (§9.1)
            return []
        if self.phase is Phase.EARLY and self.invite is not None:
            self._cancel_wanted = True
            self.phase = Phase.ENDING
            return [SendRequest(cancel_for(self.invite), SipUri.parse(self.invite.uri))]
        if self.phase is Phase.CONFIRMED:
            return self._bye()
        return []

    def restored_ack(self) -> None:
        """A leg rebuilt after a restart had ACKed its 2xx: remember that ACK (rebuilt,
        without body) so a late 2xx is ACKed again and hanging up sends no second ACK."""
        if self.dialog is not None and self.invite is not None:
            self._keep_ack(self.invite.cseq()[0], None)
            self._acked = True

    def invite_over(self, number: int) -> None:
        """The transaction of our INVITE (or re-INVITE) with CSeq `number` has ended: a 2xx
        to it is no longer resent (64*T1 after it, §13.3.1.4), so its ACK need not be kept."""
        self._acks = tuple(kept for kept in self._acks if kept[0] != number)

    @property
    def acks_kept(self) -> bool:
        """Whether a 2xx may still come again and be ACKed (see invite_over)."""
        return bool(self._acks)

    # --- what the peer does ------------------------------------------------------------

    def on_response(self, response: Response) -> list[Output]:
        number, method = response.cseq()
        if method == "INVITE" and self.invite is not None and number == self.invite.cseq()[0]:
            return self._invite_response(response)
        pending = self._reinvite
        if method == "INVITE" and pending is not None and number == pending.cseq()[0]:
            return self._reinvite_response(response)
        if method == "INVITE" and 200 <= response.code < 300 and self._ack_kept(number):
            return self._ack_again(number)
        if method == "BYE" and response.code >= 200:
            if self.dialog is not None and response.to().tag != self.dialog.remote_tag:
                return []  # the answer to the BYE that ended another fork (_other_fork)
            if response.code in CHALLENGES and self._may_retry(response):
                return self._bye(response)
            return self._end()
        return []

    def on_timeout(self, request: Request) -> list[Output]:
        """The peer never answered `request` (timer B or F): report 408."""
        if request.method == "INVITE" and request is self.invite:
            failed = tp.Failed(self.role, 408, "Request Timeout")
            return [Report(failed), *self._end()]
        if request.method == "INVITE":
            return [Report(tp.Failed(self.role, 408, "Request Timeout"))]
        if request.method == "BYE":
            return self._end()
        return []

    def on_transport_error(self, request: Request, cause: str) -> list[Output]:
        """`request` could not leave at all (a name that does not resolve, no route)."""
        if request.method == "INVITE":
            failed: list[Output] = [Report(tp.Failed(self.role, 0, cause))]
            return [*failed, *self._end()] if request is self.invite else failed
        return self._end() if request.method == "BYE" else []

    def on_request(self, request: Request) -> tuple[Response | None, list[Output]]:
        """The answer to a request the peer sent inside our dialog, and what follows."""
        dialog = self.dialog
        if dialog is None and self._in_early_dialog(request):
            # RFC 3311: a PBX may UPDATE (a caller-ID change) or INFO while the phone rings;
            # a 481 ends that early dialog, and a peer may drop the ringing call for it.
            if request.method == "UPDATE" and request.body:
                return reply(request, 488), []  # no offer taken before the answer
            if request.method in ("UPDATE", "INFO", "OPTIONS"):
                return reply(request, 200), []
        if dialog is None or not dialog.matches(request):
            return (None if request.method == "ACK" else reply(request, 481)), []
        if request.method == "ACK":
            return None, []
        if not dialog.accept_cseq(request):
            return reply(request, 500), []
        if request.method == "BYE":
            was = self.phase
            out: list[Output] = [] if was is Phase.ENDED else [Report(tp.HungUp(self.role))]
            return reply(request, 200), [*out, *self._end()]
        if request.method in ("INVITE", "UPDATE"):
            if request.method == "INVITE" and self._reinvite is not None:
                return reply(request, 491), []  # glare: ours is pending
            dialog.refresh_target(request)
            return self._refresh_answer(request), []
        if request.method in ("OPTIONS", "INFO", "CANCEL"):
            return reply(request, 200), []
        return reply(request, 501), []

    # --- inside ------------------------------------------------------------------------

    def _in_early_dialog(self, request: Request) -> bool:
        """A request of the peer's while our INVITE rings: our Call-ID and our tag."""
        if self.invite is None or self.phase not in (Phase.EARLY, Phase.ENDING):
            return False
        ours = self.invite.from_().tag
        return request.call_id == self.call_id and ours is not None and request.to().tag == ours

    def _invite_response(self, response: Response) -> list[Output]:
        code = response.code
        if code < 200:
            if self.phase is Phase.CALLING:
                self.phase = Phase.EARLY
                if self._cancel_wanted:
                    return self.hangup()
            return [Report(tp.Ringing(self.role, code))] if code > 100 else []
        if code < 300:
            return self._answered(response)
        if code in CHALLENGES and not self._cancel_wanted and self._may_retry(response):
            return self._authenticated_invite(response)
        failed = tp.Failed(self.role, code, response.reason)
        return [Report(failed), *self._end()]

    def _answered(self, response: Response) -> list[Output]:
        assert self.invite is not None
        number = self.invite.cseq()[0]
        if self.dialog is not None:
            if response.to().tag != self.dialog.remote_tag:
                return self._other_fork(response, number)
            return self._ack_again(number)  # a retransmitted 2xx: ACK it again
        try:
            self.dialog = Dialog.from_response(self.invite, response)
        except ParseError as exc:
            return [Report(tp.Failed(self.role, 502, f"unusable 2xx: {exc}")), *self._end()]
        self.phase = Phase.CONFIRMED
        _shrink(self.invite)
        if self._cancel_wanted:  # the 2xx crossed our CANCEL: ACK, then BYE
            return [*self._send_ack(number, None), *self._bye()]
        body = response.body.decode("utf-8", "replace") or None
        if self.local_sdp is not None:  # we made the offer: ACK at once
            return [*self._send_ack(number, None), Report(tp.Answered(self.role, body))]
        return [Report(tp.Answered(self.role, body))]

    def _other_fork(self, response: Response, number: int) -> list[Output]:
        """A 2xx from a second phone the INVITE forked to (§13.2.2.4): ACKed in its own
        dialog and ended with BYE; again only ACKed when it comes again."""
        assert self.invite is not None
        try:
            other = Dialog.from_response(self.invite, response)
        except ParseError:
            return []
        ack = other.request("ACK", self.local.via(self._branch()), cseq=number)
        out: list[Output] = [SendAck(ack, other.next_hop(), bytes(ack))]
        tag = other.remote_tag
        if tag not in self._forks_ended:
            self._forks_ended = (*self._forks_ended, tag)
            bye = other.request("BYE", self.local.via(self._branch()))
            out.append(SendRequest(bye, other.next_hop()))
        return out

    def _reinvite_response(self, response: Response) -> list[Output]:
        assert self._reinvite is not None
        assert self.dialog is not None
        code, request = response.code, self._reinvite
        if code < 200:
            return []
        self._reinvite = None
        _shrink(request)
        if code < 300:
            self.dialog.refresh_target(response)
            body = response.body.decode("utf-8", "replace") or None
            ack = self._send_ack(request.cseq()[0], None)
            return [*ack, Report(tp.Answered(self.role, body))]
        if code == 491 and self.local_sdp is not None:
            self._glare_sdp = self.local_sdp
            fraction = int(self.tokens()[:4], 16) / 0xFFFF
            return [RetryLater(2.1 + 1.9 * fraction)]
        if code in CHALLENGES and self._may_retry(response):
            retry = self.reinvite(self.local_sdp or "")
            if retry and isinstance(retry[0], SendRequest):
                self._authorize(retry[0].request, response)
            return retry
        return [Report(tp.Failed(self.role, code, response.reason))]

    def _authenticated_invite(self, challenge: Response) -> list[Output]:
        assert self.invite is not None
        request = Request(
            method="INVITE",
            uri=self.invite.uri,
            # Only the answer to this challenge is replaced: a proxy's and a PBX's realms
            # each keep theirs (§22.3).
            headers=[h for h in self.invite.headers if h[0] != answer_header(challenge)],
            body=self.invite.body,
        )
        request.set("Via", self.local.via(self._branch()))
        request.set("CSeq", f"{self.invite.cseq()[0] + 1} INVITE")
        self._authorize(request, challenge)
        self.invite = request
        return [SendRequest(request, SipUri.parse(request.uri))]

    def _may_retry(self, response: Response) -> bool:
        """A challenge we can answer (challenges.py), with credentials to answer it."""
        if not self.target.username:
            return False
        return (self._answers or Answers()).may_answer(response)

    def _authorize(self, request: Request, response: Response) -> None:
        if self._answers is None:
            self._answers = Answers()
        username, password = self.target.username or "", self.target.password or ""
        self._answers.answer(request, response, username, password, self.tokens())

    def _refresh_answer(self, request: Request) -> Response:
        response = reply(request, 200)
        response.add("Contact", self.local.contact)
        expires = request.header("Session-Expires")
        if expires is not None:
            value = expires if "refresher" in expires else f"{expires};refresher=uac"
            response.add("Session-Expires", value)
            response.add("Require", "timer")
        if (request.method == "INVITE" or request.body) and self.local_sdp:
            self._with_body(response, self.local_sdp)
        return response

    def _send_ack(self, number: int, sdp: str | None) -> list[Output]:
        self._keep_ack(number, sdp)
        self._acked = True
        return self._ack_again(number)

    def _ack_again(self, number: int) -> list[Output]:
        """The ACK for CSeq `number`, built from what `_send_ack` kept (the same bytes
        each time, unless the peer has moved its target since); [] once not kept."""
        kept = self._ack_kept(number)
        if kept is None or self.dialog is None:
            return []
        _number, branch, sdp = kept
        ack = self.dialog.request("ACK", self.local.via(branch), cseq=number)
        self._with_body(ack, sdp)
        return [SendAck(ack, self._ack_destination(), bytes(ack))]

    def _keep_ack(self, number: int, sdp: str | None) -> None:
        """A new ACK for CSeq `number` (with a branch of its own), in place of any before."""
        others = tuple(kept for kept in self._acks if kept[0] != number)
        self._acks = (*others, (number, self._branch(), sdp))

    def _ack_kept(self, number: int) -> tuple[int, str, str | None] | None:
        return next((kept for kept in self._acks if kept[0] == number), None)

    def _bye(self, challenge: Response | None = None) -> list[Output]:
        assert self.dialog is not None
        assert self.invite is not None
        out: list[Output] = []
        if not self._acked and challenge is None:  # never leave a 2xx un-ACKed
            out += self._send_ack(self.invite.cseq()[0], None)
        self.phase = Phase.ENDING
        bye = self.dialog.request("BYE", self.local.via(self._branch()))
        if challenge is not None:
            self._authorize(bye, challenge)
        return [*out, SendRequest(bye, self.dialog.next_hop())]

    def _end(self) -> list[Output]:
        if self.phase is Phase.ENDED:
            return []
        self.phase = Phase.ENDED
        return [LegEnded()]

    def _ack_destination(self) -> SipUri:
        assert self.dialog is not None
        return self.dialog.next_hop()

    def _branch(self) -> str:
        return f"z9hG4bK{self.tokens()}"

    def _local_host(self) -> str:
        return f"[{self.local.host}]" if ":" in self.local.host else self.local.host

    @staticmethod
    def _with_body(message: Request | Response, sdp: str | None) -> None:
        message.remove("Content-Type")
        message.body = b""
        if sdp:
            message.add("Content-Type", "application/sdp")
            message.body = sdp.encode()


def _shrink(invite: Request) -> None:
    """Once an INVITE has its final response nothing sends it again (its transaction only
    absorbs retransmissions now, and ACKs were built): keep, in place so the transaction's
    reference shrinks too, what numbers its ACK and names the call in a snapshot."""
    invite.headers = [header for header in invite.headers if header[0] in _KEPT]
    invite.body = b""

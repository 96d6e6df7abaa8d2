"""OPTIONS probes of a tenant's PBX and trunk, as Kamailio's dispatcher does. Pure.

`options_request` builds the probe; a `Probe` is the transaction user that receives its
outcome (any final response: the peer is up; a timeout or a transport failure: down,
with the reason in words), and `PeerStatus` keeps what health reports.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from click2call.engines.base import PeerHealth
from click2call.engines.sip.leg import Local
from click2call.engines.sip.leg import Output as LegOutput
from click2call.engines.sip.message import Request, Response, SipUri

Outcome = Response | str  # a final response, or why none came


def options_request(target: SipUri, local: Local, tokens: Callable[[], str]) -> Request:
    host = f"[{local.host}]" if ":" in local.host else local.host
    return Request(
        method="OPTIONS",
        uri=str(target),
        headers=[
            ("Via", local.via(f"z9hG4bK{tokens()}")),
            ("Max-Forwards", "70"),
            ("From", f"<sip:click2call@{host}>;tag={tokens()}"),
            ("To", f"<{target}>"),
            ("Call-ID", f"{tokens()}@{host}"),
            ("CSeq", "1 OPTIONS"),
            ("Contact", local.contact),
            ("User-Agent", local.user_agent),
        ],
    )


@dataclass
class Probe:
    """The transaction user of one OPTIONS: hands its outcome to `done`, once."""

    request: Request
    done: Callable[[Outcome], None]
    finished: bool = False

    @property
    def call_id(self) -> str:
        return self.request.call_id

    def on_response(self, response: Response) -> list[LegOutput]:
        if response.code >= 200:
            self._finish(response)
        return []

    def on_timeout(self, _request: Request) -> list[LegOutput]:
        self._finish("no reply to OPTIONS within 32 s")
        return []

    def on_transport_error(self, _request: Request, cause: str) -> list[LegOutput]:
        self._finish(cause)
        return []

    def _finish(self, outcome: Outcome) -> None:
        if not self.finished:
            self.finished = True
            self.done(outcome)


@dataclass
class PeerStatus:
    role: str  # "pbx" or "trunk"
    target: str  # as configured
    state: str = "unknown"  # up, down, or unknown (not probed yet, or probing off)
    last_reply: str | None = None
    rtt_ms: float | None = None
    reason: str | None = None

    def record(self, outcome: Outcome, seconds: float) -> None:
        if isinstance(outcome, Response):
            self.state, self.reason = "up", None
            self.last_reply = f"{outcome.code} {outcome.reason}".strip()
            self.rtt_ms = round(seconds * 1000, 2)
        else:
            self.state, self.reason, self.rtt_ms = "down", outcome, None

    def health(self) -> PeerHealth:
        return PeerHealth(
            self.role, self.target, self.state, self.last_reply, self.rtt_ms, self.reason
        )

"""Ending a call another node placed and lost, from its stored SIP state.

The node that takes over a lost node's calls has no live legs for them: it sends the
CANCEL (a leg not yet answered) or BYE (an answered one) that `snapshot.hangup_requests`
builds, each in a client transaction of its own whose outcome is only logged.

Where the replies go: the BYE carries this node's Via, so its reply comes here. A CANCEL's
one Via must be the INVITE's (RFC 3261 §9.1: the phone matches it to the INVITE by branch
and sent-by), the lost node's; its `rport` has an RFC 3581 phone answer the CANCEL where it
came from, here. Only the 487 to the INVITE goes to the lost node and is never ACKed: the
phone, already silent, retransmits it until its Timer H (32 s) and drops it. The calls end
all the same. (SIPp answers every request of a call where its INVITE came from, so in the
tests the survivor's requests are retransmitted until their own timeout.)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from click2call.engines.sip import snapshot as snap
from click2call.engines.sip.endpoint import SipEndpoint
from click2call.engines.sip.leg import Output as LegOutput
from click2call.engines.sip.message import Request, Response

log = logging.getLogger("click2call.sip")


@dataclass
class Ending:
    """The transaction user of one CANCEL or BYE ending a taken-over call."""

    uniqueid: str
    request: Request

    def on_response(self, response: Response) -> list[LegOutput]:
        if response.code >= 200:
            log.info(
                "%s ending call %s: %d %s",
                self.request.method,
                self.uniqueid,
                response.code,
                response.reason,
            )
        return []

    def on_timeout(self, _request: Request) -> list[LegOutput]:
        log.info("%s ending call %s: no reply", self.request.method, self.uniqueid)
        return []

    def on_transport_error(self, _request: Request, cause: str) -> list[LegOutput]:
        log.warning("%s ending call %s not sent: %s", self.request.method, self.uniqueid, cause)
        return []


def end_stored_call(endpoint: SipEndpoint, uniqueid: str, stored: str) -> list[str]:
    """Send what ends each leg of a stored call; the methods sent, one per leg.
    ValueError for a snapshot that cannot be read."""
    state = snap.from_json(stored)
    sent = []
    for request, destination in snap.hangup_requests(state, endpoint.local, endpoint.tokens):
        endpoint.send_request(Ending(uniqueid, request), request, destination)
        sent.append(request.method)
    return sent

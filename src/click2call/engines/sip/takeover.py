"""Ending a call another node placed and lost, from its stored SIP state.

The node that takes over a lost node's calls has no live legs for them: it sends the
CANCEL (a leg not yet answered) or BYE (an answered one) that `snapshot.hangup_requests`
builds, each in a client transaction of its own whose outcome is only logged. A CANCEL
carries the lost node's Via (it must match that node's INVITE), so its reply goes there;
the BYE's reply comes here.
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

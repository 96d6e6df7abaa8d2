"""Where the replies to a survivor's CANCEL and BYE go (engines/sip/takeover.py)."""

from __future__ import annotations

from click2call.engines.sip import snapshot as snap
from click2call.engines.sip import third_party as tp
from click2call.engines.sip.leg import Local, SendRequest
from tests.unit.test_sip_dialog import SDP_A, leg
from tests.unit.test_sip_snapshot import answered_leg, controller, round_trip, tokens

SURVIVOR = Local("127.0.0.2", 5090)  # the lost node placed the call from 127.0.0.1:5060


def test_the_bye_names_the_survivor_and_the_cancel_keeps_the_invites_via_with_rport() -> None:
    agent = answered_leg()
    destination = leg(tp.Leg.DESTINATION)
    (invite,) = [o.request for o in destination.start(SDP_A) if isinstance(o, SendRequest)]
    stored = round_trip(controller(tp.Phase.DESTINATION_CALLING), [agent, destination])

    (bye, _), (cancel, _) = snap.hangup_requests(stored, lambda _t: SURVIVOR, tokens())

    (bye_via,) = bye.via()
    assert (bye_via.host, bye_via.port) == ("127.0.0.2", 5090)  # its reply comes here
    assert ("rport", None) in bye_via.params
    # RFC 3261 §9.1: a CANCEL's one Via is the INVITE's top Via, or the phone cannot match
    # it to the INVITE it cancels; with `rport` (RFC 3581) the phone answers the CANCEL
    # where it came from, the survivor. Only the INVITE's 487 goes to the dead node.
    (cancel_via,) = cancel.via()
    assert cancel_via == invite.via()[0]
    assert (cancel_via.host, cancel_via.port) == ("127.0.0.1", 5060)
    assert ("rport", None) in cancel_via.params

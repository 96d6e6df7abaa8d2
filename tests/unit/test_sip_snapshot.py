"""A call's SIP state stored and rebuilt (snapshot.py): what a restarted server goes on with."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable

import pytest

from click2call.calls import CallState, Result
from click2call.engines.sip import snapshot as snap
from click2call.engines.sip import third_party as tp
from click2call.engines.sip.leg import Local, Phase, SendAck, SendRequest, UacLeg
from click2call.engines.sip.sdp import Origin
from tests.unit.test_sip_dialog import SDP_A, answer, leg


def tokens() -> Callable[[], str]:
    counter = itertools.count(0x9000)
    return lambda: f"{next(counter):x}"


def controller(phase: tp.Phase) -> tp.ThirdPartyCall:
    return tp.ThirdPartyCall(
        agent_ring_timeout=20,
        destination_ring_timeout=30,
        max_call_seconds=3600,
        agent_origin=Origin(11, "127.0.0.1", version=2),
        destination_origin=Origin(22, "127.0.0.1", version=1),
        phase=phase,
    )


def answered_leg() -> UacLeg:
    """An agent leg whose 200 OK came through a record-routing proxy, and was ACKed."""
    placed = leg()
    invite = placed.start(None)[0]
    assert isinstance(invite, SendRequest)
    ok = answer(
        invite.request,
        200,
        SDP_A,
        Record_Route="<sip:10.0.0.2;lr>, <sip:10.0.0.1;lr>",
    )
    placed.on_response(ok)
    placed.ack(SDP_A)
    return placed


def round_trip(controller: tp.ThirdPartyCall, legs: list[UacLeg]) -> snap.CallSnapshot:
    return snap.from_json(snap.to_json(controller, legs))


def test_an_answered_leg_comes_back_with_its_dialog_and_hangs_up_with_bye_alone() -> None:
    before = answered_leg()
    stored = round_trip(controller(tp.Phase.CONNECTED), [before])
    after = snap.restore_leg(stored.legs[0], Local("127.0.0.1", 5060), tokens(), ("agent", "pw"))

    assert after.phase is Phase.CONFIRMED
    assert after.dialog == before.dialog
    assert after.local_sdp == SDP_A
    assert after.call_id == before.call_id
    assert after.target == before.target
    outputs = after.hangup()
    assert not [o for o in outputs if isinstance(o, SendAck)]  # it was ACKed before the kill
    (bye,) = [o for o in outputs if isinstance(o, SendRequest)]
    assert bye.request.method == "BYE"
    assert bye.request.cseq() == (before.dialog.local_cseq + 1, "BYE")  # type: ignore[union-attr]
    assert bye.request.values("Route") == ["<sip:10.0.0.1;lr>", "<sip:10.0.0.2;lr>"]
    assert bye.request.uri == "sip:200@10.0.0.9:5072;transport=UDP"
    assert str(bye.destination) == "sip:10.0.0.1;lr"


def test_a_bye_from_the_peer_reaches_the_restored_leg() -> None:
    before = answered_leg()
    stored = round_trip(controller(tp.Phase.CONNECTED), [before])
    after = snap.restore_leg(stored.legs[0], Local("127.0.0.1", 5060), tokens())
    assert after.dialog is not None
    bye = after.dialog.request("BYE", "SIP/2.0/UDP 10.0.0.9:5072;branch=z9hG4bKx")
    # The peer's BYE has the tags the other way round.
    bye.set("From", after.dialog.remote)
    bye.set("To", after.dialog.local)
    response, outputs = after.on_request(bye)
    assert response is not None and response.code == 200
    assert tp.HungUp(tp.Leg.AGENT) in [getattr(o, "event", None) for o in outputs]


def test_an_unanswered_leg_comes_back_early_and_is_cancelled_with_its_invite_branch() -> None:
    ringing = leg()
    invite = ringing.start(None)[0]
    assert isinstance(invite, SendRequest)
    ringing.on_response(answer(invite.request, 180))
    stored = round_trip(controller(tp.Phase.AGENT_CALLING), [ringing])
    after = snap.restore_leg(stored.legs[0], Local("127.0.0.1", 5060), tokens())

    assert after.phase is Phase.EARLY and after.dialog is None
    (cancel,) = after.hangup()
    assert isinstance(cancel, SendRequest)
    assert cancel.request.method == "CANCEL"
    assert cancel.request.values("Via") == invite.request.values("Via")
    assert cancel.request.cseq() == (1, "CANCEL")


def test_no_password_and_no_digest_answer_are_stored() -> None:
    placed = leg()
    invite = placed.start(None)[0]
    assert isinstance(invite, SendRequest)
    invite.request.add("Proxy-Authorization", 'Digest username="agent", response="secret-hash"')
    text = snap.to_json(controller(tp.Phase.AGENT_CALLING), [placed])
    assert '"pw"' not in text
    assert "secret-hash" not in text


def test_the_controller_comes_back_in_its_phase_with_its_sdp_versions() -> None:
    stored = round_trip(controller(tp.Phase.CONNECTED), [answered_leg()])
    again = snap.restore_call(stored)
    assert again.phase is tp.Phase.CONNECTED
    assert again.agent_origin == Origin(11, "127.0.0.1", version=2)
    assert (again.max_call_seconds, again.ringback_media) == (3600, None)


def test_a_connected_call_goes_on_with_what_is_left_of_its_maximum_length() -> None:
    assert controller(tp.Phase.CONNECTED).resumed(600) == [
        tp.StartTimer(tp.Timer.MAX_DURATION, 3000)
    ]
    assert controller(tp.Phase.CONNECTED).resumed(5000) == [tp.StartTimer(tp.Timer.MAX_DURATION, 0)]


@pytest.mark.parametrize(
    ("phase", "legs", "cause"),
    [
        (tp.Phase.AGENT_CALLING, [tp.Leg.AGENT], "agent's phone was ringing"),
        (tp.Phase.DESTINATION_CALLING, list(tp.Leg), "destination was ringing"),
        (tp.Phase.BRIDGING, list(tp.Leg), "being joined"),
    ],
)
def test_a_call_not_yet_connected_ends_at_restart_hanging_up_its_legs(
    phase: tp.Phase, legs: list[tp.Leg], cause: str
) -> None:
    outputs = controller(phase).resumed(0)
    assert [o.leg for o in outputs if isinstance(o, tp.Hangup)] == legs
    (report,) = [o for o in outputs if isinstance(o, tp.Report)]
    assert (report.state, report.result) == (CallState.ENDED, Result.ERROR)
    assert report.cause is not None and cause in report.cause


def test_hangup_requests_cancel_the_unanswered_leg_and_bye_the_answered_one() -> None:
    agent = answered_leg()
    destination = leg(tp.Leg.DESTINATION)
    destination.start(SDP_A)
    stored = round_trip(controller(tp.Phase.DESTINATION_CALLING), [agent, destination])

    requests = snap.hangup_requests(stored, lambda t: Local("127.0.0.1", 5060), tokens())
    (bye, bye_to), (cancel, cancel_to) = requests
    assert (bye.method, bye.call_id) == ("BYE", agent.call_id)
    assert str(bye_to) == "sip:10.0.0.1;lr"
    assert (cancel.method, cancel.call_id) == ("CANCEL", destination.call_id)
    assert cancel_to.host == "127.0.0.1"
    assert stored.legs[0].dialog == agent.dialog  # building them changed nothing stored


def test_an_ended_leg_is_not_stored() -> None:
    gone = answered_leg()
    gone.on_timeout(gone.invite)  # type: ignore[arg-type]
    assert round_trip(controller(tp.Phase.CONNECTED), [gone]).legs == []


@pytest.mark.parametrize("text", ["", "[]", '{"version": 99}', '{"version": 1, "legs": []}'])
def test_an_unreadable_snapshot_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="unreadable SIP snapshot"):
        snap.from_json(text)


def test_the_fingerprint_moves_with_the_dialog_and_not_with_a_provisional_response() -> None:
    call = controller(tp.Phase.AGENT_CALLING)
    placed = leg()
    invite = placed.start(None)[0]
    assert isinstance(invite, SendRequest)
    first = snap.fingerprint(call, [placed])
    placed.on_response(answer(invite.request, 180))
    assert snap.fingerprint(call, [placed]) == first  # nothing a restart needs changed

    placed.on_response(answer(invite.request, 200, SDP_A))
    answered = snap.fingerprint(call, [placed])
    assert answered != first
    placed.ack(SDP_A)
    placed.reinvite(SDP_A.replace("o=a 1 1", "o=a 1 2"))
    assert snap.fingerprint(call, [placed]) != answered  # CSeq and SDP moved
    call.phase = tp.Phase.CONNECTED
    assert snap.fingerprint(call, [placed]) != answered


def test_a_stored_dialog_keeps_the_json_of_earlier_versions_with_its_tags() -> None:
    # A dialog reads its tags from From and To rather than keeping them (thousands of legs
    # are up at once); the snapshot still holds them, for an earlier version to read.
    before = answered_leg()
    assert before.dialog is not None
    text = snap.to_json(controller(tp.Phase.CONNECTED), [before])
    stored = json.loads(text)["legs"][0]["dialog"]
    assert list(stored) == [
        "call_id",
        "local",
        "remote",
        "local_tag",
        "remote_tag",
        "remote_target",
        "route_set",
        "local_cseq",
        "remote_cseq",
    ]
    assert (stored["local_tag"], stored["remote_tag"]) == (before.invite.from_().tag, "peer1")  # type: ignore[union-attr]
    assert snap.from_json(text).legs[0].dialog == before.dialog

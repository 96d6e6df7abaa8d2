"""The actions we send, built from orders, equal the recorded ones byte for byte."""

from __future__ import annotations

from dataclasses import replace

import pytest

from click2call.calls import CallOrder, Extension, External, Tech
from click2call.engines.asterisk import actions
from click2call.engines.asterisk.codec import UnsafeValue
from click2call.settings import TenantAsterisk
from tests.ami_recordings import recorded_order, sent

SETTINGS = TenantAsterisk()


def order(agent: Extension | External, uniqueid: str, destination: str = "0502760206") -> CallOrder:
    return recorded_order(uniqueid, agent, destination)


@pytest.mark.parametrize(
    ("recording", "agent", "uniqueid", "destination"),
    [
        ("originate-sip-success.txt", Extension(Tech.SIP, "200"), "1795478400.1001", "0502760206"),
        (
            "originate-pjsip-success.txt",
            Extension(Tech.PJSIP, "201"),
            "1795478400.1002",
            "0502760206",
        ),
        (
            "originate-mobile-local-success.txt",
            External("0502760206"),
            "1795478400.1011",
            "0541234567",
        ),
    ],
)
def test_originate_matches_the_recording(
    recording: str, agent: Extension | External, uniqueid: str, destination: str
) -> None:
    built = actions.originate(order(agent, uniqueid, destination), SETTINGS, "c2c-1")
    assert bytes(built) == sent(recording)[1]


def test_login_matches_the_recording() -> None:
    assert bytes(actions.login("click2call", "test", "login-1")) == sent("login-bad-secret.txt")[
        0
    ].replace(b"wrong", b"test")


def test_values_that_would_break_the_action_are_refused() -> None:
    bad = order(Extension(Tech.SIP, "200"), "1.1")
    with pytest.raises(ValueError, match="split"):
        actions.originate(replace(bad, variables={"FOREIGNID": "a,B=1"}), SETTINGS, "c2c-1")
    with pytest.raises(UnsafeValue):
        actions.originate(replace(bad, destination_caller_id="1\r\nX: y"), SETTINGS, "c2c-1")


def test_hangup_and_status_match_the_recordings() -> None:
    hangup = sent("originate-sip-then-hangup-action.txt")[2]
    assert bytes(actions.hangup("SIP/200-0000000a", "hang-1")) == hangup
    status = sent("reconnect-during-call.txt", conn=2)[2]
    assert bytes(actions.status("status-2")) == status

"""The actions we send, built from orders, equal the recorded ones byte for byte."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

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
    # The recordings preset the uniqueid itself; we preset an id Asterisk never mints,
    # and name the second half of a Local pair too.
    ours = actions.channel_id(uniqueid)
    expected = sent(recording)[1].replace(
        f"ChannelId: {uniqueid}\r\n".encode(), f"ChannelId: {ours}\r\n".encode()
    )
    if isinstance(agent, External):
        expected = expected.replace(
            f"ChannelId: {ours}\r\n".encode(),
            f"ChannelId: {ours}\r\nOtherChannelId: {ours};2\r\n".encode(),
        )
    assert bytes(built) == expected


# What Asterisk names its own channels: <epoch>.<counter>, or with asterisk.conf's
# systemname set, <systemname>-<epoch>.<counter>.
ASTERISK_ID = re.compile(r"\d+\.\d+")
ASTERISK_ID_WITH_SYSTEMNAME = re.compile(r".+-\d+\.\d+")


@given(
    epoch=st.integers(min_value=0, max_value=10**11),
    sequence=st.integers(min_value=0, max_value=10**12),
)
def test_no_channel_id_we_send_has_the_form_asterisk_mints(epoch: int, sequence: int) -> None:
    uniqueid = f"{epoch}.{sequence}"
    assert ASTERISK_ID.fullmatch(uniqueid)  # our uniqueid keeps the PBX form ...
    for sent_id in (first := actions.channel_id(uniqueid), actions.other_channel_id(first)):
        assert not ASTERISK_ID.fullmatch(sent_id)  # ... the ids we preset never have it
        assert not ASTERISK_ID_WITH_SYSTEMNAME.fullmatch(sent_id)
        assert len(sent_id) <= 32  # fits FreePBX's cdr.uniqueid varchar(32)
    assert first == f"c2c-{epoch}-{sequence}"


@given(st.text(alphabet=st.characters(blacklist_characters="\r\n\x00"), max_size=40))
def test_even_an_odd_uniqueid_gives_no_asterisk_form(uniqueid: str) -> None:
    first = actions.channel_id(uniqueid)
    assert not ASTERISK_ID.fullmatch(first)
    assert not ASTERISK_ID_WITH_SYSTEMNAME.fullmatch(first)


def test_a_local_agent_channel_gets_both_ids_and_others_one() -> None:
    mobile = actions.originate(order(External("0502760206"), "1795586021.70"), SETTINGS, "c2c-1")
    assert (mobile["ChannelId"], mobile["OtherChannelId"]) == (
        "c2c-1795586021-70",
        "c2c-1795586021-70;2",
    )
    sip = actions.originate(order(Extension(Tech.SIP, "200"), "1795586021.70"), SETTINGS, "c2c-1")
    assert sip.get("OtherChannelId") is None


def test_login_matches_the_recording_but_asks_for_call_events_only() -> None:
    recorded = sent("login-bad-secret.txt")[0].replace(b"wrong", b"test")
    expected = recorded.replace(b"Events: on\r\n", b"Events: call\r\n")
    assert expected != recorded
    assert bytes(actions.login("click2call", "test", "login-1")) == expected


def test_values_that_would_break_the_action_are_refused() -> None:
    bad = order(Extension(Tech.SIP, "200"), "1.1")
    with pytest.raises(ValueError, match="split"):
        actions.originate(replace(bad, variables={"FOREIGNID": "a,B=1"}), SETTINGS, "c2c-1")
    with pytest.raises(UnsafeValue):
        actions.originate(replace(bad, destination_caller_id="1\r\nX: y"), SETTINGS, "c2c-1")


def test_hangup_and_status_match_the_recordings() -> None:
    hangup = sent("originate-sip-then-hangup-action.txt")[2]
    assert bytes(actions.hangup("SIP/200-0000000a", "hang-1")) == hangup
    listing = sent("reconnect-during-call.txt", conn=2)
    assert bytes(actions.core_show_channels("csc-2")) == listing[1]
    assert bytes(actions.status("status-2")) == listing[2]


ROOT = Path(__file__).resolve().parents[2]
# "ChannelId = our uniqueid", "(ChannelId on Originate) to our call's uniqueid": the ids
# before c2c-<epoch>-<seq>, which collided with Asterisk's own (issue 12).
STALE_CHANNEL_ID = re.compile(
    r"ChannelId[^.]{0,30}?(=|\bto\b|\bis\b)\s*(our( call's)?|the call's)\s*`?uniqueid", re.I
)


def test_the_docs_name_the_channel_id_we_send() -> None:
    readme = (ROOT / "README.md").read_text()
    example = re.search(r"uniqueid (\d+\.\d+) .*→\s+(\S+)", readme)
    assert example is not None
    assert actions.channel_id(example[1]) == example[2]
    engine = ROOT / "src" / "click2call" / "engines" / "asterisk"
    for path in [ROOT / "README.md", *engine.glob("*.py")]:
        stale = STALE_CHANNEL_ID.search(" ".join(path.read_text().split()))
        assert stale is None, f"{path.name}: {stale[0] if stale else ''}"

"""Property: a value with a control character or a non-ASCII look-alike is never accepted,
on any field of any link, and nothing reaches the PBX for it (SIPp's ports, the AMI peer)."""

from __future__ import annotations

import socket

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.conftest import AsteriskServer, Server, assert_nothing_received

TRICKS = st.sampled_from(
    [
        "\r",
        "\n",
        "\r\n",
        "\x00",
        "\t",
        "\x0b",
        "\x1b",
        "\x7f",
        "\x85",
        "\u2028",
        "\u202e",
        "\uff10",
        "\u0660",
    ]
)
SAFE = st.text(alphabet="0123456789", min_size=0, max_size=8)
TAINTED = st.tuples(SAFE, TRICKS, st.text(max_size=12)).map(lambda t: t[0] + t[1] + t[2])

DIAL = {"extension": "200", "destination": "0502760206", "tech": "sip", "foreignid": "ok-1"}
EXTERNAL = {"client": "voipe16", "phone": "0502760206", "destination": "0502760206"}
CASES = st.one_of(
    st.tuples(st.just("/web/dial.php"), st.sampled_from([*DIAL, "outboundcid"]), TAINTED),
    st.tuples(
        st.just("/voipe/dial_external.php"), st.sampled_from([*EXTERNAL, "foreignid"]), TAINTED
    ),
)
SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@SETTINGS
@given(case=CASES)
def test_sip_engine_never_sees_a_tainted_value(
    server: Server, silent_peers: list[socket.socket], case: tuple[str, str, str]
) -> None:
    path, field, value = case
    base = DIAL if path.startswith("/web") else EXTERNAL
    with server.client() as client:
        reply = client.get(path, params={**base, field: value})
    assert reply.status_code == 400, (field, value, reply.text)
    assert f"invalid {field}" in reply.text
    assert_nothing_received(silent_peers, wait=0.05)


@SETTINGS
@given(case=CASES)
def test_asterisk_engine_never_sees_a_tainted_value(
    asterisk: AsteriskServer, case: tuple[str, str, str]
) -> None:
    path, field, value = case
    base = DIAL if path.startswith("/web") else EXTERNAL
    before = len(asterisk.peer.actions)
    with asterisk.server.client() as client:
        reply = client.get(path, params={**base, field: value})
    assert reply.status_code == 400, (field, value, reply.text)
    assert len(asterisk.peer.actions) == before

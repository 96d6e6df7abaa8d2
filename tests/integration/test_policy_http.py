"""The tenant's rules over HTTP: refused destinations and caller IDs, limits under bursts."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.integration.conftest import Server, assert_nothing_received
from tests.integration.test_auth import cli

DIAL = {"extension": "200", "destination": "0502760206", "tech": "sip"}


def get(server: Server, params: dict[str, str]) -> httpx.Response:
    with server.client() as client:
        return client.get("/web/dial.php", params=params)


@pytest.mark.parametrize(
    ("tenant", "changes", "rule"),
    [
        ("default", {"destination": "+14155550123"}, "international destination +14155550123"),
        ("default", {"destination": "1900123456"}, "premium-rate destination 1900123456"),
        ("default", {"destination": "1700123456"}, "special-service destination 1700123456"),
        ("strict", {"destination": "0502760206"}, "denied by rule '+9725027'"),
        (
            "strict",
            {"destination": "0521234567", "outboundcid": "039999999"},
            "caller ID 039999999",
        ),
        ("internal", {"destination": "0521234567"}, "only call internal numbers"),
    ],
)
def test_refused_calls_are_kept_with_the_rule(
    server: Server,
    silent_peers: list[socket.socket],
    tenant: str,
    changes: dict[str, str],
    rule: str,
) -> None:
    reply = get(server, {**DIAL, **changes, "tenant": tenant})
    assert reply.status_code == 403
    lines = reply.text.splitlines()
    assert lines[0] == "response: false"
    assert rule in lines[2]
    call = server.wait_for(lines[1].split("unique: ")[1])
    assert (call["state"], call["result"]) == ("ended", "rejected")
    assert rule in str(call["cause"])
    assert_nothing_received(silent_peers)


def test_allowed_caller_ids_and_defaults_pass(server: Server) -> None:
    agent = server.peer("agent_busy.xml", server.pbx_port, calls=3)
    for changes in (
        {"tenant": "strict", "destination": "0521234567", "outboundcid": "97236422222"},
        {"tenant": "default", "destination": "1800123456"},  # toll-free is fine
        {"tenant": "internal", "destination": "201"},  # internal numbers in extension-only mode
    ):
        assert get(server, {**DIAL, **changes}).text.startswith("response: true"), changes
    assert agent.wait(10) == 0


def _burst(server: Server, tenant: str, count: int) -> list[httpx.Response]:
    def one(_: int) -> httpx.Response:
        return get(server, {**DIAL, "tenant": tenant})

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def test_call_rate_under_a_concurrent_burst(server: Server) -> None:
    agent = server.peer("agent_busy.xml", server.pbx_port, calls=3)
    replies = _burst(server, "burst", 10)
    accepted = [r for r in replies if r.status_code == 200]
    limited = [r for r in replies if r.status_code == 429]
    assert (len(accepted), len(limited)) == (3, 7)  # burst = 3, no refill at 0.001/s
    for reply in limited:
        assert int(reply.headers["Retry-After"]) >= 1
        assert reply.text.startswith(
            "response: false\nunique: \nerror: more than 0.001 calls a second "
            "(limit calls_per_second); retry after "
        )
    assert agent.wait(10) == 0


def test_concurrent_call_cap(server: Server) -> None:
    agent = server.peer("agent_noanswer.xml", server.pbx_port, calls=2)
    replies = _burst(server, "capped", 5)
    assert sorted(r.status_code for r in replies) == [200, 200, 429, 429, 429]
    for reply in replies:
        if reply.status_code == 429:  # no waiting time frees a slot: a call has to end
            assert "(limit max_concurrent_calls); a slot frees only when" in reply.text
            assert "Retry-After" not in reply.headers
    assert agent.wait(15) == 0  # both ringing calls were canceled after 2 s
    ids = [r.text.split("unique: ")[1].strip() for r in replies if r.status_code == 200]
    for call_id in ids:
        assert server.wait_for(call_id)["result"] == "agent_no_answer"
    agent = server.peer("agent_busy.xml", server.pbx_port)  # room again once they ended
    assert get(server, {**DIAL, "tenant": "capped"}).status_code == 200
    assert agent.wait(10) == 0


def test_requests_per_key(server: Server) -> None:
    key = cli(server, "create", "--tenant", "limited").splitlines()[1]
    with server.client() as client:
        codes = [
            client.get("/api/v1/calls", headers={"X-API-Key": key}).status_code for _ in range(5)
        ]
        last = client.get("/api/v1/calls", headers={"X-API-Key": key})
    assert codes == [200, 200, 200, 429, 429]
    assert last.json()["error"]["id"] == "rate_limited"
    assert last.json()["error"]["limit"] == "key_requests_per_minute"
    assert int(last.headers["Retry-After"]) >= 1

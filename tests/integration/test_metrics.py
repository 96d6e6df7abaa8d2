"""/metrics over real HTTP: protected by a key, and its values move as calls are placed."""

from __future__ import annotations

import re
from pathlib import Path

from tests.integration.conftest import Server, launch
from tests.integration.test_auth import cli, new_key


def value(text: str, name: str, **labels: str) -> float:
    """The sample `name{labels}` of a Prometheus text page (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.fullmatch(r"([a-zA-Z0-9_:]+)(?:\{(.*)\})? (\S+)", line)
        if match and match.group(1) == name:
            got = ",".join(sorted((match.group(2) or "").split(","))) if match.group(2) else ""
            if got == wanted:
                return float(match.group(3))
    return 0.0


def test_metrics_need_a_key_and_count_calls(server: Server) -> None:
    with server.client() as client:
        refused = client.get("/metrics")
        assert refused.status_code == 401
        _, plain = new_key(server, "default")
        forbidden = client.get("/metrics", headers={"X-API-Key": plain})
        assert forbidden.status_code == 403  # a tenant's key does not see every tenant
        assert "admin key" in forbidden.json()["error"]["message"]
        key = cli(server, "create", "--tenant", "default", "--admin").splitlines()[1]
        headers = {"X-API-Key": key}
        before = client.get("/metrics", headers=headers)
        assert before.status_code == 200
        assert before.headers["content-type"].startswith("text/plain")
        assert value(before.text, "click2call_engine_up", tenant="default", engine="sip") == 1

        agent = server.peer("agent_answer.xml", server.pbx_port)
        destination = server.peer("destination_hangup.xml", server.trunk_port)
        call = client.post(
            "/api/v1/calls", json={"extension": "200", "destination": "0502760206"}, headers=headers
        ).json()
        assert server.wait_for(call["id"])["result"] == "completed"
        assert agent.wait(20) == 0 and destination.wait(20) == 0
        after = client.get("/metrics", headers=headers).text

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before.text, name, **labels)

    assert moved("click2call_calls_placed_total", tenant="default") == 1
    assert moved("click2call_calls_ended_total", tenant="default", result="completed") == 1
    assert moved("click2call_call_setup_seconds_count", tenant="default") == 1
    assert moved("click2call_destination_dial_delay_seconds_count", tenant="default") == 1
    route = {"method": "POST", "route": "/api/v1/calls", "status": "201"}
    assert moved("click2call_http_request_duration_seconds_count", **route) == 1
    polled = {"method": "GET", "route": "/api/v1/calls/{ref}", "status": "200"}
    assert value(after, "click2call_http_request_duration_seconds_count", **polled) >= 1
    assert "click2call_webhook_backlog 0.0" in after


def test_a_listed_scraper_address_needs_no_key(tmp_path: Path) -> None:
    process, server = launch(tmp_path, server_extra='metrics_allowed_ips = ["127.0.0.0/8"]')
    try:
        with server.client() as client:
            reply = client.get("/metrics")
    finally:
        process.stop()
    assert reply.status_code == 200
    assert "click2call_webhook_backlog" in reply.text

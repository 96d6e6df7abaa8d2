"""JSON logs from the real server: every line is one object; lines about a call name it."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.conftest import launch


def test_json_lines_name_the_call_they_are_about(tmp_path: Path) -> None:
    process, server = launch(tmp_path, server_extra='log_format = "json"')
    try:
        agent = server.peer("agent_busy.xml", server.pbx_port)
        with server.client() as client:
            call = client.post(
                "/api/v1/calls", json={"extension": "200", "destination": "0502760206"}
            ).json()
            client.get("/web/dial.php?extension=200&destination=05%0d%0aFAKE")  # 400, logged
        assert server.wait_for(call["id"])["result"] == "agent_busy"
        assert agent.wait(20) == 0
        with server.client() as client:
            stored = client.get(f"/api/v1/calls/{call['id']}/events").json()["events"]
    finally:
        process.stop()
    entries = [json.loads(line) for line in (tmp_path / "server.log").read_text().splitlines()]
    about = [e for e in entries if call["uniqueid"] in e["message"]]
    expected = [stored[0]["type"], stored[-1]["type"] + " (agent_busy)"]  # placed, ended
    assert len(stored) > 2  # the steps between are DEBUG lines
    assert [e["message"].split(": ", 1)[1] for e in about] == expected
    assert all((e["call_id"], e["uniqueid"]) == (call["id"], call["uniqueid"]) for e in about)
    placed = [e for e in entries if '"POST /api/v1/calls"' in e["message"]]
    assert placed and placed[0].get("call_id") == call["id"]  # the request that placed it
    assert any("FAKE" in e["message"] for e in entries)  # kept inside one JSON string

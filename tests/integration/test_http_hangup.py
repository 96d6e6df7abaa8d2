"""Hanging up over the v1 API answers with the call as GET shows it, ended or not."""

from __future__ import annotations

from tests.integration.conftest import Server


def test_hanging_up_an_ended_call_says_so_with_the_call(server: Server) -> None:
    agent = server.peer("agent_busy.xml", server.pbx_port)
    with server.client() as client:
        placed = client.post(
            "/api/v1/calls", json={"extension": "200", "destination": "0502760206"}
        )
        assert placed.status_code == 201
        call_id = placed.json()["id"]
        assert server.wait_for(call_id)["result"] == "agent_busy"
        hangup = client.post(f"/api/v1/calls/{call_id}/hangup")
        shown = client.get(f"/api/v1/calls/{call_id}")
    assert agent.wait(10) == 0
    assert hangup.status_code == 200  # not 202: nothing was sent, the call had ended
    assert hangup.json() == shown.json()
    assert [e["state"] for e in hangup.json()["events"]][-1] == "ended"

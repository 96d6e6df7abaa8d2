"""History and CSV export against calls really placed: SIPp plays the phones."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

from tests.integration.conftest import Server


def place(server: Server, foreignid: str, extension: str = "200") -> int:
    with server.client() as client:
        reply = client.post(
            "/api/v1/calls",
            json={"extension": extension, "destination": "0502760206", "foreignid": foreignid},
        )
    assert reply.status_code == 201, reply.text
    call_id: int = reply.json()["id"]
    return call_id


def test_filters_pages_and_csv_match_the_calls_placed(server: Server) -> None:
    since = datetime.now(UTC).isoformat()
    agent = server.peer("agent_answer.xml", server.pbx_port)
    destination = server.peer("destination_hangup.xml", server.trunk_port)
    answered = place(server, "hist-1")
    assert server.wait_for(answered)["result"] == "completed"
    assert agent.wait(20) == 0 and destination.wait(20) == 0
    busy_agent = server.peer("agent_busy.xml", server.pbx_port)
    busy = place(server, "hist-2", extension="201")
    assert server.wait_for(busy)["result"] == "agent_busy"
    assert busy_agent.wait(20) == 0
    ringing = server.peer("agent_noanswer.xml", server.pbx_port)
    third = place(server, "hist-3", extension="201")
    assert server.wait_for(third)["result"] == "agent_no_answer"
    assert ringing.wait(20) == 0

    with server.client() as client:

        def listed(query: str) -> list[int]:
            reply = client.get(f"/api/v1/calls?since={since}&{query}".replace("+", "%2B"))
            assert reply.status_code == 200, reply.text
            return [c["id"] for c in reply.json()["calls"]]

        assert listed("") == [third, busy, answered]  # newest first
        assert listed("result=completed") == [answered]
        assert listed("extension=201") == [third, busy]
        assert listed("foreignid=hist-2") == [busy]
        assert listed("destination=%2B972502760206") == [third, busy, answered]
        assert listed("state=queued") == []
        before = client.get(f"/api/v1/calls?until={since}&foreignid=hist-1".replace("+", "%2B"))
        assert before.json()["calls"] == []  # placed after `since`

        walked, url = [], f"/api/v1/calls?since={since}&limit=2".replace("+", "%2B")
        while url:
            page = client.get(url).json()
            walked += [c["id"] for c in page["calls"]]
            url = page["next"]
        assert walked == [third, busy, answered]

        bad = client.get("/api/v1/calls?since=yesterday")
        assert bad.status_code == 400 and bad.json()["error"]["field"] == "since"
        bad = client.get("/api/v1/calls?cursor=bm9wZQ")
        assert bad.status_code == 400 and bad.json()["error"]["field"] == "cursor"

        reply = client.get(f"/api/v1/calls.csv?since={since}".replace("+", "%2B"))
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(reply.text)))
    assert [int(r["id"]) for r in rows] == [third, busy, answered]
    completed = rows[2]
    assert completed["result"] == "completed" and completed["foreignid"] == "hist-1"
    assert float(completed["talk_seconds"]) >= 0.9
    assert float(completed["total_seconds"]) >= float(completed["ring_seconds"])
    assert rows[1]["talk_seconds"] == ""  # never connected


def test_a_formula_in_a_foreignid_is_text_in_the_csv(server: Server) -> None:
    since = datetime.now(UTC).isoformat().replace("+", "%2B")
    agent = server.peer("agent_busy.xml", server.pbx_port)  # a peer answers: no stray INVITEs
    call_id = place(server, "=1+2@x")
    server.wait_for(call_id)
    assert agent.wait(20) == 0
    with server.client() as client:
        text = client.get(f"/api/v1/calls.csv?since={since}&foreignid=%3D1%2B2%40x").text
    row = next(csv.DictReader(io.StringIO(text)))
    assert row["foreignid"] == "'=1+2@x"


def test_a_time_past_the_calendar_in_utc_is_refused_naming_the_field(server: Server) -> None:
    """9999-12-31T23:00-05:00 parses, but is past year 9999 in UTC: a 400, not a 500."""
    with server.client() as client:
        for path in ("/api/v1/calls", "/api/v1/calls.csv"):
            for field, value in (
                ("since", "9999-12-31T23:00:00-05:00"),
                ("until", "0001-01-01T00:00:00+01:00"),
            ):
                reply = client.get(path, params={field: value})
                assert reply.status_code == 400, (path, reply.text)
                assert field in reply.text and "ISO 8601" in reply.text

"""`click2call call` and `click2call calls export` against the real server, SIPp the phones."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from datetime import UTC, datetime

from tests.integration.conftest import Server

CLI = [sys.executable, "-m", "click2call"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60, check=False)


def test_call_watches_a_call_until_it_completes(server: Server) -> None:
    agent = server.peer("agent_answer.xml", server.pbx_port)
    destination = server.peer("destination_hangup.xml", server.trunk_port)
    done = run(
        "call",
        "--extension", "200",
        "--destination", "0502760206",
        "--config", str(server.workdir / "click2call.toml"),
    )  # fmt: skip
    assert agent.wait(20) == 0 and destination.wait(20) == 0
    assert done.returncode == 0, done.stdout + done.stderr
    assert "8/8" in done.stdout  # the progress bar reached the end
    assert "completed (destination hung up), talked" in done.stdout


def test_call_exits_non_zero_unless_completed(server: Server) -> None:
    agent = server.peer("agent_busy.xml", server.pbx_port)
    done = run("call", "--phone", "0501234567", "--destination", "0502760206", "--url", "x")
    assert done.returncode != 0  # a bad URL: an error, not a traceback
    assert "Traceback" not in done.stderr
    done = run(
        "call", "--extension", "200", "--destination", "0502760206", "--url", server.base_url
    )
    assert agent.wait(20) == 0
    assert done.returncode == 1, done.stdout + done.stderr
    assert "agent_busy" in done.stdout
    refused = run(
        "call", "--extension", "2x", "--destination", "0502760206", "--url", server.base_url
    )
    assert refused.returncode == 2
    assert "extension" in refused.stdout


def test_calls_export_writes_the_history_as_csv(server: Server) -> None:
    since = datetime.now(UTC).isoformat()
    agent = server.peer("agent_busy.xml", server.pbx_port)
    with server.client() as client:
        reply = client.post(
            "/api/v1/calls",
            json={"extension": "200", "destination": "0502760206", "foreignid": "export-1"},
        )
    call_id = reply.json()["id"]
    server.wait_for(call_id)
    assert agent.wait(20) == 0
    config = str(server.workdir / "click2call.toml")
    done = run("calls", "export", "--since", since, "--config", config, "--result", "agent_busy")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [(int(r["id"]), r["foreignid"], r["result"]) for r in rows] == [
        (call_id, "export-1", "agent_busy")
    ]
    bad = run("calls", "export", "--since", "last week", "--config", config)
    assert bad.returncode == 2 and "ISO 8601" in bad.stderr

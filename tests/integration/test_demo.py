"""`click2call demo`: the one command a newcomer runs to see a call go through."""

from __future__ import annotations

import subprocess
import sys


def test_the_demo_places_a_call_and_shows_its_progress() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "click2call", "demo"],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert "← response: true" in out
    steps = [
        "agent_dialing",
        "agent_ringing",
        "agent_answered",
        "destination_dialing",
        "destination_ringing",
        "connected",
        "ended  (completed: destination hung up)",
    ]
    positions = [out.index(step) for step in steps]
    assert positions == sorted(positions)
    assert '"result":"completed"' in out

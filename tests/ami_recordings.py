"""The real Asterisk AMI recordings in ../shared/fixtures/asterisk-ami/, read as they are."""

from __future__ import annotations

from pathlib import Path

import pytest

from click2call.demo.ami_replay import Entry, read_recording

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "asterisk-ami"


def load(name: str) -> list[Entry]:
    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"AMI recordings not found at {FIXTURES}")
    return read_recording(path)


def names() -> list[str]:
    return sorted(p.name for p in FIXTURES.glob("*.txt")) or ["originate-sip-success.txt"]


def received(name: str) -> bytes:
    return b"".join(c.data for c in load(name) if c.dir == "recv")


def sent(name: str) -> list[bytes]:
    return [c.data for c in load(name) if c.dir == "send"]

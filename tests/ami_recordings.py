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


def received(name: str, conn: int = 1) -> bytes:
    """What the server sent on one TCP connection of the recording."""
    return b"".join(c.data for c in load(name) if c.dir == "recv" and c.conn == conn)


def streams() -> list[tuple[str, int]]:
    """Every (recording, connection) pair: each connection is its own AMI stream."""
    pairs = []
    for name in names():
        path = FIXTURES / name
        conns = sorted({c.conn for c in read_recording(path)}) if path.exists() else [1]
        pairs += [(name, conn) for conn in conns]
    return pairs


def sent(name: str) -> list[bytes]:
    return [c.data for c in load(name) if c.dir == "send"]

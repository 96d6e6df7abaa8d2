"""The real Asterisk AMI recordings in ../shared/fixtures/asterisk-ami/, read as they are."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "asterisk-ami"


@dataclass(frozen=True)
class Chunk:
    t: float
    dir: str  # "send" (client → Asterisk) or "recv" (Asterisk → client)
    data: bytes


def load(name: str) -> list[Chunk]:
    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"AMI recordings not found at {FIXTURES}")
    chunks = []
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            entry = json.loads(line)
            chunks.append(Chunk(entry["t"], entry["dir"], entry["data"].encode()))
    return chunks


def names() -> list[str]:
    return sorted(p.name for p in FIXTURES.glob("*.txt")) or ["originate-sip-success.txt"]


def received(name: str) -> bytes:
    return b"".join(c.data for c in load(name) if c.dir == "recv")


def sent(name: str) -> list[bytes]:
    return [c.data for c in load(name) if c.dir == "send"]

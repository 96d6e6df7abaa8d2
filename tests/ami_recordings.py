"""The real Asterisk AMI recordings in tests/fixtures/asterisk-ami/, read as they are.

Each file: `#` header lines, then one JSON object per line, `{"t", "dir", "data"}` and, in
recordings of more than one TCP connection, `"conn"` (1 or 2). See the folder's README.md.
The folder is a byte-identical copy of ../shared/fixtures/asterisk-ami (test_recordings.py
checks that while ../shared is there), so a clone alone runs every test.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from click2call.calls import CallOrder, Destination, Extension, External, Tech

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "asterisk-ami"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "asterisk-ami"


@dataclass(frozen=True)
class Entry:
    t: float  # seconds since connection 1 opened
    dir: str  # "send" (client → Asterisk) or "recv" (Asterisk → client)
    data: bytes
    conn: int = 1  # which TCP connection of the recording


def read_recording(path: Path) -> list[Entry]:
    entries = []
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            item = json.loads(line)
            data = item["data"].encode()
            entries.append(Entry(item["t"], item["dir"], data, item.get("conn", 1)))
    return entries


def load(name: str) -> list[Entry]:
    return read_recording(FIXTURES / name)


def names() -> list[str]:
    return sorted(p.name for p in FIXTURES.glob("*.txt"))


def received(name: str, conn: int = 1) -> bytes:
    """What the server sent on one TCP connection of the recording."""
    return b"".join(c.data for c in load(name) if c.dir == "recv" and c.conn == conn)


def sent(name: str, conn: int = 1) -> list[bytes]:
    return [c.data for c in load(name) if c.dir == "send" and c.conn == conn]


def streams() -> list[tuple[str, int]]:
    """Every (recording, connection) pair: each connection is its own AMI stream."""
    return [(name, conn) for name in names() for conn in sorted({c.conn for c in load(name)})]


SIP_200 = Extension(Tech.SIP, "200")


def recorded_order(
    uniqueid: str,
    agent: Extension | External = SIP_200,
    destination: str = "0502760206",
) -> CallOrder:
    """An order whose Originate is the recorded one (the recordings' client sent it)."""
    return CallOrder(
        call_id=1,
        uniqueid=uniqueid,
        tenant="default",
        agent=agent,
        destination=Destination(destination),
        destination_caller_id="036411111",
        agent_caller_id=destination,
        agent_ring_timeout=8,
        destination_ring_timeout=30,
        max_call_seconds=7200,
        variables={"FOREIGNID": "123"},
    )

"""The recordings under tests/fixtures are the shared ones, byte for byte."""

from __future__ import annotations

import pytest

from tests.ami_recordings import FIXTURES, SHARED, names, read_recording, streams
from tests.ami_replay import Chunk, connections


def test_the_copy_is_byte_identical_to_the_shared_recordings() -> None:
    if not SHARED.exists():
        pytest.skip(f"no {SHARED} to compare with; the copy in {FIXTURES} is used")
    ours = {p.relative_to(FIXTURES): p.read_bytes() for p in FIXTURES.rglob("*") if p.is_file()}
    theirs = {p.relative_to(SHARED): p.read_bytes() for p in SHARED.rglob("*") if p.is_file()}
    assert ours == theirs


def test_every_recording_is_there() -> None:
    assert "reconnect-during-call.txt" in names()
    assert ("reconnect-during-call.txt", 2) in streams()


@pytest.mark.parametrize("name", names())
def test_the_replay_timeline_keeps_every_byte(name: str) -> None:
    entries = read_recording(FIXTURES / name)
    for conn, items in enumerate(connections(entries), start=1):
        chunks = [i.entry.data for i in items if isinstance(i, Chunk)]
        assert b"".join(chunks) == b"".join(
            e.data for e in entries if e.conn == conn and e.dir == "recv"
        )

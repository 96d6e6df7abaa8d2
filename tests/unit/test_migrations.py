"""Databases made by earlier versions keep their calls and gain the new columns."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

from click2call.store import Store, open_database
from click2call.store.database import MIGRATIONS


def _upgrade_to(url: str, revision: str) -> None:
    engine = create_engine(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    engine.dispose()


def test_events_stored_before_sequences_are_numbered_in_arrival_order(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    _upgrade_to(url, "0002")
    at = datetime(2026, 11, 24, 8, 0, tzinfo=UTC).isoformat(" ")
    old = create_engine(url)
    with old.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO calls (id, uniqueid, tenant, agent_kind, agent_number, destination,"
                " destination_caller_id, agent_caller_id, state, result, created_at)"
                " VALUES (7, '1.7', 'default', 'extension', '200', '0502760206', '1', '2',"
                " 'ended', 'rejected', :at)"
            ),
            {"at": at},
        )
        for state, result in (("queued", None), ("ended", "rejected")):
            conn.execute(
                text(
                    "INSERT INTO call_events (call_id, state, result, at)"
                    " VALUES (7, :state, :result, :at)"
                ),
                {"state": state, "result": result, "at": at},
            )
    old.dispose()

    store = Store(open_database(url))
    call = store.get(7)
    assert call is not None
    assert call.last_sequence == 2
    events = store.events(call)
    assert [(e.sequence, e.type) for e in events] == [(1, "call.queued"), (2, "call.rejected")]
    assert '"call.rejected"' in events[1].payload  # a body is made for rows stored without one

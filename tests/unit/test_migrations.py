"""The same migrations on SQLite and PostgreSQL: databases made by earlier versions keep
their calls and gain the new columns; a shared database is never migrated behind the
operator's back."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic import command
from sqlalchemy import text

from click2call.store import Store, open_database
from click2call.store.database import connect
from click2call.store.schema_version import (
    SchemaOutOfDate,
    alembic_config,
    current,
    head,
    upgrade,
)


def test_events_stored_before_sequences_are_numbered_in_arrival_order(database_url: str) -> None:
    old = connect(database_url)
    upgrade(old, "0002")
    at = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
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

    store = Store(open_database(database_url, migrate=True))
    call = store.get(7)
    assert call is not None
    assert call.last_sequence == 2
    events = store.events(call)
    assert [(e.sequence, e.type) for e in events] == [(1, "call.queued"), (2, "call.rejected")]
    assert '"call.rejected"' in events[1].payload  # a body is made for rows stored without one
    store.close()


def test_every_migration_goes_down_and_up_again(database_url: str) -> None:
    engine = connect(database_url)
    assert upgrade(engine) == (None, head())
    with engine.begin() as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert current(engine) is None
    assert upgrade(engine) == (None, head())
    engine.dispose()


def test_a_shared_database_is_migrated_by_the_operator_not_by_the_server(
    database_url: str,
) -> None:
    engine = connect(database_url)
    if engine.dialect.name == "sqlite":
        # The embedded file: one server, migrated as it opens, so `make run` needs no step.
        open_database(database_url).dispose()
        assert current(engine) == head()
        engine.dispose()
        return
    with pytest.raises(SchemaOutOfDate, match=r"no click2call schema.*click2call db upgrade"):
        open_database(database_url)
    upgrade(engine, "0002")
    with pytest.raises(SchemaOutOfDate, match=f"at revision 0002, this version needs {head()}"):
        open_database(database_url)
    assert current(engine) == "0002"  # looked, did not touch
    upgrade(engine)
    open_database(database_url).dispose()
    engine.dispose()


def test_a_database_from_a_newer_version_is_refused(database_url: str) -> None:
    engine = connect(database_url)
    upgrade(engine)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(SchemaOutOfDate, match=r"9999, which this version.*newer version"):
        open_database(database_url, migrate=False)
    engine.dispose()


def test_going_down_keeps_every_calls_events(database_url: str) -> None:
    """A downgrade that copied `calls` to drop a column dropped the old table with
    foreign keys on, and SQLite's ON DELETE CASCADE emptied call_events (0012, 0007)."""
    engine = connect(database_url)
    upgrade(engine)
    at = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO calls (id, uniqueid, tenant, agent_kind, agent_number, destination,"
                " destination_caller_id, agent_caller_id, state, result, created_at,"
                " last_sequence) VALUES (7, '1.7', 'default', 'extension', '200', '0502760206',"
                " '1', '2', 'ended', 'rejected', :at, 1)"
            ),
            {"at": at},
        )
        conn.execute(
            text(
                "INSERT INTO call_events (call_id, state, at, sequence, type, payload)"
                " VALUES (7, 'queued', :at, 1, 'call.queued', '{}')"
            ),
            {"at": at},
        )
    kept = []
    for revision in ("0012", "0011", "0010", "0009", "0008", "0007", "0006", "0005", "0004"):
        with engine.begin() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            command.downgrade(config, revision)
        with engine.connect() as conn:
            kept.append(conn.execute(text("SELECT count(*) FROM call_events")).scalar())
    engine.dispose()
    assert kept == [1] * 9

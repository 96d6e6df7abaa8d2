"""A database that cannot be reached is DatabaseUnavailable (503); a bug stays a bug."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from click2call.demo.sipp import free_port
from click2call.errors import DatabaseUnavailable
from click2call.store import Store
from click2call.store.database import connect
from click2call.store.outage import check


def test_an_unreachable_postgresql_is_unavailable_and_says_why() -> None:
    port = free_port(socket.SOCK_STREAM)
    engine = connect(f"postgresql://click2call:hunter2@127.0.0.1:{port}/calls")
    with pytest.raises(DatabaseUnavailable) as raised:
        Store(engine).get(1)
    assert raised.value.status == 503
    assert raised.value.message == "the call database is unavailable; try again shortly"
    assert f'"127.0.0.1", port {port} failed' in raised.value.reason
    assert "hunter2" not in raised.value.reason
    assert check(engine) == raised.value.reason
    engine.dispose()


def test_a_missing_table_on_sqlite_is_not_an_outage(tmp_path: Path) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'empty.db'}")
    assert check(engine) is None
    with pytest.raises(OperationalError, match="no such table"), engine.connect() as conn:
        conn.execute(text("SELECT * FROM calls"))
    engine.dispose()


def test_no_pooled_connection_free_in_time_is_an_outage_not_a_bug(tmp_path: Path) -> None:
    """A hung database holds every pooled connection: the next request waits, then 503."""
    engine = connect(f"sqlite:///{tmp_path / 'calls.db'}")
    engine.pool._timeout = 0.2  # type: ignore[attr-defined]  # the pool's wait, shortened
    held = [engine.connect() for _ in range(engine.pool.size() + engine.pool._max_overflow)]  # type: ignore[attr-defined]
    with pytest.raises(DatabaseUnavailable) as raised:
        engine.connect()
    assert raised.value.reason == "no database connection free within 0.2 s"
    for conn in held:
        conn.close()
    assert check(engine) is None  # free again: answered
    engine.dispose()


def test_a_deadlock_is_a_failed_transaction_not_an_outage(database: Engine) -> None:
    if database.dialect.name != "postgresql":
        pytest.skip("SQLite locks the whole file: no deadlock between two rows")
    with database.begin() as conn:
        conn.execute(text("CREATE TABLE pair (id int primary key)"))
        conn.execute(text("INSERT INTO pair VALUES (1), (2)"))
    errors: list[BaseException] = []
    both_hold_one = threading.Barrier(2)

    def lock(first: int, second: int) -> None:
        try:
            with database.begin() as conn:
                conn.execute(text("SELECT * FROM pair WHERE id = :id FOR UPDATE"), {"id": first})
                both_hold_one.wait(5)
                conn.execute(text("SELECT * FROM pair WHERE id = :id FOR UPDATE"), {"id": second})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=lock, args=pair) for pair in ((1, 2), (2, 1))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(errors) == 1, errors  # PostgreSQL broke the cycle by failing one of them
    assert isinstance(errors[0], OperationalError)
    assert not isinstance(errors[0], DatabaseUnavailable)
    assert "deadlock" in str(errors[0])


def test_a_sqlite_pool_hands_out_the_connection_returned_last(tmp_path: Path) -> None:
    # Its page cache is the current one (store/database.py); the oldest is re-read.
    engine = connect(f"sqlite:///{tmp_path / 'calls.db'}")
    try:
        first, second = engine.raw_connection(), engine.raw_connection()
        first_driver, second_driver = first.driver_connection, second.driver_connection
        first.close()
        second.close()
        again = engine.raw_connection()
        assert again.driver_connection is second_driver is not first_driver
        again.close()
    finally:
        engine.dispose()

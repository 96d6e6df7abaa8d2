"""Opening the database: engine, SQLite pragmas, PostgreSQL driver, schema check."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection, QueuePool

from click2call.errors import DatabaseUnavailable
from click2call.store import outage, schema_version

MIGRATIONS = schema_version.MIGRATIONS


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers (status queries) run beside the writer; NORMAL is durable across
    # process crashes, which is what a call record needs.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


# A pooled connection back in use within this many seconds is used as it is: checking every
# checkout (pool_pre_ping) was one more round trip per transaction, ~10 % of a worker's
# samples under load (bench/scale.py --profile). One idle longer may have outlived a
# database restart: it is checked first.
IDLE_BEFORE_CHECK = 1.0


def _check_after_idle(engine: Engine) -> None:
    @event.listens_for(engine, "checkin")
    def _returned(_dbapi: Any, record: ConnectionPoolEntry) -> None:
        record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _taken(dbapi: Any, record: ConnectionPoolEntry, _proxy: PoolProxiedConnection) -> None:
        returned_at = record.info.get("returned_at")
        if returned_at is None or time.monotonic() - returned_at < IDLE_BEFORE_CHECK:
            return
        try:
            cursor = dbapi.cursor()
            try:
                cursor.execute("SELECT 1")
            finally:
                cursor.close()
            dbapi.rollback()
        except Exception as exc:  # the pool then discards it and connects afresh
            raise DisconnectionError(str(exc)) from exc


def describe(url: str) -> str:
    """Where `url` points, for people: the SQLite file's absolute path, or the URL with
    its password hidden."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return f"SQLite file {Path(parsed.database).resolve()}"
    return parsed.render_as_string(hide_password=True)


def _with_driver(parsed: URL) -> URL:
    """`postgresql://` means psycopg 3 (SQLAlchemy would pick psycopg2 by default)."""
    if parsed.drivername == "postgresql":
        return parsed.set(drivername="postgresql+psycopg")
    return parsed


class _Pool(QueuePool):
    """SQLAlchemy's pool, whose "no connection free in time" is an outage like the others:
    a database that hangs holds every pooled connection, and the requests after them must
    get 503, not a bug's 500 (outage.py converts the errors the driver raises)."""

    def _do_get(self) -> ConnectionPoolEntry:
        try:
            return super()._do_get()
        except PoolTimeout as exc:
            raise DatabaseUnavailable(
                f"no database connection free within {self._timeout:g} s"
            ) from exc


# A PostgreSQL host that stops answering (network loss, a hung server) fails a request in
# seconds: connecting, a connection's unacknowledged data and an idle connection's
# keep-alives are all bounded; and a request waits at most this long for a pooled one.
_POSTGRES_CONNECT = {
    "connect_timeout": 5,
    "tcp_user_timeout": 10_000,  # ms
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}


def connect(url: str) -> Engine:
    """An engine for `url`, without touching its schema."""
    parsed = _with_driver(make_url(url))
    if parsed.get_backend_name() == "sqlite":
        pooled: dict[str, Any] = {}
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            # (an in-memory database lives in one connection.) Last in, first out: the
            # writer thread then takes back the connection it just used, whose page cache
            # is current; the least recently used one (first in, first out) had seen the
            # other connections' commits and re-read its pages from the file (~70 KB of
            # reads per call, and ~8 % of the writer's CPU, in bench.ami).
            pooled = {"poolclass": _Pool, "pool_use_lifo": True}
        engine = create_engine(parsed, connect_args={"check_same_thread": False}, **pooled)
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        # A connection for each store thread: the writers (Store.writers, 4), the request
        # threads (Runtime.store_threads, 32) and the pollers' (Runtime.poller_threads, 4).
        # A writer waiting on requests' connections looked like an outage.
        engine = create_engine(
            parsed,
            poolclass=_Pool,
            pool_size=8,
            max_overflow=32 + 4,
            pool_timeout=5,
            connect_args=_POSTGRES_CONNECT,
        )
        _check_after_idle(engine)
    outage.watch(engine)
    return engine


def open_database(url: str, *, migrate: bool | None = None) -> Engine:
    """Connect to `url` with its schema at the newest revision.

    By default the embedded SQLite file is migrated here (one file, one server: `make run`
    needs no step), while a shared database must already have been migrated by
    `click2call db upgrade`: SchemaOutOfDate otherwise. `migrate` overrides the default.
    """
    engine = connect(url)
    try:
        if engine.dialect.name == "sqlite" if migrate is None else migrate:
            schema_version.upgrade(engine)
        else:
            schema_version.require_current(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine

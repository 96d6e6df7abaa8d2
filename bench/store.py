"""The store's write path alone, in process: CPU per call on SQLite and on PostgreSQL.

    python -m bench.store [--calls 1500] [--no-postgres]

Each call is what `python -m bench.sip` stores for it: a new call admitted against the
tenant's limits, its audit row, seven engine events and four SIP states, written through
`Store.writing()` as the tracking writer does (store/tracking.py). Two ways of batching:
each transaction advancing thirteen calls in flight by one write each (one of them new),
as the writer's 5 ms gathering does under load, and one write a transaction. Beside them,
in the same run, the baseline: the driver alone inserting as many rows per call into a
plain table, committed per batch the same way. A tenant webhook is subscribed in the
"with a webhook" rows (one outbox row per event).

PostgreSQL runs on a throwaway cluster (tests/postgres_cluster.py); its own processes'
CPU is shown apart, this process's is the figure that matters for the server.
"""

from __future__ import annotations

import argparse
import functools
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Engine
from tests.postgres_cluster import PostgresCluster

from bench.scale import _children, _cpu, _family, _postmaster
from click2call.calls import CallEvent, CallState, Result
from click2call.store import AuditEntry, NewCall, Store, open_database
from click2call.store.outbox import Outbox, Subscription

T0 = datetime(2026, 11, 25, tzinfo=UTC)
NEW = NewCall("default", "extension", "sip", "200", "0502760206", "036411111", "0502760206", None)


@dataclass(frozen=True)
class Unlimited:
    max_concurrent_calls: int = 1_000_000
    max_calls_per_agent: int = 1_000_000
    calls_per_second: float = 1_000_000.0
    burst: int = 1_000_000


LIMITS = Unlimited()
SIP_STATE = '{"legs":[' + ",".join(['{"call_id":"' + "x" * 280 + '"}'] * 4) + "]}"
# A call's writes after its creation, in the order bench.sip's calls bring them.
STEPS: tuple[str | CallState, ...] = (
    "audit",
    CallState.AGENT_DIALING,
    "sip",
    CallState.AGENT_RINGING,
    CallState.AGENT_ANSWERED,
    "sip",
    CallState.DESTINATION_DIALING,
    "sip",
    CallState.DESTINATION_RINGING,
    CallState.CONNECTED,
    "sip",
    CallState.ENDED,
)
WRITES_PER_CALL = 1 + len(STEPS)
# Rows a call leaves: call, 8 events, 1 SIP state row (written 4 times), audit, the bucket.
ROWS_PER_CALL = 1 + 8 + 4 + 1 + 1


def _schedule(calls: int, batched: bool) -> Iterator[list[tuple[int, str | CallState]]]:
    """Batches of (call number, step): with `batched`, each batch starts one call and moves
    the WRITES_PER_CALL - 1 before it one step on; else the same writes one a batch."""
    for start in range(calls + len(STEPS)):
        batch: list[tuple[int, str | CallState]] = []
        if start < calls:
            batch.append((start, "new"))
        for step, what in enumerate(STEPS):
            call = start - step - 1
            if 0 <= call < calls:
                batch.append((call, what))
        if batched:
            yield batch
        else:
            yield from ([write] for write in batch)


def drive(store: Store, calls: int, batched: bool) -> None:
    uniqueids: dict[int, str] = {}
    for n, batch in enumerate(_schedule(calls, batched)):
        now = T0 + timedelta(milliseconds=n)
        with store.writing() as writes:
            for call, what in batch:
                if what == "new":
                    change = writes.create_call(NEW, now, None, LIMITS)
                    uniqueids[call] = change.call.uniqueid
                elif what == "audit":
                    writes.audit(
                        AuditEntry(now, "default", None, "127.0.0.1", "dial.php", True, None)
                    )
                elif what == "sip":
                    writes.save_sip_state(uniqueids[call], SIP_STATE, now)
                else:
                    result = Result.COMPLETED if what is CallState.ENDED else None
                    cause = "BYE from the destination" if result else None
                    writes.record(CallEvent(uniqueids[call], CallState(what), now, result, cause))


def baseline(url: str, calls: int, batched: bool) -> Any:
    """The driver alone: ROWS_PER_CALL plain inserts a call, committed like `drive`; the
    connection, still open (its server process's CPU is counted before it goes)."""
    sql = "INSERT INTO bench_rows (call, at, body) VALUES ({0}, {0}, {0})"
    if url.startswith("sqlite"):
        connection: Any = sqlite3.connect(url.removeprefix("sqlite:///"))
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        sql = sql.format("?")
    else:
        connection = psycopg.connect(url)
        sql = sql.format("%s")
    connection.execute("CREATE TABLE bench_rows (call INTEGER, at TEXT, body TEXT)")
    connection.commit()
    rows_per_write = ROWS_PER_CALL / WRITES_PER_CALL
    done = 0.0
    for n, batch in enumerate(_schedule(calls, batched)):
        cursor = connection.cursor()
        for call, _ in batch:
            done += rows_per_write
            while done >= 1:
                cursor.execute(sql, (call, str(n), "x" * 100))
                done -= 1
        connection.commit()
    return connection


@dataclass
class Database:
    name: str
    new_url: Callable[[], str]
    postmaster: int | None = None  # PostgreSQL: its processes' CPU is shown apart

    def server_cpu(self) -> dict[int, float]:
        """CPU seconds of each of the server's processes."""
        if self.postmaster is None:
            return {}
        return {pid: _cpu([pid]) for pid in _family(self.postmaster, _children())}


def measure(database: Database, run: Callable[[], Any]) -> tuple[float, float, Any]:
    """(our CPU seconds, the database server's) running `run`, and what it returned. A
    server process that ended meanwhile (an autovacuum worker) is not counted."""
    server0, ours0 = database.server_cpu(), time.process_time()
    returned = run()
    ours = time.process_time() - ours0
    server = sum(cpu - server0.get(pid, 0.0) for pid, cpu in database.server_cpu().items())
    return ours, server, returned


def _store(url: str, webhook: bool) -> tuple[Store, Engine]:
    engine = open_database(url, migrate=True)
    if webhook:
        Outbox(engine).sync_config({"default": [Subscription("http://127.0.0.1:9/hook")]}, T0)
    return Store(engine, node="bench"), engine


def rows(database: Database, calls: int) -> list[tuple[str, float, float, float]]:
    """(row title, our ms per call, x baseline, database server ms per call)."""
    table = []
    for batched, how in ((True, f"{WRITES_PER_CALL} writes a transaction"), (False, "1 write")):
        url = database.new_url()
        run = functools.partial(baseline, url, calls, batched)
        base, base_server, connection = measure(database, run)
        connection.close()
        time.sleep(0.3)  # its server process gone before the next measure starts
        table.append((f"{database.name}, {how}: driver baseline", base, 1.0, base_server))
        for webhook in (False, True):
            store, engine = _store(database.new_url(), webhook)
            drive(store, 50, batched)  # warm: statements compiled, caches filled
            ours, server, _ = measure(database, functools.partial(drive, store, calls, batched))
            engine.dispose()
            time.sleep(0.3)
            title = f"{database.name}, {how}" + (", with a webhook" if webhook else "")
            table.append((title, ours, ours / base, server))
    return [(t, s / calls * 1000, x, srv / calls * 1000) for t, s, x, srv in table]


@contextmanager
def databases(folder: Path, postgres: bool) -> Iterator[list[Database]]:
    counter = iter(range(1_000_000))
    sqlite = Database("SQLite", lambda: f"sqlite:///{folder / f'{next(counter)}.db'}")
    if not postgres:
        yield [sqlite]
        return
    cluster = PostgresCluster().start()
    try:
        yield [sqlite, Database("PostgreSQL", cluster.new_database, _postmaster(cluster))]
    finally:
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=600)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as folder,
        databases(Path(folder), not args.no_postgres) as found,
    ):
        print(f"store writes, {args.calls} calls each (python -m bench.store)")
        print(f"{'':58} {'ms/call':>8} {'x base':>7} {'db ms/call':>11}")
        for database in found:
            for title, ours, times, server in rows(database, args.calls):
                shown = f"{server:11.2f}" if database.postmaster else f"{'(in ours)':>11}"
                print(f"{title:58} {ours:8.2f} {times:6.2f}x {shown}")


if __name__ == "__main__":
    main()

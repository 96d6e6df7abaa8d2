"""`db prune`: old ended calls go with everything hanging off them, finished deliveries and
audit rows go by age; live calls and deliveries still due stay. On both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import ColumnElement, Engine, Table, func, insert, select

from click2call.calls import CallEvent, CallState, Result
from click2call.cli import main
from click2call.store import (
    Attempt,
    AuditEntry,
    NewCall,
    Outbox,
    Store,
    StoredCall,
    Subscription,
)
from click2call.store.hangup_requests import HangupRequests
from click2call.store.outbox import DELIVERED, Settled
from click2call.store.retention import Pruned, prune
from click2call.store.schema import (
    call_events,
    hangup_requests,
    webhook_endpoints,
    webhook_outbox,
    widget_calls,
)

OLD = datetime(2026, 9, 1, tzinfo=UTC)
CUTOFF = datetime(2026, 10, 1, tzinfo=UTC)
RECENT = datetime(2026, 11, 1, tzinfo=UTC)
NEW = NewCall("default", "extension", "sip", "200", "0502760206", "036411111", "0502760206", None)
HOOK = Subscription("https://crm.example/hook")


def _call(store: Store, at: datetime, ended: bool = True, own: bool = False) -> StoredCall:
    call = store.create_call(NEW, at, Subscription("https://crm.example/own") if own else None).call
    step = CallState.ENDED if ended else CallState.AGENT_DIALING
    result = Result.AGENT_BUSY if ended else None
    store.record(CallEvent(call.uniqueid, step, at + timedelta(minutes=1), result, "test"))
    return call


def _deliver_all_but(outbox: Outbox, keep: StoredCall, at: datetime) -> None:
    """Every delivery of every call but `keep`'s made, at `at`; `keep`'s stay due."""
    made = Attempt(at, 200, None, None, 0.1)
    while due := [d for d in outbox.claim(at, 100, set()) if d.call_id != keep.id]:
        outbox.settle([Settled(delivery, made, DELIVERED) for delivery in due])


def _count(database: Engine, table: Table, where: ColumnElement[bool] | None = None) -> int:
    query = select(func.count()).select_from(table)
    if where is not None:
        query = query.where(where)
    with database.connect() as conn:
        return int(conn.scalar(query) or 0)


def _audit(store: Store, at: datetime, n: int) -> None:
    with store.writing() as writes:
        for i in range(n):
            writes.audit(AuditEntry(at, "default", None, "127.0.0.1", "dial.php", True, f"{i}"))


def test_prune_keeps_live_calls_and_deliveries_still_due(database: Engine) -> None:
    store, outbox = Store(database), Outbox(database, "n1")
    outbox.sync_config({"default": [HOOK]}, OLD)
    old_ended = [_call(store, OLD, own=True), _call(store, OLD), _call(store, OLD)]
    still_due = _call(store, OLD)  # its webhook receiver has not taken it yet
    live = _call(store, OLD, ended=False)  # a call up for a month: never pruned
    recent = _call(store, RECENT)
    _deliver_all_but(outbox, still_due, OLD + timedelta(minutes=2))
    with database.begin() as conn:  # placed from a widget
        conn.execute(insert(widget_calls).values(call_id=old_ended[0].id, token_id="token"))
    HangupRequests(database, "n1").ask(old_ended[1].id, "n2", OLD)
    _audit(store, OLD, 3)
    _audit(store, RECENT, 1)

    pruned = prune(database, CUTOFF, batch=2)  # several batches of each kind

    # Each old ended call: 2 events, 2 deliveries (3 with its own callback URL, 4 for the
    # first), one attempt each; the live call's 2 delivered rows go, its events stay.
    assert pruned == Pruned(calls=3, events=6, deliveries=10, attempts=10, audit_rows=3)
    assert {c.id for c in store.find()} == {still_due.id, live.id, recent.id}
    assert len(store.events(live)) == 2
    assert _count(database, webhook_outbox, webhook_outbox.c.call_id == still_due.id) == 2
    assert _count(database, webhook_outbox, webhook_outbox.c.call_id == recent.id) == 2
    assert _count(database, webhook_outbox, webhook_outbox.c.call_id == live.id) == 0
    assert _count(database, webhook_endpoints) == 1  # the tenant's; the call's own is gone
    assert _count(database, widget_calls) == _count(database, hangup_requests) == 0
    assert _count(database, call_events) == 2 + 2 + 2
    assert prune(database, CUTOFF) == Pruned()  # nothing left to prune


def test_prune_keeps_the_newest_call_so_no_id_is_given_twice(database: Engine) -> None:
    """On SQLite a new call's id is one more than the largest: were the newest call pruned,
    the next one would take the id a CRM already knows for another call."""
    store = Store(database)
    calls = [_call(store, OLD) for _ in range(3)]
    assert prune(database, CUTOFF).calls == 2
    assert [c.id for c in store.find()] == [calls[-1].id]
    assert _call(store, RECENT).id > calls[-1].id


def test_db_prune_prints_what_it_removed(
    database_url: str, database: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = Store(database)
    _call(store, datetime.now(UTC) - timedelta(days=40))
    _call(store, datetime.now(UTC) - timedelta(days=5))
    _audit(store, datetime.now(UTC) - timedelta(days=40), 2)
    config = tmp_path / "click2call.toml"
    config.write_text(f'[server]\ndatabase = "{database_url}"\n\n[[tenants]]\nname = "default"\n')
    assert main(["db", "prune", "--older-than", "30", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "1 call(s) with 2 event(s), 0 webhook deliveries with 0 attempt(s), 2 audit row(s)" in (
        out
    )
    assert len(store.find()) == 1
    for days in ([], ["--older-than", "0"], ["--older-than", "nan"], ["--older-than", "inf"]):
        with pytest.raises(SystemExit, match="--older-than DAYS"):
            main(["db", "prune", *days, "--config", str(config)])

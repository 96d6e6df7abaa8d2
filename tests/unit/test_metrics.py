"""metrics.py: counted from stored changes, one registry per instance."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from click2call.calls import CallEvent, CallState, Result
from click2call.engines.base import EngineHealth
from click2call.metrics import Metrics
from click2call.policy import Limits
from click2call.store import NewCall, Store, open_database
from click2call.tracking import Tracking

T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
NEW = NewCall("default", "extension", "sip", "200", "0502760206", "1", "2", None)


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.exposition().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_a_call_s_changes_move_its_counters_and_histograms(tmp_path: Path) -> None:
    store = Store(open_database(f"sqlite:///{tmp_path / 'calls.db'}"))
    tracking = Tracking(store, Limits(time.monotonic), lambda: T0)
    health = {"default": EngineHealth("sip", True, "bound", 3)}
    metrics = Metrics(lambda: health, lambda: 4, lambda: 2)
    other = Metrics(lambda: {}, lambda: 0)
    tracking.subscribe(metrics.on_change)
    call = (await tracking.create(NEW)).call
    for seconds, state in enumerate(list(CallState)[1:-1], start=1):
        tracking.record(CallEvent(call.uniqueid, state, T0 + timedelta(seconds=seconds)))
    tracking.end(call.uniqueid, Result.COMPLETED, "done")
    metrics.delivery("delivered")

    got = samples(metrics)
    tenant = (("tenant", "default"),)
    assert got[("click2call_calls_placed_total", tenant)] == 1
    assert got[("click2call_calls_ended_total", (("result", "completed"), *tenant))] == 1
    assert got[("click2call_call_setup_seconds_sum", tenant)] == 6  # queued T0, connected +6 s
    assert got[("click2call_destination_dial_delay_seconds_sum", tenant)] == 1
    assert got[("click2call_active_calls", tenant)] == 3
    assert got[("click2call_engine_up", (("engine", "sip"), *tenant))] == 1
    assert got[("click2call_webhook_backlog", ())] == 4
    assert got[("click2call_webhook_deliveries_total", (("outcome", "delivered"),))] == 1
    assert got[("click2call_audit_rows_dropped_total", ())] == 2
    assert ("click2call_calls_placed_total", tenant) not in samples(other)  # own registry

"""The composition root: what it starts it stops, in an order that leaks nothing."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from click2call.demo.sipp import free_port
from click2call.engines.asterisk.engine import AsteriskEngine, longest_life
from click2call.runtime import Runtime
from click2call.settings import Settings
from click2call.store import CallTimeouts, NewCall, Subscription
from click2call.store.hangup_requests import HangupRequest, HangupRequests


def _runtime(folder: Path) -> Runtime:
    peer = f"127.0.0.1:{free_port()}"
    settings = Settings(
        server={"database": f"sqlite:///{folder / 'calls.db'}"},  # type: ignore[arg-type]
        sip={"port": free_port(), "options_interval": 0},  # type: ignore[arg-type]
        tenants=[{"name": "default", "sip": {"pbx": peer, "trunk": peer}}],  # type: ignore[list-item]
    )
    return Runtime(settings)


async def test_close_waits_for_a_pollers_thread_before_disposing_of_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hang-up relay is stopped while its thread reads the database: the database is
    disposed of only once that thread is done with its connection."""
    runtime = _runtime(tmp_path)
    polling, release = threading.Event(), threading.Event()
    order: list[str] = []
    take = HangupRequests.take

    def slow_take(requests: HangupRequests, now: datetime) -> list[HangupRequest]:
        polling.set()
        release.wait(5)
        found = take(requests, now)
        order.append("poll done")
        return found

    monkeypatch.setattr(HangupRequests, "take", slow_take)
    dispose = runtime.store.close
    monkeypatch.setattr(runtime.store, "close", lambda: (order.append("disposed"), dispose()))
    await runtime.start()
    assert await asyncio.to_thread(polling.wait, 5)
    closing = asyncio.create_task(runtime.close())
    await asyncio.sleep(0.3)
    release.set()
    await asyncio.wait_for(closing, 10)
    assert order == ["poll done", "disposed"]


async def test_a_heartbeat_is_written_while_requests_fill_their_threads(tmp_path: Path) -> None:
    """Every request thread is held by a slow read: the node's heartbeat, in the pollers'
    own threads, is written all the same (queued behind the reads, it would miss its lease
    and other nodes would take this node's calls)."""
    runtime = _runtime(tmp_path)
    runtime.store_threads.timeout = runtime.poller_threads.timeout = 1.0
    held = threading.Event()
    reads = [asyncio.create_task(runtime.store_threads.run(held.wait, 5)) for _ in range(40)]
    await asyncio.sleep(0.1)
    try:
        await runtime.watch._beat_and_sweep()  # DatabaseUnavailable if queued behind them
    finally:
        held.set()
        await asyncio.gather(*reads, return_exceptions=True)
        await runtime.store_threads.close()
        await runtime.poller_threads.close()
        runtime.store.close()


async def test_the_deliverer_is_woken_only_by_a_change_that_queued_a_delivery(
    tmp_path: Path,
) -> None:
    """Each wake-up reads the outbox: a change with nothing to deliver must not cost one."""
    runtime = _runtime(tmp_path)
    woken: list[int] = []
    runtime.deliverer.wake = lambda: woken.append(1)  # type: ignore[method-assign]
    new = NewCall("default", "extension", "sip", "200", "0502760206", "1", "2", None)
    now = datetime.now(UTC)
    try:
        first = await runtime.tracking.create(new)
        assert (first.deliveries, woken) == (0, [])  # no webhook anywhere
        runtime.outbox.sync_config({"default": [Subscription("http://127.0.0.1:9/all")]}, now)
        second = await runtime.tracking.create(new)
        assert (second.deliveries, woken) == (1, [1])
    finally:
        runtime.store.close()


async def test_an_asterisk_call_left_in_flight_resumes_with_the_timeouts_it_was_placed_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tenant's timeouts changed across the restart: the call keeps its own (shorter
    ones now would hang it up early), and a call stored before calls kept theirs gets the
    tenant's."""

    def settings(max_call_seconds: float) -> Settings:
        return Settings(
            server={"database": f"sqlite:///{tmp_path / 'calls.db'}"},  # type: ignore[arg-type]
            tenants=[
                {  # type: ignore[list-item]
                    "name": "default",
                    "engine": "asterisk",
                    "max_call_seconds": max_call_seconds,
                    "asterisk": {"port": free_port(), "username": "u", "secret": "s"},
                }
            ],
        )

    placed = CallTimeouts(30, 45, 7200)
    before = Runtime(settings(7200))
    new = NewCall("default", "extension", "sip", "200", "0502760206", "1", "2", None)
    try:
        ours = (await before.tracking.create(replace(new, timeouts=placed))).call
        older = (await before.tracking.create(new)).call  # as stored before 0012
    finally:
        before.store.close()
    resumed: dict[str, object] = {}

    def resume(_engine: object, uniqueid: str, *args: object) -> None:
        resumed[uniqueid] = args[-1]

    monkeypatch.setattr(AsteriskEngine, "resume", resume)
    after = Runtime(settings(60))
    await after.start()
    try:
        assert resumed[ours.uniqueid] == placed
        assert longest_life(resumed[older.uniqueid]) == 30 + 45 + 60  # type: ignore[arg-type]
    finally:
        await after.close()

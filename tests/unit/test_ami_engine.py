"""The Asterisk engine's own decisions, without a PBX (engines/asterisk/engine.py)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from click2call.calls import CallEvent, CallState, Result
from click2call.engines.asterisk.engine import AsteriskEngine, longest_life
from click2call.settings import TenantAsterisk, TenantSettings
from tests.ami_recordings import recorded_order

# The tenant's timeouts now; the call below was placed when they were much shorter.
TENANT = TenantSettings(
    name="t",
    engine="asterisk",
    agent_ring_timeout=30,
    destination_ring_timeout=45,
    max_call_seconds=7200,
    asterisk=TenantAsterisk(end_grace=0.05),
)
PLACED = replace(
    recorded_order("1795500000.7"),
    agent_ring_timeout=0.1,
    destination_ring_timeout=0.1,
    max_call_seconds=0.2,
)


def test_a_calls_longest_life_is_both_ring_timeouts_and_its_longest_talk() -> None:
    assert longest_life(PLACED) == 0.4
    assert longest_life(TENANT) == 7275


async def test_a_resumed_call_is_overdue_by_the_timeouts_it_was_placed_with() -> None:
    now = datetime.now(UTC)
    engine = AsteriskEngine(TENANT, lambda: now)
    ended: list[CallEvent] = []
    done = asyncio.Event()

    def sink(event: CallEvent) -> None:
        ended.append(event)
        done.set()

    # Placed 0.3 s before the restart: 0.1 s of its life is left, not the tenant's 2 hours.
    created = now - timedelta(seconds=0.3)
    engine.resume(PLACED.uniqueid, CallState.CONNECTED, created, sink, PLACED)
    async with asyncio.timeout(2):  # never started: no link, so no Hangup event comes
        await done.wait()
    assert [(e.state, e.result) for e in ended] == [(CallState.ENDED, Result.ERROR)]
    assert ended[0].cause == "AMI link to the PBX lost (click2call restarted) and not back in time"
    await engine.close()

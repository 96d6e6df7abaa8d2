"""What a surviving node does with each call of a lost node (takeover.py's decisions)."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy
from pydantic import ValidationError

from click2call.calls import CallEvent, CallState, Result
from click2call.engines.asterisk.engine import AsteriskEngine
from click2call.engines.base import Engine
from click2call.engines.sip import SipEndpoint, SipEngine
from click2call.settings import ServerSettings, SipStackSettings, TenantSettings
from click2call.store import Store
from click2call.store.nodes import Claim, NodeRegistry, OrphanCall
from click2call.store_threads import StoreThreads
from click2call.takeover import Ending, NodeWatch, ending_for, may_take_over, takeover_cause
from tests.unit.test_store import NEW


def now() -> datetime:
    return datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


SIP = SipEngine(TenantSettings(name="s"), SipEndpoint(SipStackSettings()), now)
ASTERISK = AsteriskEngine(TenantSettings(name="a", engine="asterisk"), now)


def orphan(state: CallState, sip_state: str | None = None) -> OrphanCall:
    return OrphanCall("1764057600.1", "t", state, sip_state)


@pytest.mark.parametrize(
    ("call", "engine", "ending"),
    [
        (orphan(CallState.CONNECTED, "{}"), SIP, Ending.SIP_DIALOGS),
        (orphan(CallState.AGENT_RINGING, "{}"), SIP, Ending.SIP_DIALOGS),
        (orphan(CallState.CONNECTED), SIP, Ending.STORE_ONLY),  # no dialogs kept
        (orphan(CallState.QUEUED, "{}"), SIP, Ending.STORE_ONLY),  # nothing sent yet
        (orphan(CallState.CONNECTED), ASTERISK, Ending.AMI_HANGUP),
        (orphan(CallState.DESTINATION_RINGING), ASTERISK, Ending.AMI_HANGUP),
        (orphan(CallState.QUEUED), ASTERISK, Ending.STORE_ONLY),
        (orphan(CallState.CONNECTED, "{}"), None, Ending.STORE_ONLY),  # tenant gone
    ],
)
def test_each_call_is_ended_the_way_its_engine_can(
    call: OrphanCall, engine: Engine | None, ending: Ending
) -> None:
    assert ending_for(call, engine) is ending


def test_the_cause_names_the_lost_node_and_the_survivor() -> None:
    assert takeover_cause("a:8080", "b:8080") == (
        "node a:8080 stopped heartbeating; ended by node b:8080"
    )


def test_only_a_node_beating_for_a_whole_lease_judges_the_others() -> None:
    lease = timedelta(seconds=15)
    assert may_take_over(now() - lease, now(), lease)
    assert not may_take_over(now() - timedelta(seconds=14), now(), lease)  # just back
    assert not may_take_over(None, now(), lease)  # its last beat failed (an outage)


def test_the_lease_must_outlast_two_heartbeats() -> None:
    assert ServerSettings(heartbeat_interval=1, node_lease=2).node_lease == 2
    with pytest.raises(ValidationError, match="node_lease must be at least twice"):
        ServerSettings(heartbeat_interval=2, node_lease=3)


def wall_clock() -> datetime:
    return datetime.now(UTC)


def _lost_node_with_a_call(database: sqlalchemy.Engine) -> str:
    """Node a, silent for a minute, with a call of its own: its uniqueid."""
    NodeRegistry(database, "a").beat(wall_clock() - timedelta(seconds=60))
    uniqueid = Store(database, "a").create_call(NEW, wall_clock()).call.uniqueid
    assert uniqueid is not None
    return uniqueid


async def test_a_watching_node_ends_a_silent_nodes_calls_once_and_keeps_beating(
    database: sqlalchemy.Engine,
) -> None:
    """Node a beat a minute ago and left a call ringing; node b, watching, ends it (no
    engine for its tenant here: only the row) with the cause, and claims a only once."""

    uniqueid = _lost_node_with_a_call(database)
    Store(database, "a").record(CallEvent(uniqueid, CallState.AGENT_DIALING, wall_clock()))
    ended: list[tuple[str, Result, str]] = []
    registry = NodeRegistry(database, "b")
    watch = NodeWatch(
        registry, "b", {}, lambda *e: ended.append(e), wall_clock, 0.02, 0.1, StoreThreads(2, 5)
    )
    watch.join()
    watch.start()
    await asyncio.sleep(0.3)
    await watch.stop()
    assert ended == [(uniqueid, Result.ERROR, takeover_cause("a", "b"))]
    assert registry.beat(wall_clock())  # b's row is there, fresh
    await watch.leave()
    assert not registry.beat(wall_clock())  # gone after leaving


class SlowRegistry(NodeRegistry):
    """A registry whose claim commits, then takes 0.3 s to come back (`claiming` set)."""

    def __init__(self, database: sqlalchemy.Engine, node: str) -> None:
        super().__init__(database, node)
        self.claiming = threading.Event()

    def claim_lost(self, now: datetime, lease: timedelta) -> list[Claim]:
        claims = super().claim_lost(now, lease)
        self.claiming.set()
        time.sleep(0.3)  # committed; the answer is slow to come back
        return claims


async def test_a_claim_the_database_answers_late_is_still_taken_over(
    database: sqlalchemy.Engine,
) -> None:
    """Claiming a lost node's calls outlasts the store's wait: the claim commits all the
    same, so the watching node must act on it (nobody else ever will)."""

    uniqueid = _lost_node_with_a_call(database)
    ended: list[tuple[str, Result, str]] = []
    watch = NodeWatch(
        SlowRegistry(database, "b"),
        "b",
        {},
        lambda *e: ended.append(e),
        wall_clock,
        0.02,
        0.1,
        StoreThreads(2, 0.1),
    )
    watch.join()
    watch.start()
    for _ in range(100):
        await asyncio.sleep(0.05)
        if ended:
            break
    await watch.stop()
    assert ended == [(uniqueid, Result.ERROR, takeover_cause("a", "b"))]


async def test_a_node_stopping_as_its_claim_commits_still_ends_the_claimed_calls(
    database: sqlalchemy.Engine,
) -> None:
    """The stop comes while the claim is in the database: the round is let finish, so the
    calls it moved to this node are ended (nobody else would ever end them)."""

    uniqueid = _lost_node_with_a_call(database)
    ended: list[tuple[str, Result, str]] = []
    threads, registry = StoreThreads(2, 5), SlowRegistry(database, "b")
    watch = NodeWatch(registry, "b", {}, lambda *e: ended.append(e), wall_clock, 0.02, 0.1, threads)
    watch.join()
    watch.start()
    assert await asyncio.to_thread(registry.claiming.wait, 5)
    await watch.stop()  # the server stops as the claim commits
    assert ended == [(uniqueid, Result.ERROR, takeover_cause("a", "b"))]
    await watch.leave()
    await threads.close()


class BeatCounter:
    """A registry that counts heartbeats and has one lost node with four calls to claim."""

    def __init__(self) -> None:
        self.beats: list[float] = []
        self.claimed = False

    def beat(self, at: datetime) -> bool:
        self.beats.append(time.monotonic())
        return True

    def claim_lost(self, at: datetime, lease: timedelta) -> list[Claim]:
        if self.claimed:
            return []
        self.claimed = True
        calls = [OrphanCall(f"1764057600.{i}", "a", CallState.CONNECTED, None) for i in range(4)]
        return [Claim("gw1", at - lease, calls)]


async def test_the_survivor_keeps_beating_while_the_lost_nodes_pbx_is_slow_to_hang_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each Hangup waits for its answer (AMI action_timeout, 5 s by default): one after the
    other inside the heartbeat's round, four of them kept the survivor silent past the
    lease, and a third node would have ended the survivor's own calls. Times scaled down."""
    interval, lease, unanswered_for = 0.1, 0.75, 0.25
    engine = AsteriskEngine(TenantSettings(name="a", engine="asterisk"), now)

    async def unanswered(uniqueid: str) -> None:
        await asyncio.sleep(unanswered_for)
        raise RuntimeError("Asterisk did not answer Hangup")

    monkeypatch.setattr(engine, "end_orphan", unanswered)
    registry, ended = BeatCounter(), []
    threads = StoreThreads(2, timeout=5)
    watch = NodeWatch(
        registry,  # type: ignore[arg-type]
        "gw2",
        {"a": engine},
        lambda uniqueid, *_: ended.append(uniqueid),
        wall_clock,
        interval,
        lease,
        threads,
    )
    watch.join()
    watch.start()
    await asyncio.sleep(lease + 4 * unanswered_for + 0.3)
    await watch.stop()
    await threads.close()
    gaps = [later - earlier for earlier, later in itertools.pairwise(registry.beats)]
    assert sorted(ended) == [f"1764057600.{i}" for i in range(4)]  # all ended regardless
    assert max(gaps) < lease  # never silent long enough to be judged lost

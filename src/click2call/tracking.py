"""Call events in: engines report here, the store keeps each change, listeners hear of it.

The one home of a call's progress (DESIGN.md, "Events out"): storing a new call,
recording an engine's event, ending a call, ending the calls a previous run left in
flight, and announcing each stored change. Each change is stored with its history row
and its webhook deliveries (store/repository.py); listeners are only woken up — what
they report they read back from the store, so a listener that misses a wake-up (or a
process that dies) loses nothing.

Once started, every write (new calls, engine events, SIP states, and the audit trail's
rows) goes through one EventWriter: off the event loop, several to a transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from click2call import logs
from click2call.calls import CallEvent, CallState, Result
from click2call.engines.base import Clock
from click2call.errors import DatabaseUnavailable, IllegalTransition, RateLimited
from click2call.event_writer import EventWriter
from click2call.policy import Limits
from click2call.store import AuditEntry, Change, NewCall, Store, Subscription, Writes
from click2call.store.admission import CallLimits
from click2call.store.repository import UnknownCall
from click2call.store_threads import no_answer

log = logging.getLogger("click2call.tracking")

Listener = Callable[[Change], None]
# Audit rows waiting for the database at most: during a long outage the newer ones are
# dropped (counted and logged), so the trail cannot grow the process's memory for ever.
AUDIT_BACKLOG = 10_000
# How long the writes nobody waits for (events, SIP states, audit rows) gather before they
# are stored: fewer, larger transactions at a low rate (event_writer.py); what a listener
# hears (webhooks, the live feed) is this much later at most.
LINGER_SECONDS = 0.05


@dataclass(frozen=True, slots=True)
class NewCallWrite:
    """A call to store (Tracking.create): its request waits for the answer."""

    record: NewCall
    at: datetime
    callback: Subscription | None
    limits: CallLimits | None
    uniqueid: str = ""  # not known before it is stored: every new call goes to one lane


@dataclass(frozen=True, slots=True)
class AuditWrite:
    """A row of the audit trail (api/access.py): off the loop like the calls' writes, in
    the same writer (SQLite lets one in at a time: a second writer on the loop waited
    for the file's lock there, stalling every request and SIP message behind it)."""

    entry: AuditEntry
    uniqueid: str = ""


@dataclass(frozen=True, slots=True)
class InDoubtCall:
    """A new call whose commit met a broken connection (store/in_doubt.py): looked for once
    the database answers, and ended if it was stored after all."""

    record: NewCall
    at: datetime
    uniqueid: str = ""


@dataclass(frozen=True, slots=True)
class SipState:
    """A SIP call's state to keep (engines/sip/snapshot.py), in line with its events."""

    uniqueid: str
    state: str

    def __repr__(self) -> str:
        return f"SipState({self.uniqueid})"


Write = NewCallWrite | CallEvent | SipState | AuditWrite | InDoubtCall


# New calls in doubt kept to be looked for at most: each was a request answered 503 as
# its commit met a broken connection (a handful at a time, unless the database flaps).
IN_DOUBT_MAX = 1000


class Tracking:
    def __init__(
        self,
        store: Store,
        limits: Limits,
        clock: Clock,
        timeout: float = 5.0,
        audit_backlog: int = AUDIT_BACKLOG,
    ) -> None:
        """`timeout`: how long a request waits for its write (a new call, its ending);
        `audit_backlog`: audit rows kept waiting for the database, at most."""
        self._store = store
        self._timeout = timeout
        self._audit_backlog = audit_backlog
        self._audit_waiting = 0
        self._in_doubt = 0  # new calls in doubt waiting to be looked for (IN_DOUBT_MAX)
        self._audit_dropping = 0  # dropped since the backlog last had room
        self.audit_dropped = 0  # in all (metrics)
        self._limits = limits
        self._clock = clock
        self._listeners: list[Listener] = []
        self._writer = EventWriter(
            self._store_batch,
            self._stored,
            lanes=store.writers,
            linger_seconds=LINGER_SECONDS,
            waits_out_outage=lambda write: not isinstance(write, NewCallWrite),
        )

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` after each stored change, on the event loop; returns an unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    async def create(
        self,
        record: NewCall,
        callback: Subscription | None = None,
        limits: CallLimits | None = None,
    ) -> Change:
        """Store a new call, queued; announced like every later change. With `limits`, only
        if the cluster admits it (RateLimited otherwise). Once `start`ed, off the event
        loop, with other writes in one transaction; DatabaseUnavailable during an outage."""
        write = NewCallWrite(record, self._clock(), callback, limits)
        if not self._writer.running:
            stored = self._store_now(write)
        else:
            tried = not self._writer.in_outage  # else refused at once, never sent
            storing = self._writer.put(write, waited=True)
            try:
                async with asyncio.timeout(self._timeout):
                    stored = await asyncio.shield(storing)
            except DatabaseUnavailable:
                # Its commit may have happened with the answer lost: never left queued.
                if tried and self._in_doubt < IN_DOUBT_MAX:
                    self._in_doubt += 1
                    self._writer.put(InDoubtCall(record, write.at)).add_done_callback(
                        self._in_doubt_settled
                    )
                raise
            except (asyncio.CancelledError, TimeoutError) as exc:
                # Its request is gone (cancelled, or answered 503 by a database that hangs),
                # its row may be stored anyway: never left queued.
                storing.add_done_callback(self._end_abandoned)
                if isinstance(exc, TimeoutError):
                    raise DatabaseUnavailable(no_answer(self._timeout)) from None
                raise
        assert stored is not None  # a new call is always a change
        return stored

    def _in_doubt_settled(self, _done: asyncio.Future[Change | None]) -> None:
        self._in_doubt -= 1

    def _end_abandoned(self, storing: asyncio.Future[Change | None]) -> None:
        if storing.cancelled() or storing.exception() is not None:
            return
        if (change := storing.result()) is not None:
            cause = "the request placing it was cancelled or timed out before the call was dialled"
            self.end(change.call.uniqueid, Result.ERROR, cause)

    def on_event(self, event: CallEvent) -> None:
        """The engines' event sink: store the step, then announce it. Once `start`ed, off the
        event loop, in arrival order per call, and kept through a database outage."""
        self._write(event)

    def record(self, event: CallEvent) -> Change | None:
        """Store the event now; the change, or None when it changed nothing or was refused."""
        return self._store_now(event)

    def save_sip_state(self, uniqueid: str, state: str) -> None:
        """The SIP engine's sink for a call's dialogs: stored in the same lane as the call's
        events, so never ahead of an event reported before it, nor after its end."""
        self._write(SipState(uniqueid, state))

    def audit(self, entry: AuditEntry) -> None:
        """Keep a request's audit row; kept through a database outage like call events,
        up to `audit_backlog` rows waiting: the rows past that are dropped, and counted."""
        if not self._writer.running:
            self._store_now(AuditWrite(entry))
        elif self._audit_waiting >= self._audit_backlog:
            self.audit_dropped += 1
            self._audit_dropping += 1
            if self._audit_dropping == 1:
                log.warning(
                    "%d audit rows wait for the database: newer ones are dropped until it answers",
                    self._audit_waiting,
                )
        else:
            self._audit_waiting += 1
            self._writer.put(AuditWrite(entry)).add_done_callback(self._audit_settled)

    def _audit_settled(self, _stored: asyncio.Future[Change | None]) -> None:
        self._audit_waiting -= 1
        if self._audit_dropping and self._audit_waiting < self._audit_backlog:
            log.warning(
                "%d audit row(s) dropped while the database did not answer (%d since start)",
                self._audit_dropping,
                self.audit_dropped,
            )
            self._audit_dropping = 0

    def _ending(self, uniqueid: str, result: Result, cause: str) -> CallEvent:
        return CallEvent(uniqueid, CallState.ENDED, self._clock(), result, cause)

    def end(self, uniqueid: str, result: Result, cause: str) -> None:
        # Behind the call's earlier events, like any engine event.
        self.on_event(self._ending(uniqueid, result, cause))

    async def end_now(self, uniqueid: str, result: Result, cause: str) -> None:
        """End the call behind its earlier events, returning once that is stored: a reply
        that says the call failed finds it ended."""
        event = self._ending(uniqueid, result, cause)
        if self._writer.running:
            stored = self._writer.put(event, waited=True)
            self._released_when_settled(event, stored)
            # Through a database outage it stays queued; the reply need not wait for it.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._timeout):
                    await asyncio.shield(stored)
        else:
            self.record(event)
            self._limits.release(uniqueid)

    def start(self) -> None:
        """Store engine events off the event loop from now on."""
        self._writer.start()

    async def close(self) -> bool:
        """Store the events still waiting (a few seconds at most), then stop. Whether all
        of them were stored."""
        return await self._writer.close()

    def _write(self, write: Write) -> None:
        """Queue `write` for the writer once started; before, store it now."""
        if self._writer.running:
            self._released_when_settled(write, self._writer.put(write))
        else:
            try:
                self._store_now(write)
            finally:
                self._released_when_settled(write, None)

    def _released_when_settled(self, write: Write, done: asyncio.Future[Any] | None) -> None:
        """An ending frees the call's slot in this process's limits once written, stored or
        refused (Limits.release)."""
        if not isinstance(write, CallEvent) or write.state is not CallState.ENDED:
            return
        if done is None:
            self._limits.release(write.uniqueid)
        else:
            done.add_done_callback(lambda _done: self._limits.release(write.uniqueid))

    def _store_now(self, write: Write) -> Change | None:
        [result] = self._store_batch([write])
        if isinstance(result, Exception):
            raise result
        self._stored(result)
        return result

    def _store_batch(self, batch: list[Write]) -> list[Change | Exception | None]:
        """Store the batch in one transaction, in order: each write's change; None when it
        changed nothing or was refused; the RateLimited that refused a new call. New calls
        first, by tenant, so two nodes' batches take the tenants' locks in one order. A SIP
        state that a later one of its call replaces is skipped: each is the whole state."""
        last_state = {w.uniqueid: i for i, w in enumerate(batch) if isinstance(w, SipState)}
        new_calls = sorted(
            ((i, w) for i, w in enumerate(batch) if isinstance(w, NewCallWrite)),
            key=lambda new: new[1].record.tenant,
        )
        results: list[Change | Exception | None] = [None] * len(batch)
        now = self._clock()
        with self._store.writing() as writes:
            for i, new in new_calls:
                try:
                    results[i] = writes.create_call(new.record, new.at, new.callback, new.limits)
                except RateLimited as exc:
                    results[i] = exc
            for i, write in enumerate(batch):
                if isinstance(write, CallEvent):
                    results[i] = self._record(writes, write)
                elif isinstance(write, SipState) and last_state[write.uniqueid] == i:
                    writes.save_sip_state(write.uniqueid, write.state, now)
                elif isinstance(write, AuditWrite):
                    writes.audit(write.entry)
                elif isinstance(write, InDoubtCall):
                    results[i] = self._end_in_doubt(writes, write, now)
        for i, _ in new_calls:  # refused as the transaction ended (PostgreSQL)
            if isinstance(stored := results[i], Change) and stored.call.id in writes.refused:
                results[i] = writes.refused[stored.call.id]
        return results

    @staticmethod
    def _record(writes: Writes, event: CallEvent) -> Change | None:
        with logs.about_call(None, event.uniqueid):
            try:
                return writes.record(event)
            except (IllegalTransition, UnknownCall) as exc:  # both before any write
                log.error(
                    "engine event %s for call %s refused: %s", event.state, event.uniqueid, exc
                )
                return None

    @classmethod
    def _end_in_doubt(cls, writes: Writes, write: InDoubtCall, now: datetime) -> Change | None:
        ended = None
        for uniqueid in writes.queued_as_placed(write.record, write.at):
            cause = "stored as the database connection broke; its request got 503, never dialled"
            ended = cls._record(
                writes, CallEvent(uniqueid, CallState.ENDED, now, Result.ERROR, cause)
            )
        return ended

    def _stored(self, change: Change | None) -> None:
        if change is None:
            return
        call = change.call
        with logs.about_call(call.id, call.uniqueid):
            if call.state is CallState.ENDED:
                self._limits.ended(call.tenant, call.agent_number, call.uniqueid)
            self._announce(change)

    def recover(self, resumed: Collection[str] = ()) -> int:
        """End calls a previous run left in flight, but those in `resumed` (an engine goes on
        with them): without a stored SIP state, their dialogs died with that process."""
        stale = [u for u in self._store.active_uniqueids() if u not in resumed]
        for uniqueid in stale:
            self.end(uniqueid, Result.ERROR, "server stopped while the call was in progress")
        return len(stale)

    def _announce(self, change: Change) -> None:
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception:
                # A listener's bug must not undo or block the stored change.
                log.exception("listener of call %s failed", change.call.uniqueid)

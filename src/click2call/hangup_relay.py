"""Hang-ups between nodes: forwarded when another node owns the call, carried out when
asked of this one (store/hangup_requests.py is the channel)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

from click2call.engines.base import Clock, Engine
from click2call.errors import DatabaseUnavailable
from click2call.store import StoredCall
from click2call.store.hangup_requests import HangupRequests
from click2call.store_threads import StoreThreads

log = logging.getLogger("click2call.nodes")


class HangupRelay:
    def __init__(
        self,
        requests: HangupRequests,
        node: str,
        engines: Mapping[str, Engine],
        clock: Clock,
        threads: StoreThreads,
        poll_interval: float = 0.2,
    ) -> None:
        self._requests = requests
        self._node = node
        self._engines = engines
        self._clock = clock
        self._threads = threads
        self._poll_interval = poll_interval
        self._runner: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def owned_elsewhere(self, call: StoredCall) -> bool:
        """The call's dialogs live in another node (None: stored before nodes had names)."""
        return call.node is not None and call.node != self._node

    def forward(self, call: StoredCall) -> None:
        assert call.node is not None
        self._requests.ask(call.id, call.node, self._clock())

    def start(self) -> None:
        self._runner = asyncio.create_task(self._run())

    async def close(self) -> None:
        """Stop between rounds: requests a round has taken are carried out, not dropped
        (a database that hangs past its timeout twice gets the round cancelled)."""
        if self._runner is None:
            return
        self._stopping.set()
        try:
            async with asyncio.timeout(2 * self._threads.timeout + 1):
                await self._runner
        except TimeoutError:
            log.error("hang-up relay stopped in the middle of a round: the database hangs")

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                asked = await self._threads.finish(self._requests.take, self._clock())
            except DatabaseUnavailable as exc:
                log.warning("hang-up requests unreadable, database unavailable: %s", exc.reason)
                asked = []
            except Exception:
                log.exception("hang-up requests could not be read; trying again")
                asked = []
            for request in asked:
                log.info("hanging up call %s, asked by node %s", request.uniqueid, request.asked_by)
                try:
                    await self._engines[request.tenant].hangup(request.uniqueid)
                except Exception:
                    log.exception("hang-up of call %s failed", request.uniqueid)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_interval):
                    await self._stopping.wait()

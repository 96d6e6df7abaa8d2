"""The composition root: builds the store, the engines and the service from the settings."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from click2call.engines.asterisk.engine import AsteriskEngine
from click2call.engines.base import Engine
from click2call.engines.sip import SipEngine, SippyStack
from click2call.service import CallService
from click2call.settings import Settings
from click2call.store import Store, open_database

log = logging.getLogger("click2call")


def utc_now() -> datetime:
    return datetime.now(UTC)


class Runtime:
    def __init__(self, settings: Settings, clock: Callable[[], datetime] = utc_now) -> None:
        self.settings = settings
        self.store = Store(open_database(settings.server.database))
        self.sip_stack = SippyStack(settings.sip)
        self.engines: dict[str, Engine] = {
            tenant.name: AsteriskEngine(tenant, clock)
            if tenant.engine == "asterisk"
            else SipEngine(tenant, self.sip_stack, clock)
            for tenant in settings.tenants
        }
        self.service = CallService(settings, self.store, self.engines, clock)

    async def start(self) -> None:
        recovered = self.service.recover()
        if recovered:
            log.warning("marked %d call(s) left in flight by the previous run as ended", recovered)
        for engine in self.engines.values():
            await engine.start()

    async def close(self) -> None:
        for engine in self.engines.values():
            await engine.close()
        self.sip_stack.stop()
        self.store.close()

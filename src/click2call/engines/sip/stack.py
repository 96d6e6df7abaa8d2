"""The sippy thread: sippy's event loop runs here, everything else talks to it by message.

sippy's dispatcher (`ED2`) is a process-wide singleton bound to the thread that first
imports it, so sippy is imported only inside `_run`, on the thread this class starts.
Work goes in with `call()` (sippy's `callFromThread`); results leave through callbacks
that the caller makes thread-safe (the engine uses `loop.call_soon_threadsafe`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from click2call.errors import EngineUnavailable
from click2call.settings import SipStackSettings

log = logging.getLogger("click2call.sip")
_START_TIMEOUT = 10.0


class SipMessageLog:
    """Stands in for sippy's SipLogger, which writes every message to stderr."""

    def __init__(self, enabled: bool) -> None:
        self._enabled = enabled

    def write(self, *args: Any, **_kwargs: Any) -> None:
        if self._enabled:
            log.debug("%s", "".join(str(a) for a in args))


class SippyStack:
    def __init__(self, settings: SipStackSettings) -> None:
        self.settings = settings
        self.global_config: dict[str, Any] = {}
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._dispatcher: Any = None
        self._stopped = False

    @property
    def running(self) -> bool:
        return self._ready.is_set() and self._error is None and not self._stopped

    @property
    def error(self) -> str | None:
        return None if self._error is None else str(self._error)

    def start(self) -> None:
        """Start the thread and bind the SIP socket; idempotent. Blocks until bound."""
        if self._thread is not None:
            if not self._ready.wait(_START_TIMEOUT) or self._error is not None:
                raise EngineUnavailable(f"SIP stack did not start: {self._error}")
            return
        self._thread = threading.Thread(target=self._run, name="sippy", daemon=True)
        self._thread.start()
        if not self._ready.wait(_START_TIMEOUT):
            raise EngineUnavailable("SIP stack did not start in time")
        if self._error is not None:
            raise EngineUnavailable(
                f"SIP stack could not listen on {self.settings.host}:{self.settings.port}: "
                f"{self._error}"
            )

    def call(self, func: Callable[..., object], *args: object) -> None:
        """Run `func(*args)` on the sippy thread."""
        if not self.running:
            raise EngineUnavailable("SIP stack is not running")
        self._dispatcher.callFromThread(func, *args)

    def stop(self) -> None:
        if self._thread is None or self._stopped:
            return
        self._stopped = True
        if self._dispatcher is not None:
            self._dispatcher.callFromThread(self._dispatcher.breakLoop)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        try:
            from sippy.Core.EventDispatcher import ED2
            from sippy.SipConf import SipConf

            from click2call.engines.sip.sippy_fixes import apply_fixes, ordered_transaction_manager

            apply_fixes()
            SipConf.my_address = self.settings.host
            SipConf.my_port = self.settings.port
            SipConf.my_uaname = self.settings.user_agent
            self.global_config.update(
                _sip_address=self.settings.host,
                _sip_port=self.settings.port,
                _sip_logger=SipMessageLog(self.settings.log_messages),
            )
            self.global_config["_sip_tm"] = ordered_transaction_manager(
                self.global_config, self._unexpected_request
            )
            self._dispatcher = ED2
        except BaseException as exc:  # reported to start(), which raises it as EngineUnavailable
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        ED2.loop()

    def _unexpected_request(self, request: Any, _transaction: Any) -> tuple[Any, None, None]:
        # We only place calls: out-of-dialog requests (INVITE, OPTIONS, ...) are not for us.
        if request.getMethod() == "OPTIONS":
            return request.genResponse(200, "OK"), None, None
        if request.getHFBody("to").getTag() is not None:
            return request.genResponse(481, "Call Leg/Transaction Does Not Exist"), None, None
        return request.genResponse(405, "Method Not Allowed"), None, None

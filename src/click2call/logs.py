"""Logging set-up: plain text or one JSON object a line, and the call each line is about.

The call a piece of work is about lives in a context variable (`about_call`): set when a
call is placed and while an engine event is recorded, inherited by the tasks started
meanwhile, and copied onto every log record by `CallContext`. A record may also name
its call itself (`extra={"call_id": …, "uniqueid": …}`).
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Literal

from click2call.calls import CallState
from click2call.store import Change

_CALL: ContextVar[tuple[int | None, str] | None] = ContextVar("click2call_call", default=None)
log = logging.getLogger("click2call.calls")


class about_call:  # noqa: N801 (used as a function: `with about_call(...)`)
    """Lines logged inside (and by tasks started inside) are about this call."""

    # A class, not a @contextmanager generator: entered for every stored change of every
    # call, on the event loop and in the writer (~0.3 µs, the generator's ~0.8).
    __slots__ = ("_call", "_token")
    _token: Token[tuple[int | None, str] | None]

    def __init__(self, call_id: int | None, uniqueid: str) -> None:
        self._call = (call_id, uniqueid)

    def __enter__(self) -> None:
        self._token = _CALL.set(self._call)

    def __exit__(self, *_exc: object) -> None:
        _CALL.reset(self._token)


def set_call(call_id: int, uniqueid: str) -> None:
    """The rest of this task (an HTTP request that placed the call) is about the call."""
    _CALL.set((call_id, uniqueid))


class CallContext(logging.Filter):
    """Puts `call_id` and `uniqueid` on each record (None when it is about no call)."""

    def filter(self, record: logging.LogRecord) -> bool:
        current = _CALL.get()
        if not hasattr(record, "uniqueid"):
            record.call_id, record.uniqueid = current if current else (None, None)
        elif not hasattr(record, "call_id"):
            record.call_id = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC), level, logger, message, call ids, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in ("call_id", "uniqueid"):
            if getattr(record, name, None) is not None:
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(level: str, log_format: Literal["text", "json"]) -> None:
    """The root logger's one handler (stderr), replacing any set before."""
    handler = logging.StreamHandler()
    handler.addFilter(CallContext())
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    # Neither format reads a record's process, thread or source line: not gathering them
    # spares each line a getpid() system call, two lookups and a walk up the stack (the
    # logging HOWTO's "Optimization"; ~1.5 µs of the ~7 of a line, three lines a call).
    logging.logProcesses = logging.logThreads = logging.logMultiprocessing = False
    logging._srcfile = None
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


def log_change(change: Change) -> None:
    """A tracking listener: a line per stored state change of a call. A call's placing
    and its end (with its result) are INFO; the steps between are DEBUG: they are in the
    call's history (GET /api/v1/calls/{id}/events), and a line costs ~30 µs of the
    server's CPU, a tenth of an Asterisk call's whole handling."""
    call, event = change.call, change.event
    extra = {"call_id": call.id, "uniqueid": call.uniqueid}
    if event.result is not None:
        log.info("call %s: %s (%s)", call.uniqueid, event.type, event.result.value, extra=extra)
    elif event.state is CallState.QUEUED:
        log.info("call %s: %s", call.uniqueid, event.type, extra=extra)
    elif log.isEnabledFor(logging.DEBUG):
        log.debug("call %s: %s", call.uniqueid, event.type, extra=extra)

"""logs.py: JSON lines, and the call each line is about."""

from __future__ import annotations

import asyncio
import json
import logging
from types import SimpleNamespace
from typing import Literal, cast

import pytest

from click2call.calls import CallState, Result, event_type
from click2call.logs import (
    CallContext,
    JsonFormatter,
    about_call,
    configure,
    log_change,
    set_call,
)
from click2call.store import Change


@pytest.fixture
def lines() -> list[str]:
    return []


@pytest.fixture
def logger(lines: list[str]) -> logging.Logger:
    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Keep()
    handler.addFilter(CallContext())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("test.logs")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def test_a_line_is_one_json_object_with_control_characters_escaped(
    logger: logging.Logger, lines: list[str]
) -> None:
    logger.info('evil "%s"', "a\r\nFAKE line")
    entry = json.loads(lines[0])
    assert entry["message"] == 'evil "a\r\nFAKE line"'
    assert (entry["level"], entry["logger"]) == ("info", "test.logs")
    assert "\n" not in lines[0]
    assert "call_id" not in entry


def test_lines_inside_about_call_and_its_tasks_name_the_call(
    logger: logging.Logger, lines: list[str]
) -> None:
    async def engine_work() -> None:
        await asyncio.sleep(0)
        logger.info("agent answered")

    async def place() -> None:
        set_call(12, "1764050462.12")
        task = asyncio.create_task(engine_work())  # started while placing: inherits the call
        await task

    asyncio.run(place())
    with about_call(None, "1764050462.13"):
        logger.warning("refused")
    logger.info("about nothing")
    logger.info("named", extra={"call_id": 14, "uniqueid": "1.14"})
    entries = [json.loads(line) for line in lines]
    assert (entries[0]["call_id"], entries[0]["uniqueid"]) == (12, "1764050462.12")
    assert entries[1]["uniqueid"] == "1764050462.13" and "call_id" not in entries[1]
    assert "uniqueid" not in entries[2]
    assert (entries[3]["call_id"], entries[3]["uniqueid"]) == (14, "1.14")


def test_an_exception_is_kept_in_the_line(logger: logging.Logger, lines: list[str]) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    assert "ValueError: boom" in json.loads(lines[0])["exception"]


@pytest.mark.parametrize(
    ("state", "result", "level"),
    [
        (CallState.QUEUED, None, logging.INFO),
        (CallState.AGENT_RINGING, None, logging.DEBUG),
        (CallState.CONNECTED, None, logging.DEBUG),
        (CallState.ENDED, Result.COMPLETED, logging.INFO),
    ],
)
def test_a_calls_placing_and_end_are_info_the_steps_between_debug(
    caplog: pytest.LogCaptureFixture, state: CallState, result: Result | None, level: int
) -> None:
    call = SimpleNamespace(id=12, uniqueid="1764050462.12")
    event = SimpleNamespace(type=event_type(state, result), state=state, result=result)
    with caplog.at_level(logging.DEBUG, logger="click2call.calls"):
        log_change(cast(Change, SimpleNamespace(call=call, event=event)))
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (level, f"call 1764050462.12: {event.type}" + (f" ({result.value})" if result else ""))
    ]


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_configured_lines_gather_nothing_their_format_does_not_print(
    log_format: Literal["text", "json"], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = logging.getLogger()
    for name in ("logProcesses", "logThreads", "logMultiprocessing", "_srcfile"):
        monkeypatch.setattr(logging, name, getattr(logging, name))  # restored afterwards
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", root.level)
    configure("info", log_format)
    handler = root.handlers[0]
    records: list[logging.LogRecord] = []
    monkeypatch.setattr(handler, "emit", records.append)
    logging.getLogger("click2call.calls").info("call %s: %s", "1.2", "call.queued")
    [record] = records
    assert (record.process, record.thread, record.processName) == (None, None, None)
    assert (record.funcName, record.lineno) == ("(unknown function)", 0)  # no stack walk
    assert handler.format(record).endswith("call 1.2: call.queued" + '"}' * (log_format == "json"))

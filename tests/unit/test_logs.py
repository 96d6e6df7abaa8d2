"""logs.py: JSON lines, and the call each line is about."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from click2call.logs import CallContext, JsonFormatter, about_call, set_call


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

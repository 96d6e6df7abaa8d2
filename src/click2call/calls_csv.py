"""Calls as CSV: one row per call with its durations, cells safe to open in a spreadsheet.

A cell that starts with = + - @ (or a tab or carriage return) is a formula to Excel,
LibreOffice and Google Sheets; such cells get a leading apostrophe (OWASP, "CSV
Injection"), so a foreignid like `=HYPERLINK(…)` stays text.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import datetime

from click2call.store import StoredCall
from click2call.store.event_body import call_body

COLUMNS = (
    "id",
    "uniqueid",
    "tenant",
    "foreignid",
    "agent_kind",
    "agent_number",
    "destination",
    "destination_caller_id",
    "agent_caller_id",
    "state",
    "result",
    "cause",
    "created_at",
    "agent_answered_at",
    "connected_at",
    "ended_at",
    "ring_seconds",
    "talk_seconds",
    "total_seconds",
)
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> str:
    if value is None:
        return ""
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    return f"'{text}" if text.startswith(_FORMULA_STARTS) else text


def _row(call: StoredCall) -> list[str]:
    values = call_body(call)  # the webhook body's fields, so both describe a call alike
    agent = values.pop("agent")
    values.update(agent_kind=agent["kind"], agent_number=agent["number"])
    return [safe_cell(values[column]) for column in COLUMNS]


def csv_lines(calls: Iterable[StoredCall]) -> Iterator[str]:
    """The header, then one CSV line per call, each produced as it is read."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    for call in calls:
        writer.writerow(_row(call))
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():  # no calls: the header alone
        yield buffer.getvalue()

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest

from click2call.calls import CallState, Result
from click2call.calls_csv import COLUMNS, csv_lines, safe_cell
from click2call.store import StoredCall

T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
CALL = StoredCall(
    id=7,
    uniqueid="1764000000.7",
    tenant="default",
    agent_kind="extension",
    agent_tech="sip",
    agent_number="200",
    destination="0502760206",
    destination_caller_id="036411111",
    agent_caller_id="0502760206",
    foreignid='=HYPERLINK("http://x")',
    state=CallState.ENDED,
    result=Result.COMPLETED,
    cause="destination hung up, twice\nreally",
    created_at=T0,
    agent_answered_at=T0 + timedelta(seconds=2),
    connected_at=T0 + timedelta(seconds=5),
    ended_at=T0 + timedelta(seconds=65),
)


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_cells_that_a_spreadsheet_would_run_are_kept_as_text(start: str) -> None:
    assert safe_cell(f"{start}1+1") == f"'{start}1+1"


def test_plain_cells_are_unchanged() -> None:
    assert safe_cell("0502760206") == "0502760206"
    assert safe_cell(None) == ""
    assert safe_cell(T0) == "2026-11-24T08:00:00+00:00"


def test_one_row_per_call_with_durations() -> None:
    text = "".join(csv_lines([CALL, CALL]))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == list(COLUMNS)
    assert len(rows) == 2
    row = rows[0]
    assert row["foreignid"] == '\'=HYPERLINK("http://x")'
    assert row["cause"] == "destination hung up, twice\nreally"  # quoted, not split
    durations = (row["ring_seconds"], row["talk_seconds"], row["total_seconds"])
    assert durations == ("5.0", "60.0", "65.0")
    assert row["result"] == "completed"


def test_no_calls_is_the_header_alone() -> None:
    assert "".join(csv_lines([])) == ",".join(COLUMNS) + "\r\n"

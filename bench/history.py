"""`make bench`: call history reads on a large SQLite store, each filter beside the
unfiltered page of the same run (the baseline), and the whole export.

    python -m bench.history [--calls 200000] [--pages 50]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

from click2call.calls import Result
from click2call.calls_csv import csv_lines
from click2call.store import open_database
from click2call.store.history import CallFilter, History
from click2call.store.schema import calls

T0 = datetime(2026, 11, 1, tzinfo=UTC)
RESULTS = ("completed", "agent_busy", "agent_no_answer")


def fill(history_db: Path, count: int) -> History:
    engine = open_database(f"sqlite:///{history_db}")
    rows = [
        {
            "uniqueid": f"{1_700_000_000 + i}.{i + 1}",
            "tenant": "default" if i % 4 else "other",
            "agent_kind": "extension",
            "agent_tech": "sip",
            "agent_number": str(200 + i % 50),
            "destination": f"05{i % 100_000:08d}",
            "destination_caller_id": "036411111",
            "agent_caller_id": "0502760206",
            "foreignid": f"crm-{i}",
            "state": "ended",
            "result": RESULTS[i % 3],
            "created_at": T0 + timedelta(seconds=10 * i),
            "connected_at": T0 + timedelta(seconds=10 * i + 5),
            "ended_at": T0 + timedelta(seconds=10 * i + 65),
            "last_sequence": 8,
        }
        for i in range(count)
    ]
    with engine.begin() as conn:
        conn.execute(insert(calls), rows)
    return History(engine)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--pages", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        history = fill(Path(folder) / "history.db", args.calls)
        tenant = CallFilter(tenant="default")
        day = (T0 + timedelta(days=5), T0 + timedelta(days=6))
        cases = {
            "tenant, newest first (baseline)": tenant,
            "since/until: one day": CallFilter(tenant="default", since=day[0], until=day[1]),
            "extension": CallFilter(tenant="default", agent_number="207"),
            "result": CallFilter(tenant="default", result=Result.AGENT_BUSY),
            "destination (one call)": CallFilter(tenant="default", destination="0500012345"),
            "foreignid (one call)": CallFilter(tenant="default", foreignid="crm-123457"),
        }
        print(f"history of {args.calls:,} calls (SQLite), pages of 100, {args.pages} pages each")
        print(f"{'filter':<34} {'ms/page':>8} {'x baseline':>11}")
        baseline = 0.0
        for name, where in cases.items():
            started = time.perf_counter()
            for _ in range(args.pages):
                history.page(where, 100)
            per_page = (time.perf_counter() - started) / args.pages * 1000
            baseline = baseline or per_page
            print(f"{name:<34} {per_page:8.2f} {per_page / baseline:10.2f}x")
        started = time.perf_counter()
        size = sum(len(line) for line in csv_lines(history.all(tenant)))
        seconds = time.perf_counter() - started
        print(f"CSV export of the tenant's calls: {size / 1e6:.1f} MB in {seconds:.2f} s")


if __name__ == "__main__":
    main()

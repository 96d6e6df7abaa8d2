"""`make bench`: placement rate on PostgreSQL beside SQLite, and with two workers beside one,
all measured in the same run.

Each rig is the server as child process(es) on loopback with wrk as the CRM sending
dial.php; the agent's PBX port has no SIPp behind it, so each placed call ends at once and
the numbers are the request path's own: authentication, limits counted in the database, the
call row with its first event, the engine's first INVITE. PostgreSQL is a throwaway cluster
(tests/postgres_cluster.py) on the same two cores.

    python -m bench.scale [--seconds 5]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.postgres_cluster import PostgresCluster

from bench.spine import DIAL, UNLIMITED, wrk
from click2call.demo.server import ServerProcess
from click2call.demo.sipp import free_port, free_ports_in_a_row

CONFIG = (
    """
[server]
port = {http}
database = "{database}"
log_level = "warning"
[sip]
port = {sip}
options_interval = 0
[[tenants]]
name = "default"
default_outbound_cid = "036411111"
[tenants.sip]
pbx = "127.0.0.1:{pbx}"
[tenants.auth]
allow_unauthenticated = true
"""
    + UNLIMITED
)


def measure(folder: Path, database: str, workers: int, seconds: int) -> tuple[float, int, int]:
    """dial.php accepted/s with `workers` processes: (rate, requests, refused)."""
    folder.mkdir()
    http = free_port(socket.SOCK_STREAM)
    config = folder / "click2call.toml"
    text = CONFIG.format(http=http, database=database, sip=free_ports_in_a_row(2), pbx=free_port())
    config.write_text(text)
    if database.startswith("postgresql"):
        upgrade = [sys.executable, "-m", "click2call", "db", "upgrade", "--config", str(config)]
        subprocess.run(upgrade, check=True, capture_output=True)
    args = ("--workers", str(workers)) if workers > 1 else ()
    base = f"http://127.0.0.1:{http}"
    server = ServerProcess(config, base, folder / "server.log", serve_args=args).start()
    try:
        wrk(base + DIAL, 1, 8)  # warm-up
        rate, _p50, _p99, total, refused = wrk(base + DIAL, seconds, 32)
    finally:
        server.stop()
    return rate, total, refused


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5, help="per wrk run")
    args = parser.parse_args()
    cluster = PostgresCluster().start()
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="click2call-bench-scale-") as tmp:
            folder = Path(tmp)
            sqlite = f"sqlite:///{folder / 'calls.db'}"
            for name, database, workers in (
                ("SQLite, 1 worker", sqlite, 1),
                ("PostgreSQL, 1 worker", cluster.new_database(), 1),
                ("PostgreSQL, 2 workers", cluster.new_database(), 2),
            ):
                rate, total, refused = measure(
                    folder / name.replace(" ", "_"), database, workers, args.seconds
                )
                rows.append((name, rate, total, refused))
    finally:
        cluster.stop()
    base_sqlite, base_pg = rows[0][1], rows[1][1]
    print(f"{'dial.php accepted requests/s (wrk, 32 conns)':<48}{'req/s':>9}{'refused':>9}  vs")
    for (name, rate, total, refused), baseline in zip(
        rows, (base_sqlite, base_sqlite, base_pg), strict=True
    ):
        print(f"  {name:<46}{rate:>9.0f}{refused:>5}/{total:<5} {rate / baseline:.2f}x")
    print(f"\n{os.cpu_count()} CPUs; wrk and PostgreSQL share them with the server.")
    print("target: 2 workers >= 1.7x one worker")


if __name__ == "__main__":
    main()

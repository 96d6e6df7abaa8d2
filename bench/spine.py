"""`make bench`: the spine's numbers, each beside a baseline measured in the same run.

Real peers on loopback: the server as a child process (SQLite, built-in SIP engine),
SIPp playing the agent's PBX and the trunk, httpx as the CRM. The load generator and
SIPp share the machine's cores with the server, as they would on a small box.

    python -m bench.spine [--seconds 5] [--calls 500] [--concurrent 10000]
                          [--only requests|setups|memory]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx

from click2call.demo.server import ServerProcess
from click2call.demo.sipp import SCENARIOS, SippPeer, free_port

TESTS = Path(__file__).parents[1] / "tests" / "sipp"
CONFIG = """
[server]
port = {http}
database = "sqlite:///{db}"
log_level = "warning"
max_connections_per_address = 100000
[sip]
port = {sip}
options_interval = 0
[[tenants]]
name = "default"
default_outbound_cid = "036411111"
agent_ring_timeout = 30
destination_ring_timeout = 30
[tenants.sip]
pbx = "127.0.0.1:{pbx}"
trunk = "127.0.0.1:{trunk}"
[tenants.auth]
allow_unauthenticated = true
"""
# The benchmarks measure the server, not the limits; every rig's tenant ends with this.
UNLIMITED = """[tenants.limits]
calls_per_second = 1000000
burst = 1000000
max_concurrent_calls = 1000000
max_calls_per_agent = 1000000
"""
CONFIG += UNLIMITED
DIAL = "/web/dial.php?extension=200&destination=0502760206&tech=sip"


@dataclass
class Rig:
    server: ServerProcess
    agent_port: int
    trunk_port: int
    db: Path
    workdir: Path


@contextmanager
def rig(workdir: Path, name: str) -> Iterator[Rig]:
    folder = workdir / name
    folder.mkdir()
    http, sip, pbx, trunk = free_port(socket.SOCK_STREAM), free_port(), free_port(), free_port()
    config = folder / "click2call.toml"
    db = folder / "calls.db"
    config.write_text(CONFIG.format(http=http, sip=sip, db=db, pbx=pbx, trunk=trunk))
    server = ServerProcess(config, f"http://127.0.0.1:{http}", folder / "server.log").start()
    try:
        yield Rig(server, pbx, trunk, db, folder)
    finally:
        server.stop()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """CPU seconds of process `pid`, or of its `thread` alone."""
    stat = Path(f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat")
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def hammer(
    base_url: str, path: str, count: int, concurrency: int
) -> tuple[float, list[float], int]:
    """`count` GETs with `concurrency` in flight: (requests/s, latencies in ms, accepted)."""
    latencies: list[float] = []
    accepted = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal accepted
        while not queue.empty():
            queue.get_nowait()
            started = time.perf_counter()
            reply = await client.get(path)
            latencies.append((time.perf_counter() - started) * 1000)
            accepted += reply.status_code == 200 and not reply.text.startswith("response: false")

    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return count / elapsed, latencies, accepted


def wait_rows(db: Path, query: str, expected: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    found = 0
    while time.monotonic() < deadline:
        with sqlite3.connect(db) as conn:
            found = conn.execute(query).fetchone()[0]
        if found >= expected:
            break
        time.sleep(0.2)
    return found


def stamps(db: Path, column: str) -> list[datetime]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(f"SELECT {column} FROM calls WHERE {column} IS NOT NULL").fetchall()
    return [datetime.fromisoformat(r[0]) for r in rows]


def wrk(url: str, seconds: int, connections: int) -> tuple[float, float, float, int, int]:
    """wrk against `url`: (requests/s, p50 ms, p99 ms, requests, non-2xx replies)."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def ms(label: str) -> float:
        value, unit = re.search(
            rf"^\s*{label}%\s+([0-9.]+)(us|ms|s)\s*$", out, re.MULTILINE
        ).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    rate = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"([0-9]+) requests in", out).group(1))  # type: ignore[union-attr]
    failed = re.search(r"Non-2xx or 3xx responses: ([0-9]+)", out)
    return rate, ms("50"), ms("99"), total, int(failed.group(1)) if failed else 0


def requests_phase(workdir: Path, seconds: int) -> list[tuple[str, str, str, str]]:
    with rig(workdir, "requests") as r:
        agent = SippPeer(TESTS / "agent_busy.xml", r.agent_port, r.workdir, calls=1_000_000)
        agent.extra_args = ("-nd",)
        agent.start()
        base = r.server.base_url
        wrk(base + DIAL, 1, 8)  # warm-up
        health, health_cpu = _wrk_cpu(r.server.pid, base + "/api/v1/health", seconds)
        dial, dial_cpu = _wrk_cpu(r.server.pid, base + DIAL, seconds)
        agent.stop()
    return [
        (
            "dial.php accepted requests/s (wrk, 32 conns)",
            f"{dial[0]:,.0f}",
            f"{health[0]:,.0f} (GET /api/v1/health)",
            "≥ 2,000",
        ),
        (
            "dial.php latency p50 / p99 (ms)",
            f"{dial[1]:.1f} / {dial[2]:.1f}",
            f"{health[1]:.1f} / {health[2]:.1f}",
            "",
        ),
        ("dial.php refused / sent", f"{dial[4]} / {dial[3]:,}", "", "0"),
        (
            "server CPU per request (ms; a dial.php call's first SIP leg included)",
            f"{dial_cpu:.2f}",
            f"{health_cpu:.2f}",
            "",
        ),
    ]


def _wrk_cpu(
    pid: int, url: str, seconds: int
) -> tuple[tuple[float, float, float, int, int], float]:
    """`wrk` with 32 connections, and the server's CPU milliseconds per request it served."""
    before = cpu_seconds(pid)
    result = wrk(url, seconds, 32)
    return result, (cpu_seconds(pid) - before) / max(result[3], 1) * 1000


def _peers(r: Rig, name: str, calls: int, destination: str) -> tuple[SippPeer, SippPeer]:
    folder = r.workdir / name
    folder.mkdir()
    agent = SippPeer(SCENARIOS / "agent_answer.xml", r.agent_port, folder, calls=calls)
    trunk = SippPeer(SCENARIOS / destination, r.trunk_port, folder, calls=calls)
    agent.extra_args = trunk.extra_args = ("-trace_msg",)
    return agent.start(), trunk.start()


def _ended(r: Rig, expected: int, timeout: float = 120) -> int:
    return wait_rows(r.db, "SELECT count(*) FROM calls WHERE state='ended'", expected, timeout)


def setups_phase(workdir: Path, calls: int) -> list[tuple[str, str, str, str]]:
    quiet_calls = 50
    with rig(workdir, "setups") as r:
        base = r.server.base_url
        # Baseline: one call at a time, so nothing queues in the server.
        agent, trunk = _peers(r, "quiet", quiet_calls, "destination_hangup.xml")
        asyncio.run(hammer(base, DIAL, quiet_calls, 1))
        _ended(r, quiet_calls)
        quiet = answer_to_invite(agent, trunk)
        agent.stop()
        trunk.stop()
        # Load: `calls` requests with 32 in flight; each call talks 1 s.
        agent, trunk = _peers(r, "load", calls, "destination_hangup.xml")
        cpu0, wall0 = cpu_seconds(r.server.pid), time.monotonic()
        asyncio.run(hammer(base, DIAL, calls, 32))
        ended = _ended(r, quiet_calls + calls) - quiet_calls
        cpu = cpu_seconds(r.server.pid) - cpu0
        wall = time.monotonic() - wall0
        loaded = answer_to_invite(agent, trunk)
        agent.stop()
        trunk.stop()
        with sqlite3.connect(r.db) as conn:
            completed = conn.execute(
                "SELECT count(*) FROM calls WHERE result='completed' AND id > ?", (quiet_calls,)
            ).fetchone()[0]
        connected = sorted(stamps(r.db, "connected_at"))[quiet_calls:]
        created = sorted(stamps(r.db, "created_at"))[quiet_calls:]
        span = (connected[-1] - created[0]).total_seconds() if connected else float("nan")
    return [
        (
            "two-leg setups/s (request → connected)",
            f"{len(connected) / span:,.0f}",
            "",
            "≥ 300 per core",
        ),
        (
            "server CPU per call, whole call (ms)",
            f"{cpu / calls * 1000:.2f}",
            "6.5 (Asterisk 20, DESIGN.md)",
            "≤ 3.3",
        ),
        ("server CPU use during the load (cores)", f"{cpu / wall:.2f}", "", ""),
        ("calls completed / ended / placed", f"{completed} / {ended} / {calls}", "", "all"),
        (
            "agent 200 OK → destination INVITE p50 / p99 (ms)",
            f"{percentile(loaded, 50):.2f} / {percentile(loaded, 99):.2f}",
            f"{percentile(quiet, 50):.2f} / {percentile(quiet, 99):.2f} (one call at a time)",
            "p99 < 2",
        ),
    ]


def _sipp_times(peer: SippPeer, direction: str, start: str) -> dict[str, tuple[float, str]]:
    """Call-ID → (time, message) of the first message sent/received starting with `start`."""
    out: dict[str, tuple[float, str]] = {}
    for entry in re.split(r"^-{20,} ", peer.messages(), flags=re.MULTILINE)[1:]:
        stamp, _, rest = entry.partition("\n")
        kind, _, message = rest.partition("\n\n")
        if direction not in kind or not message.startswith(start):
            continue
        call_id = re.search(r"^Call-ID:\s*(\S+)", message, re.MULTILINE | re.IGNORECASE)
        if call_id and call_id.group(1) not in out:
            moment = datetime.strptime(stamp.strip()[:26], "%Y-%m-%d %H:%M:%S.%f").timestamp()
            out[call_id.group(1)] = (moment, message)
    return out


def answer_to_invite(agent: SippPeer, trunk: SippPeer) -> list[float]:
    """From the agent's 200 OK leaving SIPp to the destination's INVITE reaching SIPp, per call."""
    invites = _sipp_times(agent, "received", "INVITE ")
    answers = _sipp_times(agent, "sent", "SIP/2.0 200")
    dest = {}
    for moment, message in _sipp_times(trunk, "received", "INVITE ").values():
        tag = re.search(r"^X-click2call-id:\s*(\S+)", message, re.MULTILINE | re.IGNORECASE)
        if tag:
            dest[tag.group(1)] = moment
    delays = []
    for call_id, (_, message) in invites.items():
        tag = re.search(r"^X-click2call-id:\s*(\S+)", message, re.MULTILINE | re.IGNORECASE)
        if tag and tag.group(1) in dest and call_id in answers:
            delays.append((dest[tag.group(1)] - answers[call_id][0]) * 1000)
    return delays or [float("nan")]


_BATCH = 100  # calls placed at once by memory_phase
_SETTING_UP = 300  # calls placed but not yet connected, at most, before placing more


def memory_phase(workdir: Path, concurrent: int) -> list[tuple[str, str, str, str]]:
    """RSS growth of the server per connected call, with `concurrent` calls up at once.

    SIPp answers both legs and holds them (agent_answer / destination_answer wait for a
    BYE that only comes when SIPp stops). Over UDP each SIPp uses one socket and the
    server none per connected call (the ringback socket closes at the answer), so
    10,000 calls fit the default limits (open files, SIPp's -max_socket); placing them
    takes about two minutes on two cores.

    Calls are placed as fast as the server connects them, with at most `_SETTING_UP`
    placed and not yet connected: the figure is what a connected call holds, not the
    peak of a backlog (placed in one burst, the store's writer falls half a minute
    behind, and the events and SIP states queued for it add about 7 KiB a call to the
    high-water mark). It is taken as the last call connects, so the set-up
    transactions of the last half minute's calls (their 32 s timers) are counted too.
    """
    extra = 20  # warm-up calls: placed first, up during the measurement too
    with rig(workdir, "memory") as r:
        agent = SippPeer(
            SCENARIOS / "agent_answer.xml", r.agent_port, r.workdir, calls=concurrent + extra
        )
        trunk = SippPeer(
            TESTS / "destination_answer.xml", r.trunk_port, r.workdir, calls=concurrent + extra
        )
        agent.start()
        trunk.start()
        base = r.server.base_url
        connected = "SELECT count(*) FROM calls WHERE state='connected'"
        asyncio.run(hammer(base, DIAL, extra, 4))
        wait_rows(r.db, connected, extra, 30)
        rss0 = rss_kib(r.server.pid)
        started = time.monotonic()
        deadline = started + 60 + concurrent * 0.03  # calls that never connect end it
        placed = 0
        while placed < concurrent and time.monotonic() < deadline:
            if placed + extra - wait_rows(r.db, connected, 0, 1) > _SETTING_UP:  # one look
                time.sleep(0.05)
                continue
            batch = min(_BATCH, concurrent - placed)
            asyncio.run(hammer(base, DIAL, batch, 32))
            placed += batch
        up = wait_rows(r.db, connected, concurrent + extra, max(1, deadline - time.monotonic()))
        placing = time.monotonic() - started
        rss1 = rss_kib(r.server.pid)
        agent.stop()
        trunk.stop()
    per_call = (rss1 - rss0) / max(1, up - extra)
    return [
        (
            f"memory per connected call at {concurrent:,} up (KiB)",
            f"{per_call:.1f}",
            f"{rss0 / 1024:.0f} MiB RSS with {extra} up",
            "≤ 10",
        ),
        (
            "calls connected at once",
            f"{up - extra:,} (in {placing:.0f} s, ≤ {_SETTING_UP} setting up)",
            "",
            f"{concurrent:,}",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5, help="per wrk run")
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--concurrent", type=int, default=10_000)
    parser.add_argument("--only", choices=("requests", "setups", "memory"), help="one phase")
    args = parser.parse_args()
    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="click2call-bench-") as tmp:
        workdir = Path(tmp)
        if args.only in (None, "requests"):
            rows += requests_phase(workdir, args.seconds)
        if args.only in (None, "setups"):
            rows += setups_phase(workdir, args.calls)
        if args.only in (None, "memory"):
            rows += memory_phase(workdir, args.concurrent)
    header = ("metric", "click2call", "baseline (same run)", "target")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    print(f"\n{os.cpu_count()} CPUs; wrk, httpx and SIPp share them with the server.")


if __name__ == "__main__":
    main()

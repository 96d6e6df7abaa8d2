"""`make bench`, the SIP rows: our SIP core beside Kamailio relaying the same legs.

    python -m bench.sip [--rate 100] [--seconds 5] [--profile profile.txt]

- paced load: dial.php at `rate` calls/s, SIPp answering both legs (the destination
  hangs up after 1 s): server CPU per complete two-leg call, and the time from the
  agent's 200 OK reaching the loopback to the destination's INVITE leaving on it, as
  the kernel timed both (bench/sip_capture.py; run as root. Otherwise, from SIPp's
  message logs, which carry SIPp's own delays: the row says which);
- the idle server's own CPU per second (OPTIONS probes are off in the rig; the hang-up
  relay's and the webhook deliverer's polls, the node heartbeat and the loop's timers
  remain), measured before the load, on its own row.

The CPU per call is the server's whole CPU from the first request until every call has
ended (the calls' life: the paced requests, then the last calls' remaining second), so
it also carries what the server burns idle during that window, about 6 s: at 100
calls/s, ~9 ms/s idle adds ~0.1 ms to each call, a share printed beside it. At a paced
rate the store's writer gathers fewer writes to a transaction than under saturation
(`bench.spine`'s "whole call" row), which is the larger part of the difference between
the two figures: the writer prints nothing, the transactions per call are in py-spy's
profile (Tracking._store_batch) or in `python -m bench.store`.
- baseline: Kamailio (C) statefully relaying two SIPp dialogs per call at the same
  rate, record-routing like a proxy: its CPU per two dialogs, in the same run.

With --profile, py-spy samples the server during the paced load and the hottest
functions (own time) are printed. py-spy counts a thread that is runnable but waiting
for a CPU as busy: on two shared cores the loop's own time (Runner.run: uvloop, and the
wait after each wake-up) and Transports._send_datagram (the wait after sendto wakes a
SIPp) are mostly that. For CPU alone, `perf record -p PID` (cpu-clock) samples only a
thread on a CPU; at 100 calls/s it showed the interpreter 67%, the kernel 17%, SQLite
6% and uvloop under 2%.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench import sip_capture
from bench.spine import (
    DIAL,
    _ended,
    _peers,
    answer_to_invite,
    cpu_seconds,
    percentile,
    rig,
)
from click2call.demo.sipp import free_port, terminate

KAMAILIO_CFG = Path(__file__).parents[1] / "tests" / "peers" / "kamailio.cfg"


async def paced(base_url: str, path: str, rate: float, count: int) -> int:
    """`count` GETs started at `rate` per second whatever the replies take; accepted."""
    accepted = 0

    async def one(client: httpx.AsyncClient) -> None:
        nonlocal accepted
        reply = await client.get(path)
        accepted += reply.status_code == 200 and not reply.text.startswith("response: false")

    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as client:
        start = time.perf_counter()
        tasks = []
        for i in range(count):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(client)))
        await asyncio.gather(*tasks)
    return accepted


def ours(workdir: Path, rate: float, seconds: int, profile: Path | None) -> list[tuple[str, ...]]:
    calls = int(rate * seconds)
    with rig(workdir, "paced") as r:
        agent, trunk = _peers(r, "paced", calls, "destination_hangup.xml")
        idle = idle_cpu(r.server.pid, IDLE_SECONDS)
        spy = None
        beside = Path(sys.executable).parent / "py-spy"  # pip install py-spy into .venv
        spy_binary = shutil.which("py-spy") or (str(beside) if beside.exists() else None)
        if profile is not None and spy_binary:
            spy = subprocess.Popen(
                [
                    *(spy_binary, "record", "--pid", str(r.server.pid), "--format", "raw"),
                    *("--rate", "200", "--output", str(profile), "--nonblocking"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1)
        ports = (r.agent_port, r.trunk_port)
        with sip_capture.loopback(ports, r.workdir) as capture:
            cpu0 = cpu_seconds(r.server.pid)
            loop0 = cpu_seconds(r.server.pid, r.server.pid)  # the main thread runs the loop
            started = time.monotonic()
            asyncio.run(paced(r.server.base_url, DIAL, rate, calls))
            ended = _ended(r, calls)
            window = time.monotonic() - started
            cpu = cpu_seconds(r.server.pid) - cpu0
            loop_cpu = cpu_seconds(r.server.pid, r.server.pid) - loop0
        if spy is not None:
            spy.send_signal(2)  # SIGINT: py-spy writes its samples and exits
            spy.wait(30)
        logged = answer_to_invite(agent, trunk)  # SIPp's stamps: its own delays too
        if capture is not None:
            delays = sip_capture.answer_to_invite(capture.datagrams, *ports)
            timed_by = f"kernel-timed on lo, {len(delays)} calls, {capture.dropped} dropped"
        else:
            delays, timed_by = logged, "from SIPp's logs: no packet socket without root"
        agent.stop()
        trunk.stop()
    return [
        (
            f"server CPU per two-leg call at {rate:g} calls/s (ms)",
            f"{cpu / calls * 1000:.2f}",
            "",
            "≤ 3.3",
        ),
        (
            "  of which the event loop's thread / the other threads (store writers…)",
            f"{loop_cpu / calls * 1000:.2f} / {(cpu - loop_cpu) / calls * 1000:.2f}",
            "",
            "",
        ),
        (
            "  idle server's CPU (ms/s), and its share of the figure above (ms per call)",
            f"{idle * 1000:.1f}, {idle * window / calls * 1000:.2f} over the {window:.1f} s",
            "",
            "",
        ),
        (
            f"agent 200 OK → destination INVITE p50 / p99 at {rate:g}/s (ms; {timed_by})",
            f"{percentile(delays, 50):.2f} / {percentile(delays, 99):.2f}",
            f"{percentile(logged, 50):.2f} / {percentile(logged, 99):.2f} by SIPp's logs",
            "p99 < 2",
        ),
        ("calls ended / placed", f"{ended} / {calls}", "", "all"),
    ]


IDLE_SECONDS = 5


def idle_cpu(pid: int, seconds: float) -> float:
    """The server's CPU seconds per second while it waits for work, from its threads'
    scheduler statistics (nanoseconds: a few milliseconds a second are below the clock
    ticks `cpu_seconds` counts)."""

    def total() -> float:
        spent = 0
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                spent += int((task / "schedstat").read_text().split()[0])
        return spent / 1e9

    time.sleep(1)  # the start's own work is over
    before = total()
    time.sleep(seconds)
    return (total() - before) / seconds


def kamailio(workdir: Path, rate: float, seconds: int) -> list[tuple[str, ...]]:
    """Kamailio relaying 2 dialogs per call (SIPp uac → Kamailio → SIPp uas)."""
    if shutil.which("kamailio") is None:
        return [("Kamailio stateful relay", "not installed", "", "")]
    folder = workdir / "kamailio"
    folder.mkdir()
    front, spare, uas = free_port(), free_port(), free_port()
    config = KAMAILIO_CFG.read_text().replace("debug=2", "debug=0")
    config = config.replace('    xlog("L_NOTICE", "proxy: $rm $ru from $si:$sp\\n");\n', "")
    for mark, value in (
        ("@PBX_FRONT@", front),
        ("@TRUNK_FRONT@", spare),
        ("@TLS_FRONT@", 1),
        ("@PBX@", uas),
        ("@TRUNK@", uas),
        ("@TLS_CONFIG@", "none"),
    ):
        config = config.replace(mark, str(value))
    (folder / "kamailio.cfg").write_text(config)
    proxy = subprocess.Popen(
        [
            *("kamailio", "-DD", "-E", "-f", str(folder / "kamailio.cfg")),
            *("-Y", str(folder), "-P", str(folder / "pid"), "-w", str(folder)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    dialogs = int(rate * seconds) * 2
    answering = subprocess.Popen(
        [
            *("sipp", "-sn", "uas", "-i", "127.0.0.1", "-p", str(uas)),
            *("-m", str(dialogs), "-nostdin"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=folder,
    )
    try:
        time.sleep(1)
        cpu0 = _tree_cpu(proxy.pid)
        client = subprocess.run(
            [
                *("sipp", "-sn", "uac", "-i", "127.0.0.1", "-p", str(free_port())),
                *("-r", str(int(rate * 2)), "-m", str(dialogs), "-d", "1000", "-nostdin"),
                f"127.0.0.1:{front}",
            ],
            capture_output=True,
            cwd=folder,
            timeout=seconds * 10 + 60,
            check=False,
        )
        cpu = _tree_cpu(proxy.pid) - cpu0
    finally:
        terminate(answering)
        terminate(proxy)
    ok = "all" if client.returncode == 0 else f"SIPp exit {client.returncode}"
    return [
        (
            f"Kamailio stateful relay, CPU per two dialogs at {rate:g}/s (ms)",
            f"{cpu / (dialogs / 2) * 1000:.2f}",
            "C baseline, same run",
            "",
        ),
        ("Kamailio relayed dialogs", f"{dialogs:,} ({ok})", "", ""),
    ]


def _tree_cpu(pid: int) -> float:
    """CPU seconds of `pid` and its children (Kamailio forks its workers)."""
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False
    )
    pids = [pid, *(int(p) for p in out.stdout.split())]
    total = 0.0
    for each in pids:
        with contextlib.suppress(OSError):
            total += cpu_seconds(each)
    return total


def top_functions(profile: Path, lines: int = 15) -> list[str]:
    """The functions with the most own samples in py-spy's raw (collapsed) output."""
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in profile.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        leaf = stack.split(";")[-1]
        own[leaf] += int(count)
        total += int(count)
    return [f"{n * 100 / total:5.1f}%  {name}" for name, n in own.most_common(lines)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--profile", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="click2call-bench-sip-") as tmp:
        rows = ours(Path(tmp), args.rate, args.seconds, args.profile)
        rows += kamailio(Path(tmp), args.rate, args.seconds)
    header = ("metric", "click2call", "baseline (same run)", "target")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    if args.profile is not None and args.profile.exists():
        print("\nserver profile (py-spy, own time):")
        print("\n".join(top_functions(args.profile)))


if __name__ == "__main__":
    main()

"""`make bench`: dial.php accepted/s and complete call setups/s, with `--workers 2` beside
`--workers 1` and PostgreSQL beside SQLite, all measured in the same run, with the CPU each
party took.

Each rig is the server as child process(es) on loopback, wrk as the CRM sending dial.php,
and PostgreSQL a throwaway cluster (tests/postgres_cluster.py), all on the same cores:

* accepted/s: wrk with 32 connections; the agent's PBX port has no SIPp behind it, so each
  placed call fails at once and the number is the request path's own: limits counted in the
  database, the call row with its first event, the engine's first INVITE.
* setups/s: SIPp answers the agent (re-INVITE included) and the destination, which hangs up
  after a second; wrk with 32 connections as for accepted/s (with 8 the rate was bound by
  each request's latency, the same with one worker or two). A setup is a call that reached
  `connected` (both legs up and joined) within the measured seconds, by its `connected_at`.

The CPU columns are cores busy on average (CPU seconds per second) for the server (all its
workers), PostgreSQL (every backend), wrk, SIPp, everything else on the machine, and each
worker on its own. The rate alone cannot say whether 2 workers scale: on a machine whose
cores are all busy (2 workers, PostgreSQL, wrk, SIPp and whatever else runs there) the
ratio is bounded by the cores left, not by the server. So each phase also prints the calls
per CPU second of the server's processes, 2 workers against 1: at 1.00x two workers do as
much work per core as one, and on a machine with cores to spare the ratio would approach 2x
that; the raw ratio stays beside it, against the target. A run starts once every worker
listens on the HTTP port (the first one up would otherwise take every connection).
`--profile DIR` records each rig's accepted/s run with py-spy (every worker process) and
prints the top frames.

    python -m bench.scale [--seconds 5] [--rounds 2] [--profile DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from tests.postgres_cluster import PostgresCluster

from bench.profile_summary import summarise
from bench.spine import DIAL, UNLIMITED, wrk
from click2call.demo.server import ServerProcess, wait_listening
from click2call.demo.sipp import SCENARIOS, free_port, free_ports_in_a_row, sipp_binary, terminate
from click2call.store.database import connect
from click2call.store.schema import calls

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
trunk = "127.0.0.1:{trunk}"
[tenants.auth]
allow_unauthenticated = true
"""
    + UNLIMITED
)
CONNECTIONS = 32  # wrk's, in both phases
RIGS = (
    ("SQLite, 1 worker", "sqlite", 1),
    ("PostgreSQL, 1 worker", "postgresql", 1),
    ("PostgreSQL, 2 workers", "postgresql", 2),
)
PARTIES = ("server", "postgres", "wrk", "sipp", "other")
TICK = os.sysconf("SC_CLK_TCK")


# --- CPU accounting from /proc --------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields from the state on


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def _family(root: int, tree: dict[int, list[int]]) -> list[int]:
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(tree.get(pid, ()))
    return out


def _cpu(pids: list[int]) -> float:
    """CPU seconds used so far by `pids` (user + system)."""
    total = 0
    for pid in pids:
        if (fields := _stat(pid)) is not None:
            total += int(fields[11]) + int(fields[12])
    return total / TICK


def _machine_busy() -> float:
    """CPU seconds all cores spent busy since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / TICK


@dataclass
class Parties:
    """Whose CPU time is whose, sampled around one measured run."""

    server: int
    postmaster: int | None
    sipp: list[int] = field(default_factory=list)

    def sample(self) -> dict[str, float]:
        tree = _children()
        own = {
            "server": _cpu(_family(self.server, tree)),
            "postgres": _cpu(_family(self.postmaster, tree)) if self.postmaster else 0.0,
            "sipp": _cpu(self.sipp),
            "wrk": resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
            + resource.getrusage(resource.RUSAGE_CHILDREN).ru_stime,
        }
        own["other"] = _machine_busy() - sum(own.values())
        # Each worker on its own (`serve --workers N` is a supervisor and N children).
        for n, worker in enumerate(tree.get(self.server, [])):
            own[f"worker {n}"] = _cpu(_family(worker, tree))
        return own


@dataclass(frozen=True)
class Run:
    """One measured run: the rate, the cores each party kept busy, each worker's."""

    rate: float
    cores: list[float]  # in the order of PARTIES
    workers: list[float]  # [] with one worker (the server is that worker)

    @property
    def per_server_cpu_second(self) -> float:
        """Calls per CPU second of the server's processes: its efficiency, whatever the
        machine had to spare."""
        return self.rate / max(self.cores[0], 0.01)


def measured(rate: float, before: dict[str, float], after: dict[str, float], seconds: float) -> Run:
    cores = [(after[p] - before[p]) / seconds for p in PARTIES]
    workers = sorted(k for k in after if k.startswith("worker ") and k in before)
    return Run(rate, cores, [(after[w] - before[w]) / seconds for w in workers])


# --- one rig ---------------------------------------------------------------------------


@dataclass
class Rig:
    server: ServerProcess
    database: str
    pbx: int
    trunk: int
    postmaster: int | None

    @property
    def url(self) -> str:
        return self.server.base_url + DIAL

    def parties(self, sipp: list[int] | None = None) -> Parties:
        return Parties(self.server.pid, self.postmaster, sipp or [])


@contextmanager
def rig(folder: Path, database: str, workers: int, postmaster: int | None) -> Iterator[Rig]:
    folder.mkdir()
    http, pbx, trunk = free_port(socket.SOCK_STREAM), free_port(), free_port()
    config = folder / "click2call.toml"
    sip = free_ports_in_a_row(workers)
    config.write_text(CONFIG.format(http=http, database=database, sip=sip, pbx=pbx, trunk=trunk))
    if database.startswith("postgresql"):
        upgrade = [sys.executable, "-m", "click2call", "db", "upgrade", "--config", str(config)]
        subprocess.run(upgrade, check=True, capture_output=True)
    args = ("--workers", str(workers)) if workers > 1 else ()
    base = f"http://127.0.0.1:{http}"
    server = ServerProcess(config, base, folder / "server.log", serve_args=args).start()
    try:
        wait_listening(http, workers)
        yield Rig(server, database, pbx, trunk, postmaster)
    finally:
        server.stop()


def accepted(r: Rig, seconds: int, profile: Path | None) -> Run:
    """dial.php accepted/s, and the cores each party used meanwhile."""
    wrk(r.url, 1, 8)  # warm-up
    spy = None
    if profile is not None:
        spy = subprocess.Popen(
            [
                *(str(Path(sys.executable).parent / "py-spy"), "record", "--subprocesses"),
                *("--pid", str(r.server.pid), "--duration", str(seconds), "--nonblocking"),
                *("--format", "raw", "--output", str(profile)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)  # attached
    parties = r.parties()
    before, start = parties.sample(), time.monotonic()
    rate, _p50, _p99, _total, refused = wrk(r.url, seconds, CONNECTIONS)
    run = measured(rate, before, parties.sample(), time.monotonic() - start)
    if spy is not None:
        spy.wait()
    assert refused == 0, f"{refused} requests refused"
    return run


def _sipp(scenario: str, port: int, folder: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [
            *(sipp_binary(), "-sf", str(SCENARIOS / scenario)),
            *("-i", "127.0.0.1", "-p", str(port), "-nostdin", "-m", "1000000"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=folder,
    )
    time.sleep(0.3)  # bound
    return process


def setups(r: Rig, seconds: int, folder: Path) -> Run:
    """Complete call setups/s (both legs answered and joined), and the cores each party
    used meanwhile."""
    phones = [
        _sipp("agent_answer.xml", r.pbx, folder),
        _sipp("destination_hangup.xml", r.trunk, folder),
    ]
    try:
        parties = r.parties([p.pid for p in phones])
        before, start = parties.sample(), time.monotonic()
        since = datetime.now(UTC)
        wrk(r.url, seconds, CONNECTIONS)
        until = datetime.now(UTC)
        after, elapsed = parties.sample(), time.monotonic() - start
        connected = _connected_between(r.database, since, until)
    finally:
        for phone in phones:
            terminate(phone)
    return measured(connected / (until - since).total_seconds(), before, after, elapsed)


def _connected_between(database: str, since: datetime, until: datetime, wait: float = 20) -> int:
    """Calls connected in [since, until], once the calls placed by then have all ended (the
    server stores their steps as they come)."""
    engine = connect(database)
    live = select(calls.c.id).where(calls.c.state != "ended", calls.c.created_at <= until)
    joined = select(calls.c.id).where(calls.c.connected_at.between(since, until))
    deadline = time.monotonic() + wait
    try:
        with engine.connect() as conn:
            while conn.execute(live.limit(1)).first() and time.monotonic() < deadline:
                conn.rollback()
                time.sleep(0.2)
            return len(conn.execute(joined).all())
    finally:
        engine.dispose()


# --- the run ---------------------------------------------------------------------------


def _postmaster(cluster: PostgresCluster) -> int:
    return int((cluster.data / "postmaster.pid").read_text().split("\n", 1)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5, help="per measured run")
    parser.add_argument("--rounds", type=int, default=2, help="every rig once per round")
    parser.add_argument("--profile", type=Path, help="py-spy profiles of the accepted/s runs")
    args = parser.parse_args()
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, list[Run]]] = {
        name: {"accepted": [], "setups": []} for name, _, _ in RIGS
    }
    cluster = PostgresCluster().start()
    try:
        with tempfile.TemporaryDirectory(prefix="click2call-bench-scale-") as tmp:
            for round_ in range(args.rounds):
                for name, kind, workers in RIGS:
                    folder = Path(tmp) / f"{round_}-{name.replace(' ', '_').replace(',', '')}"
                    database = (
                        f"sqlite:///{folder / 'calls.db'}"
                        if kind == "sqlite"
                        else cluster.new_database()
                    )
                    postmaster = _postmaster(cluster) if kind == "postgresql" else None
                    profile = None
                    if args.profile is not None:
                        profile = args.profile / f"{folder.name}.txt"
                    with rig(folder, database, workers, postmaster) as r:
                        results[name]["accepted"].append(accepted(r, args.seconds, profile))
                        results[name]["setups"].append(setups(r, args.seconds, folder))
    finally:
        cluster.stop()
    report(results, os.cpu_count() or 0)
    if args.profile is not None:
        for path in sorted(args.profile.glob("*.txt")):
            print(f"\n--- py-spy, {path.stem} (accepted/s run): top frames")
            print(summarise(path.read_text(), 12))


def report(results: dict[str, dict[str, list[Run]]], cpus: int) -> None:
    titles = {
        "accepted": (
            f"dial.php accepted/s (wrk, {CONNECTIONS} conns; no phone: each call fails at once)"
        ),
        "setups": f"complete call setups/s (SIPp answers both legs; wrk, {CONNECTIONS} conns)",
    }
    for phase, title in titles.items():
        print(f"\n{title}")
        cores = "  ".join(f"{p:>8}" for p in PARTIES)
        print(
            f"  {'':<24}{'per s':>7}{'range':>12}{'vs':>7}{'per core':>9}{'per srv s':>10}"
            f"    cores busy: {cores}   each worker"
        )
        runs = {name: results[name][phase] for name, _, _ in RIGS}
        for name, _, _ in RIGS:
            rate = statistics.median(r.rate for r in runs[name])
            low, high = min(r.rate for r in runs[name]), max(r.rate for r in runs[name])
            baseline = runs["PostgreSQL, 1 worker" if "2 workers" in name else RIGS[0][0]]
            ratio = rate / statistics.median(r.rate for r in baseline)
            busy = [statistics.median(r.cores[i] for r in runs[name]) for i in range(len(PARTIES))]
            per_core = rate / max(busy[0] + busy[1], 0.01)  # of the server's and PostgreSQL's
            per_server = statistics.median(r.per_server_cpu_second for r in runs[name])
            workers = "+".join(
                f"{statistics.median(r.workers[i] for r in runs[name]):.2f}"
                for i in range(min(len(r.workers) for r in runs[name]))
            )
            shown = "  ".join(f"{b:>8.2f}" for b in busy)
            print(
                f"  {name:<24}{rate:>7.0f}{f'{low:.0f}-{high:.0f}':>12}{ratio:>6.2f}x"
                f"{per_core:>9.0f}{per_server:>10.0f}{'':>16}{shown}   {workers or '-'}"
            )
        print(_scaling(runs["PostgreSQL, 1 worker"], runs["PostgreSQL, 2 workers"], cpus))
    print(
        f"\n{cpus} CPUs shared by the server, PostgreSQL, wrk and SIPp (and anything else "
        "running: 'other'); medians of the rounds, and the range of the rates. vs: PostgreSQL "
        "rows against SQLite, 2 workers against 1 worker on PostgreSQL. per core: calls per "
        "second per core the server and PostgreSQL kept busy; per srv s: calls per CPU "
        "second of the server's processes. Target: 2 workers >= 1.7x one worker."
    )


def _scaling(one: list[Run], two: list[Run], cpus: int) -> str:
    """The 2-worker ratio beside what bounded it: the machine's cores, or the work each
    worker does per CPU second (on a machine with cores to spare, the ratio is about
    2 x that efficiency)."""
    ratio = statistics.median(r.rate for r in two) / statistics.median(r.rate for r in one)
    efficiency = statistics.median(r.per_server_cpu_second for r in two) / statistics.median(
        r.per_server_cpu_second for r in one
    )
    busy = statistics.median(sum(r.cores) for r in two)
    saturated = "saturated" if busy >= 0.9 * cpus else "not saturated"
    return (
        f"  2 workers / 1: {ratio:.2f}x the calls (target >= 1.7x); per server CPU second "
        f"{efficiency:.2f}x; machine busy {busy:.2f} of {cpus} cores ({saturated})"
    )


if __name__ == "__main__":
    main()

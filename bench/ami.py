"""`make bench`, Asterisk part, against one peer replaying real Asterisk 20 recordings:

* Originate requests/s through one pooled, logged-in AMI connection versus a client that
  logs in for every request (what the original dial.php does);
* the server's CPU per whole call: a real `click2call serve` process takes `dial.php`
  requests over HTTP, and each call's Originate is answered with a full recorded call's
  event stream (originate-sip-success.txt, its own ids rewritten: every call has its own
  events) until both channels hung up and the call is stored ended. Beside it, in the
  same run: the CPU the login-per-request client spends on the AMI alone per request,
  and the server's CPU per `GET /api/v1/health` (the floor of one HTTP request).

    python -m bench.ami [--requests 300] [--calls 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from tests.ami_recordings import received, recorded_order
from tests.ami_replay import ReplayPeer
from tests.integration.conftest import launch_asterisk

from bench.spine import UNLIMITED, cpu_seconds, hammer, wait_rows
from click2call.calls import CallOrder
from click2call.engines.asterisk import actions
from click2call.engines.asterisk.client import AmiClient
from click2call.engines.asterisk.codec import AmiDecoder, Banner, Message
from click2call.engines.asterisk.tracker import CallTracker, worth_parsing
from click2call.settings import TenantAsterisk

RECORDING = "originate-agent-busy.txt"  # a whole call's events, the shortest flow
FULL_CALL = "originate-sip-success.txt"  # answered, bridged, hung up: every state
CHANNEL_ID = "1795478400.1001"  # the id its client preset
_ids = itertools.count(1)
DIAL = (
    "/web/dial.php?extension=200&destination=0502760206&tech=sip"
    "&outboundcid=036411111&foreignid=123"
)


def _order() -> CallOrder:
    return recorded_order(f"1795500000.{next(_ids)}")


async def pooled(settings: TenantAsterisk, count: int, concurrency: int) -> float:
    client = AmiClient(settings, on_message=lambda _m: None, on_link_lost=lambda _r: None)
    await client.start()
    async with asyncio.timeout(5):
        await client.wait_connected()
    queue = list(range(count))

    async def worker() -> None:
        while queue:
            queue.pop()
            reply = await client.send(
                actions.originate(_order(), settings, client.next_action_id())
            )
            assert reply.response == "Success", reply.headers

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await client.close()
    return count / elapsed


async def _reply(reader: asyncio.StreamReader, decoder: AmiDecoder, action_id: str) -> Message:
    while True:
        for message in decoder.feed(await reader.read(65536)):
            if (
                isinstance(message, Message)
                and message.event is None
                and message.action_id == action_id
            ):
                return message


def thread_cpu(work: Callable[[], float]) -> tuple[float, float]:
    """`work()`'s result and the CPU seconds this thread spent on it (the replaying peer
    runs in a thread of its own and is not counted)."""
    started = time.thread_time()
    result = work()
    return result, time.thread_time() - started


@dataclass
class ServerCpu:
    """Server CPU ms per call (all its threads, from the first request to the last call
    stored ended), of which its event loop's thread, and per GET /api/v1/health: one
    value a round."""

    per_call: list[float] = field(default_factory=list)
    on_loop: list[float] = field(default_factory=list)
    per_health: list[float] = field(default_factory=list)


def server_cpu_per_call(peer: ReplayPeer, calls: int, concurrency: int, rounds: int) -> ServerCpu:
    """`rounds` rounds of `calls` dial.php calls, each followed by as many health checks,
    on one server."""
    measured = ServerCpu()
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        running = launch_asterisk(
            workdir, peer, wait_logins=0, tenants=1, last_tenant_extra=UNLIMITED
        )
        server, base_url, db = running.process, running.server.base_url, workdir / "calls.db"
        try:
            deadline = time.monotonic() + 10
            while httpx.get(f"{base_url}/api/v1/health").status_code != 200:
                assert time.monotonic() < deadline, "the server did not log in to the peer"
                time.sleep(0.05)
            for _ in range(rounds * calls + 20):
                peer.play(FULL_CALL)
            ended = "SELECT count(*) FROM calls WHERE state = 'ended'"
            asyncio.run(hammer(base_url, DIAL, 20, 1))  # warm-up
            done = wait_rows(db, ended, 20, 30)
            for _ in range(rounds):
                before, loop_before = cpu_seconds(server.pid), cpu_seconds(server.pid, server.pid)
                _rate, _latencies, accepted = asyncio.run(
                    hammer(base_url, DIAL, calls, concurrency)
                )
                assert accepted == calls, f"{accepted} of {calls} calls accepted"
                now_done = wait_rows(db, ended, done + calls, 60)
                measured.per_call.append((cpu_seconds(server.pid) - before) / calls * 1000)
                on_loop = cpu_seconds(server.pid, server.pid) - loop_before
                measured.on_loop.append(on_loop / calls * 1000)
                assert now_done == done + calls, f"{now_done - done} of {calls} calls ended"
                done = now_done
                before = cpu_seconds(server.pid)
                asyncio.run(hammer(base_url, "/api/v1/health", calls, concurrency))
                measured.per_health.append((cpu_seconds(server.pid) - before) / calls * 1000)
            with sqlite3.connect(db) as conn:
                results = dict(conn.execute("SELECT result, count(*) FROM calls GROUP BY 1"))
            assert results == {"completed": done}, results
        finally:
            server.stop()
    return measured


def spread(values: list[float]) -> str:
    """The median, and the range when there are several."""
    middle = f"{statistics.median(values):.2f}"
    return middle if len(values) == 1 else f"{middle} ({min(values):.2f}-{max(values):.2f})"


def masked_to_call_events(stream: bytes) -> bytes:
    """What Asterisk sends a session logged in with `Events: call` (see tests/ami_replay)."""
    blocks = stream.split(b"\r\n\r\n")
    kept = [b for b in blocks if b"\r\nPrivilege: " not in b or b"\r\nPrivilege: call," in b]
    return b"\r\n\r\n".join(kept)


def tracking_ms(stream: bytes, calls: int, keep: Callable[[bytes], bool] | None) -> float:
    """CPU ms per call to decode one call's AMI stream and follow it (codec + tracker)."""
    started = time.process_time()
    for _ in range(calls):
        tracker = CallTracker(CHANNEL_ID, "c2c-1")
        for message in AmiDecoder(keep=keep).feed(stream):
            if isinstance(message, Message) and tracker.concerns(message):
                tracker.handle(message)
        assert tracker.ended
    return (time.process_time() - started) / calls * 1000


def tracking_rows(calls: int) -> list[tuple[str, str, str]]:
    full = received(FULL_CALL)
    masked = masked_to_call_events(full)
    ours = {CHANNEL_ID}
    before = tracking_ms(full, calls, None)
    after = tracking_ms(masked, calls, lambda block: worth_parsing(block, ours))
    others = {"c2c-1795000000-1"}
    started = time.process_time()
    for _ in range(calls):
        AmiDecoder(keep=lambda block: worth_parsing(block, others)).feed(masked)
    skipped = (time.process_time() - started) / calls * 1000
    return [
        ("AMI in, per call: Events: on, every message parsed", f"{before:.3f}", ""),
        ("AMI in, per call: Events: call, worth_parsing first", f"{after:.3f}", ""),
        ("AMI in, per call of another node on the same PBX (skipped)", f"{skipped:.3f}", ""),
    ]


async def login_per_request(settings: TenantAsterisk, count: int) -> float:
    """Connect, read the banner, Login, Originate, Logoff, close: once per request."""
    secret = settings.secret.get_secret_value()
    started = time.perf_counter()
    for n in range(count):
        reader, writer = await asyncio.open_connection(settings.host, settings.port)
        decoder = AmiDecoder()
        while not any(isinstance(m, Banner) for m in decoder.feed(await reader.readline())):
            pass
        writer.write(bytes(actions.login(settings.username, secret, f"login-{n}")))
        assert (await _reply(reader, decoder, f"login-{n}")).response == "Success"
        writer.write(bytes(actions.originate(_order(), settings, f"c2c-{n}")))
        assert (await _reply(reader, decoder, f"c2c-{n}")).response == "Success"
        writer.write(bytes(Message.action("Logoff", [("ActionID", f"bye-{n}")])))
        await _reply(reader, decoder, f"bye-{n}")
        writer.close()
        await writer.wait_closed()
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=4, help="HTTP requests in flight")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of --calls calls (median and range)"
    )
    args = parser.parse_args()
    peer = ReplayPeer(time_scale=0).start()
    settings = TenantAsterisk(port=peer.port, username="click2call", secret="test")  # type: ignore[arg-type]
    try:
        for _ in range(3 * args.requests + 50):
            peer.play(RECORDING)
        asyncio.run(pooled(settings, 50, 1))  # warm-up
        one = asyncio.run(pooled(settings, args.requests, 1))
        many = asyncio.run(pooled(settings, args.requests, 16))
        naive, naive_cpu = thread_cpu(
            lambda: asyncio.run(login_per_request(settings, args.requests))
        )
        cpu = server_cpu_per_call(peer, args.calls, args.concurrency, args.rounds)
    finally:
        peer.stop()
    assert peer.mismatches == [], peer.mismatches[:3]
    table(
        (
            "AMI Originate (replayed Asterisk 20, each with its call's events)",
            "requests/s",
            "vs baseline",
        ),
        [
            ("login per request (as the original dial.php)", f"{naive:,.0f}", "1.0x"),
            ("pooled connection, one at a time", f"{one:,.0f}", f"{one / naive:.1f}x"),
            ("pooled connection, 16 in flight", f"{many:,.0f}", f"{many / naive:.1f}x"),
        ],
    )
    print()
    table(
        ("CPU (same run; median (range) of the rounds)", "ms", "target"),
        [
            (
                f"server CPU per call, all threads: dial.php + a whole recorded call "
                f"({args.rounds} x {args.calls} calls, {args.concurrency} in flight)",
                spread(cpu.per_call),
                "≤ 1",
            ),
            (
                "  of which the event loop's thread (the rest: store threads)",
                spread(cpu.on_loop),
                "",
            ),
            (
                "baseline: login per request, client CPU per request (AMI only)",
                f"{naive_cpu / args.requests * 1000:.2f}",
                "",
            ),
            ("floor: server CPU per GET /api/v1/health", spread(cpu.per_health), ""),
            *tracking_rows(args.calls),
        ],
    )


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()

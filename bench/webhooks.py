"""`make bench`, webhook rows: delivery rate to a local receiver, and whether delivery
slows call placement — dial.php with one subscription beside dial.php without, same run.

    python -m bench.webhooks [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from bench.spine import CONFIG, DIAL, TESTS, wrk
from click2call.demo.server import ServerProcess
from click2call.demo.sipp import SippPeer, free_port
from click2call.webhooks.signing import new_secret

SUBSCRIPTION = """[[tenants.webhooks]]
url = "http://127.0.0.1:{hook}/hook"
secret = "{secret}"
"""


def _receive(port: int) -> None:
    """A minimal HTTP/1.1 receiver answering 204 to every request (keep-alive)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def serve() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=512)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


@contextmanager
def receiver() -> Iterator[int]:
    port = free_port(socket.SOCK_STREAM)
    process = multiprocessing.Process(target=_receive, args=(port,), daemon=True)
    process.start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    try:
        yield port
    finally:
        process.terminate()
        process.join(5)


@contextmanager
def server(folder: Path, hook_port: int | None) -> Iterator[tuple[ServerProcess, int, Path]]:
    folder.mkdir()
    http, sip, pbx, trunk = free_port(socket.SOCK_STREAM), free_port(), free_port(), free_port()
    db = folder / "calls.db"
    text = CONFIG.format(http=http, sip=sip, db=db, pbx=pbx, trunk=trunk)
    if hook_port is not None:
        text += SUBSCRIPTION.format(hook=hook_port, secret=new_secret(b"b" * 32))
    config = folder / "click2call.toml"
    config.write_text(text)
    process = ServerProcess(config, f"http://127.0.0.1:{http}", folder / "server.log").start()
    try:
        yield process, pbx, db
    finally:
        process.stop()


def _count(db: Path, query: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(query).fetchone()[0])


def dial_rate(folder: Path, hook_port: int | None, seconds: int) -> tuple[float, int, float]:
    with server(folder, hook_port) as (process, pbx, db):
        agent = SippPeer(TESTS / "agent_busy.xml", pbx, folder, calls=1_000_000)
        agent.extra_args = ("-nd",)
        agent.start()
        wrk(process.base_url + DIAL, 1, 8)  # warm-up
        rate = wrk(process.base_url + DIAL, seconds, 32)[0]
        agent.stop()
        # Let delivery finish: the rate below is what the worker sustains on its own.
        started = time.monotonic()
        pending = "SELECT count(*) FROM webhook_outbox WHERE state='pending'"
        delivered_before = _count(db, "SELECT count(*) FROM webhook_outbox WHERE state='delivered'")
        while hook_port is not None and _count(db, pending) and time.monotonic() - started < 120:
            time.sleep(0.2)
        drained = time.monotonic() - started
        delivered = _count(db, "SELECT count(*) FROM webhook_outbox WHERE state='delivered'")
        drain_rate = (delivered - delivered_before) / drained if drained > 0.2 else float("nan")
    return rate, delivered, drain_rate


async def _raw_posts(port: int, count: int) -> float:
    body = b'{"type":"call.ended"}' * 20
    limits = httpx.Limits(max_connections=4)
    async with httpx.AsyncClient(limits=limits) as client:
        started = time.perf_counter()
        sem = asyncio.Semaphore(4)

        async def one() -> None:
            async with sem:
                await client.post(f"http://127.0.0.1:{port}/hook", content=body)

        await asyncio.gather(*(one() for _ in range(count)))
        return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=4, help="per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="with and without, alternated")
    args = parser.parse_args()
    plains: list[float] = []
    hookeds: list[float] = []
    drains: list[float] = []
    delivered = 0
    with tempfile.TemporaryDirectory(prefix="click2call-bench-") as tmp, receiver() as hook:
        work = Path(tmp)
        # Alternated rounds and medians: the machine is shared, so a single pair can
        # differ by more than what is measured.
        for n in range(args.rounds):
            plains.append(dial_rate(work / f"plain{n}", None, args.seconds)[0])
            rate, made, drain = dial_rate(work / f"hooked{n}", hook, args.seconds)
            hookeds.append(rate)
            drains.append(drain)
            delivered += made
        raw = asyncio.run(_raw_posts(hook, 2000))
    plain, hooked, drain = (
        statistics.median(plains),
        statistics.median(hookeds),
        statistics.median(drains),
    )
    rows = [
        (
            "dial.php accepted/s with one webhook subscription",
            f"{hooked:,.0f}",
            f"{plain:,.0f} without ({hooked / plain:.2f}x; median of {args.rounds})",
            "≥ 0.9x",
        ),
        (
            "webhook deliveries/s after the load (signed, 1 receiver)",
            f"{drain:,.0f}",
            f"{raw:,.0f} (httpx POSTs, 4 in flight)",
            "",
        ),
        ("webhook deliveries made", f"{delivered:,}", "", ""),
    ]
    header = ("metric", "click2call", "baseline (same run)", "target")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()

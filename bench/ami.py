"""`make bench`, Asterisk part: Originate requests/s through one pooled, logged-in AMI
connection versus a client that logs in for every request (what the original dial.php
does), both against the same peer replaying a real Asterisk 20 recording, in one run.

    python -m bench.ami [--requests 300]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time

from tests.ami_recordings import recorded_order
from tests.ami_replay import ReplayPeer

from click2call.calls import CallOrder
from click2call.engines.asterisk import actions
from click2call.engines.asterisk.client import AmiClient
from click2call.engines.asterisk.codec import AmiDecoder, Banner, Message
from click2call.settings import TenantAsterisk

RECORDING = "originate-agent-busy.txt"  # a whole call's events, the shortest flow
_ids = itertools.count(1)


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
    args = parser.parse_args()
    peer = ReplayPeer(time_scale=0).start()
    settings = TenantAsterisk(port=peer.port, username="click2call", secret="test")  # type: ignore[arg-type]
    rows = []
    try:
        for _ in range(3 * args.requests + 50):
            peer.play(RECORDING)
        asyncio.run(pooled(settings, 50, 1))  # warm-up
        one = asyncio.run(pooled(settings, args.requests, 1))
        many = asyncio.run(pooled(settings, args.requests, 16))
        naive = asyncio.run(login_per_request(settings, args.requests))
    finally:
        peer.stop()
    assert peer.mismatches == [], peer.mismatches[:3]
    rows = [
        ("login per request (as the original dial.php)", f"{naive:,.0f}", "1.0x"),
        ("pooled connection, one at a time", f"{one:,.0f}", f"{one / naive:.1f}x"),
        ("pooled connection, 16 in flight", f"{many:,.0f}", f"{many / naive:.1f}x"),
    ]
    header = (
        "AMI Originate (replayed Asterisk 20, each with its call's events)",
        "requests/s",
        "vs baseline",
    )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()

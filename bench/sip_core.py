"""The SIP engine's own CPU per two-leg call, in process, without the network's noise.

    python -m bench.sip_core [--calls 2000] [--profile] [--memory]

The real engine and endpoint (parsing, transactions, legs, the RFC 3725 controller,
snapshots) on a real event loop; only the socket is replaced by a scripted pair of
phones answering in the same process (the agent answers and takes the re-INVITE, the
destination answers and hangs up): the same 15 messages a call as bench.sip's SIPp
peers. The phones' own time is measured apart and left out of the figure. No HTTP, no
store: this is the share of the loop thread bench.sip cannot separate from the rest.

With --memory, the destination never hangs up: the Python memory (tracemalloc) the
engine holds per connected call, as the calls connect (their set-up transactions still
absorbing retransmissions) and once those are over, 32 s later.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import io
import pstats
import time
import tracemalloc
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import TypeVar

from click2call.calls import CallEvent, CallOrder, CallState, Destination, Extension, Tech
from click2call.engines.sip import transaction
from click2call.engines.sip.endpoint import SipEndpoint
from click2call.engines.sip.engine import SipEngine
from click2call.engines.sip.transport import Flow, _Datagrams
from click2call.errors import EngineUnavailable
from click2call.settings import SipStackSettings, TenantSettings, TenantSip

_SDP = (
    "v=0\r\no=phone 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 6000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
)
Result = TypeVar("Result")
_COPIED = (b"via:", b"from:", b"to:", b"call-id:", b"cseq:")


class Phones:
    """The agent's phone (PBX port) and the destination (trunk port), scripted."""

    def __init__(self, pbx: int, trunk: int) -> None:
        self.pbx, self.trunk = pbx, trunk
        self.spent = 0.0  # CPU seconds the phones themselves took
        self.feed: _Datagrams | None = None
        self.count = 0
        self.hold = False  # True: the destination never hangs up
        self.answered: dict[bytes, float] = {}  # agent's 200 OK handed in, by X-Click2Call-Id
        self.delays: list[float] = []  # from there to the destination's INVITE leaving, ms

    def send(self, data: bytes, flow: Flow, _name: str | None = None) -> None:
        started = time.process_time()
        head, _, _ = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        start = lines[0]
        answers: list[bytes] = []
        answering: bytes | None = None
        port = flow.peer[1]
        copied = [line for line in lines[1:] if line.lower().startswith(_COPIED)]
        if start.startswith(b"INVITE "):
            self.count += 1
            tag = _correlation(head)
            if flow.peer[1] == self.trunk and tag in self.answered:
                self.delays.append((time.perf_counter() - self.answered.pop(tag)) * 1000)
            to_tagged = any(line.lower().startswith(b"to:") and b"tag=" in line for line in copied)
            if to_tagged:  # the bridging re-INVITE
                answers.append(_response(b"200 OK", copied, None, port, _SDP))
            else:
                if port == self.pbx:  # the agent's answer: time it to the destination's INVITE
                    answering = _correlation(head)
                answers.append(_response(b"180 Ringing", copied, self.count, port, None))
                answers.append(_response(b"200 OK", copied, self.count, port, _SDP))
        elif start.startswith(b"BYE "):
            answers.append(_response(b"200 OK", copied, None, port, None))
        elif (
            start.startswith(b"ACK ")
            and flow.peer[1] == self.trunk
            and b"CSeq: 1 ACK" in head
            and not self.hold
        ):
            answers.append(_bye(copied))
        self.spent += time.process_time() - started
        loop = asyncio.get_running_loop()
        for answer in answers:  # a loop turn later, as from the network: the engine's
            # work queued for the end of this turn (its snapshot above all) comes first
            loop.call_soon(loop.call_soon, self._deliver, answer, flow.peer, answering)

    def _deliver(self, data: bytes, peer: tuple[str, int], tag: bytes | None) -> None:
        assert self.feed is not None
        if tag is not None and data.startswith(b"SIP/2.0 200"):
            self.answered[tag] = time.perf_counter()
        self.feed._handle(data, peer)


def _correlation(head: bytes) -> bytes:
    return head.partition(b"X-Click2call-Id: ")[2].partition(b"\r\n")[0]


def _response(
    status: bytes, copied: list[bytes], tag: int | None, port: int, sdp: str | None
) -> bytes:
    lines = [b"SIP/2.0 " + status]
    for line in copied:
        if tag is not None and line.lower().startswith(b"to:"):
            line += b";tag=phone%d" % tag
        lines.append(line)
    lines.append(b"Contact: <sip:phone@127.0.0.1:%d;transport=UDP>" % port)
    body = b"" if sdp is None else sdp.encode()
    if body:
        lines.append(b"Content-Type: application/sdp")
    lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _bye(copied: list[bytes]) -> bytes:
    """The destination hangs up: From and To swapped, its own Via and CSeq."""
    fields = {line.split(b":", 1)[0].lower(): line.split(b":", 1)[1].strip() for line in copied}
    lines = [
        b"BYE sip:click2call@127.0.0.1:5060 SIP/2.0",
        b"Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-bye-" + fields[b"call-id"][:8],
        b"From: " + fields[b"to"],
        b"To: " + fields[b"from"],
        b"Call-ID: " + fields[b"call-id"],
        b"CSeq: 9000 BYE",
        b"Max-Forwards: 70",
        b"Content-Length: 0",
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n"


async def _engine(save: Callable[[str, str], None]) -> tuple[SipEngine, SipEndpoint, Phones]:
    pbx, trunk = 5998, 5999
    stack = SipStackSettings(port=0, options_interval=0)
    tenant = TenantSettings(
        name="bench",
        sip=TenantSip(pbx=f"127.0.0.1:{pbx}", trunk=f"127.0.0.1:{trunk}", ringback="off"),
    )
    for _attempt in range(5):  # port 0: the UDP port may be taken on TCP
        endpoint = SipEndpoint(stack)
        with contextlib.suppress(EngineUnavailable):
            await endpoint.start()
            break
    phones = Phones(pbx, trunk)
    transports = endpoint.transports
    phones.feed = transports._datagrams
    transports.send = phones.send  # type: ignore[method-assign]
    engine = SipEngine(tenant, endpoint, lambda: datetime.now(UTC), save=save)
    await engine.start()
    return engine, endpoint, phones


def _order(i: int) -> CallOrder:
    return CallOrder(
        call_id=i,
        uniqueid=f"1700000000.{i}",
        tenant="bench",
        agent=Extension(Tech.SIP, "200"),
        destination=Destination("0502760206"),
        destination_caller_id="036411111",
        agent_caller_id="0502760206",
        agent_ring_timeout=30,
        destination_ring_timeout=30,
        max_call_seconds=3600,
    )


async def run(calls: int, profile: cProfile.Profile | None) -> tuple[float, float, int]:
    """(CPU seconds in all, of which the phones', calls ended)."""
    saved: list[str] = []
    ended: list[CallEvent] = []
    in_flight = asyncio.Semaphore(20)  # a few calls at once, as under load
    done = asyncio.Event()

    def save(_uniqueid: str, state: str) -> None:
        saved.append(state)

    def events(event: CallEvent) -> None:
        if event.result is not None:
            ended.append(event)
            in_flight.release()
            if len(ended) == calls:
                done.set()

    engine, endpoint, phones = await _engine(save)
    started = time.process_time()
    if profile is not None:
        profile.enable()
    for i in range(calls):
        await in_flight.acquire()
        await engine.originate(_order(i), events)
    await done.wait()
    if profile is not None:
        profile.disable()
    spent = time.process_time() - started
    endpoint.stop()
    print(f"{len(saved) / calls:.1f} SIP snapshots stored per call")
    delays = sorted(phones.delays)
    p50, p99 = delays[len(delays) // 2], delays[int(len(delays) * 0.99)]
    print(f"agent 200 OK handed in → destination INVITE out: p50 {p50:.3f} / p99 {p99:.3f} ms")
    return spent, phones.spent, len(ended)


async def memory(calls: int, show: int = 0) -> tuple[float, float]:
    """KiB of Python memory per connected call: as they connect, and after set-up."""
    connected = 0
    all_up = asyncio.Event()

    def events(event: CallEvent) -> None:
        nonlocal connected
        connected += event.state is CallState.CONNECTED
        if connected == calls:
            all_up.set()

    engine, endpoint, phones = await _engine(lambda _uniqueid, _state: None)  # stored elsewhere
    phones.hold = True
    await engine.originate(_order(-1), events)  # warm-up: caches, first allocations
    await asyncio.sleep(0.1)
    connected = 0
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(calls):
        await engine.originate(_order(i), events)
        if i % 20 == 19:  # a few setting up at once, as bench.spine paces them
            await asyncio.sleep(0.01)
    await all_up.wait()
    await asyncio.sleep(0.05)  # the agents' answers to the bridging re-INVITEs
    gc.collect()
    up = tracemalloc.get_traced_memory()[0]
    if show:
        setting_up = tracemalloc.take_snapshot()
    await asyncio.sleep(64 * transaction.T1 + 1)  # every set-up transaction is over
    gc.collect()
    settled = tracemalloc.get_traced_memory()[0]
    if show:
        print("held for the 32 s after set-up:")
        for diff in setting_up.compare_to(tracemalloc.take_snapshot(), "lineno")[:show]:
            print(diff)
    tracemalloc.stop()
    endpoint.stop()
    return (up - before) / calls / 1024, (settled - before) / calls / 1024


def _run(work: Coroutine[None, None, Result]) -> Result:
    """On uvloop, as the server runs, when it is installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(work)
    return uvloop.run(work)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--profile", action="store_true", help="cProfile's top functions")
    parser.add_argument("--memory", action="store_true", help="memory per connected call")
    args = parser.parse_args()
    if args.memory:
        up, settled = _run(memory(args.calls, 60 if args.profile else 0))
        print(f"SIP engine memory per connected call, in process (KiB): {up:.2f} as they")
        print(f"connect, {settled:.2f} once their set-up transactions are over")
        return
    profile = cProfile.Profile() if args.profile else None
    spent, phones, ended = _run(run(args.calls, profile))
    ours = (spent - phones) / args.calls * 1000
    print(f"SIP engine CPU per two-leg call, in process: {ours:.3f} ms ({ended} calls ended)")
    if profile is not None:
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(30)
        print(out.getvalue())


if __name__ == "__main__":
    main()

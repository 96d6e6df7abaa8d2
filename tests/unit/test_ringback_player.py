"""Ringback players on one 20 ms clock (ringback_player.py), on a real event loop."""

from __future__ import annotations

import asyncio
import itertools
import socket
import struct
from typing import cast

from click2call.engines.sip.ringback import ITU, PCMU
from click2call.engines.sip.ringback_player import RingbackClock, RingbackPlayer
from click2call.engines.sip.sdp import MediaTarget


class Sent:
    """A socket that keeps what is sent: (loop time, RTP sequence, RTP timestamp, marker)."""

    def __init__(self) -> None:
        self.packets: list[tuple[float, int, int, bool]] = []
        self.closed = False

    def sendto(self, packet: bytes, _target: tuple[str, int]) -> int:
        _version, second, sequence, timestamp = struct.unpack("!BBHI", packet[:8])
        marker = bool(second & 0x80)
        self.packets.append((asyncio.get_running_loop().time(), sequence, timestamp, marker))
        return len(packet)

    def close(self) -> None:
        self.closed = True


def _player(clock: RingbackClock, ssrc: int) -> tuple[RingbackPlayer, Sent]:
    sent = Sent()
    return RingbackPlayer(cast(socket.socket, sent), ITU, ssrc, clock), sent


TARGET = MediaTarget("127.0.0.1", 4000, PCMU)


def test_ringing_calls_share_the_ticks_and_each_stream_keeps_20_ms_spacing() -> None:
    async def scenario() -> tuple[Sent, Sent]:
        clock = RingbackClock()
        first, first_sent = _player(clock, 1)
        second, second_sent = _player(clock, 2)
        first.start(TARGET)
        await asyncio.sleep(0.007)
        second.start(TARGET)
        await asyncio.sleep(0.2)
        first.close()
        second.close()
        return first_sent, second_sent

    first, second = asyncio.run(scenario())
    for stream in (first, second):
        assert len(stream.packets) >= 8
        times = [at for at, _, _, _ in stream.packets]
        # 20 ms apart as a rule (a loaded machine may wake the clock late once, and the
        # stream catches up: spacing is in the RTP timestamps, checked below)
        gaps = sorted(b - a for a, b in itertools.pairwise(times))
        assert 0.015 < gaps[len(gaps) // 2] < 0.025
        assert [seq for _, seq, _, _ in stream.packets] == list(range(len(stream.packets)))
        assert [ts for _, _, ts, _ in stream.packets] == [
            160 * i for i in range(len(stream.packets))
        ]
        assert [marker for _, _, _, marker in stream.packets] == [True] + [False] * (
            len(stream.packets) - 1
        )
    # One loop turn sends both streams' packets: each of the second's goes with one of the
    # first's (within a millisecond, not 7 ms apart as the two were started).
    first_times = [at for at, _, _, _ in first.packets]
    assert all(min(abs(at - t) for t in first_times) < 0.001 for at, _, _, _ in second.packets)


def test_a_stopped_player_sends_nothing_more_and_the_last_one_stops_the_clock() -> None:
    async def scenario() -> None:
        clock = RingbackClock()
        player, sent = _player(clock, 1)
        player.start(TARGET)
        await asyncio.sleep(0.05)
        player.close()
        count = len(sent.packets)
        assert count >= 1 and sent.closed
        assert clock._timer is None  # nothing ringing: no wake-ups every 20 ms
        await asyncio.sleep(0.05)
        assert len(sent.packets) == count

    asyncio.run(scenario())


def test_a_tone_started_again_restarts_its_stream() -> None:
    async def scenario() -> Sent:
        clock = RingbackClock()
        player, sent = _player(clock, 1)
        player.start(TARGET)
        await asyncio.sleep(0.05)
        sent.packets.clear()
        player.start(TARGET)
        await asyncio.sleep(0.05)
        player.close()
        return sent

    packets = asyncio.run(scenario()).packets
    assert packets[0][1:] == (0, 0, True)


async def test_one_calls_bad_target_does_not_silence_the_others() -> None:
    """All ringing calls share one clock: an exception from one stream (a port past 65535
    gives OverflowError, not OSError) stopped the clock for every call ringing."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as phone:
        phone.bind(("127.0.0.1", 0))
        phone.setblocking(False)
        clock = RingbackClock()
        bad = RingbackPlayer(socket.socket(socket.AF_INET, socket.SOCK_DGRAM), ITU, 2, clock)
        good = RingbackPlayer(socket.socket(socket.AF_INET, socket.SOCK_DGRAM), ITU, 1, clock)
        bad.start(MediaTarget("127.0.0.1", 70000, 0))
        good.start(MediaTarget("127.0.0.1", phone.getsockname()[1], 0))
        await asyncio.sleep(0.2)
        got = 0
        while True:
            try:
                phone.recv(2048)
            except BlockingIOError:
                break
            got += 1
        good.close()
        bad.close()
    assert got >= 5  # ~10 in 200 ms; none when the clock stopped

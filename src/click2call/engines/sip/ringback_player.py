"""Sends the ringback tone as RTP, 20 ms a packet, every ringing call on one clock.

Each ringing call sends a packet every 20 ms; with a loop timer of its own, a thousand
calls ringing at once (100 calls/s whose destinations ring ten seconds) woke the loop
50,000 times a second, each wake-up costing far more than the packet. So one
`RingbackClock` ticks every 20 ms of loop time while any call rings, and each tick sends
every ringing call's packet: each stream still gets one packet every 20 ms, in order,
and starts on the next tick (up to 20 ms after the agent answered, as a phone's jitter
buffer would hold it anyway).
"""

from __future__ import annotations

import asyncio
import logging
import socket

from click2call.engines.sip.ringback import FRAME_MS, FRAME_SAMPLES, Cadence, frames, rtp_packet
from click2call.engines.sip.sdp import MediaTarget

log = logging.getLogger("click2call.sip")
_MAX_CATCH_UP = 5  # packets sent at once after a late tick, at most
_FRAME = FRAME_MS / 1000  # seconds between ticks


class RingbackClock:
    """The 20 ms ticks of loop time every ringing call's tone is sent on."""

    def __init__(self) -> None:
        self._playing: dict[RingbackPlayer, None] = {}  # in the order they started
        self._timer: asyncio.TimerHandle | None = None

    def add(self, player: RingbackPlayer) -> int:
        """Play `player` from the next tick on; that tick's number."""
        loop = asyncio.get_running_loop()
        following = int(loop.time() / _FRAME) + 1
        self._playing[player] = None
        if self._timer is None:
            self._timer = loop.call_at(following * _FRAME, self._tick, following)
        return following

    def remove(self, player: RingbackPlayer) -> None:
        self._playing.pop(player, None)
        if not self._playing and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self, tick: int) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        # A late wake-up catches up with the ticks it missed (the loop was busy); an
        # early one (uvloop runs timers up to half a millisecond early) is its own tick.
        now = max(tick, int(loop.time() / _FRAME))
        for player in list(self._playing):
            try:
                player.send_due(now)
            except Exception:  # one call's bad target must not silence every other's tone
                log.exception("ringback stopped for one call")
                self.remove(player)
        if self._playing:
            self._timer = loop.call_at((now + 1) * _FRAME, self._tick, now + 1)


class RingbackPlayer:
    def __init__(
        self, sock: socket.socket, cadence: Cadence, ssrc: int, clock: RingbackClock
    ) -> None:
        self._sock = sock
        self._cadence = cadence
        self._ssrc = ssrc
        self._clock = clock
        self._target: tuple[str, int] = ("", 0)
        self._payloads: tuple[bytes, ...] = ()
        self._payload_type = 0
        self._first = 0  # the clock's tick the first packet goes on
        self._sent = 0

    def start(self, target: MediaTarget) -> None:
        self.stop()  # a call plays one tone; restarting replaces it
        self._target = (target.address, target.port)
        self._payload_type = target.payload_type
        self._payloads = frames(self._cadence, target.payload_type)
        self._sent = 0
        self._first = self._clock.add(self)

    def stop(self) -> None:
        self._clock.remove(self)

    def close(self) -> None:
        self.stop()
        self._sock.close()

    def send_due(self, tick: int) -> None:
        """Send the packets due by `tick`: one a tick, so a late tick does not slow the
        tone down (at most a few at once; the rest are skipped)."""
        due = tick - self._first + 1
        for _ in range(min(due - self._sent, _MAX_CATCH_UP)):
            payload = self._payloads[self._sent % len(self._payloads)]
            packet = rtp_packet(
                self._payload_type,
                self._sent,
                self._sent * FRAME_SAMPLES,
                self._ssrc,
                payload,
                marker=self._sent == 0,
            )
            try:
                self._sock.sendto(packet, self._target)
            except (OSError, OverflowError) as exc:  # the port went away, or never was one
                log.debug("ringback to %s stopped: %s", self._target, exc)
                self.stop()
                return
            self._sent += 1
        self._sent = max(self._sent, due)

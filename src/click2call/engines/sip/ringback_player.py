"""Sends the ringback tone as RTP, 20 ms a packet, from the asyncio loop's timers."""

from __future__ import annotations

import asyncio
import logging
import socket

from click2call.engines.sip.ringback import FRAME_MS, FRAME_SAMPLES, Cadence, frames, rtp_packet
from click2call.engines.sip.sdp import MediaTarget

log = logging.getLogger("click2call.sip")
_MAX_CATCH_UP = 5  # packets sent at once after a late timer, at most


class RingbackPlayer:
    def __init__(self, sock: socket.socket, cadence: Cadence, ssrc: int) -> None:
        self._sock = sock
        self._cadence = cadence
        self._ssrc = ssrc
        self._timer: asyncio.TimerHandle | None = None
        self._target: tuple[str, int] = ("", 0)
        self._payloads: tuple[bytes, ...] = ()
        self._payload_type = 0
        self._started = 0.0
        self._sent = 0

    def start(self, target: MediaTarget) -> None:
        self.stop()  # a call plays one tone; restarting replaces it
        self._target = (target.address, target.port)
        self._payload_type = target.payload_type
        self._payloads = frames(self._cadence, target.payload_type)
        self._started, self._sent = asyncio.get_running_loop().time(), 0
        self._tick()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self) -> None:
        self.stop()
        self._sock.close()

    def _tick(self) -> None:
        # Send what is due by the clock, so a late timer does not slow the tone down.
        loop = asyncio.get_running_loop()
        due = int((loop.time() - self._started) * 1000 / FRAME_MS) + 1
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
            except OSError as exc:  # the phone's port went away: nothing to ring
                log.debug("ringback to %s stopped: %s", self._target, exc)
                self.stop()
                return
            self._sent += 1
        self._sent = max(self._sent, due)
        self._timer = loop.call_at(self._started + self._sent * FRAME_MS / 1000, self._tick)

"""Ringback tone for the agent while the destination rings: G.711 frames and RTP headers.

Pure: tone samples, G.711 µ-law/A-law encoding (ITU-T G.711) and the 12-byte RTP header
(RFC 3550). Which tone follows the tenant's region (ITU-T E.180 national tones).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from functools import lru_cache

SAMPLE_RATE = 8000
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000  # 160 samples, 160 bytes of G.711
PCMU, PCMA = 0, 8
_AMPLITUDE = 8000  # about -12 dBm0: audible, never clipping when two tones add up


@dataclass(frozen=True, slots=True)
class Cadence:
    frequencies: tuple[float, ...]
    on_ms: int
    off_ms: int


ITU = Cadence((425.0,), 1000, 4000)
CADENCES = {
    "IL": Cadence((400.0,), 1000, 3000),
    "US": Cadence((440.0, 480.0), 2000, 4000),
    "CA": Cadence((440.0, 480.0), 2000, 4000),
    "GB": Cadence((400.0, 450.0), 1000, 2000),  # simplified: one burst, not the 0.4/0.2 pair
}


def cadence_for(region: str) -> Cadence:
    return CADENCES.get(region, ITU)


def ulaw(sample: int) -> int:
    sign = 0x80 if sample < 0 else 0
    magnitude = min(abs(sample), 32635) + 0x84
    exponent = max(0, magnitude.bit_length() - 8)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def alaw(sample: int) -> int:
    if sample >= 0:
        mask = 0xD5
    else:
        mask, sample = 0x55, -sample - 1
    value = min(sample, 0x7FFF) >> 3
    segment = max(0, value.bit_length() - 5)
    if segment >= 8:
        return 0x7F ^ mask
    mantissa = (value >> 1) & 0x0F if segment == 0 else (value >> segment) & 0x0F
    return ((segment << 4) | mantissa) ^ mask


@lru_cache(maxsize=16)
def frames(cadence: Cadence, payload_type: int) -> tuple[bytes, ...]:
    """One whole cadence (tone then silence) as 20 ms G.711 payloads, computed once."""
    encode = ulaw if payload_type == PCMU else alaw
    on = cadence.on_ms * SAMPLE_RATE // 1000
    total = (cadence.on_ms + cadence.off_ms) * SAMPLE_RATE // 1000
    share = _AMPLITUDE / len(cadence.frequencies)
    samples = bytearray()
    for n in range(total):
        value = 0.0
        if n < on:
            value = sum(math.sin(2 * math.pi * f * n / SAMPLE_RATE) for f in cadence.frequencies)
        samples.append(encode(round(value * share)))
    return tuple(bytes(samples[i : i + FRAME_SAMPLES]) for i in range(0, total, FRAME_SAMPLES))


def rtp_packet(
    payload_type: int, sequence: int, timestamp: int, ssrc: int, payload: bytes, marker: bool
) -> bytes:
    """Version 2, no padding, extension or CSRC (RFC 3550 §5.1)."""
    second = (0x80 if marker else 0) | payload_type
    header = struct.pack(
        "!BBHII", 0x80, second, sequence & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc & 0xFFFFFFFF
    )
    return header + payload

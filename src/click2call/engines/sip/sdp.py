"""The little SDP work third-party call control needs (RFC 3264, RFC 3725). Pure text in, text out.

The controller never invents media: it answers the agent's first offer with a held
answer (connection address 0.0.0.0, RFC 3264 §8.4's old-style hold) and later hands the
destination's SDP to the agent. Each leg sees one stable `o=` origin whose version
goes up by one per new body (RFC 3264 §8): strict phones drop a call whose origin changes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Origin:
    """The `o=` line we present on one leg."""

    session_id: int
    address: str = "127.0.0.1"
    username: str = "click2call"
    version: int = 0

    def next(self) -> str:
        self.version += 1
        family = "IP6" if ":" in self.address else "IP4"
        return f"{self.username} {self.session_id} {self.version} IN {family} {self.address}"


def _lines(sdp: str) -> list[str]:
    return [line for line in sdp.replace("\r\n", "\n").split("\n") if line]


def _join(lines: list[str]) -> str:
    return "\r\n".join(lines) + "\r\n"


def with_origin(sdp: str, origin_line: str) -> str:
    """`sdp` with its `o=` line replaced by ours."""
    lines = _lines(sdp)
    if not lines or not lines[0].startswith("v="):
        raise ValueError("not an SDP body")
    out = [f"o={origin_line}" if line.startswith("o=") else line for line in lines]
    if not any(line.startswith("o=") for line in lines):
        out.insert(1, f"o={origin_line}")
    return _join(out)


def hold_answer(offer: str, origin_line: str) -> str:
    """An answer accepting each offered stream with its first format, held (0.0.0.0)."""
    lines = _lines(offer)
    if not lines or not lines[0].startswith("v="):
        raise ValueError("not an SDP body")
    ip6 = any(line.startswith("c=IN IP6") for line in lines)
    answer = [
        "v=0",
        f"o={origin_line}",
        "s=click2call",
        "c=IN IP6 ::" if ip6 else "c=IN IP4 0.0.0.0",
        "t=0 0",
    ]
    media: list[list[str]] = []
    for line in lines:
        if line.startswith("m="):
            media.append([line])
        elif media:
            media[-1].append(line)
    for block in media:
        answer += _held_media(block)
    return _join(answer)


@dataclass(frozen=True, slots=True)
class MediaTarget:
    """Where the offerer wants its first audio stream sent, and the G.711 format to use."""

    address: str
    port: int
    payload_type: int  # 0 (PCMU) or 8 (PCMA)


def g711_target(offer: str) -> MediaTarget | None:
    """The offer's first audio stream if it takes PCMU or PCMA (else no tone can be sent)."""
    lines = _lines(offer)
    session_address = None
    for index, line in enumerate(lines):
        if line.startswith("c=IN ") and session_address is None:
            session_address = line.split()[-1]
        if not line.startswith("m=audio "):
            continue
        parts = line[2:].split()
        formats = [f for f in parts[3:] if f in ("0", "8")]
        if len(parts) < 4 or parts[1] == "0" or not formats:
            return None
        address = session_address
        for attribute in lines[index + 1 :]:
            if attribute.startswith("m="):
                break
            if attribute.startswith("c=IN "):
                address = attribute.split()[-1]
        if address is None or address in ("0.0.0.0", "::"):
            return None
        port = parts[1].partition("/")[0]  # `<port>/<count>` is legal too (RFC 4566 §5.14)
        if not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
            return None
        return MediaTarget(address, int(port), int(formats[0]))
    return None


def ringback_answer(offer: str, origin_line: str, address: str, port: int, pt: int) -> str:
    """An answer taking the offer's audio with one G.711 format, sent from `address:port`.

    sendonly: the agent hears our ringback; we do not want their audio.
    """
    lines = _lines(offer)
    family = "IP6" if ":" in address else "IP4"
    answer = ["v=0", f"o={origin_line}", "s=click2call", f"c=IN {family} {address}", "t=0 0"]
    audio_done = False
    for line in lines:
        if not line.startswith("m="):
            continue
        kind, _port, proto, *formats = line[2:].split()
        if kind == "audio" and not audio_done:
            name = "PCMU" if pt == 0 else "PCMA"
            answer += [f"m=audio {port} {proto} {pt}", f"a=rtpmap:{pt} {name}/8000", "a=sendonly"]
            audio_done = True
        else:
            answer.append(f"m={kind} 0 {proto} {formats[0] if formats else '0'}")
    return _join(answer)


def _held_media(block: list[str]) -> list[str]:
    parts = block[0][2:].split()
    if len(parts) < 4:
        raise ValueError(f"malformed media line {block[0]!r}")
    kind, port, proto, fmt = parts[:4]
    if port == "0":
        # A rejected stream stays rejected in the answer (RFC 3264 §6).
        return [f"m={kind} 0 {proto} {fmt}"]
    out = [f"m={kind} 9 {proto} {fmt}"]
    out += [a for a in block[1:] if a.startswith((f"a=rtpmap:{fmt} ", f"a=fmtp:{fmt} "))]
    return out

"""The agent's 200 OK → the destination's INVITE, timed by the kernel on the loopback.

bench.sip's delay used to come from SIPp's message logs: SIPp stamps a message when it
gets round to logging it, after its own scheduling, so the figure carried SIPp's delays
(a negative p50 appeared once at 50 calls/s). Here a packet socket on `lo` (AF_PACKET,
root only) sees each SIP datagram between the server and the two SIPp peers once, with
the time the kernel took it in (SO_TIMESTAMPNS): the delay is the server's alone, from
the answer reaching the loopback to the INVITE leaving on it.

The socket reads in a child process, so neither the paced load nor the server shares a
GIL with it; a BPF filter drops every other packet (HTTP, ringback RTP) in the kernel.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import re
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event
from pathlib import Path

_ETH_P_IP = 0x0800
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_SO_ATTACH_FILTER = 26
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
_SOL_PACKET = 263
_PACKET_STATISTICS = 6
_RECORD = struct.Struct("qH")  # kernel time (ns), datagram length
# The kernel stamps each packet as it arrives, so the reader may take them in batches:
# woken for each of ~1,500 packets a second it took CPU from the server it measures
# (0.3 to 0.6 ms more per call on two cores, against the same server without it).
_READ_EVERY = 0.05


@dataclass(frozen=True, slots=True)
class Datagram:
    at_ns: int  # when the kernel took it in on `lo`
    source: int  # UDP ports
    destination: int
    payload: bytes


def _udp_ports_filter(ports: tuple[int, ...]) -> bytes:
    """Classic BPF on the IP header (a SOCK_DGRAM packet socket): UDP from or to `ports`.
    Loopback IPv4 carries no IP options, so the UDP header is at byte 20."""
    ld_b, ld_h, jeq, ret = 0x30, 0x28, 0x15, 0x06
    checks = [(offset, port) for offset in (20, 22) for port in ports]
    accept = 2 + 2 * len(checks)  # the index of the accepting return; the drop follows
    prog = [(ld_b, 0, 0, 9), (jeq, 0, accept - 1, 17)]  # IP protocol 17 (UDP), else drop
    for i, (offset, port) in enumerate(checks):
        prog.append((ld_h, 0, 0, offset))
        miss = 1 if i == len(checks) - 1 else 0  # past the last check: to the drop
        prog.append((jeq, accept - len(prog) - 1, miss, port))  # jumps count from the next
    prog += [(ret, 0, 0, 0xFFFF), (ret, 0, 0, 0)]
    return b"".join(struct.pack("HBBI", *op) for op in prog)


def _capture(ports: tuple[int, ...], path: Path, ready: Event, stop: Event) -> None:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(_ETH_P_IP))
    program = _udp_ports_filter(ports)
    buffer = ctypes.create_string_buffer(program)
    fprog = struct.pack("HxxxxxxQ", len(program) // 8, ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)
    sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
    # Past rmem_max (root may): a batch's packets must all wait in it; drops are counted.
    sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, 8 * 1024 * 1024)
    sock.bind(("lo", _ETH_P_IP))
    sock.setblocking(False)
    ready.set()
    with path.open("wb") as out:
        stopping = False
        while not stopping:
            stopping = stop.wait(_READ_EVERY)  # then one last drain
            while True:
                try:
                    data, ancillary, _flags, _address = sock.recvmsg(2048, 64)
                except BlockingIOError:
                    break
                for level, kind, value in ancillary:
                    if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS:
                        seconds, nanoseconds = struct.unpack("qq", value[:16])
                        at = seconds * 1_000_000_000 + nanoseconds
                        out.write(_RECORD.pack(at, len(data)))
                        out.write(data)
        stats = sock.getsockopt(_SOL_PACKET, _PACKET_STATISTICS, 8)
        out.write(_RECORD.pack(-1, struct.unpack("II", stats)[1]))  # drops, at the end


@dataclass
class Capture:
    path: Path
    datagrams: list[Datagram] = field(default_factory=list)
    dropped: int = 0

    def read(self) -> None:
        data = self.path.read_bytes()
        offset = 0
        while offset < len(data):
            at, length = _RECORD.unpack_from(data, offset)
            offset += _RECORD.size
            if at < 0:
                self.dropped = length
                continue
            packet = data[offset : offset + length]
            offset += length
            if len(packet) < 28 or packet[0] >> 4 != 4 or packet[9] != 17:
                continue  # not IPv4 UDP: a packet queued before the filter was attached
            header = (packet[0] & 0x0F) * 4
            source, destination = struct.unpack_from("!HH", packet, header)
            self.datagrams.append(Datagram(at, source, destination, packet[header + 8 :]))


@contextlib.contextmanager
def loopback(ports: tuple[int, ...], folder: Path) -> Iterator[Capture | None]:
    """Capture UDP from or to `ports` on `lo` while in the block; None without the right
    (CAP_NET_RAW) or without AF_PACKET."""
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(_ETH_P_IP)).close()
    except (OSError, AttributeError):
        yield None
        return
    capture = Capture(folder / "loopback.bin")
    context = multiprocessing.get_context("fork")
    ready, stop = context.Event(), context.Event()
    reader = context.Process(target=_capture, args=(ports, capture.path, ready, stop))
    reader.start()
    try:
        ready.wait(10)
        yield capture
    finally:
        stop.set()
        reader.join(10)
    capture.read()


_CALL_ID = re.compile(rb"^(?:Call-ID|i)\s*:\s*(\S+)", re.MULTILINE | re.IGNORECASE)
_CORRELATION = re.compile(rb"^X-Click2call-Id\s*:\s*(\S+)", re.MULTILINE | re.IGNORECASE)
_CSEQ_INVITE = re.compile(rb"^CSeq\s*:\s*\d+\s+INVITE", re.MULTILINE | re.IGNORECASE)


def answer_to_invite(datagrams: list[Datagram], agent: int, trunk: int) -> list[float]:
    """Per call, ms from the agent's first 200 OK to its INVITE (sent from port `agent`)
    to the destination's first INVITE (to port `trunk`), matched by the X-Click2call-Id
    both INVITEs carry; retransmissions and the bridging re-INVITE's 200 come later and
    are not the first."""
    correlation: dict[bytes, bytes] = {}  # the agent leg's Call-ID → the call's id
    answered: dict[bytes, int] = {}  # by the agent leg's Call-ID
    invited: dict[bytes, int] = {}  # by the call's id
    for datagram in datagrams:
        payload = datagram.payload
        call_id = _CALL_ID.search(payload)
        if call_id is None:
            continue
        if datagram.destination == agent and payload.startswith(b"INVITE "):
            tag = _CORRELATION.search(payload)
            if tag is not None:
                correlation.setdefault(call_id[1], tag[1])
        elif (
            datagram.source == agent
            and payload.startswith(b"SIP/2.0 200")
            and _CSEQ_INVITE.search(payload)
        ):
            answered.setdefault(call_id[1], datagram.at_ns)
        elif datagram.destination == trunk and payload.startswith(b"INVITE "):
            tag = _CORRELATION.search(payload)
            if tag is not None:
                invited.setdefault(tag[1], datagram.at_ns)
    delays = []
    for call_id, at in answered.items():
        tag = correlation.get(call_id)
        if tag is not None and tag in invited:
            delays.append((invited[tag] - at) / 1e6)
    return delays

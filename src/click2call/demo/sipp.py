"""SIPp peers on loopback: the phones and trunks of the demo, the tests and the benchmarks."""

from __future__ import annotations

import fcntl
import os
import random
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SCENARIOS = Path(__file__).parent


def sipp_binary() -> str:
    found = shutil.which("sipp")
    if found is None:
        raise RuntimeError("SIPp is not installed (Debian package 'sip-tester')")
    return found


def terminate(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it is still there after `grace` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


_HANDED_OUT: set[int] = set()
# One open, flock()ed file per port this process handed out: test suites and benchmarks
# running side by side on one machine then never pick the same port between a probe and
# the bind (the kernel drops the lock when the process ends, however it ends).
_CLAIMS: dict[int, int] = {}
_CLAIM_FOLDER = Path(tempfile.gettempdir()) / "click2call-ports"


def _claim(port: int) -> bool:
    """Reserve `port` among processes on this machine; False when another one holds it."""
    try:
        _CLAIM_FOLDER.mkdir(exist_ok=True)
        fd = os.open(_CLAIM_FOLDER / str(port), os.O_CREAT | os.O_RDWR, 0o666)
    except PermissionError:  # another user's folder or file: no lock, the probe alone
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    _CLAIMS[port] = fd
    return True


def _release(port: int) -> None:
    if port in _CLAIMS:
        os.close(_CLAIMS.pop(port))  # closing the file drops its lock


def _below_ephemeral() -> range:
    """Ports the kernel never hands to a socket bound to port 0 (its ephemeral range starts
    above them): a port chosen here cannot be taken meanwhile by some process's RTP socket
    or outgoing connection, between our probe and the server binding it."""
    try:
        first = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        first = 32768
    return range(10000, max(first, 12000))


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    """A port free on 127.0.0.1 for both UDP and TCP (a SIP server listens on both), below
    the kernel's ephemeral range, and never the same number twice in one process."""
    del kind  # both kinds are checked
    ports = _below_ephemeral()
    while True:
        port = random.choice(ports)
        if port not in _HANDED_OUT and _free_on_both(port) and _claim(port):
            _HANDED_OUT.add(port)
            return port


def _free_on_both(port: int) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_ports_in_a_row(count: int) -> int:
    """The first of `count` consecutive ports free on UDP and TCP: `serve --workers N`
    gives worker i the SIP port `[sip] port` + i."""
    while True:
        first = free_port()
        rest = range(first + 1, first + count)
        if not all(p not in _HANDED_OUT and _free_on_both(p) for p in rest):
            _release(first)
            continue
        claimed = []
        for port in rest:
            if not _claim(port):
                break
            claimed.append(port)
        else:
            _HANDED_OUT.update(rest)
            return first
        for port in (first, *claimed):  # another process holds one: free ours for others
            _release(port)


@dataclass
class SippPeer:
    """One SIPp process answering calls from its scenario on 127.0.0.1:port."""

    scenario: Path
    port: int
    workdir: Path
    calls: int = 1
    extra_args: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def message_log(self) -> Path:
        return self.workdir / f"{self.scenario.stem}-{self.port}-messages.log"

    @property
    def error_log(self) -> Path:
        return self.workdir / f"{self.scenario.stem}-{self.port}-errors.log"

    def start(self) -> SippPeer:
        self.process = subprocess.Popen(
            [
                sipp_binary(),
                *("-sf", str(self.scenario), "-i", "127.0.0.1", "-p", str(self.port)),
                *("-m", str(self.calls), "-nostdin", "-trace_msg", "-trace_err"),
                *("-message_file", str(self.message_log), "-error_file", str(self.error_log)),
                *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.workdir,
        )
        self._wait_bound()
        return self

    def _wait_bound(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        stream = any(a in ("t1", "tn", "l1", "ln") for a in self.extra_args)  # SIPp's -t
        kind = socket.SOCK_STREAM if stream else socket.SOCK_DGRAM
        while time.monotonic() < deadline:
            with socket.socket(socket.AF_INET, kind) as probe:
                try:
                    probe.bind(("127.0.0.1", self.port))
                except OSError:
                    return  # SIPp holds the port
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"SIPp exited early: {self.errors()}")
            time.sleep(0.02)
        raise RuntimeError(f"SIPp did not bind 127.0.0.1:{self.port}")

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for SIPp to finish its calls; its exit code (0: every call passed)."""
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise

    def stop(self) -> None:
        if self.process is not None:
            terminate(self.process)

    def messages(self) -> str:
        return self.message_log.read_text(errors="replace") if self.message_log.exists() else ""

    def errors(self) -> str:
        return self.error_log.read_text(errors="replace") if self.error_log.exists() else ""

    def received(self) -> list[str]:
        """The SIP messages SIPp received, each as text (start line, headers, body)."""
        entries = re.split(r"^-{20,} [0-9: .-]+$", self.messages(), flags=re.MULTILINE)
        out = []
        for entry in entries:
            first, _, message = entry.strip("\n").partition("\n")
            if " message received " in first:
                out.append(message.strip("\n"))
        return out

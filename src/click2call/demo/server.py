"""The click2call server as a child process on loopback, for tests and benchmarks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from click2call.demo.sipp import terminate


@dataclass
class ServerProcess:
    config: Path
    base_url: str
    log: Path
    process: subprocess.Popen[bytes] | None = None
    serve_args: tuple[str, ...] = ()  # e.g. ("--workers", "2")

    def start(self, timeout: float = 20.0) -> ServerProcess:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    *("-m", "click2call", "serve", "--config", str(self.config)),
                    *self.serve_args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + timeout
        while not self._healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server did not start:\n{self.log.read_text()}")
            time.sleep(0.1)
        return self

    def _healthy(self) -> bool:
        """The server answers HTTP (a 503 from a down engine counts: the server is up)."""
        try:
            url = f"{self.base_url}/api/v1/health"
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 (our loopback URL)
                return True
        except urllib.error.HTTPError:
            return True
        except (urllib.error.URLError, OSError):
            return False

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        if self.process is not None:
            terminate(self.process)


def wait_listening(port: int, workers: int, timeout: float = 30) -> None:
    """Until each worker listens on the HTTP port (each binds it with SO_REUSEPORT): the
    first to answer health may be alone for a while, and a run that started then went
    to it alone."""
    deadline = time.monotonic() + timeout
    while (found := _listening(port)) < workers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{found} of {workers} workers listen on port {port}")
        time.sleep(0.1)


def _listening(port: int) -> int:
    """How many sockets listen on TCP `port`, IPv4 or IPv6 (/proc/net/tcp, tcp6)."""
    found = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        lines = path.read_text().splitlines()[1:] if path.exists() else []
        fields = (line.split() for line in lines)
        found += sum(1 for f in fields if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port)
    return found

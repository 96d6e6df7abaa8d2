"""`serve --workers N`: N server processes on one machine sharing its HTTP port.

Each worker is a whole server with its own engines: SIP port = `[sip] port` + its index,
node id = the node's + `/w<index>`. Each binds the HTTP port with SO_REUSEPORT, so the
kernel spreads connections over them. What they share is the database, through which calls,
limits, hang-ups and webhook claims already work across processes: several workers need
PostgreSQL (a SQLite file is for one process).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from types import FrameType

from click2call.settings import Settings


def default_node_id(settings: Settings) -> str:
    return settings.server.node_id or f"{socket.gethostname()}:{settings.server.port}"


def for_worker(settings: Settings, index: int) -> Settings:
    """The settings of worker `index`: its own SIP port and node id."""
    sip_port = settings.sip.port + index if settings.sip.port else 0
    server = settings.server.model_copy(update={"node_id": f"{default_node_id(settings)}/w{index}"})
    sip = settings.sip.model_copy(update={"port": sip_port})
    return settings.model_copy(update={"server": server, "sip": sip})


def shared_socket(host: str, port: int) -> socket.socket:
    """The HTTP port, bound so that every worker can bind it too."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def supervise(config: str | None, node_id: str, workers: int) -> int:
    """Run `workers` worker processes until they end; SIGTERM/SIGINT stop them all."""
    base = [sys.executable, "-m", "click2call", "serve", "--node-id", node_id]
    if config is not None:
        base += ["--config", config]
    children = [subprocess.Popen([*base, "--worker-index", str(i)]) for i in range(workers)]

    def stop(signum: int, _frame: FrameType | None) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    codes = [child.wait() for child in children]
    return max(codes, key=abs)

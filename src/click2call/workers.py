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
import time
from types import FrameType

from click2call.settings import Settings


def default_node_id(settings: Settings) -> str:
    return settings.server.node_id or f"{socket.gethostname()}:{settings.server.port}"


def for_worker(settings: Settings, index: int) -> Settings:
    """The settings of worker `index`: its own SIP ports (UDP/TCP and TLS) and node id."""
    sip_port = settings.sip.port + index if settings.sip.port else 0
    server = settings.server.model_copy(update={"node_id": f"{default_node_id(settings)}/w{index}"})
    ports = {"port": sip_port, "tls_port": settings.sip.tls_port + index}
    sip = settings.sip.model_copy(update=ports)
    return settings.model_copy(update={"server": server, "sip": sip})


def port_clash(settings: Settings, workers: int) -> str | None:
    """Why `workers` workers cannot each have their own SIP ports, if they cannot: worker i
    listens on UDP/TCP `port` + i and, with a certificate, on TLS `tls_port` + i."""
    sip = settings.sip
    if workers < 2 or not sip.tls_cert_file:
        return None
    if sip.tls_port + workers - 1 > 65535:
        return f"[sip] tls_port {sip.tls_port} + {workers - 1} workers is past port 65535"
    plain = range(sip.port, sip.port + workers) if sip.port else range(0)
    tls = range(sip.tls_port, sip.tls_port + workers)
    if set(plain) & set(tls):
        return (
            f"{workers} workers take SIP ports {plain.start}-{plain.stop - 1} (UDP/TCP) and "
            f"{tls.start}-{tls.stop - 1} (TLS): they overlap; move [sip] tls_port"
        )
    return None


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
    stopping = False
    while any(child.poll() is None for child in children):
        # A worker that ends on its own (it could not bind, it crashed) ends the node:
        # serving on with one fewer would hide it, its calls taken over by nobody.
        if not stopping and any(child.poll() is not None for child in children):
            stopping = True
            stop(signal.SIGTERM, None)
        time.sleep(0.2)
    codes = [child.wait() for child in children]
    return max(codes, key=abs)

"""Real peers on loopback: the click2call server as a subprocess, SIPp phones and trunks."""

from __future__ import annotations

import re
import select
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from click2call.demo.server import ServerProcess
from click2call.demo.sipp import SCENARIOS, SippPeer, free_port, free_ports_in_a_row
from click2call.store.database import connect
from click2call.webhooks.signing import new_secret
from tests.ami_replay import ReplayPeer
from tests.conftest import DATABASES, empty_database
from tests.webhook_receiver import Receiver

TEST_SCENARIOS = Path(__file__).parents[1] / "sipp"


def scenario(name: str) -> Path:
    for folder in (TEST_SCENARIOS, SCENARIOS):
        if (folder / name).exists():
            return folder / name
    raise FileNotFoundError(name)


_RUNNING_PEERS: list[SippPeer] = []


@pytest.fixture(autouse=True)
def _stop_peers_after_each_test() -> Iterator[None]:
    """A failed test must not leave SIPp holding a port the next test needs."""
    yield
    while _RUNNING_PEERS:
        _RUNNING_PEERS.pop().stop()


@dataclass
class Server:
    base_url: str
    pbx_port: int
    trunk_port: int
    mobile_trunk_port: int
    workdir: Path
    sipp_args: tuple[str, ...] = ()  # every SIPp peer's transport options
    database: str = ""

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=10)

    def peer(
        self, name: str, port: int, calls: int = 1, extra_args: tuple[str, ...] = ()
    ) -> SippPeer:
        args = (*self.sipp_args, *extra_args)
        peer = SippPeer(scenario(name), port, self.workdir, calls=calls, extra_args=args)
        _RUNNING_PEERS.append(peer)
        return peer.start()

    def wait_for(
        self, call_id: int | str, state: str = "ended", timeout: float = 15
    ) -> dict[str, object]:
        """Poll the v1 API until the call reaches `state` (or has ended); its JSON."""
        deadline = time.monotonic() + timeout
        with self.client() as client:
            while True:
                call: dict[str, object] = client.get(f"/api/v1/calls/{call_id}").json()
                if call["state"] in (state, "ended") or time.monotonic() > deadline:
                    return call
                time.sleep(0.05)

    def hangup_when_connected(self, call_id: int | str) -> None:
        call = self.wait_for(call_id, "connected")
        assert call["state"] == "connected", f"{call['result']}: {call['cause']}"
        with self.client() as client:
            assert client.post(f"/api/v1/calls/{call_id}/hangup").status_code == 202


CONFIG = """
[server]
host = "127.0.0.1"
port = {http}
database = "{database}"
log_level = "info"
{server_extra}

[sip]
port = {sip}
options_interval = 0  # SIPp scenarios expect nothing but their calls

[[tenants]]
name = "default"
default_outbound_cid = "036411111"
region = "IL"
agent_ring_timeout = 2
destination_ring_timeout = 3
[tenants.sip]
pbx = "127.0.0.1:{pbx}"
trunk = "127.0.0.1:{trunk}"
username = "agent"
password = "s3cret"
[tenants.auth]
allow_unauthenticated = true
[tenants.extensions.201]
outbound_cid = "036499999"

[[tenants]]
name = "voipe16"
default_outbound_cid = "036422222"
[tenants.sip]
pbx = "127.0.0.1:{pbx}"
trunk = "127.0.0.1:{mobile_trunk}"
[tenants.auth]
allow_unauthenticated = true

[[tenants]]
name = "secure"
[tenants.sip]
pbx = "127.0.0.1:{pbx}"
trunk = "127.0.0.1:{trunk}"
[tenants.auth]
link_secret = "link-secret-of-secure"
allowed_ips = ["192.0.2.0/24"]

[[tenants]]
name = "office"
[tenants.sip]
pbx = "127.0.0.1:{pbx}"
trunk = "127.0.0.1:{trunk}"
[tenants.auth]
allowed_ips = ["127.0.0.0/8"]

[[tenants]]
name = "closed"

[[tenants]]
name = "burst"
[tenants.sip]
pbx = "127.0.0.1:{pbx}"
[tenants.auth]
allow_unauthenticated = true
[tenants.limits]
calls_per_second = 0.001
burst = 3
max_calls_per_agent = 20

[[tenants]]
name = "capped"
agent_ring_timeout = 2
[tenants.sip]
pbx = "127.0.0.1:{pbx}"
[tenants.auth]
allow_unauthenticated = true
[tenants.limits]
max_concurrent_calls = 2
max_calls_per_agent = 5

[[tenants]]
name = "cluster"  # the node drills: 5 calls up at once across nodes; agents ring for long
agent_ring_timeout = 30
[tenants.sip]
pbx = "127.0.0.1:{pbx}"
trunk = "127.0.0.1:{trunk}"
[tenants.auth]
allow_unauthenticated = true
[tenants.limits]
max_concurrent_calls = 5
max_calls_per_agent = 10
burst = 20

[[tenants]]
name = "strict"
[tenants.sip]
pbx = "127.0.0.1:{pbx}"
trunk = "127.0.0.1:{trunk}"
[tenants.auth]
allow_unauthenticated = true
[tenants.policy]
allowed_caller_ids = ["036411111", "+97236422222"]
deny = ["+9725027"]
extension_only = false

[[tenants]]
name = "internal"
[tenants.sip]
pbx = "127.0.0.1:{pbx}"
[tenants.auth]
allow_unauthenticated = true
[tenants.policy]
extension_only = true

[[tenants]]
name = "limited"
[tenants.limits]
key_requests_per_minute = 3
"""


def stored_sip_state(database: str, call_id: int | str) -> str:
    """The SIP state the server keeps for a live call (table sip_dialogs); "" when none."""
    engine = connect(database)
    query = text("SELECT state FROM sip_dialogs WHERE call_id = :id")
    try:
        with engine.connect() as conn:
            state = conn.execute(query, {"id": int(call_id)}).scalar()
    finally:
        engine.dispose()
    return "" if state is None else str(state)


def wait_sip_phase(database: str, call_id: int | str, phase: str, timeout: float = 5) -> None:
    """Until the stored SIP state of the call is in the controller's `phase`."""
    deadline = time.monotonic() + timeout
    while f'"phase":"{phase}"' not in (state := stored_sip_state(database, call_id)):
        assert time.monotonic() < deadline, f"stored SIP state: {state or 'none'}"
        time.sleep(0.05)


def upgrade_shared_database(config: Path, database: str) -> None:
    """What a deploy does once before starting servers on a shared database."""
    if not database.startswith("sqlite"):
        command = [sys.executable, "-m", "click2call", "db", "upgrade", "--config", str(config)]
        subprocess.run(command, check=True, capture_output=True)


def launch(
    workdir: Path,
    database: str | None = None,
    server_extra: str = "",
    transport: str = "udp",
    serve_args: tuple[str, ...] = (),
) -> tuple[ServerProcess, Server]:
    """A server with its own ports, and its database under `workdir` unless one is given;
    `server_extra`: more [server] keys; SIP peers reached over `transport` (udp or tcp);
    `serve_args`: more `serve` options."""
    # Worker i of `serve --workers N` takes the SIP port + i: all N must be free.
    workers = int(serve_args[serve_args.index("--workers") + 1]) if "--workers" in serve_args else 1
    http, sip = free_port(socket.SOCK_STREAM), free_ports_in_a_row(workers)
    kind = socket.SOCK_STREAM if transport == "tcp" else socket.SOCK_DGRAM
    pbx, trunk, mobile_trunk = free_port(kind), free_port(kind), free_port(kind)
    database = database or f"sqlite:///{workdir / 'calls.db'}"
    config = workdir / "click2call.toml"
    text = CONFIG.format(
        http=http,
        sip=sip,
        database=database,
        pbx=pbx,
        trunk=trunk,
        mobile_trunk=mobile_trunk,
        server_extra=server_extra,
    )
    if transport == "tcp":
        text = re.sub(r'"127\.0\.0\.1:([0-9]+)"', r'"sip:127.0.0.1:\1;transport=tcp"', text)
    config.write_text(text)
    upgrade_shared_database(config, database)
    base_url = f"http://127.0.0.1:{http}"
    log = workdir / "server.log"
    process = ServerProcess(config, base_url, log, serve_args=serve_args).start()
    sipp_args = ("-t", "t1") if transport == "tcp" else ()
    return process, Server(base_url, pbx, trunk, mobile_trunk, workdir, sipp_args, database)


SIP_CONFIG = """
[server]
host = "127.0.0.1"
port = {http}
database = "sqlite:///{db}"
[sip]
port = {sip}
{sip_extra}
"""
SIP_TENANT = """
[[tenants]]
name = "{name}"
default_outbound_cid = "036411111"
agent_ring_timeout = 20
destination_ring_timeout = 20
[tenants.sip]
pbx = "{pbx}"
trunk = "{trunk}"
username = "agent"
password = "s3cret"
[tenants.auth]
allow_unauthenticated = true
"""


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 made with openssl: (cert.pem, key.pem)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def launch_sip(
    workdir: Path, tenants: dict[str, tuple[str, str]], sip_extra: str = ""
) -> tuple[ServerProcess, Server]:
    """A server whose SIP tenants send to the given (pbx, trunk) pairs."""
    http = free_port(socket.SOCK_STREAM)
    blocks = "".join(
        SIP_TENANT.format(name=name, pbx=pbx, trunk=trunk) for name, (pbx, trunk) in tenants.items()
    )
    config = workdir / "click2call.toml"
    text = SIP_CONFIG.format(
        http=http, sip=free_port(), db=workdir / "calls.db", sip_extra=sip_extra
    )
    config.write_text(text + blocks)
    base_url = f"http://127.0.0.1:{http}"
    process = ServerProcess(config, base_url, workdir / "server.log").start()
    return process, Server(base_url, 0, 0, 0, workdir, database=f"sqlite:///{workdir / 'calls.db'}")


ASTERISK_CONFIG = """
[server]
host = "127.0.0.1"
port = {http}
database = "{database}"
{server_extra}

[[tenants]]
name = "default"
engine = "asterisk"
default_outbound_cid = "036411111"
agent_ring_timeout = 8
[tenants.asterisk]
port = {ami}
username = "click2call"
secret = "test"
action_timeout = 2
reconnect_max_delay = 1
[tenants.auth]
allow_unauthenticated = true

[[tenants]]
name = "voipe16"
engine = "asterisk"
default_outbound_cid = "036411111"
agent_ring_timeout = 8
[tenants.asterisk]
port = {ami}
username = "click2call"
secret = "test"
[tenants.auth]
allow_unauthenticated = true

[[tenants]]
name = "quick"
engine = "asterisk"
default_outbound_cid = "036411111"
agent_ring_timeout = 8
destination_ring_timeout = 0.5
max_call_seconds = 0.5
[tenants.asterisk]
port = {ami}
username = "click2call"
secret = "test"
end_grace = 0.5
[tenants.auth]
allow_unauthenticated = true
"""


@dataclass
class AsteriskServer:
    server: Server
    peer: ReplayPeer
    process: ServerProcess


def launch_asterisk(
    workdir: Path,
    peer: ReplayPeer,
    secret: str = "test",
    wait_logins: int = 3,
    tenants: int = 3,
    last_tenant_extra: str = "",
    database: str | None = None,
    server_extra: str = "",
) -> AsteriskServer:
    """A server whose first `tenants` tenants (of three) use the Asterisk engine on `peer`;
    `last_tenant_extra`: more TOML for the last of them (e.g. its [tenants.limits]);
    `database`: a shared one (else SQLite under `workdir`); `server_extra`: more [server]."""
    http = free_port(socket.SOCK_STREAM)
    config = workdir / "click2call.toml"
    database = database or f"sqlite:///{workdir / 'calls.db'}"
    text = ASTERISK_CONFIG.format(
        http=http, database=database, server_extra=server_extra, ami=peer.port
    )
    text = "[[tenants]]".join(text.split("[[tenants]]")[: tenants + 1]) + last_tenant_extra
    config.write_text(text.replace('secret = "test"', f'secret = "{secret}"'))
    upgrade_shared_database(config, database)
    base_url = f"http://127.0.0.1:{http}"
    process = ServerProcess(config, base_url, workdir / "server.log").start()
    server = Server(base_url, 0, 0, 0, workdir, database=database)
    deadline = time.monotonic() + 10
    while peer.logins < wait_logins and time.monotonic() < deadline:  # tenants logged in
        time.sleep(0.05)
    return AsteriskServer(server, peer, process)


@pytest.fixture(scope="session")
def asterisk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AsteriskServer]:
    peer = ReplayPeer().start()
    running = launch_asterisk(tmp_path_factory.mktemp("asterisk"), peer)
    yield running
    running.process.stop()
    peer.stop()


class SharedServers:
    """The servers most tests share, one per database, each launched when first needed."""

    def __init__(self, request: pytest.FixtureRequest, folders: pytest.TempPathFactory) -> None:
        self._request = request
        self._folders = folders
        self._running: dict[str, tuple[ServerProcess, Server]] = {}

    def on(self, database: str) -> Server:
        if database not in self._running:
            workdir = self._folders.mktemp(f"server-{database}")
            url = empty_database(database, self._request, workdir)
            self._running[database] = launch(workdir, url)
        return self._running[database][1]

    def stop(self) -> None:
        for process, _ in self._running.values():
            process.stop()


@pytest.fixture(scope="session")
def shared_servers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SharedServers]:
    servers = SharedServers(request, tmp_path_factory)
    yield servers
    servers.stop()


@pytest.fixture(scope="session", params=DATABASES)
def server(request: pytest.FixtureRequest, shared_servers: SharedServers) -> Server:
    """The shared server, once on SQLite and once on PostgreSQL."""
    return shared_servers.on(request.param)


@pytest.fixture
def silent_peers(server: Server) -> Iterator[list[socket.socket]]:
    """UDP sockets on the PBX and trunk ports, to prove nothing was sent to them."""
    sockets = []
    for port in (server.pbx_port, server.trunk_port, server.mobile_trunk_port):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", port))
        sockets.append(sock)
    yield sockets
    for sock in sockets:
        sock.close()


def assert_nothing_received(sockets: list[socket.socket], wait: float = 0.3) -> None:
    readable, _, _ = select.select(sockets, [], [], wait)
    for sock in readable:
        data = sock.recv(65535)
        pytest.fail(f"unexpected datagram on {sock.getsockname()}: {data[:80]!r}")


TENANT_SECRET = new_secret(b"t" * 32)  # the webhook tests' tenant-wide endpoint secret


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A loopback webhook receiver verifying every delivery with TENANT_SECRET."""
    running = Receiver(TENANT_SECRET).start()
    yield running
    running.stop()

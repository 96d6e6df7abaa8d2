"""A real browser against the real server: Debian's chromium driven by Playwright, SIPp as
the phones, a second origin on loopback playing the CRM page (and the attacker's page)."""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from click2call.demo.server import ServerProcess
from click2call.demo.sipp import SippPeer, free_port
from tests.integration.conftest import scenario

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parent / "artifacts"
# Flags that work on a bare server: no sandbox (root in a container), no GPU, no network
# beyond what the page asks for. Playwright adds --headless and a fresh --user-data-dir.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

CONFIG = """
[server]
host = "127.0.0.1"
port = {http}
database = "sqlite:///{db}"
log_level = "info"

[sip]
port = {sip}

[[tenants]]
name = "default"
default_outbound_cid = "036411111"
agent_ring_timeout = 5
destination_ring_timeout = 5
[tenants.sip]
pbx = "127.0.0.1:{pbx}"
trunk = "127.0.0.1:{trunk}"
[tenants.widget]
allowed_origins = ["http://localhost:{crm}"]
[[tenants.webhooks]]  # the CRM origin's static server answers POST with 501: a failed try
url = "http://127.0.0.1:{crm}/hooks/click2call"
secret = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3"
events = ["call.ended"]

[[tenants]]
name = "other"
[tenants.sip]
pbx = "127.0.0.1:{pbx}"
trunk = "127.0.0.1:{trunk}"
"""


@dataclass
class Dashboard:
    """The server under test, its keys, its SIP peers' ports and the CRM origin's."""

    base_url: str
    admin_key: str
    user_key: str
    other_key: str
    pbx_port: int
    trunk_port: int
    crm_port: int
    crm_root: Path
    workdir: Path
    peers: list[SippPeer] = field(default_factory=list)

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"X-API-Key": key or self.admin_key}
        return httpx.Client(base_url=self.base_url, timeout=10, headers=headers)

    def peer(self, name: str, port: int, calls: int = 1) -> SippPeer:
        peer = SippPeer(scenario(name), port, self.workdir, calls=calls)
        self.peers.append(peer)
        return peer.start()

    def phones(self, agent: str, destination: str) -> tuple[SippPeer, SippPeer]:
        return self.peer(agent, self.pbx_port), self.peer(destination, self.trunk_port)

    def call(self, call_id: int | str) -> dict[str, object]:
        with self.client() as client:
            body: dict[str, object] = client.get(f"/api/v1/calls/{call_id}").json()
            return body

    def wait_for(self, call_id: int | str, state: str, timeout: float = 15) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while True:
            call = self.call(call_id)
            if call["state"] in (state, "ended") or time.monotonic() > deadline:
                return call
            time.sleep(0.05)

    def crm_page(self, name: str, html: str) -> str:
        (self.crm_root / name).write_text(html, encoding="utf-8")
        return name


def cli(config: Path, *args: str) -> str:
    """`click2call <command> --config <config> <args>`; its output."""
    command, *rest = args
    return subprocess.run(
        [sys.executable, "-m", "click2call", command, "--config", str(config), *rest],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def create_key(config: Path, *options: str) -> str:
    out = cli(config, "keys", "create", *options)
    match = re.search(r"^(c2c_\S+)$", out, re.MULTILINE)
    assert match, out
    return match.group(1)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="package")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    workdir = tmp_path_factory.mktemp("dashboard")
    crm_root = workdir / "crm"
    crm_root.mkdir()
    web, sip, pbx, trunk = free_port(socket.SOCK_STREAM), free_port(), free_port(), free_port()
    crm = free_port(socket.SOCK_STREAM)
    config = workdir / "click2call.toml"
    config.write_text(
        CONFIG.format(http=web, sip=sip, db=workdir / "calls.db", pbx=pbx, trunk=trunk, crm=crm)
    )
    admin = create_key(config, "--tenant", "default", "--admin", "--label", "e2e admin")
    user = create_key(config, "--tenant", "default", "--label", "e2e user")
    other = create_key(config, "--tenant", "other")
    handler = functools.partial(_QuietHandler, directory=str(crm_root))
    crm_server = http.server.ThreadingHTTPServer(("127.0.0.1", crm), handler)
    threading.Thread(target=crm_server.serve_forever, daemon=True).start()
    base_url = f"http://127.0.0.1:{web}"
    process = ServerProcess(config, base_url, workdir / "server.log").start()
    running = Dashboard(base_url, admin, user, other, pbx, trunk, crm, crm_root, workdir)
    yield running
    process.stop()
    crm_server.shutdown()
    crm_server.server_close()


@pytest.fixture(autouse=True)
def _stop_phones(dashboard: Dashboard) -> Iterator[None]:
    yield
    while dashboard.peers:
        dashboard.peers.pop().stop()


# Package scope: Playwright's sync API keeps an event loop running while it is open, which
# the asyncio tests of the other folders must not find.
@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    if not os.path.exists(CHROMIUM):
        pytest.fail("chromium is missing: `make browser-deps` installs it with apt-get")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1100, "height": 720})
    context.set_default_timeout(10_000)
    opened = context.new_page()
    yield opened
    context.close()


def sign_in(page: Page, dashboard: Dashboard, key: str | None = None) -> None:
    page.goto(f"{dashboard.base_url}/ui/signin")
    page.get_by_label("API key").fill(key or dashboard.admin_key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/ui/live")


def artifact(name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name

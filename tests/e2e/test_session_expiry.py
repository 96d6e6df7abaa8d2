"""A dashboard session ends by itself after `[server] session_minutes`."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx

from click2call.demo.server import ServerProcess
from click2call.demo.sipp import free_port
from tests.e2e.conftest import create_key

CONFIG = """
[server]
port = {http}
database = "sqlite:///{db}"
session_minutes = 0.02  # 1.2 s

[sip]
port = {sip}
"""


def test_a_session_expires(tmp_path: Path) -> None:
    http = free_port(socket.SOCK_STREAM)
    config = tmp_path / "click2call.toml"
    config.write_text(CONFIG.format(http=http, db=tmp_path / "calls.db", sip=free_port()))
    key = create_key(config, "--tenant", "default")
    base_url = f"http://127.0.0.1:{http}"
    process = ServerProcess(config, base_url, tmp_path / "server.log").start()
    try:
        with httpx.Client(base_url=base_url, timeout=10) as browser:
            page = browser.get("/ui/signin").text
            csrf = page.split('name="csrf" value="')[1].split('"')[0]
            signed = browser.post("/ui/signin", data={"key": key, "csrf": csrf})
            assert signed.headers["location"] == "/ui/live"
            assert browser.get("/ui/live").status_code == 200
            assert browser.get("/api/v1/calls").status_code == 200
            time.sleep(1.5)
            assert browser.get("/api/v1/calls").status_code == 401
            assert browser.get("/ui/live").headers["location"] == "/ui/signin"
    finally:
        process.stop()

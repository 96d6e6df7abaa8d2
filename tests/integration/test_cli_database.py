"""The command line and the server agree on the database, wherever the command is run."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import httpx

from click2call.demo.server import ServerProcess
from click2call.demo.sipp import free_port

CONFIG = """
[server]
port = {http}
database = "sqlite:///calls.db"

[sip]
port = {sip}

[[tenants]]
name = "default"
"""
KEYS_CREATE = [sys.executable, "-m", "click2call", "keys", "create"]


def test_a_key_created_from_another_folder_opens_the_server(tmp_path: Path) -> None:
    server_dir, elsewhere = tmp_path / "server", tmp_path / "elsewhere"
    server_dir.mkdir()
    elsewhere.mkdir()
    http = free_port(socket.SOCK_STREAM)
    config = server_dir / "click2call.toml"
    config.write_text(CONFIG.format(http=http, sip=free_port()))
    base_url = f"http://127.0.0.1:{http}"
    process = ServerProcess(config, base_url, tmp_path / "server.log").start()
    try:
        created = subprocess.run(
            [*KEYS_CREATE, "--config", str(config), "--tenant", "default"],
            cwd=elsewhere,
            capture_output=True,
            text=True,
            check=True,
        )
        key = created.stdout.splitlines()[-1]
        assert f"database: SQLite file {server_dir / 'calls.db'}" in created.stderr
        assert list(elsewhere.iterdir()) == []
        with httpx.Client(base_url=base_url, timeout=10) as client:
            assert client.get("/api/v1/calls").status_code == 401
            assert client.get("/api/v1/calls", headers={"X-API-Key": key}).status_code == 200
    finally:
        process.stop()
    assert (
        f"database: SQLite file {server_dir / 'calls.db'}" in (tmp_path / "server.log").read_text()
    )

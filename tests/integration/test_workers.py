"""`serve --workers 2`: two processes share the HTTP port, each with its own engine."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from click2call.cli import main
from click2call.demo.server import wait_listening
from click2call.demo.sipp import free_port, free_ports_in_a_row
from click2call.store.database import connect
from tests.integration.conftest import launch, upgrade_shared_database
from tests.postgres_cluster import PostgresCluster


def test_two_workers_share_the_port_and_each_follows_its_calls(
    postgres: PostgresCluster, tmp_path: Path
) -> None:
    url = postgres.new_database()
    process, server = launch(tmp_path, url, serve_args=("--workers", "2", "--node-id", "gw1"))
    try:
        # The first worker up answers health alone for a while: both must listen first.
        wait_listening(int(server.base_url.rsplit(":", 1)[1]), 2)
        agent = server.peer("agent_busy.xml", server.pbx_port, calls=10)
        ids = []
        for n in range(10):
            with server.client() as client:  # a new connection each: the kernel picks a worker
                params = {"extension": str(200 + n), "destination": "0502760206"}
                reply = client.get("/web/dial.php", params=params)
                ids.append(int(reply.text.split("unique: ")[1]))
        for call_id in ids:
            assert server.wait_for(call_id)["result"] == "agent_busy"
        agent.stop()
    finally:
        process.stop()
    engine = connect(url)
    with engine.connect() as conn:
        nodes = {row.node for row in conn.execute(text("SELECT DISTINCT node FROM calls"))}
    engine.dispose()
    assert nodes == {"gw1/w0", "gw1/w1"}
    postgres.drop_database(url)


def test_several_workers_need_postgresql(tmp_path: Path) -> None:
    config = tmp_path / "click2call.toml"
    port = free_port(socket.SOCK_STREAM)
    config.write_text(f'[server]\nport = {port}\ndatabase = "sqlite:///{tmp_path / "c.db"}"\n')
    with pytest.raises(SystemExit, match="several workers share one database: use PostgreSQL"):
        main(["serve", "--config", str(config), "--workers", "2"])


def test_a_worker_that_cannot_start_stops_the_node(
    postgres: PostgresCluster, tmp_path: Path
) -> None:
    """Serving on with a worker fewer would hide it: its SIP port taken, worker 1 ends at
    start, and the supervisor stops the other and exits with an error."""
    url = postgres.new_database()
    sip = free_ports_in_a_row(2)
    config = tmp_path / "click2call.toml"
    http = free_port(socket.SOCK_STREAM)
    config.write_text(
        f'[server]\nport = {http}\ndatabase = "{url}"\n[sip]\nport = {sip}\noptions_interval = 0\n'
    )
    upgrade_shared_database(config, url)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", sip + 1))
        serve = [sys.executable, "-m", "click2call", "serve", "--config", str(config)]
        node = subprocess.run(
            [*serve, "--workers", "2"], capture_output=True, text=True, timeout=60, check=False
        )
    assert node.returncode != 0
    assert f"SIP port 127.0.0.1:{sip + 1} (UDP) is already in use" in node.stderr
    postgres.drop_database(url)

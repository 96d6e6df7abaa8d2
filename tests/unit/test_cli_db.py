"""`click2call db`: a shared database is migrated once per deploy, and every command that
opens it refuses an older schema or an unreachable server with a sentence."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from click2call.cli import main
from click2call.demo.sipp import free_port
from tests.postgres_cluster import PostgresCluster


def _config(folder: Path, database: str) -> str:
    path = folder / "click2call.toml"
    path.write_text(f'[server]\ndatabase = "{database}"\n\n[[tenants]]\nname = "default"\n')
    return str(path)


def test_serve_refuses_an_unmigrated_database_until_db_upgrade_ran(
    postgres: PostgresCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = postgres.new_database()
    config = _config(tmp_path, url)
    for command in (["serve"], ["keys", "list"]):
        with pytest.raises(SystemExit, match=r"no click2call schema.*run `click2call db upgrade"):
            main([*command[:1], "--config", config, *command[1:]])
    assert main(["db", "status", "--config", config]) == 1
    assert "at revision none" in capsys.readouterr().out
    assert main(["db", "upgrade", "--config", config]) == 0
    assert "upgraded from empty to" in capsys.readouterr().out
    assert main(["db", "upgrade", "--config", config]) == 0
    assert "already at revision" in capsys.readouterr().out
    assert main(["db", "status", "--config", config]) == 0
    postgres.drop_database(url)


def test_an_unreachable_database_is_a_sentence_without_the_password(tmp_path: Path) -> None:
    port = free_port(socket.SOCK_STREAM)  # nothing listens there
    config = _config(tmp_path, f"postgresql://click2call:hunter2@127.0.0.1:{port}/calls")
    with pytest.raises(SystemExit) as stopped:
        main(["db", "upgrade", "--config", config])
    message = str(stopped.value)
    assert message.startswith("click2call: cannot use the database: ")
    assert str(port) in message
    assert "hunter2" not in message


def test_a_bad_node_id_is_refused(tmp_path: Path) -> None:
    config = _config(tmp_path, f"sqlite:///{tmp_path / 'calls.db'}")
    with pytest.raises(SystemExit, match="bad --node-id"):
        main(["serve", "--config", config, "--node-id", "has space"])


def test_the_two_node_example_is_valid(capsys: pytest.CaptureFixture[str]) -> None:
    example = Path(__file__).parents[2] / "examples" / "two-nodes" / "gw1.toml"
    assert main(["check-config", "--config", str(example)]) == 0
    assert "change-me" not in capsys.readouterr().out

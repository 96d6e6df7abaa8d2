from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from click2call.cli import main

EXAMPLE = Path(__file__).parents[2] / "examples" / "click2call.toml"


def test_check_config_accepts_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "--config", str(EXAMPLE)]) == 0
    assert "configuration is valid: 1 tenant(s)" in capsys.readouterr().out


def test_check_config_names_the_bad_key_and_hides_secrets(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(
        '[[tenants]]\nname = "x"\nengine = "asterisk"\n'
        '[tenants.asterisk]\nsecret = ["hunter2"]\nmobile_channel = "Local/1"\n'
    )
    with pytest.raises(SystemExit) as stopped:
        main(["check-config", "--config", str(config)])
    message = str(stopped.value)
    assert "tenants.0.asterisk.mobile_channel: Value error, must contain {phone}" in message
    assert "tenants.0.asterisk.secret" in message  # a secret of the wrong type...
    assert "hunter2" not in message  # ...is named, never shown


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="bad configuration"):
        main(["check-config", "--config", str(tmp_path / "nope.toml")])


def test_check_config_names_the_file_and_line_of_a_toml_error(tmp_path: Path) -> None:
    config = tmp_path / "broken.toml"
    config.write_text("[server]\nport = 8080\nhost = 127.0.0.1\n")
    with pytest.raises(SystemExit, match=r"broken\.toml: .*\(at line 3"):
        main(["check-config", "--config", str(config)])


def test_every_command_reads_the_same_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    server_dir, elsewhere = tmp_path / "server", tmp_path / "elsewhere"
    server_dir.mkdir()
    elsewhere.mkdir()
    config = server_dir / "click2call.toml"
    config.write_text('[server]\ndatabase = "sqlite:///calls.db"\n')
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("CLICK2CALL_CONFIG", raising=False)
    assert main(["check-config", "--config", str(config)]) == 0
    assert f"database: SQLite file {server_dir / 'calls.db'}" in capsys.readouterr().out
    for argv in (
        ["keys", "create", "--config", str(config), "--tenant", "default"],
        ["keys", "--config", str(config), "create", "--tenant", "default"],
    ):
        assert main(argv) == 0
        assert f"database: SQLite file {server_dir / 'calls.db'}" in capsys.readouterr().err
    assert main(["keys", "list", "--config", str(config)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert (server_dir / "calls.db").exists()
    assert list(elsewhere.iterdir()) == []


def test_check_config_warns_about_a_pbx_that_does_not_resolve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        '[[tenants]]\nname = "t"\n[tenants.sip]\npbx = "pbx.invalid:5070"\n'
        'trunk = "sip:127.0.0.1:5080;transport=tcp"\n'
    )
    assert main(["check-config", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "warning: t: pbx host 'pbx.invalid' does not resolve" in out
    assert "trunk host" not in out


def test_calls_export_refuses_a_time_past_the_calendar_in_utc() -> None:
    from click2call.cli_calls import _time

    assert _time("2026-11-25T08:00:00+02:00").isoformat() == "2026-11-25T06:00:00+00:00"
    with pytest.raises(argparse.ArgumentTypeError, match="is not an ISO 8601 time"):
        _time("9999-12-31T23:00:00-05:00")

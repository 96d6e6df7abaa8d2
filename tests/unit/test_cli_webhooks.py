from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from click2call.cli import main
from click2call.store import Attempt, NewCall, Outbox, Store, Subscription, open_database
from click2call.store.outbox import FAILED, PENDING

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
NEW = NewCall("default", "extension", "sip", "200", "0502760206", "036411111", "0502760206", None)


def test_failed_deliveries_are_listed_and_sent_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c2c.toml"
    config.write_text(f'[server]\ndatabase = "sqlite:///{tmp_path / "calls.db"}"\n')
    database = open_database(f"sqlite:///{tmp_path / 'calls.db'}")
    outbox = Outbox(database)
    outbox.sync_config({"default": [Subscription("http://127.0.0.1:9/hook")]}, T0)
    call = Store(database).create_call(NEW, T0).call
    [delivery] = outbox.due(T0, 10, set())
    outbox.attempted(delivery, Attempt(T0, 500, "HTTP 500", None, 0.1), state=FAILED)

    assert main(["webhooks", "list-failed", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"call {call.id}" in out and "call.queued" in out and "HTTP 500" in out

    with pytest.raises(SystemExit, match="--all"):
        main(["webhooks", "retry", "--config", str(config)])
    assert main(["webhooks", "retry", str(delivery.outbox_id), "--config", str(config)]) == 0
    assert "1 failed deliveries queued again" in capsys.readouterr().out
    assert [d.state for d in outbox.for_call(call.id)] == [PENDING]


def test_new_secret_is_accepted_by_the_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["webhooks", "new-secret"]) == 0
    secret = capsys.readouterr().out.strip()
    assert secret.startswith("whsec_")
    config = tmp_path / "c2c.toml"
    config.write_text(
        f'[[tenants]]\nname = "default"\n[[tenants.webhooks]]\n'
        f'url = "https://crm.example.com/hook"\nsecret = "{secret}"\n'
    )
    assert main(["check-config", "--config", str(config)]) == 0


def test_a_weak_webhook_secret_is_refused_without_being_shown(tmp_path: Path) -> None:
    config = tmp_path / "c2c.toml"
    config.write_text(
        '[[tenants]]\nname = "default"\n[[tenants.webhooks]]\n'
        'url = "https://crm.example.com/hook"\nsecret = "hunter2"\n'
    )
    with pytest.raises(SystemExit) as stopped:
        main(["check-config", "--config", str(config)])
    assert "tenants.0.webhooks.0.secret" in str(stopped.value)
    assert "hunter2" not in str(stopped.value)

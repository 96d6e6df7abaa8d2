"""store/sessions.py on a real SQLite file: sessions expire, end and die with their key."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from click2call.store import KeyStore, NewCall, SessionStore, Store, open_database

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


@pytest.fixture
def database(tmp_path: Path) -> Engine:
    return open_database(f"sqlite:///{tmp_path / 'calls.db'}")


def test_a_session_lasts_its_lifetime_then_is_gone(database: Engine) -> None:
    keys, sessions = KeyStore(database), SessionStore(database)
    key, _ = keys.create("default", "ops", T0, admin=True)
    token = sessions.open(key, T0, HOUR)
    found = sessions.lookup(token, T0 + HOUR - timedelta(seconds=1))
    assert found is not None and found.id == key.id and found.admin
    assert sessions.lookup(token, T0 + HOUR) is None
    assert sessions.lookup("not-a-session", T0) is None


def test_signing_out_or_revoking_the_key_ends_the_session(database: Engine) -> None:
    keys, sessions = KeyStore(database), SessionStore(database)
    key, _ = keys.create("default", None, T0)
    first, second = sessions.open(key, T0, HOUR), sessions.open(key, T0, HOUR)
    sessions.close(first, T0)
    assert sessions.lookup(first, T0) is None
    assert sessions.lookup(second, T0) is not None
    assert keys.revoke(key.id, T0, tenant="other") is False  # not that tenant's key
    assert keys.revoke(key.id, T0, tenant="default") is True
    assert sessions.lookup(second, T0) is None


def test_only_the_hash_of_a_session_token_is_stored(database: Engine, tmp_path: Path) -> None:
    keys, sessions = KeyStore(database), SessionStore(database)
    key, _ = keys.create("default", None, T0)
    token = sessions.open(key, T0, HOUR)
    assert token.encode() not in (tmp_path / "calls.db").read_bytes()


def test_the_signing_secret_is_made_once_and_kept(database: Engine, tmp_path: Path) -> None:
    secret = SessionStore(database).secret("widget")
    assert len(secret) == 32
    reopened = open_database(f"sqlite:///{tmp_path / 'calls.db'}")
    assert SessionStore(reopened).secret("widget") == secret
    assert SessionStore(database).secret("other") != secret


def test_a_widget_token_reads_only_the_calls_it_placed(database: Engine) -> None:
    store, sessions = Store(database), SessionStore(database)
    new = NewCall(
        "default", "extension", "sip", "200", "0502760206", "036411111", "0502760206", None
    )
    mine = store.create_call(dataclasses.replace(new, widget_token="token-a"), T0).call
    theirs = store.create_call(dataclasses.replace(new, widget_token="token-b"), T0).call
    assert sessions.placed_by(mine.id, "token-a")
    assert not sessions.placed_by(theirs.id, "token-a")
    assert not sessions.placed_by(mine.id, "token-b")


def test_admin_flag_and_audit_filters(database: Engine) -> None:
    from click2call.store import AuditEntry

    keys = KeyStore(database)
    plain, _ = keys.create("default", None, T0)
    assert not plain.admin and keys.get(plain.id) == plain and keys.get(999) is None
    with Store(database).writing() as writes:
        for tenant, allowed in (("default", True), ("default", False), ("other", False)):
            writes.audit(AuditEntry(T0, tenant, None, None, "v1.calls", allowed, "why"))
    refused = keys.audit_entries(tenant="default", refusals_only=True)
    assert [(e.tenant, e.allowed) for e in refused] == [("default", False)]

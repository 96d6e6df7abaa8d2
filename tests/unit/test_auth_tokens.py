"""The dashboard's and the widget's credentials in auth.py, without HTTP: CSRF tokens,
widget tokens (signed, expiring, pinned to an agent and origins), and session identities."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from click2call.auth import (
    Credentials,
    WidgetClaims,
    authenticate,
    check_widget_origin,
    csrf_matches,
    csrf_token,
    mint_widget_token,
    origin_of,
    read_widget_token,
)
from click2call.errors import Forbidden, Unauthorized
from click2call.settings import Settings
from click2call.store import ApiKey

SECRET = bytes(range(32))
NOW = 1_800_000_000
CLAIMS = WidgetClaims(
    token_id="t1",
    tenant="default",
    key_id=3,
    agent_kind="extension",
    agent_tech="sip",
    agent_number="200",
    origins=("https://crm.example.com",),
    expires=NOW + 600,
)


def test_a_csrf_token_follows_from_its_session_and_only_from_it() -> None:
    token = csrf_token("session-a")
    assert token == csrf_token("session-a") and token != csrf_token("session-b")
    assert csrf_matches("session-a", token)
    assert not csrf_matches("session-b", token)
    assert not csrf_matches(None, token)
    assert not csrf_matches("session-a", None)
    assert not csrf_matches("session-a", "")


def test_a_widget_token_reads_back_its_claims() -> None:
    token = mint_widget_token(CLAIMS, SECRET)
    assert read_widget_token(token, SECRET, NOW) == CLAIMS
    phone = replace(CLAIMS, agent_kind="external", agent_tech=None, agent_number="0502760206")
    assert read_widget_token(mint_widget_token(phone, SECRET), SECRET, NOW) == phone


def _tampered(token: str, **changes: object) -> str:
    payload, signature = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body.update(changes)
    encoded = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    return f"{encoded}.{signature}"


@pytest.mark.parametrize(
    "changes",
    [
        {"agent": ["extension", "sip", "201"]},
        {"tenant": "other"},
        {"exp": NOW + 10**6},
        {"origins": ["https://evil.example"]},
    ],
)
def test_an_altered_token_is_refused(changes: dict[str, object]) -> None:
    token = _tampered(mint_widget_token(CLAIMS, SECRET), **changes)
    with pytest.raises(Unauthorized, match="signature does not match"):
        read_widget_token(token, SECRET, NOW)


def test_a_token_from_another_secret_or_malformed_is_refused() -> None:
    with pytest.raises(Unauthorized, match="signature"):
        read_widget_token(mint_widget_token(CLAIMS, b"x" * 32), SECRET, NOW)
    for junk in ("", "abc", ".", "abc.", ".abc", "a.b.c"):
        with pytest.raises(Unauthorized):
            read_widget_token(junk, SECRET, NOW)


def test_a_signed_but_malformed_payload_is_refused() -> None:
    from click2call.auth import _b64, _widget_signature

    payload = _b64(b'{"id": "x"}')
    with pytest.raises(Unauthorized, match="malformed"):
        read_widget_token(f"{payload}.{_widget_signature(payload, SECRET)}", SECRET, NOW)


def test_an_expired_token_is_refused() -> None:
    token = mint_widget_token(CLAIMS, SECRET)
    assert read_widget_token(token, SECRET, CLAIMS.expires).expires == CLAIMS.expires
    with pytest.raises(Unauthorized, match="expired"):
        read_widget_token(token, SECRET, CLAIMS.expires + 1)


def test_the_page_origin_must_be_the_tokens_and_still_the_tenants() -> None:
    allowed = ["https://crm.example.com"]
    check_widget_origin(CLAIMS, "https://CRM.example.com", allowed)
    for origin in ("https://crm.example.com:8443", "http://crm.example.com", "null"):
        with pytest.raises(Forbidden):
            check_widget_origin(CLAIMS, origin, allowed)
    with pytest.raises(Forbidden, match="no Origin"):
        check_widget_origin(CLAIMS, None, allowed)
    with pytest.raises(Forbidden):  # the tenant no longer allows it
        check_widget_origin(CLAIMS, "https://crm.example.com", [])


@pytest.mark.parametrize(
    ("text", "origin"),
    [
        ("https://CRM.Example.com", "https://crm.example.com"),
        ("https://crm.example.com/", "https://crm.example.com"),
        ("http://localhost:8080", "http://localhost:8080"),
        ("http://[::1]:81", "http://[::1]:81"),
    ],
)
def test_origins_are_normalised(text: str, origin: str) -> None:
    assert origin_of(text) == origin


@pytest.mark.parametrize(
    "text", ["crm.example.com", "ftp://x", "https://x/path", "https://u@x", "https://x?q", ""]
)
def test_what_is_not_an_origin_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="origin"):
        origin_of(text)


KEY = ApiKey(7, "default", "c2c_abcdef", None, datetime(2026, 1, 1, tzinfo=UTC), None)
SETTINGS = Settings(
    tenants=[{"name": "default"}, {"name": "open", "auth": {"allow_unauthenticated": True}}]
)  # type: ignore[list-item]


def test_a_live_session_speaks_for_its_key_and_an_ended_one_for_nobody() -> None:
    def session(token: str) -> ApiKey | None:
        return KEY if token == "live" else None

    def no_key(key: str) -> ApiKey | None:
        return None

    live = Credentials(None, (), "127.0.0.1", session="live")
    identity = authenticate(SETTINGS, live, None, no_key, NOW, session)
    assert (identity.tenant, identity.method, identity.key_id) == ("default", "session", 7)
    with pytest.raises(Forbidden):
        authenticate(SETTINGS, live, "open", no_key, NOW, session)
    ended = Credentials(None, (), "127.0.0.1", session="ended")
    with pytest.raises(Unauthorized, match="authentication required"):
        authenticate(SETTINGS, ended, None, no_key, NOW, session)
    # An ended session is no credential: what else the request carries decides.
    assert authenticate(SETTINGS, ended, "open", no_key, NOW, session).method == "unauthenticated"


@pytest.mark.parametrize("forged", ["é" * 64, "\udcff", "abc\x00"])
def test_a_forged_value_out_of_the_alphabet_is_refused_not_a_crash(forged: str) -> None:
    """compare_digest raises TypeError on non-ASCII text: a 500 instead of a 401."""
    token = mint_widget_token(CLAIMS, SECRET)
    payload = token.split(".")[0]
    with pytest.raises(Unauthorized, match="signature does not match"):
        read_widget_token(f"{payload}.{forged}", SECRET, NOW)
    assert not csrf_matches("session-a", forged)

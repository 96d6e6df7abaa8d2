"""Dashboard sign-in sessions, the server's signing secrets, and the calls widgets placed."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from click2call.store.keys import ApiKey, hash_key, key_of
from click2call.store.schema import api_keys, server_secrets, ui_sessions, widget_calls


class SessionStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def open(self, key: ApiKey, now: datetime, lifetime: timedelta) -> str:
        """A new session for `key`; its token goes into the cookie and only its hash here."""
        token = secrets.token_urlsafe(32)
        with self._engine.begin() as conn:
            conn.execute(
                insert(ui_sessions).values(
                    token_hash=hash_key(token),
                    key_id=key.id,
                    created_at=now,
                    expires_at=now + lifetime,
                )
            )
        return token

    def lookup(self, token: str, now: datetime) -> ApiKey | None:
        """The key behind a live session: not signed out, not expired, key not revoked."""
        query = (
            select(api_keys)
            .join(ui_sessions, ui_sessions.c.key_id == api_keys.c.id)
            .where(
                ui_sessions.c.token_hash == hash_key(token),
                ui_sessions.c.ended_at.is_(None),
                ui_sessions.c.expires_at > now,
                api_keys.c.revoked_at.is_(None),
            )
        )
        with self._engine.connect() as conn:
            row = conn.execute(query).one_or_none()
        return None if row is None else key_of(row)

    def close(self, token: str, now: datetime) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                update(ui_sessions)
                .where(
                    ui_sessions.c.token_hash == hash_key(token), ui_sessions.c.ended_at.is_(None)
                )
                .values(ended_at=now)
            )

    def secret(self, name: str) -> bytes:
        """A 256-bit secret kept in the database, generated the first time it is asked for,
        so every worker and node of one deployment signs with the same one."""
        query = select(server_secrets.c.value).where(server_secrets.c.name == name)
        with self._engine.connect() as conn:
            value = conn.execute(query).scalar_one_or_none()
        if value is None:
            try:
                with self._engine.begin() as conn:
                    conn.execute(
                        insert(server_secrets).values(name=name, value=secrets.token_hex(32))
                    )
            except IntegrityError:
                pass  # another process made it first: use theirs
            with self._engine.connect() as conn:
                value = conn.execute(query).scalar_one()
        return bytes.fromhex(value)

    def placed_by(self, call_id: int, token_id: str) -> bool:
        query = select(widget_calls.c.call_id).where(
            widget_calls.c.call_id == call_id, widget_calls.c.token_id == token_id
        )
        with self._engine.connect() as conn:
            return conn.execute(query).first() is not None

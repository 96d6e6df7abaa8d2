"""The store's hottest writes, run on the driver's own cursor inside SQLAlchemy's transaction.

A call's writes are some thirty statements (store/repository.py); through SQLAlchemy Core
each cost ~14 µs of CPU before the database did anything, on the driver alone ~2 µs
(`python -m bench.store`). Those few statements are SQL text here, written once with
`:name` placeholders (sqlite3's) and translated for psycopg (`%(name)s`, which prepares a
statement on the server after a few runs). They run on the transaction's own connection,
and a driver error goes through SQLAlchemy's handling like any other (outage.py turns an
outage into DatabaseUnavailable, a broken connection is thrown away). Reads, migrations and
the rarer writes stay SQLAlchemy Core.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection

# A placeholder: a colon and a name, not the second colon of a `::type` cast.
_NAMED = re.compile(r"(?<![:\w]):(\w+)")


class Sql:
    """One statement's text for each dialect; `postgresql` when it differs in more than
    its placeholders."""

    __slots__ = ("postgresql", "sqlite")

    def __init__(self, text: str, postgresql: str | None = None) -> None:
        self.sqlite = text
        # psycopg reads `%` as the start of a placeholder: a literal one (LIKE 'a%') is `%%`.
        self.postgresql = _NAMED.sub(r"%(\1)s", (postgresql or text).replace("%", "%%"))


class Driver:
    """The cursor of one transaction (`conn`'s), for the statements written as Sql."""

    __slots__ = ("_conn", "_cursor", "_error", "postgres")

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.postgres = conn.dialect.name == "postgresql"
        self._cursor: Any = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        self._error: type[Exception] = conn.dialect.loaded_dbapi.Error

    def execute(self, sql: Sql, params: Mapping[str, Any]) -> Any:
        """Run `sql`; the cursor, to read what it returned."""
        text = sql.postgresql if self.postgres else sql.sqlite
        try:
            self._cursor.execute(text, params)
        except self._error as exc:
            self._failed(exc, text, params)
        return self._cursor

    def execute_many(self, sql: Sql, rows: Sequence[Mapping[str, Any]]) -> None:
        text = sql.postgresql if self.postgres else sql.sqlite
        try:
            self._cursor.executemany(text, rows)
        except self._error as exc:
            self._failed(exc, text, rows)

    def fetch_together(
        self, statements: Sequence[tuple[Sql, Mapping[str, Any]]]
    ) -> list[list[Any]]:
        """Run `statements` in order; the rows each returned ([] for none). On PostgreSQL
        they are sent together and answered in one round trip (psycopg's pipeline mode),
        each statement still with its own snapshot, taken as it starts."""
        if not self.postgres:
            return [self.execute(sql, params).fetchall() for sql, params in statements]
        if not statements:
            return []
        connection = self._cursor.connection
        cursors = []
        try:
            with connection.pipeline():
                for sql, params in statements:
                    cursor = connection.cursor()
                    cursor.execute(sql.postgresql, params)
                    cursors.append(cursor)
        except self._error as exc:
            texts = "; ".join(sql.postgresql for sql, _ in statements)
            self._failed(exc, texts, [params for _, params in statements])
        return [cursor.fetchall() if cursor.description else [] for cursor in cursors]

    def insert(self, sql: Sql, params: Mapping[str, Any]) -> int:
        """Run an INSERT of one row; its id (the PostgreSQL text ends in RETURNING id)."""
        cursor = self.execute(sql, params)
        return int(cursor.fetchone()[0] if self.postgres else cursor.lastrowid)

    def time(self, value: datetime | None) -> datetime | str | None:
        """`value` as a UtcDateTime column stores it (store/schema.py): on SQLite the text
        SQLAlchemy writes there, in UTC."""
        if value is None:
            return None
        if value.tzinfo is not UTC:
            if value.tzinfo is None:
                raise ValueError("naive datetime given to the store")
            value = value.astimezone(UTC)
        return value if self.postgres else value.replace(tzinfo=None).isoformat(" ", "microseconds")

    def read_time(self, value: datetime | str | None) -> datetime | None:
        """A UtcDateTime column's value as the driver returned it, aware and in UTC."""
        if value is None:
            return None
        if isinstance(value, str):  # SQLite's text, in UTC
            return datetime.fromisoformat(value).replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def _failed(self, exc: Exception, text: str, params: Any) -> None:
        # SQLAlchemy's own path for a DBAPI error: the handle_error listeners (outage.py),
        # invalidating a connection the error broke, the wrapped exception.
        self._conn._handle_dbapi_exception(exc, text, params, self._cursor, None)

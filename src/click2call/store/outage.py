"""Telling a database outage from a bug: connection failures become DatabaseUnavailable.

Converted once, where SQLAlchemy reports every DBAPI error (its `handle_error` event), so
every store call raises the same error the HTTP layer maps to 503, and a pooled
connection the outage broke is thrown away (one idle for a while is checked before use,
store/database.py), which is how the server recovers by itself when the database answers
again.
"""

from __future__ import annotations

from sqlalchemy import Engine, event, text
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import OperationalError

from click2call.errors import DatabaseUnavailable


def _reason(context: ExceptionContext) -> str:
    # psycopg's first line names host, port and cause; the rest is a hint for humans.
    return str(context.original_exception).strip().splitlines()[0][:200]


def _is_outage(context: ExceptionContext) -> bool:
    if context.is_disconnect or context.connection is None:  # lost, or never connected
        return True
    if not isinstance(context.sqlalchemy_exception, OperationalError):
        return False
    # A deadlock or serialization failure (SQLSTATE class 40) is one transaction lost to
    # another, the database answering: retried as a failure, not every request's 503.
    if str(getattr(context.original_exception, "sqlstate", "") or "").startswith("40"):
        return False
    # SQLite reports a missing table as an OperationalError too: that is a bug, not an outage.
    return context.dialect.name != "sqlite" or "locked" in str(context.original_exception)


def watch(engine: Engine) -> None:
    """Raise DatabaseUnavailable, not the driver's error, when `engine` cannot be reached."""

    @event.listens_for(engine, "handle_error")
    def _outage(context: ExceptionContext) -> None:
        if _is_outage(context):
            raise DatabaseUnavailable(_reason(context)) from context.original_exception


def check(engine: Engine) -> str | None:
    """None when the database answers; else why not, for the health check."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except DatabaseUnavailable as exc:
        return exc.reason
    return None

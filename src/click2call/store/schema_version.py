"""Which migration a database is at: bringing it to the newest, or refusing an older one.

A shared PostgreSQL is migrated once per deploy (`click2call db upgrade`), never by each
node as it starts, so `require_current` only reads. The embedded SQLite file is migrated
by the server itself (store/database.py decides which).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

MIGRATIONS = Path(__file__).parent / "migrations"

# Any fixed number: two `db upgrade` run at once on PostgreSQL take turns on it.
_UPGRADE_LOCK = 0x0C2C_0001


class SchemaOutOfDate(Exception):
    """The database's schema is older (or newer) than this version of click2call."""


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head() -> str:
    """The newest revision this version of click2call knows."""
    revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert revision is not None  # the package ships its migrations
    return revision


def current(engine: Engine) -> str | None:
    """The revision the database is at; None for an empty database."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Bring the database to `revision`; the revisions before and after."""
    config = alembic_config()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _UPGRADE_LOCK})
        before = MigrationContext.configure(connection).get_current_revision()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        after = MigrationContext.configure(connection).get_current_revision()
    return before, after


def require_current(engine: Engine) -> None:
    """Raise SchemaOutOfDate unless the database is at the newest revision."""
    found, wanted = current(engine), head()
    if found == wanted:
        return
    if found is None:
        raise SchemaOutOfDate(
            f"the database has no click2call schema (this version needs revision {wanted}): "
            "run `click2call db upgrade --config FILE` once, then start the servers"
        )
    known = {s.revision for s in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
    if found not in known:
        raise SchemaOutOfDate(
            f"the database is at revision {found}, which this version of click2call does not "
            f"know (it needs {wanted}): it was migrated by a newer version"
        )
    raise SchemaOutOfDate(
        f"the database schema is at revision {found}, this version needs {wanted}: "
        "run `click2call db upgrade --config FILE` once, then start the servers"
    )

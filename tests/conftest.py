"""Databases for the store and HTTP suites: each test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from click2call.store import open_database
from tests.postgres_cluster import PostgresCluster

DATABASES = ("sqlite", "postgresql")


_CLUSTER: list[PostgresCluster] = []  # started by the first test that needs it


@pytest.fixture(scope="session")
def postgres() -> PostgresCluster:
    """One throwaway cluster for the whole run, started when a test first needs it and
    stopped when the session ends, after every fixture that may still use it."""
    if not _CLUSTER:
        _CLUSTER.append(PostgresCluster().start())
    return _CLUSTER[0]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    while _CLUSTER:
        _CLUSTER.pop().stop()


def empty_database(kind: str, request: pytest.FixtureRequest, folder: Path) -> str:
    """The URL of a new, empty database of `kind`, dropped after the test."""
    if kind == "sqlite":
        return f"sqlite:///{folder / 'calls.db'}"
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    url = cluster.new_database()
    request.addfinalizer(lambda: cluster.drop_database(url))
    return url


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database, once SQLite and once PostgreSQL."""
    return empty_database(request.param, request, tmp_path)


@pytest.fixture
def database(database_url: str) -> Iterator[Engine]:
    """A database at the newest schema, once SQLite and once PostgreSQL."""
    engine = open_database(database_url, migrate=True)
    yield engine
    engine.dispose()

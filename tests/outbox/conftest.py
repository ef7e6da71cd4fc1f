"""The outbox tests run on SQLite everywhere and on a throwaway PostgreSQL when one is installed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.outbox.postgres import PostgresCluster, find_postgres, postgres_cluster

NO_POSTGRES = "PostgreSQL is not installed (Debian package postgresql; .ci/run installs it as root)"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """One cluster for the session; each test takes a fresh database of its own."""
    if find_postgres() is None:
        pytest.skip(NO_POSTGRES)
    with postgres_cluster() as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database: a SQLite file, or a new database on the session's PostgreSQL cluster."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'outbox.db'}"
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    return cluster.database()

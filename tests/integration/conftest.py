"""Fixtures for the integration tests: a real Asterisk (tests/integration/asterisk_peer.py) and
the store on both databases, SQLite and a real PostgreSQL 15 (tests/pg_peer.py)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path

import pytest
from asterisk_peer import FAILED_KEY, asterisk_peer

from ars_engine.store.db import Store
from tests.pg_peer import PostgresServer, postgres_skip_reason, start_postgres

__all__ = ["asterisk_peer"]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport,
                                                                        pytest.TestReport]:
    """Remember a failed test on its item, so fixtures can print their peer's logs."""
    report = yield
    if report.when == "call" and report.failed:
        item.stash[FAILED_KEY] = True
    return report


# -- the store on SQLite and PostgreSQL ----------------------------------------------------------
@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One private PostgreSQL 15 for the session (skips, saying why, when it is not installed;
    `make test` installs it). Tests get their own database: :func:`db_url`."""
    reason = postgres_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    # Not pytest's tmp_path: it is private to root, and as root the server runs as postgres.
    base = Path(tempfile.mkdtemp(prefix="ars-pg-"))
    try:
        server = start_postgres(base)
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"], ids=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a fresh, empty database, once per database kind (ids ``sqlite`` and
    ``postgresql``). Narrow a test to one kind with
    ``@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)``."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'ars.db'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.url(server.create_database())


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    """A :class:`Store` on :func:`db_url`, migrated to head; closed after the test."""
    store = Store(db_url)
    try:
        await store.upgrade()
        yield store
    finally:
        await store.close()

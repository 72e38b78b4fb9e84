"""The database handle: an async engine, a session factory, migrations.

SQLite (aiosqlite) is the embedded default; PostgreSQL (asyncpg) is for production and for several
nodes sharing one queue. One :class:`Store` per process; one session per unit of work
(``async with store.session() as s, s.begin(): …``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, sessionmaker

from ..errors import ConfigError, StoreError

log = logging.getLogger("ars_engine.store")
MIGRATIONS = Path(__file__).with_name("migrations")
SUPPORTED = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}
T = TypeVar("T")


def normalize_url(url: str) -> str:
    """Give a plain ``sqlite:///…`` / ``postgresql://…`` URL its async driver; ConfigError for
    anything else (the message names the URL without its password)."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"database URL: not a database URL: {exc}") from exc
    backend = parsed.get_backend_name()
    if backend not in SUPPORTED:
        raise ConfigError(f"database URL {parsed.render_as_string(hide_password=True)}: "
                          f"expected sqlite or postgresql, got {backend!r}")
    driver = SUPPORTED[backend].split("+", 1)[1]
    if parsed.get_driver_name() != driver:
        parsed = parsed.set(drivername=SUPPORTED[backend])
    return parsed.render_as_string(hide_password=False)


class Store:
    """An async engine and its session factory."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = normalize_url(url)
        parsed = make_url(self.url)
        self.dialect = parsed.get_backend_name()
        kwargs: dict[str, Any] = {}
        if self.dialect == "sqlite":
            database = parsed.database or ""
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
        self.engine = create_async_engine(self.url, **kwargs)
        if self.dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            # aiosqlite + pysqlite: take the write lock at BEGIN (BEGIN IMMEDIATE) so two
            # writers queue on busy_timeout instead of failing to upgrade a read lock.
            event.listen(self.engine.sync_engine, "begin", _sqlite_begin)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._sync_sessions: sessionmaker[Session] | None = None
        self._sync_engine: Engine | None = None
        self._worker: ThreadPoolExecutor | None = None
        if self.dialect == "sqlite":
            # The hot paths (POST /v1/calls) run as one function on one thread with the plain
            # sqlite3 driver (Store.run): aiosqlite hops threads for every statement, ~0.35 ms
            # each, which at 15-27 statements per create could not keep up with 200 req/s.
            self._sync_engine = create_engine(parsed.set(drivername="sqlite"),
                                              connect_args={"timeout": 30,
                                                            "check_same_thread": False})
            event.listen(self._sync_engine, "connect", _sqlite_pragmas)
            event.listen(self._sync_engine, "begin", _sqlite_begin)
            self._sync_sessions = sessionmaker(self._sync_engine, expire_on_commit=False)
            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ars-sqlite")

    def __repr__(self) -> str:
        return f"Store({make_url(self.url).render_as_string(hide_password=True)})"

    @property
    def is_postgresql(self) -> bool:
        return self.dialect == "postgresql"

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session; database errors become StoreError (a call record is never half-written:
        the transaction rolls back)."""
        async with self.sessions() as session:
            try:
                yield session
            except IntegrityError:
                raise  # a constraint the caller resolves (a concurrent insert of the same key)
            except (OperationalError, DBAPIError) as exc:
                raise StoreError(f"database error: {type(exc.orig).__name__}: "
                                 f"{str(exc.orig).splitlines()[0][:200]}") from exc
            except OSError as exc:  # asyncpg's connect: refused, reset, timed out (a restart)
                raise _unreachable(exc) from exc

    async def run(self, work: Callable[[Session], T]) -> T:
        """Run ``work(session)`` as one transaction (committed when it returns, rolled back
        when it raises). SQLite: on the store's own thread with the sqlite3 driver, one thread
        hop for the whole unit; PostgreSQL: ``AsyncSession.run_sync`` (greenlet, no thread).
        Database errors become StoreError; IntegrityError is left to the caller."""
        try:
            if self._worker is not None:
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(self._worker, self._run_sqlite, work)
            async with self.sessions() as session, session.begin():
                return await session.run_sync(work)
        except IntegrityError:
            raise
        except (OperationalError, DBAPIError) as exc:
            raise StoreError(f"database error: {type(exc.orig).__name__}: "
                             f"{str(exc.orig).splitlines()[0][:200]}") from exc
        except OSError as exc:
            raise _unreachable(exc) from exc

    def _run_sqlite(self, work: Callable[[Session], T]) -> T:
        assert self._sync_sessions is not None
        with self._sync_sessions() as session, session.begin():
            return work(session)

    async def upgrade(self, revision: str = "head") -> None:
        """Run the Alembic migrations up to ``revision``."""
        from alembic import command

        config = _alembic_config(self.url)

        def run(connection: Connection) -> None:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)

        try:
            async with self.engine.begin() as connection:
                await connection.run_sync(run)
        except (OperationalError, DBAPIError) as exc:
            raise StoreError(f"cannot migrate {self!r}: {exc.orig}") from exc
        except OSError as exc:
            raise StoreError(f"cannot migrate {self!r}: {_unreachable(exc)}") from exc

    async def current_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        def read(connection: Connection) -> str | None:
            return MigrationContext.configure(connection).get_current_revision()

        async with self.engine.connect() as connection:
            return await connection.run_sync(read)

    async def close(self) -> None:
        await self.engine.dispose()
        if self._worker is not None:
            self._worker.shutdown(wait=True)
        if self._sync_engine is not None:
            self._sync_engine.dispose()


def _unreachable(exc: OSError) -> StoreError:
    return StoreError(f"database unreachable: {type(exc).__name__}: "
                      f"{(exc.strerror or str(exc)).splitlines()[0][:200]}")


def _alembic_config(url: str) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own transaction handling is off: _sqlite_begin emits BEGIN IMMEDIATE.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
    cursor.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints, safe on crash
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")

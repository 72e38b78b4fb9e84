"""The Alembic migrations on both databases: they build exactly the tables of the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from ars_engine.store.db import MIGRATIONS, Store, _alembic_config
from ars_engine.store.models import Base

MODEL_TABLES = set(Base.metadata.tables)


def head_revision() -> str:
    head = ScriptDirectory.from_config(_alembic_config("sqlite://")).get_current_head()
    assert head is not None, f"no migration in {MIGRATIONS}"
    return head


async def table_names(store: Store) -> set[str]:
    async with store.engine.connect() as connection:
        return set(await connection.run_sync(lambda c: inspect(c).get_table_names()))


async def schema_differences(store: Store) -> list[object]:
    """What autogenerate would write to go from the migrated database to the models."""

    def compare(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    async with store.engine.connect() as connection:
        return await connection.run_sync(compare)


async def test_upgrade_from_empty_creates_every_table(db_url: str) -> None:
    store = Store(db_url)
    try:
        assert await table_names(store) == set()
        assert await store.current_revision() is None
        await store.upgrade()
        assert await table_names(store) == MODEL_TABLES | {"alembic_version"}
    finally:
        await store.close()


async def test_upgraded_database_is_at_head(store: Store) -> None:
    assert head_revision() == "0003"
    assert await store.current_revision() == head_revision()


async def test_migrated_schema_matches_the_models(store: Store) -> None:
    assert await schema_differences(store) == []


async def test_upgrading_twice_is_a_no_op(store: Store) -> None:
    before = await table_names(store)
    await store.upgrade()
    assert await store.current_revision() == head_revision()
    assert await table_names(store) == before
    assert await schema_differences(store) == []

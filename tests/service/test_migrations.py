"""The Alembic migrations are the schema: on a fresh SQLite file and a fresh PostgreSQL
database they reach head, agree with the models column for column (types included),
go down to nothing and up again, and ``trainyard migrate`` runs them."""
from __future__ import annotations

import subprocess

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect

from service.store.migrate import alembic_config, current, upgrade
from service.store.models import Base
from tests.conftest import fresh_database, trainyard_cmd


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    pg = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    return fresh_database(request.param, tmp_path, pg)


def head() -> str:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def differences(url: str) -> list:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": False})
            return compare_metadata(ctx, Base.metadata)
    finally:
        engine.dispose()


def tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_reaches_head_and_matches_the_models(database_url):
    assert current(database_url) is None
    upgrade(database_url)
    assert current(database_url) == head()
    assert tables(database_url) == set(Base.metadata.tables)
    assert differences(database_url) == []


def test_downgrade_to_base_and_upgrade_again(database_url):
    from alembic import command

    upgrade(database_url)
    command.downgrade(alembic_config(database_url), "base")
    assert current(database_url) is None and tables(database_url) == set()
    upgrade(database_url)
    assert current(database_url) == head() and differences(database_url) == []


@pytest.mark.integration
def test_the_cli_migrates_and_prints_the_revision(database_url):
    out = subprocess.run(trainyard_cmd() + ["migrate", "--database-url", database_url],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"database at revision {head()}" in out.stdout
    assert current(database_url) == head()
    again = subprocess.run(trainyard_cmd() + ["migrate", "--database-url", database_url],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and f"database at revision {head()}" in again.stdout

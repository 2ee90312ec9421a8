"""The index's migrations, up from nothing to the newest and down again, on SQLite and on
a real PostgreSQL; and the newest migration makes exactly the tables the models say."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect

from master.index.database import downgrade, open_index, upgrade
from master.index.models import Base
from tests.fixtures.postgres import run_postgres

TABLES = {"packages", "builds", "build_inputs", "publications", "provenance", "images",
          "image_packages", "package_sets", "plans", "plan_packages", "kiln_index_version"}


def up_and_down(engine: Engine) -> None:
    upgrade(engine)
    assert set(inspect(engine).get_table_names()) == TABLES
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={
            "compare_type": True,
            "include_name": lambda name, kind, parent: name != "kiln_index_version"})
        assert compare_metadata(context, Base.metadata) == []  # models and migrations agree
    downgrade(engine)
    assert set(inspect(engine).get_table_names()) == {"kiln_index_version"}
    upgrade(engine)
    assert set(inspect(engine).get_table_names()) == TABLES


def test_the_index_migrates_up_and_down_on_sqlite(tmp_path: Path) -> None:
    up_and_down(create_engine(f"sqlite:///{tmp_path / 'index.sqlite'}"))
    # Opening an index brings it to the newest schema, and again changes nothing.
    open_index("sqlite:///again.sqlite", tmp_path)
    engine = open_index("sqlite:///again.sqlite", tmp_path)
    assert set(inspect(engine).get_table_names()) == TABLES


def test_the_index_migrates_up_and_down_on_postgresql() -> None:
    with run_postgres() as pg:
        engine = create_engine(pg.url("kiln_index"))
        try:
            up_and_down(engine)
        finally:
            engine.dispose()

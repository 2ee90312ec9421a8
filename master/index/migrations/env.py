"""Alembic's environment for Kiln's index: always run from master/index/database.py,
with the connection it hands over (never from an alembic.ini)."""

from __future__ import annotations

from alembic import context

from master.index.models import Base

VERSION_TABLE = "kiln_index_version"  # not alembic_version: Buildbot's Alembic uses that

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata,
                  version_table=VERSION_TABLE, render_as_batch=True,
                  compare_type=True)
with context.begin_transaction():
    context.run_migrations()

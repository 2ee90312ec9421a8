"""Opening the index: an engine for its URL, its schema brought to the newest migration."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import SQLAlchemyError

from kiln.errors import KilnError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

if TYPE_CHECKING:
    from master.config import FarmConfig


def open_index(url: str, base: Path | None = None) -> Engine:
    """The index at `url`; a relative SQLite path is relative to `base`."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////") and base is not None:
        url = f"sqlite:///{base / url.removeprefix('sqlite:///')}"
    # A database restarted under the master leaves dead connections in the pool: each
    # is checked before use instead of failing the first write after a restart.
    engine = create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        upgrade(engine)
    except SQLAlchemyError as exc:
        raise KilnError(f"the index at {engine.url.render_as_string(hide_password=True)}"
                        f" cannot be opened: {exc.__class__.__name__}",
                        reason="index-unreachable", temporary=True) from exc
    return engine


def migrations(connection: Connection) -> Config:
    """Alembic's configuration for the index's migrations, on `connection`."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the index's schema to `revision` (the newest by default)."""
    with engine.begin() as connection:
        command.upgrade(migrations(connection), revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    with engine.begin() as connection:
        command.downgrade(migrations(connection), revision)


def _sqlite_pragmas(connection: object, _record: object) -> None:
    # The master writes from several threads while the console reads: WAL lets
    # readers go on during a write, and a busy writer waits instead of failing.
    cursor = connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


@functools.cache
def farm_index(url: str, base: Path) -> Engine:
    """One engine per index for the master's whole life (engines pool connections)."""
    return open_index(url, base)


def write_index(farm: FarmConfig, write: Any, *args: Any) -> Any:
    """Run one of master.index.writes on the farm's index; None if it could not be
    written (the console shows a stale state; the builds and the registry go on)."""
    from twisted.python import log  # the master's log; `kiln query` never gets here

    try:
        return write(farm_index(farm.index, farm.path("master")), *args)
    except (SQLAlchemyError, KilnError) as exc:
        log.msg(f"kiln index: not written ({exc.__class__.__name__}: {exc})")
        return None

"""The builds a store remembers: each build key's record and log, under the store's
cache, so that a build of the same inputs is not run again."""

from __future__ import annotations

import shutil
from pathlib import Path

from kiln.canonical import Digest
from kiln.errors import KilnError
from kiln.fileset import FileSet
from kiln.record import BuildRecord
from kiln.store.durability import make_durable
from kiln.store.layout import mark_used
from kiln.store.store import Store


def previous(store: Store, build_key: Digest) -> tuple[BuildRecord, tuple[FileSet, ...]] | None:
    """The record of `build_key` built here, and every FileSet it made (all still here)."""
    path = store.layout.cache / "builds" / f"{build_key.split(':')[1]}.json"
    try:
        record = BuildRecord.from_bytes(path.read_bytes(), str(path))
        filesets = tuple(store.get(output.digest) for output in record.outputs)
    except (OSError, KilnError):
        return None  # never built here, or by an older Kiln: build it
    mark_used(path)  # used: the caches' bounds keep it longest
    return record, filesets


def remember(store: Store, record: BuildRecord, log: Path) -> None:
    """Keep a build's record and log under its build key."""
    directory = store.layout.cache / "builds"
    directory.mkdir(exist_ok=True)
    name = record.build_key.split(":")[1]
    shutil.copyfile(log, directory / f"{name}.log")
    (directory / f"{name}.json").write_bytes(record.to_bytes())
    # Reported with the build: on the disk before the command says it built.
    make_durable(store.layout.root, [directory / f"{name}.log", directory / f"{name}.json",
                                     directory, directory.parent])


def forget_dead_builds(store: Store, live: set[Digest]) -> int:
    """Drop the records and logs of builds whose output is no longer in the store
    (after gc); returns how many. Call with the store's exclusive lock held."""
    directory = store.layout.cache / "builds"
    if not directory.is_dir():
        return 0
    removed = 0
    for path in directory.glob("*.json"):
        try:
            outputs = {o.digest for o in BuildRecord.from_bytes(path.read_bytes(),
                                                                str(path)).outputs}
        except (OSError, KilnError):
            outputs = {Digest("")}  # unreadable: nothing can reuse it
        if not outputs <= live:
            path.unlink()
            path.with_suffix(".log").unlink(missing_ok=True)
            removed += 1
    return removed

"""Every build's whole log, kept in the store: `kiln build log NAME[@VERSION]`.

A build that succeeded keeps its log beside its record (`cache/builds/<key>.log`,
the record naming its output). A build or test that failed keeps its logs too,
whole (the error shows only their last lines), under `cache/builds/failed/<key>`
with a note of what failed and when. Both are caches: `kiln store gc` bounds them.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from kiln.canonical import Digest
from kiln.errors import KilnError, NotFound
from kiln.record import BuildRecord
from kiln.store.store import Store


@dataclass(frozen=True)
class BuildLog:
    """A build's kept log, and what built it."""

    name: str
    version: str
    build_key: str
    failed: bool
    ended: float  # when the build ended (the log's mtime)
    path: Path
    reason: str = ""

    def describe(self) -> str:
        state = f"failed ({self.reason})" if self.failed else "built"
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.ended))
        return f"{self.name}@{self.version}: {state} {when}, build key {self.build_key}"


def failed_directory(store: Store) -> Path:
    return store.layout.cache / "builds" / "failed"


def keep_failed_logs(store: Store, name: str, version: str, build_key: Digest,
                     logs: list[Path], reason: str) -> Path | None:
    """The failed build's logs, whole and in order, kept; where (None: no log ran)."""
    present = [log for log in logs if log.is_file()]
    if not present:
        return None
    directory = failed_directory(store)
    directory.mkdir(parents=True, exist_ok=True)
    stem = directory / build_key.split(":")[1]
    with open(stem.with_suffix(".log.tmp"), "wb") as out:
        for log in present:
            if len(present) > 1:
                out.write(f"==> {log.parent.name}/{log.name} <==\n".encode())
            with open(log, "rb") as source:
                while chunk := source.read(1 << 20):
                    out.write(chunk)
    os.replace(stem.with_suffix(".log.tmp"), stem.with_suffix(".log"))
    stem.with_suffix(".json").write_text(json.dumps(
        {"name": name, "version": version, "build_key": build_key, "reason": reason}) + "\n")
    return stem.with_suffix(".log")


def build_logs(store: Store, name: str, version: str | None = None) -> list[BuildLog]:
    """Every kept log of `name` (at `version`), the newest last."""
    builds = store.layout.cache / "builds"
    found = []
    for record_path in sorted(builds.glob("*.json")):
        try:
            record = BuildRecord.from_bytes(record_path.read_bytes(), str(record_path))
        except (OSError, KilnError):
            continue
        log = record_path.with_suffix(".log")
        # A split output's log is its recipe's build's.
        if record.output_named(name) is not None and \
                version in (None, record.output.version) and log.is_file():
            found.append(BuildLog(name, record.output.version, record.build_key, False,
                                  log.stat().st_mtime, log))
    for note_path in sorted(failed_directory(store).glob("*.json")):
        try:
            note = json.loads(note_path.read_text())
        except (OSError, ValueError):
            continue
        log = note_path.with_suffix(".log")
        if note.get("name") == name and version in (None, note.get("version")) and \
                log.is_file():
            found.append(BuildLog(name, str(note["version"]), str(note["build_key"]), True,
                                  log.stat().st_mtime, log, str(note.get("reason", ""))))
    return sorted(found, key=lambda entry: entry.ended)


def newest_log(store: Store, ref: str) -> BuildLog:
    name, _, version = ref.partition("@")
    logs = build_logs(store, name, version or None)
    if not logs:
        at = f"@{version}" if version else ""
        raise NotFound(f"no build of {name}{at} is kept in this store (built elsewhere, or"
                       " collected by gc)", reason="no-build-log")
    return logs[-1]

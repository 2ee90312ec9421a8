"""fsck: re-hash every object and check every record against what it names."""

from __future__ import annotations

import hashlib
import os
import stat
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from kiln.canonical import Digest
from kiln.errors import KilnError
from kiln.progress import NoProgress, Progress
from kiln.store.join import joined_entries
from kiln.store.layout import EXECUTABLE_OBJECT_MODE, OBJECT_MODE
from kiln.store.store import Store
from kiln.tree import FileEntry


@dataclass(frozen=True)
class Problem:
    """One thing fsck found wrong, with the FileSets it affects."""

    reason: str
    path: str
    message: str
    filesets: tuple[str, ...] = ()


@dataclass
class FsckReport:
    """What `kiln store fsck` checked and found wrong."""

    objects_checked: int = 0
    bytes_checked: int = 0
    filesets_checked: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.problems


def check_store(store: Store, *, jobs: int | None = None,
                progress: Progress | None = None) -> FsckReport:
    """Check the whole store; nothing is changed."""
    progress = progress or NoProgress()
    report = FsckReport()
    layout = store.layout
    with store.shared():
        users: dict[str, list[str]] = defaultdict(list)
        for digest in store.all_digests():
            report.filesets_checked += 1
            _check_fileset(store, digest, users, report)
        _check_names(store, report)

        objects = [path for prefix in sorted(layout.objects.iterdir())
                   for path in sorted(prefix.iterdir())]
        progress.start("checking objects", sum(p.lstat().st_size for p in objects))

        def check(path: Path) -> list[Problem]:
            return _check_object(path, progress)

        with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
            for path, problems in zip(objects, pool.map(check, objects), strict=True):
                report.objects_checked += 1
                report.bytes_checked += path.lstat().st_size
                report.problems += [Problem(problem.reason, problem.path, problem.message,
                                            tuple(sorted(set(users.get(path.name, [])))))
                                    for problem in problems]
        progress.finish()
        _check_materialized(store, report)
    return report


def _check_fileset(store: Store, digest: Digest, users: dict[str, list[str]],
                   report: FsckReport) -> None:
    path = store.layout.fileset_path(digest)
    try:
        fileset = store.get(digest)
        tree = store.tree(fileset)
    except KilnError as exc:
        report.problems.append(Problem(exc.reason, str(path), str(exc)))
        return
    for item in fileset.imports:
        if not store.has(item.digest):
            report.problems.append(Problem(
                "import-missing", str(path),
                f"{fileset.label} imports {item.name}@{item.version} ({item.digest}),"
                " which is missing", (fileset.label,)))
    for entry in tree.files():
        object_path = store.object_path(entry.sha256, entry.executable)
        users[object_path.name].append(fileset.label)
        if not object_path.exists():
            report.problems.append(Problem(
                "object-missing", str(object_path),
                f"object for {entry.path!r} is missing", (fileset.label,)))


def _check_names(store: Store, report: FsckReport) -> None:
    for named in store.named():
        if not store.has(named.digest):
            report.problems.append(Problem(
                "dangling-name", str(store.layout.ref_path(named.name, named.version)),
                f"{named.name}@{named.version} names {named.digest}, which is missing"))
    for digest in store.pins():
        if not store.has(digest):
            report.problems.append(Problem(
                "dangling-pin", str(store.layout.pin_path(digest)),
                f"pin {digest} names a FileSet that is missing"))


def _check_object(path: Path, progress: Progress) -> list[Problem]:
    """Every problem of one object: a wrong mode does not hide corrupt content."""
    name = path.name
    sha, _, suffix = name.partition(".")
    executable = suffix == "x"
    info = path.lstat()
    expected_mode = EXECUTABLE_OBJECT_MODE if executable else OBJECT_MODE
    problems = []
    if not stat.S_ISREG(info.st_mode) or stat.S_IMODE(info.st_mode) != expected_mode:
        problems.append(Problem("object-mode", str(path),
                                f"object {name} has mode {stat.filemode(info.st_mode)}"))
    if not stat.S_ISREG(info.st_mode):
        return problems  # nothing to hash
    with open(path, "rb") as handle:
        actual = hashlib.file_digest(handle, "sha256").hexdigest()
    progress.advance(info.st_size)
    if actual != sha or suffix not in ("", "x"):
        problems.append(Problem("object-corrupt", str(path),
                                f"object {name} is corrupt: its content hashes to"
                                f" sha256:{actual}"))
    return problems


def _check_materialized(store: Store, report: FsckReport) -> None:
    """Each materialised file must still be the object's inode (or, if copied, its content)."""
    for path in sorted(store.layout.materialized.iterdir()):
        digest = Digest("sha256:" + path.name)
        try:
            fileset = store.get(digest)
            entries = joined_entries(store, fileset)
        except KilnError as exc:
            report.problems.append(Problem("materialized-orphan", str(path), str(exc)))
            continue
        for joined in entries:
            entry = joined.entry
            if not isinstance(entry, FileEntry):
                continue
            made = path / entry.path
            source = store.object_path(entry.sha256, entry.executable)
            try:
                same = os.path.samefile(made, source)
                if not same:
                    with open(made, "rb") as handle:
                        same = hashlib.file_digest(handle, "sha256").hexdigest() == entry.sha256
            except OSError:
                same = False
            if not same:
                report.problems.append(Problem(
                    "materialized-corrupt", str(made),
                    f"materialised file {entry.path!r} differs from its object",
                    (fileset.label,)))

"""`kiln lock update`: the toolchain lock changed one package at a time.

A lock pins what every recipe builds with, so moving a package moves the build key
of every recipe whose closure holds it. The update therefore moves nothing the
maintainer did not name:

- by default it adds what the recipes need that the lock lacks (with its closure),
  every locked package staying where it is;
- `--add PKG` adds a Debian package (with its closure) that no recipe names yet;
- `--only PKG` moves PKG to apt's candidate (and adds what that version newly needs);
- `--all` resolves everything again, as a first lock does, and drops what no recipe
  needs any more.

A new package that needs a newer version of a locked one is refused, naming both,
rather than moving the locked one behind the maintainer's back. What changed is
returned as a diff (added, updated, removed), never the whole table.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kiln.debian.apt import Apt, AptPackage
from kiln.errors import InputError, NotFound
from kiln.fileset import FileSet
from kiln.recipes.lock import Lock, LockedPackage, read_lock, write_lock
from kiln.store.store import Store


@dataclass(frozen=True)
class LockChange:
    """A lock after an update, and what the update added, moved and removed."""

    lock: Lock
    added: tuple[LockedPackage, ...] = ()
    updated: tuple[tuple[LockedPackage, LockedPackage], ...] = ()  # (before, after)
    removed: tuple[LockedPackage, ...] = ()
    kept: int = 0  # locked packages left as they were

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)

    def to_json(self) -> dict[str, object]:
        return {"added": [p.to_json() for p in self.added],
                "updated": [{"name": new.name, "from": old.version, "to": new.version,
                             "digest": new.digest} for old, new in self.updated],
                "removed": [p.to_json() for p in self.removed], "kept": self.kept}

    def diff_lines(self) -> list[str]:
        return ([f"+ {p.name} {p.version}" for p in self.added]
                + [f"~ {new.name} {old.version} -> {new.version}" if old.version != new.version
                   # The same .deb made another FileSet (a newer Kiln's importer).
                   else f"~ {new.name} {new.version}: FileSet {old.digest[:19]}... ->"
                        f" {new.digest[:19]}..." for old, new in self.updated]
                + [f"- {p.name} {p.version}" for p in self.removed])


def update_lock(store: Store, repository_dir: Path, *, add: Sequence[str] = (),
                only: Sequence[str] = (), everything: bool = False) -> LockChange:
    """Change the repository's kiln.lock as asked (see the module's text); the diff."""
    from kiln.debian.importer import kiln_name, package_name, suite_of
    from kiln.recipes.repository import debian_requirements, load_repository

    repository = load_repository(repository_dir)
    if repository.problems:
        raise InputError(f"{repository_dir} has problems; run `kiln recipe check` first",
                         reason="bad-recipe")
    previous = read_lock(repository_dir / "kiln.lock")
    wanted = set(debian_requirements(repository))
    suites = {suite_of(name) for name in wanted} | ({previous.suite} if previous else set())
    if len(suites) > 1:
        raise InputError(f"recipes build with more than one Debian suite: {sorted(suites)}",
                         reason="bad-recipe")
    suite = suites.pop() if suites else "bookworm"
    added_names = {_kiln_name(text, suite) for text in add}
    moving = {_kiln_name(text, suite) for text in only}
    locked = {p.name: p for p in previous.packages} if previous else {}
    for name in moving:
        if name not in locked:
            raise InputError(f"--only {name}: the lock holds no such package (--add adds one)",
                             reason="not-locked")
    # What stays where it is: nothing with --all (or a first lock), else all but --only.
    kept = {} if everything or previous is None else {
        n: p for n, p in locked.items() if n not in moving}
    roots = (wanted | added_names | moving) - set(kept)
    apt = Apt(store.layout.cache / "apt")
    chosen = _resolve(apt, [package_name(n) for n in sorted(roots)], kept)
    if moving:
        _refuse_broken_kept(apt, kept, chosen, moving)
    new_records = [record for record in chosen.values()
                   if kiln_name(suite, record.name) not in kept]
    imported = _import(store, apt, new_records, suite)
    packages = dict(kept)
    for record in new_records:
        fileset = imported[record.name]
        packages[fileset.name] = LockedPackage(fileset.name, fileset.version, fileset.digest,
                                               record.sha256, ())
    provides = _provides(chosen, suite)
    for record in new_records:
        name = kiln_name(suite, record.name)
        packages[name] = _with_requires(packages[name], record, set(packages), provides, suite)
    if everything and previous is not None:
        keep = Lock(suite, tuple(packages.values())).closure(wanted | added_names)
        packages = {n: p for n, p in packages.items() if n in keep}
    lock = Lock(suite, tuple(sorted(packages.values(), key=lambda p: p.name)))
    change = _diff(locked, packages, lock)
    if change.changed or previous is None:
        write_lock(repository_dir / "kiln.lock", lock)
    return change


def _kiln_name(text: str, suite: str) -> str:
    """`liblz4-dev` or `debian.org/bookworm/liblz4-dev` -> the lock's name."""
    from kiln.debian.importer import kiln_name, package_name, suite_of

    if "/" not in text:
        return kiln_name(suite, text)
    if suite_of(text) != suite:
        raise InputError(f"{text}: the lock is of {suite}", reason="bad-usage")
    return kiln_name(suite, package_name(text))


def _resolve(apt: Apt, roots: list[str], kept: dict[str, LockedPackage]) -> dict[str, AptPackage]:
    """The roots' closure from apt's candidates, where every kept package stands as
    locked; a dependency only a newer kept package could meet is refused."""
    from kiln.debian.importer import closure, package_name

    apt.prefetch([package_name(n) for n in kept])
    standing = {}
    for name, locked in kept.items():
        debian = package_name(name)
        try:
            candidate = apt.show(debian)
        except NotFound:
            candidate = None
        # What a kept package provides comes from apt's record of it; its version and
        # closure are the lock's own, and nothing of it is walked again.
        standing[debian] = AptPackage(debian, locked.version, candidate.architecture
                                      if candidate else "", locked.deb_sha256, "", 0, (),
                                      candidate.provides if candidate else (), "", "")
    records = [apt.show(name) for name in roots]
    chosen = {record.name: record for record in closure(apt, records, already=standing)}
    _refuse_unmet(chosen, kept)
    return chosen


def _refuse_unmet(chosen: dict[str, AptPackage], kept: dict[str, LockedPackage]) -> None:
    from kiln.debian.importer import describe_relation, package_name, satisfied

    kept_debian = {package_name(name): name for name in kept}
    provided = {p for record in chosen.values() for p in record.provides}
    for record in chosen.values():
        for group in record.depends:
            if any(satisfied(option, chosen, provided) for option in group):
                continue
            blocking = [option for option in group if option.name in kept_debian]
            wanted = " | ".join(describe_relation(option) for option in group)
            if blocking:
                locked = kept[kept_debian[blocking[0].name]]
                raise InputError(
                    f"{record.name} {record.version} needs {wanted}; the lock holds"
                    f" {locked.name}@{locked.version}: `kiln lock update --only"
                    f" {locked.name}` moves it (and rebuilds what builds with it)",
                    reason="lock-would-move")
            raise InputError(f"{record.name} {record.version} needs {wanted}, which apt"
                             " cannot provide", reason="deb-unsatisfiable")


def _refuse_broken_kept(apt: Apt, kept: dict[str, LockedPackage],
                        chosen: dict[str, AptPackage], moving: set[str]) -> None:
    """`--only` moves one package: every package kept where it is must still accept it.
    One whose own relation on it (its locked version's, as apt lists it) the new version
    breaks is refused, naming both."""
    from kiln.debian.importer import describe_relation, package_name, satisfied

    moved = {package_name(name) for name in moving}
    provided = {p for record in chosen.values() for p in record.provides}
    for name, locked in sorted(kept.items()):
        if not moving & set(locked.requires):
            continue
        try:
            record = apt.show(package_name(name), locked.version)
        except NotFound:
            continue  # apt no longer lists that version: its relations cannot be read
        for group in record.depends:
            if not any(option.name in moved for option in group) or any(
                    satisfied(option, chosen, provided) for option in group):
                continue
            new = chosen[next(option.name for option in group if option.name in moved)]
            wanted = " | ".join(describe_relation(option) for option in group)
            raise InputError(
                f"{locked.name}@{locked.version} needs {wanted}; --only would move"
                f" {new.name} to {new.version}: move both (`--only {locked.name}` too),"
                " or neither", reason="lock-would-break")


def _import(store: Store, apt: Apt, records: Iterable[AptPackage],
            suite: str) -> dict[str, FileSet]:
    """The new packages, downloaded by apt (checked against its index) and imported."""
    from kiln.debian.importer import import_deb_file

    records = list(records)
    if not records:
        return {}
    with tempfile.TemporaryDirectory(prefix="kiln-lock-") as scratch:
        files = apt.download(records, Path(scratch))
        return {record.name: import_deb_file(store, files[record.name], record, suite)
                for record in records}


def _provides(chosen: dict[str, AptPackage], suite: str) -> dict[str, str]:
    from kiln.debian.importer import kiln_name

    return {kiln_name(suite, virtual): kiln_name(suite, record.name)
            for record in chosen.values() for virtual in record.provides}


def _with_requires(package: LockedPackage, record: AptPackage, names: set[str],
                   provides: dict[str, str], suite: str) -> LockedPackage:
    """What `package` requires within the lock: the first option of each group that
    the lock holds, itself or through what provides it."""
    from kiln.debian.importer import kiln_name

    requires = set()
    for group in record.depends:
        for option in group:
            name = kiln_name(suite, option.name)
            target = name if name in names else provides.get(name)
            if target is not None:
                if target != package.name:
                    requires.add(target)
                break
    return LockedPackage(package.name, package.version, package.digest, package.deb_sha256,
                         tuple(sorted(requires)))


def _diff(before: dict[str, LockedPackage], after: dict[str, LockedPackage],
          lock: Lock) -> LockChange:
    added = tuple(p for n, p in sorted(after.items()) if n not in before)
    removed = tuple(p for n, p in sorted(before.items()) if n not in after)
    updated = tuple((before[n], p) for n, p in sorted(after.items())
                    if n in before and before[n] != p)
    kept = sum(1 for n, p in after.items() if before.get(n) == p)
    return LockChange(lock, added, updated, removed, kept)


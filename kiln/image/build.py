"""`kiln image build` and `kiln image update`: from a spec or a previous image to
a composed image and its lock."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kiln.canonical import Digest
from kiln.errors import InputError, NotFound
from kiln.fileset import FileSet
from kiln.image.resolve import resolve_packages
from kiln.image.spec import (
    ImageLock,
    ImageSpec,
    LockedPackage,
    RunConfig,
    parse_package_relation,
    read_image_lock,
)
from kiln.naming import next_version, validate_version
from kiln.relations import Relation
from kiln.store.store import Store

if TYPE_CHECKING:  # composing is imported where an image is composed: `kiln run` does not
    from kiln.image.compose import Image
    from kiln.image.inspect import ImageSummary

FetchPackage = Callable[[str, str], FileSet]
"""Brings NAME@VERSION when the store lacks it (from a registry, or an image's layer)."""


@dataclass(frozen=True)
class Composed:
    """An image composed from FileSets, and the lock that pins them."""

    image: Image
    lock: ImageLock


def build_from_spec(store: Store, spec: ImageSpec, *, locked: bool = False,
                    package_set: tuple[Digest, tuple[LockedPackage, ...]] | None = None,
                    fetch: FetchPackage | None = None,
                    admit: Callable[[list[FileSet]], None] | None = None) -> Composed:
    """Resolve (or take the lock of) `spec` and compose its image; `admit` sees the
    packages first and may refuse them (by raising)."""
    packages, lock = resolve_spec(store, spec, locked=locked, package_set=package_set,
                                  fetch=fetch)
    if admit is not None:
        admit(packages)
    from kiln.image.compose import compose_image

    image = compose_image(store, spec.name, spec.version, packages, spec.run,
                          budget=spec.layers, overrides=spec.overrides, set_digest=lock.set,
                          wanted=[str(relation) for relation in spec.packages])
    return Composed(image, lock)


def resolve_spec(store: Store, spec: ImageSpec, *, locked: bool = False,
                 package_set: tuple[Digest, tuple[LockedPackage, ...]] | None = None,
                 fetch: FetchPackage | None = None) -> tuple[list[FileSet], ImageLock]:
    """The packages `spec` holds (resolved, or exactly its lock) and the lock to write."""
    set_digest = package_set[0] if package_set else None
    pins = {p.name: p for p in package_set[1]} if package_set else {}
    if locked:
        lock = read_image_lock(spec.lock_path)
        _check_lock_matches(spec, lock, set_digest)
        packages = [ensure_package(store, p, fetch) for p in lock.packages]
        # The lock must still be a closure that satisfies the spec.
        try:
            resolved = resolve_packages(store, spec.packages,
                                        pins={p.name: p for p in lock.packages},
                                        overrides=spec.overrides)
        except InputError as exc:
            raise InputError(f"{spec.lock_path} no longer satisfies {spec.file}: {exc.message}",
                             reason="lock-stale") from exc
        if {f.digest for f in resolved} != {f.digest for f in packages}:
            raise InputError(f"{spec.lock_path} no longer satisfies {spec.file}: build without"
                             " --locked to re-resolve", reason="lock-stale")
    else:
        for pin in pins.values():
            ensure_package(store, pin, fetch)
        packages = resolve_packages(store, spec.packages, pins=pins, overrides=spec.overrides)
        lock = ImageLock(tuple(LockedPackage(f.name, f.version, f.digest) for f in packages),
                         dict(spec.overrides), set_digest)
    return packages, lock


def _check_lock_matches(spec: ImageSpec, lock: ImageLock, set_digest: Digest | None) -> None:
    if dict(lock.overrides) != dict(spec.overrides) or lock.set != set_digest:
        raise InputError(f"{spec.lock_path} was made with other overrides or another set:"
                         " build without --locked to update it", reason="lock-stale")


def ensure_package(store: Store, package: LockedPackage, fetch: FetchPackage | None) -> FileSet:
    """The locked package from the store, fetched when missing; its digest must match."""
    if store.has(package.digest):
        return store.get(package.digest)
    if fetch is None:
        raise NotFound(f"{package.name}@{package.version} ({package.digest}) is not in the store"
                       " and no registry is configured to pull it from",
                       reason="package-missing")
    fetched = fetch(package.name, package.version)
    if fetched.digest != package.digest:
        raise InputError(f"{package.name}@{package.version} pulled as {fetched.digest}, locked"
                         f" as {package.digest}", reason="fileset-digest-mismatch")
    return fetched


def update_image(store: Store, previous: ImageSummary, changes: Mapping[str, str],
                 run: RunConfig, *, fetch: FetchPackage | None = None,
                 budget: int = 100, version: str | None = None) -> Composed:
    """The previous image with NAME=VERSION changes; dependencies re-checked. The new
    image is `version`, else the previous one's next (kiln.naming.next_version): an
    image's version names one content, never two."""
    packages = {p.name: p for p in previous.packages}
    for name in changes:
        if name not in packages:
            raise NotFound(f"{previous.name}@{previous.version} holds no {name}",
                           reason="not-in-image")
    pins: dict[str, LockedPackage] = {}
    for name, package in packages.items():
        if name in changes:
            versions = store.versions(name)
            if changes[name] not in versions and fetch is not None:
                fetched = fetch(name, changes[name])
                pins[name] = LockedPackage(name, fetched.version, fetched.digest)
                continue
            if changes[name] not in versions:
                raise NotFound(f"{name}@{changes[name]} is not in the store",
                               reason="package-missing")
            pins[name] = LockedPackage(name, changes[name], store.lookup(name, changes[name]))
        else:
            pins[name] = package
            ensure_package(store, package, fetch)
    # What image.yaml listed is resolved again with every package pinned where it was:
    # the new versions' requirements are re-checked, what they newly need comes in, and
    # what only the old versions needed goes. (An image without that list keeps all.)
    wanted = ([parse_package_relation(text) for text in previous.wanted] if previous.wanted
              else [Relation(name) for name in sorted(pins)])
    resolved = resolve_packages(store, wanted, pins=pins, overrides=previous.overrides)
    set_digest = Digest(previous.set) if previous.set else None
    version = validate_version(version) if version else next_version(previous.version)
    if version == previous.version:
        raise InputError(f"{previous.name}@{version} is the image being updated: an update"
                         " is a new version", reason="same-version")
    from kiln.image.compose import compose_image

    image = compose_image(store, previous.name, version, resolved, run, budget=budget,
                          overrides=previous.overrides, set_digest=set_digest,
                          previous=previous.digest, wanted=previous.wanted)
    lock = ImageLock(tuple(LockedPackage(f.name, f.version, f.digest) for f in resolved),
                     dict(previous.overrides), set_digest)
    return Composed(image, lock)

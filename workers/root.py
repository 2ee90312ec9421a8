"""Composing a root from FileSets: each mounted read-only at its own path, joined
by a symlink farm (DESIGN.md 2b), with the packages' `env` merged.

A package's `install` patterns pick the paths it links into the root; an empty
list (Debian packages, plain FileSets) links every file and symlink where it
stands. Files are linked to their FileSet's mount; symlinks are copied as they
are. Two packages linking one path to different content is refused, naming
both.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from dataclasses import dataclass

from kiln.errors import ConflictError
from kiln.fileset import FileSet
from kiln.package import PackageMetadata
from kiln.store.materialize import store_tree
from kiln.store.store import Store
from kiln.tree import DirectoryEntry, FileEntry
from workers.sandbox import Mount


@dataclass(frozen=True)
class Root:
    mounts: tuple[Mount, ...]
    links: dict[str, str]
    env: dict[str, str]
    key: str  # identifies the links, for the sandbox's cached farm


# A worker composes the same toolchain root for build after build.
_COMPOSED: dict[tuple[str, tuple[str, ...]], Root] = {}
_KEPT = 16


def compose_root(store: Store, filesets: list[FileSet]) -> Root:
    """The mounts, links and environment of a root made of `filesets`.

    Remembered per store and set of FileSets, and reused while every FileSet's
    tree is still there (gc may have removed one since)."""
    memo = (str(store.layout.root), tuple(sorted(f.digest for f in filesets)))
    known = _COMPOSED.get(memo)
    if known is not None and all(mount.source.is_dir() for mount in known.mounts):
        return known
    root = _compose(store, filesets)
    if len(_COMPOSED) >= _KEPT:
        _COMPOSED.pop(next(iter(_COMPOSED)))
    _COMPOSED[memo] = root
    return root


def forget_compositions() -> None:
    """Drop remembered compositions, as a fresh worker process starts without them."""
    _COMPOSED.clear()


def _compose(store: Store, filesets: list[FileSet]) -> Root:
    mounts = []
    links: dict[str, str] = {}
    owners: dict[str, tuple[FileSet, str]] = {}  # link -> (owner, content key)
    env: dict[str, str] = {}
    for fileset in sorted(filesets, key=lambda f: (f.name, f.version)):
        mount_point = f"/{fileset.mount_point}"
        mounts.append(Mount(mount_point, store_tree(store, fileset)))
        metadata = fileset.metadata
        patterns = metadata.install if isinstance(metadata, PackageMetadata) else ()
        if isinstance(metadata, PackageMetadata):
            env.update(metadata.env)
        for entry in store.tree(fileset).entries:
            if isinstance(entry, DirectoryEntry):
                continue
            if patterns and not any(fnmatch.fnmatch(entry.path, p) for p in patterns):
                continue
            path = f"/{entry.path}"
            key = (f"{entry.sha256}:{entry.executable}" if isinstance(entry, FileEntry)
                   else f"symlink:{entry.target}")
            previous = owners.get(path)
            if previous is not None:
                if previous[1] != key:
                    raise ConflictError(f"{path} is installed by both {previous[0].label} and"
                                        f" {fileset.label}", reason="path-claimed-twice")
                continue
            owners[path] = (fileset, key)
            # A package's own symlink goes in verbatim, so that its target resolves in
            # the root, as after dpkg -i: binutils' usr/bin/as -> x86_64-linux-gnu-as
            # names a file of another package.
            links[path] = (f"{mount_point}/{entry.path}" if isinstance(entry, FileEntry)
                           else entry.target)
    _refuse_links_over_directories(links, owners)
    key = hashlib.sha256(json.dumps(sorted(links.items())).encode()).hexdigest()
    return Root(tuple(mounts), links, env, key)


def _refuse_links_over_directories(links: dict[str, str],
                                   owners: dict[str, tuple[FileSet, str]]) -> None:
    for path in links:
        parent = path.rpartition("/")[0]
        while parent:
            if parent in links:
                raise ConflictError(f"{path} of {owners[path][0].label} lies under {parent},"
                                    f" a link of {owners[parent][0].label}",
                                    reason="path-claimed-twice")
            parent = parent.rpartition("/")[0]

"""Composing a root from FileSets: each mounted read-only at its own path, joined
by a symlink farm of their install links (kiln.install), with their `env` merged.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from kiln.fileset import FileSet
from kiln.install import install_links
from kiln.store.materialize import store_tree
from kiln.store.store import Store
from workers.sandbox import Mount


@dataclass(frozen=True)
class Root:
    """A composed root: its package mounts, links and environment."""

    mounts: tuple[Mount, ...]
    links: dict[str, str]
    env: dict[str, str]
    key: str  # identifies the links, for the sandbox's cached farm
    cache: Path | None = None  # where its skeleton is made: the store's (RunSpec.root_cache)


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
    mounts = tuple(Mount(f"/{fileset.mount_point}", store_tree(store, fileset))
                   for fileset in sorted(filesets, key=lambda f: (f.name, f.version)))
    plan = install_links(store, filesets)
    key = hashlib.sha256(json.dumps(sorted(plan.links.items())).encode()).hexdigest()
    return Root(mounts, plan.links, plan.env, key, store.layout.cache / "roots")

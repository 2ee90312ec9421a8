"""Describing directory trees in tests, and writing them to disk in varied ways."""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class File:
    content: bytes
    executable: bool = False


@dataclass(frozen=True)
class Link:
    target: str


@dataclass(frozen=True)
class Dir:
    pass


Spec = Mapping[str, File | Link | Dir]


def write_tree(root: Path, spec: Spec, *, seed: int | None = None) -> Path:
    """Write `spec` under `root`; with a seed, in a shuffled order with noisy metadata.

    The noise is what must never change a tree digest: creation order, times,
    owners, and mode bits other than the owner's executable bit.
    """
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    paths = list(spec)
    if seed is not None:
        rng.shuffle(paths)
    for path in paths:
        item = spec[path]
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(item, File):
            target.write_bytes(item.content)
            if seed is None:
                os.chmod(target, 0o755 if item.executable else 0o644)
            else:
                base = rng.choice([0o700, 0o750, 0o755, 0o775]) if item.executable else \
                    rng.choice([0o600, 0o640, 0o644, 0o664, 0o606])
                os.chmod(target, base)
        elif isinstance(item, Link):
            target.symlink_to(item.target)
        else:
            target.mkdir(exist_ok=True)
    if seed is not None:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in [*dirnames, *filenames]:
                path = os.path.join(dirpath, name)
                when = rng.randrange(0, 2_000_000_000)
                os.utime(path, (when, when), follow_symlinks=False)
                if os.geteuid() == 0:
                    os.lchown(path, rng.randrange(0, 5000), rng.randrange(0, 5000))
            for name in dirnames:
                os.chmod(os.path.join(dirpath, name), rng.choice([0o700, 0o755, 0o775, 0o2755]))
    return root


def read_tree(root: Path) -> dict[str, File | Link | Dir]:
    """What a materialised or extracted tree holds, in the same terms."""
    found: dict[str, File | Link | Dir] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            relative = path.relative_to(root).as_posix()
            if path.is_symlink():
                found[relative] = Link(os.readlink(path))
                if name in dirnames:
                    dirnames.remove(name)
            elif path.is_dir():
                found[relative] = Dir()
            else:
                found[relative] = File(path.read_bytes(), os.access(path, os.X_OK)
                                       and bool(path.stat().st_mode & 0o100))
    return found


def with_parents(spec: Spec) -> dict[str, File | Link | Dir]:
    """The spec with every parent directory listed, as a tree of it would hold."""
    full: dict[str, File | Link | Dir] = dict(spec)
    for path in spec:
        parent = path.rpartition("/")[0]
        while parent:
            full.setdefault(parent, Dir())
            parent = parent.rpartition("/")[0]
    return full

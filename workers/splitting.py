"""Split outputs: the paths of a build's /out that a recipe's `outputs:` claim, moved
into a directory each, so that each is ingested as a FileSet of its own and the
recipe's package keeps the rest.

/out was written by the build, so it is walked as hostile: without following a
link, and into directories made here under names the build cannot have guessed
(an `mkdir` that would fail on anything already there, a link included). The
build has ended when this runs: nothing moves the tree meanwhile. An output goes
first to the first output whose patterns match (fnmatch on the path, as `install`:
a `*` crosses `/`); a directory stays with the package unless everything in it
went, and an output that claims nothing fails the build, naming it.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
from pathlib import Path

from kiln.errors import InputError
from kiln.recipes.model import SplitOutput
from kiln.store.layout import unique_part


def split_out(out: Path, outputs: tuple[SplitOutput, ...], where: str
              ) -> list[tuple[SplitOutput, Path]]:
    """Move what each output claims from `out` into a directory of its own under `out`
    (same filesystem, so renames); those directories, in the outputs' order. The
    caller ingests them, removes them, then ingests `out`."""
    if not outputs:
        return []
    claimed: list[list[str]] = [[] for _ in outputs]
    for path in _entries(out):
        for index, output in enumerate(outputs):
            if any(fnmatch.fnmatchcase(path, pattern) for pattern in output.paths):
                claimed[index].append(path)
                break
    for output, paths in zip(outputs, claimed, strict=True):
        if not paths:
            raise InputError(f"{where}: output {output.name} claims nothing the build made"
                             f" (paths: {', '.join(output.paths)})", reason="empty-output")
    places = []
    for output, paths in zip(outputs, claimed, strict=True):
        place = out / f".kiln-split-{unique_part(8)}"
        os.mkdir(place, 0o755)  # fails on anything there already, a link too
        for path in paths:
            target = place / path
            target.parent.mkdir(parents=True, exist_ok=True)  # ours: made under `place`
            os.rename(out / path, target)
        places.append((output, place))
    _prune_emptied(out, {parent for paths in claimed for path in paths
                         for parent in _parents(path)})
    return places


def _entries(out: Path) -> list[str]:
    """Every file and link of `out` (relative paths, sorted), directories walked but not
    listed, links never followed."""
    found = []
    for directory, subdirectories, files in os.walk(out, followlinks=False):
        relative = os.path.relpath(directory, out)
        for name in files + [d for d in subdirectories if os.path.islink(os.path.join(
                directory, d))]:
            found.append(name if relative == "." else f"{relative}/{name}")
    return sorted(found)


def _parents(path: str) -> list[str]:
    parts = path.split("/")[:-1]
    return ["/".join(parts[:end]) for end in range(1, len(parts) + 1)]


def _prune_emptied(out: Path, directories: set[str]) -> None:
    """Remove the directories the moves left empty, deepest first: they belong to the
    outputs that took their content, not to the package."""
    for directory in sorted(directories, key=lambda d: d.count("/"), reverse=True):
        with contextlib.suppress(OSError):  # not empty: the package keeps something there
            os.rmdir(out / directory)

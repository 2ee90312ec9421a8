"""Joining a FileSet with the FileSets it imports into one view of paths."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from kiln.errors import ConflictError
from kiln.fileset import FileSet
from kiln.tree import DirectoryEntry, Entry, Tree, path_sort_key

if TYPE_CHECKING:  # store.py imports this module; at run time only the type is needed
    from kiln.store.store import Store


@dataclass(frozen=True)
class JoinedEntry:
    """One path of a joined view and the FileSet that claims it."""

    entry: Entry
    owner: str


def joined_entries(store: Store, fileset: FileSet, tree: Tree | None = None) -> list[JoinedEntry]:
    """Every path of `fileset` with its imports joined in, sorted; a path claimed twice is refused.

    Directories may be shared (two FileSets both having `usr/`); any other path
    claimed by two FileSets, or lying under another's file or symlink, is a conflict.
    """
    claims: dict[str, JoinedEntry] = {}

    def claim(entry: Entry, owner: str) -> None:
        previous = claims.get(entry.path)
        if previous is None:
            claims[entry.path] = JoinedEntry(entry, owner)
        elif not (previous.entry.kind == entry.kind == "directory"):
            raise ConflictError(
                f"path {entry.path!r} is claimed by both {previous.owner} and {owner}",
                reason="path-claimed-twice",
            )

    for entry in (tree or store.tree(fileset)).entries:
        claim(entry, fileset.label)
    for item in fileset.imports:
        child = store.get(item.digest)
        claim(DirectoryEntry(item.path), child.label)
        for joined in joined_entries(store, child):
            claim(replace(joined.entry, path=f"{item.path}/{joined.entry.path}"), joined.owner)

    for path in list(claims):
        parent = path.rpartition("/")[0]
        while parent and parent not in claims:
            claims[parent] = JoinedEntry(DirectoryEntry(parent), fileset.label)
            parent = parent.rpartition("/")[0]
        if parent and claims[parent].entry.kind != "directory":
            raise ConflictError(
                f"path {path!r} of {claims[path].owner} lies under the {claims[parent].entry.kind}"
                f" {parent!r} of {claims[parent].owner}",
                reason="path-claimed-twice",
            )
    return [claims[path] for path in sorted(claims, key=path_sort_key)]

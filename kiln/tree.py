"""A tree: the sorted entries of a FileSet, and its digest.

The tree digest is the sha256 of the canonical JSON of the sorted entries
(DESIGN.md 2a). It never changes meaning: a new kind of entry would be a new
tree format, not a new reading of this one.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from kiln.canonical import Digest, canonical_json, parse_json, sha256_digest
from kiln.errors import InputError

_T = TypeVar("_T")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")

MAX_PATH_BYTES = 4096
MAX_COMPONENT_BYTES = 255


@dataclass(frozen=True, slots=True)
class FileEntry:
    """A regular file: its content is the store object (sha256, executable)."""

    path: str
    size: int
    sha256: str
    executable: bool
    kind: Literal["file"] = "file"

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "type": "file", "size": self.size,
                "sha256": self.sha256, "executable": self.executable}


@dataclass(frozen=True, slots=True)
class SymlinkEntry:
    """A symbolic link, kept verbatim (it may point anywhere, even outside)."""

    path: str
    target: str
    kind: Literal["symlink"] = "symlink"

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "type": "symlink", "target": self.target}


@dataclass(frozen=True, slots=True)
class DirectoryEntry:
    """A directory; listed even when empty so that empty directories survive."""

    path: str
    kind: Literal["directory"] = "directory"

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "type": "directory"}


Entry = FileEntry | SymlinkEntry | DirectoryEntry


def path_sort_key(path: str) -> str:
    """Order paths component by component, so a directory precedes its contents.

    With every "/" made NUL (which no component may hold), plain string order
    is component order: "a/b" < "a-b" as ("a", "b") < ("a-b",). Comparing str
    by code point is the same as comparing their UTF-8 bytes.
    """
    return path.replace("/", "\0")


def check_path(path: str) -> str:
    """Refuse a path that is not a clean, relative, UTF-8 path inside a tree."""
    # Fast path for the common case, all in C: short ASCII, no empty, . or .. part.
    if (path.isascii() and 0 < len(path) <= MAX_COMPONENT_BYTES and "\0" not in path
            and "//" not in path and "/./" not in f"/{path}/" and "/../" not in f"/{path}/"
            and path[0] != "/" and path[-1] != "/"):
        return path
    if not path or path.startswith("/") or path.endswith("/"):
        raise InputError(f"path {path!r} must be relative, without a trailing slash",
                         reason="bad-path")
    try:
        encoded = path.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"path {path!r} is not valid UTF-8", reason="bad-path-encoding") from None
    if len(encoded) > MAX_PATH_BYTES:
        raise InputError(f"path {path[:60]!r}... is longer than {MAX_PATH_BYTES} bytes",
                         reason="path-too-long")
    if "\0" in path:
        raise InputError(f"path {path!r} contains a NUL byte", reason="bad-path")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise InputError(f"path {path!r} has an empty, '.' or '..' component",
                             reason="bad-path")
        if len(part.encode("utf-8")) > MAX_COMPONENT_BYTES:
            raise InputError(f"path {path!r} has a component over {MAX_COMPONENT_BYTES} bytes",
                             reason="path-too-long")
    return path


@dataclass(frozen=True)
class Tree:
    """The validated, sorted entries of one FileSet (imports not included)."""

    entries: tuple[Entry, ...]

    @classmethod
    def from_entries(cls, entries: Iterable[Entry]) -> Tree:
        """Sort and validate entries: unique paths, each parent a directory."""
        ordered = sorted(entries, key=lambda entry: path_sort_key(entry.path))
        kinds: dict[str, str] = {}
        for entry in ordered:
            check_path(entry.path)
            if entry.path in kinds:
                raise InputError(f"path {entry.path!r} appears twice in the tree",
                                 reason="duplicate-path")
            parent = entry.path.rpartition("/")[0]
            if parent and kinds.get(parent) != "directory":
                raise InputError(
                    f"path {entry.path!r} lies under {parent!r}, which is not a directory"
                    " of the tree",
                    reason="bad-parent",
                )
            if isinstance(entry, FileEntry) and (
                    entry.size < 0 or not _SHA256_HEX.fullmatch(entry.sha256)):
                raise InputError(f"file {entry.path!r} has a bad size or sha256",
                                 reason="bad-tree")
            kinds[entry.path] = entry.kind
        return cls(tuple(ordered))

    @functools.cached_property
    def canonical_bytes(self) -> bytes:
        """The canonical JSON whose sha256 is the tree digest."""
        # Entries are typed and validated: only str, int and bool reach the encoder.
        return canonical_json([entry.to_json() for entry in self.entries], check=False)

    @functools.cached_property
    def digest(self) -> Digest:
        return sha256_digest(self.canonical_bytes)

    def files(self) -> Iterator[FileEntry]:
        return (entry for entry in self.entries if isinstance(entry, FileEntry))

    @property
    def total_size(self) -> int:
        return sum(entry.size for entry in self.files())

    @classmethod
    def from_json_bytes(cls, data: bytes, *, where: str) -> Tree:
        """Parse a stored tree strictly; unknown keys and types are refused."""
        raw = parse_json(data, where=where, what="tree", reason="bad-tree")
        if not isinstance(raw, list):
            raise InputError(f"{where}: tree must be a JSON list", reason="bad-tree")
        tree = cls.from_entries(_entry_from_json(item, where) for item in raw)
        if tree.canonical_bytes != data:
            raise InputError(f"{where}: tree is not in canonical form", reason="bad-tree")
        return tree


_ENTRY_KEYS = {
    "file": {"path", "type", "size", "sha256", "executable"},
    "symlink": {"path", "type", "target"},
    "directory": {"path", "type"},
}


def _entry_from_json(item: Any, where: str) -> Entry:
    if not isinstance(item, dict) or item.get("type") not in _ENTRY_KEYS:
        raise InputError(f"{where}: entry {item!r} has no known type", reason="bad-tree")
    expected = _ENTRY_KEYS[item["type"]]
    if set(item) != expected:
        raise InputError(f"{where}: entry {item.get('path')!r} has keys {sorted(item)},"
                         f" expected {sorted(expected)}", reason="bad-tree")
    path = _typed(item, "path", str, where)
    if item["type"] == "file":
        return FileEntry(path, _typed(item, "size", int, where),
                         _typed(item, "sha256", str, where),
                         _typed(item, "executable", bool, where))
    if item["type"] == "symlink":
        return SymlinkEntry(path, _typed(item, "target", str, where))
    return DirectoryEntry(path)


def _typed(item: dict[str, Any], key: str, kind: type[_T], where: str) -> _T:
    value = item[key]
    # bool is an int in Python; a size of `true` must still be refused.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InputError(f"{where}: {key} of {item.get('path')!r} must be {kind.__name__}",
                         reason="bad-tree")
    return value


def check_symlink_target(path: str, target: str) -> str:
    """Refuse symlink targets that cannot be stored: empty, NUL, or not UTF-8."""
    if not target or "\0" in target or len(target.encode("utf-8", "surrogatepass")) > 4095:
        raise InputError(f"symlink {path!r} has an empty or invalid target", reason="bad-symlink")
    try:
        target.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"symlink {path!r} has a target that is not valid UTF-8",
                         reason="bad-path-encoding") from None
    return target


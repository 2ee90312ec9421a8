"""The FileSet: a named, versioned, verified set of files, and its digest.

The FileSet digest is the sha256 of the canonical JSON manifest
`{format, name, version, tree, imports, metadata}` (DESIGN.md 2a). The manifest
bytes are kept beside the parsed model and never re-serialised, so what was
hashed (and later signed) is exactly what is stored and shipped.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from kiln.canonical import Digest, canonical_json, parse_digest, parse_json, sha256_digest
from kiln.errors import InputError
from kiln.naming import validate_name, validate_version
from kiln.tree import check_path, path_sort_key

FILESET_FORMAT = "kiln.fileset/v1"
MOUNT_ROOT = "packages"


@dataclass(frozen=True)
class Import:
    """Another FileSet joined into this one at `path`."""

    path: str
    name: str
    version: str
    digest: Digest

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "name": self.name, "version": self.version,
                "digest": self.digest}

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.digest}"


@dataclass(frozen=True)
class Metadata:
    """Typed metadata; each kind of FileSet (fileset, package, image) extends it."""

    kind: ClassVar[str] = "fileset"
    labels: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "labels": dict(sorted(self.labels.items()))}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], *, where: str) -> Metadata:
        _refuse_unknown(raw, {"kind", "labels"}, where)
        return cls(labels=string_map(raw.get("labels", {}), f"{where}: labels"))


METADATA_KINDS: dict[str, type[Metadata]] = {"fileset": Metadata}
"""Kind name to metadata class; packages and images register theirs."""


def metadata_from_json(raw: Any, *, where: str) -> Metadata:
    # Kinds defined in other modules register on import; load them on first need.
    import kiln.package  # noqa: F401

    if not isinstance(raw, Mapping) or raw.get("kind") not in METADATA_KINDS:
        known = ", ".join(sorted(METADATA_KINDS))
        raise InputError(f"{where}: metadata needs a kind, one of {known}",
                         reason="bad-metadata")
    return METADATA_KINDS[raw["kind"]].from_json(raw, where=where)


@dataclass(frozen=True)
class FileSet:
    """A FileSet's identity and contents, with the manifest bytes it was read from."""

    name: str
    version: str
    tree: Digest
    imports: tuple[Import, ...] = ()
    metadata: Metadata = field(default_factory=Metadata)

    def __post_init__(self) -> None:
        validate_name(self.name)
        validate_version(self.version)
        check_imports(self.imports)

    @functools.cached_property
    def manifest_bytes(self) -> bytes:
        return canonical_json({
            "format": FILESET_FORMAT,
            "name": self.name,
            "version": self.version,
            "tree": self.tree,
            "imports": [item.to_json() for item in self.imports],
            "metadata": self.metadata.to_json(),
        })

    @functools.cached_property
    def digest(self) -> Digest:
        return sha256_digest(self.manifest_bytes)

    @property
    def mount_point(self) -> str:
        """Where the FileSet lies in roots, images and archives (DESIGN.md 2b)."""
        return f"{MOUNT_ROOT}/{self.name}/{self.version}"

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"

    @classmethod
    def from_manifest(cls, data: bytes, *, where: str) -> FileSet:
        """Parse manifest bytes strictly and keep them as the FileSet's identity."""
        raw = parse_json(data, where=where, what="manifest", reason="bad-manifest")
        if not isinstance(raw, dict):
            raise InputError(f"{where}: manifest must be a JSON object", reason="bad-manifest")
        _refuse_unknown(raw, {"format", "name", "version", "tree", "imports", "metadata"}, where)
        if raw.get("format") != FILESET_FORMAT:
            raise InputError(f"{where}: format {raw.get('format')!r} is not {FILESET_FORMAT}",
                             reason="unknown-format")
        for key in ("name", "version", "tree"):
            if not isinstance(raw.get(key), str):
                raise InputError(f"{where}: {key} must be a string", reason="bad-manifest")
        imports = raw.get("imports")
        if not isinstance(imports, list):
            raise InputError(f"{where}: imports must be a list", reason="bad-manifest")
        fileset = cls(
            name=raw["name"],
            version=raw["version"],
            tree=parse_digest(raw["tree"], what=f"{where}: tree"),
            imports=tuple(_import_from_json(item, where) for item in imports),
            metadata=metadata_from_json(raw.get("metadata"), where=where),
        )
        if fileset.manifest_bytes != data:
            raise InputError(f"{where}: manifest is not in canonical form",
                             reason="bad-manifest")
        return fileset


def check_imports(imports: tuple[Import, ...]) -> None:
    """Imports are sorted by path, each at a distinct clean path."""
    paths = [item.path for item in imports]
    for path in paths:
        check_path(path)
    if paths != sorted(paths, key=path_sort_key):
        raise InputError("imports must be sorted by path", reason="bad-imports")
    if len(set(paths)) != len(paths):
        raise InputError("two imports share one path", reason="bad-imports")


def make_imports(items: list[tuple[str, FileSet]]) -> tuple[Import, ...]:
    """Imports from (path, FileSet) pairs, in canonical order."""
    imports = [Import(path.strip("/"), fs.name, fs.version, fs.digest) for path, fs in items]
    imports.sort(key=lambda item: path_sort_key(item.path))
    check_imports(tuple(imports))
    return tuple(imports)


def _import_from_json(raw: Any, where: str) -> Import:
    if not isinstance(raw, dict):
        raise InputError(f"{where}: an import must be an object", reason="bad-manifest")
    _refuse_unknown(raw, {"path", "name", "version", "digest"}, where)
    values = [raw.get(key) for key in ("path", "name", "version", "digest")]
    strings = [value for value in values if isinstance(value, str)]
    if len(strings) != 4:
        raise InputError(f"{where}: import {raw!r} needs path, name, version and digest",
                         reason="bad-manifest")
    path, name, version, digest = strings
    return Import(check_path(path), validate_name(name), validate_version(version),
                  parse_digest(digest, what=f"{where}: import digest"))


def _refuse_unknown(raw: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = set(raw) - known
    if unknown:
        raise InputError(f"{where}: unknown keys {sorted(unknown)}", reason="unknown-key")


def string_map(raw: Any, where: str) -> dict[str, str]:
    """A JSON object of strings to strings, checked."""
    if not isinstance(raw, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in raw.items()
    ):
        raise InputError(f"{where} must map strings to strings", reason="bad-metadata")
    return dict(sorted(raw.items()))

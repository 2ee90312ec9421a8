"""The build record (DESIGN.md 2c): what a build hands to provenance, typed.

It is the wire format from a worker to the master, so it is parsed strictly at
the boundary (unknown keys refused, every field checked, duplicate keys refused)
and keeps the bytes it was read from; Kiln writes it as canonical JSON. The
build key, the digest of every input, is computed here too (`build_key`), so
that the worker that builds and the planner that decides what to build agree.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kiln.canonical import Digest, canonical_json, check_fields, loads_strict, sha256_digest
from kiln.errors import InputError

BUILD_FORMAT = "kiln.build/v2"  # bump when what goes into a build key changes
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_COMMIT = re.compile(r"[0-9a-f]{40}")
_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class RecipeRef:
    """The recipe a build ran: its repository, commit, directory and tree."""

    repo: str  # a URL or path that holds `commit`, or `local:PATH` when none does
    commit: str
    path: str  # the recipe's directory in the repository
    tree: Digest  # the tree digest of that directory
    dirty: bool = False  # built from uncommitted changes (--allow-dirty)


@dataclass(frozen=True)
class SourceRef:
    """A verified source: a file by sha256, or a git repository at a commit."""

    uri: str
    sha256: str | None = None
    commit: str | None = None


@dataclass(frozen=True)
class Dependency:
    """A build-time FileSet."""

    name: str
    version: str
    digest: Digest


@dataclass(frozen=True)
class SandboxRef:
    """The sandbox backend a build ran in, and its version."""

    backend: str
    version: str


@dataclass(frozen=True)
class KilnRef:
    """The Kiln that built: its version, and its checkout's commit when it has one."""

    version: str
    commit: str | None  # of Kiln's own checkout, when Kiln runs from one
    dirty: bool = False  # that checkout had uncommitted changes to Kiln's sources

    def to_json(self) -> dict[str, Any]:
        # `dirty` only when true: the records of clean checkouts keep their bytes.
        return {"version": self.version, "commit": self.commit,
                **({"dirty": True} if self.dirty else {})}


@dataclass(frozen=True)
class Output:
    """One package a build made: its FileSet and that FileSet's archive."""

    name: str
    version: str
    digest: Digest  # the FileSet digest
    archive: Digest  # its stable archive's digest: the OCI layer


@dataclass(frozen=True)
class BuildRecord:
    """Everything a build read and made: what its provenance states."""

    recipe: RecipeRef
    sources: tuple[SourceRef, ...]
    build_requires: tuple[Dependency, ...]
    lock: Digest
    sandbox: SandboxRef
    kiln: KilnRef
    output: Output
    log: Digest
    build_key: Digest
    source_date_epoch: int
    started: str
    finished: str
    raw: bytes | None = field(default=None, compare=False, repr=False)  # as read
    # A split recipe's other outputs (`outputs:`), each a FileSet of its own made by the
    # same build; `output` is the recipe's package, with what no output claimed.
    also: tuple[Output, ...] = ()

    @property
    def outputs(self) -> tuple[Output, ...]:
        """Every FileSet the build made: the package first, then its split outputs."""
        return (self.output, *self.also)

    def output_named(self, name: str) -> Output | None:
        return next((output for output in self.outputs if output.name == name), None)

    def to_json(self) -> dict[str, Any]:
        """The record as JSON values, in DESIGN.md 2c's shape."""
        return {
            "recipe": {"repo": self.recipe.repo, "commit": self.recipe.commit,
                       "path": self.recipe.path, "tree": self.recipe.tree,
                       "dirty": self.recipe.dirty},
            "sources": [_source_json(s) for s in self.sources],
            "build_requires": [dependency_json(d) for d in self.build_requires],
            "lock": self.lock,
            "sandbox": {"backend": self.sandbox.backend, "version": self.sandbox.version},
            "kiln": self.kiln.to_json(),
            "output": _output_json(self.output),
            # Only when split: an unsplit record keeps the bytes it always had.
            **({"outputs": [_output_json(o) for o in self.also]} if self.also else {}),
            "log": self.log,
            "build_key": self.build_key,
            "source_date_epoch": self.source_date_epoch,
            "started": self.started,
            "finished": self.finished,
        }

    def to_bytes(self) -> bytes:
        """Canonical JSON: the same record is the same bytes on every host."""
        return canonical_json(self.to_json())

    @classmethod
    def from_bytes(cls, raw: bytes, where: str) -> BuildRecord:
        """Parse a record strictly; every problem is `bad-record`, naming `where`."""
        try:
            document = loads_strict(raw)
            return _record(document, raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(f"{where}: not a build record: {exc}", reason="bad-record") from exc


def build_key(recipe_tree: Digest, sources: tuple[SourceRef, ...],
              build_requires: tuple[Dependency, ...], source_date_epoch: int,
              sandbox: str) -> Digest:
    """The digest of every input of a build: the same key, nothing to rebuild.

    Only the build's own closure of locked packages counts, not the whole lock:
    adding a package to the lock rebuilds nothing that does not use it."""
    return sha256_digest(canonical_json({
        "format": BUILD_FORMAT,
        "recipe": recipe_tree,
        "sources": [_source_json(s) for s in sources],
        "build_requires": sorted((dependency_json(d) for d in build_requires),
                                 key=lambda d: (d["name"], d["version"])),
        "source_date_epoch": source_date_epoch,
        "sandbox": sandbox,
    }))


def build_key_tag(key: str) -> str:
    """The registry tag under which a farm keeps the package a build key made."""
    return "build-" + key.removeprefix("sha256:")


def _output_json(output: Output) -> dict[str, str]:
    return {"name": output.name, "version": output.version, "digest": output.digest,
            "archive": output.archive}


def dependency_json(dependency: Dependency) -> dict[str, str]:
    return {"name": dependency.name, "version": dependency.version,
            "digest": dependency.digest}


def _source_json(source: SourceRef) -> dict[str, str]:
    if source.commit is not None:
        return {"uri": source.uri, "commit": source.commit}
    assert source.sha256 is not None
    return {"uri": source.uri, "sha256": source.sha256}


class _Fields:
    """Reads one JSON object's fields, refusing unknown or missing ones."""

    def __init__(self, value: object, what: str, required: set[str],
                 optional: frozenset[str] = frozenset()) -> None:
        self.value: Mapping[str, object] = check_fields(value, what, required, optional)
        self.what = what

    def text(self, key: str, pattern: re.Pattern[str] | None = None) -> str:
        item = self.value[key]
        if not isinstance(item, str) or (pattern is not None and not pattern.fullmatch(item)):
            wanted = "a string" if pattern is None else pattern.pattern
            raise ValueError(f"{self.what}.{key} is not {wanted}")
        return item

    def digest(self, key: str) -> Digest:
        return Digest(self.text(key, _DIGEST))

    def optional_text(self, key: str, pattern: re.Pattern[str] | None = None) -> str | None:
        return None if self.value.get(key) is None else self.text(key, pattern)

    def items(self, key: str) -> list[object]:
        item = self.value[key]
        if not isinstance(item, list):
            raise ValueError(f"{self.what}.{key} is not a list")
        return item


def _record(document: object, raw: bytes) -> BuildRecord:
    top = _Fields(document, "the record",
                  {"recipe", "sources", "build_requires", "lock", "sandbox", "kiln", "output",
                   "log", "build_key", "source_date_epoch", "started", "finished"},
                  frozenset({"outputs"}))
    recipe = _Fields(top.value["recipe"], "recipe", {"repo", "commit", "path", "tree"},
                     frozenset({"dirty"}))
    dirty = recipe.value.get("dirty", False)
    epoch = top.value["source_date_epoch"]
    if not isinstance(dirty, bool):
        raise ValueError("recipe.dirty is not true or false")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise ValueError("source_date_epoch is not a whole number of seconds")
    sandbox = _Fields(top.value["sandbox"], "sandbox", {"backend", "version"})
    kiln = _Fields(top.value["kiln"], "kiln", {"version", "commit"}, frozenset({"dirty"}))
    kiln_dirty = kiln.value.get("dirty", False)
    if not isinstance(kiln_dirty, bool):
        raise ValueError("kiln.dirty is not true or false")
    also = tuple(_output(item) for item in top.items("outputs")) if "outputs" in top.value \
        else ()
    if "outputs" in top.value and not also:
        raise ValueError("outputs is empty: an unsplit record has none")
    output = _output(top.value["output"])
    names = [o.name for o in (output, *also)]
    if len(set(names)) != len(names):
        raise ValueError(f"two outputs of one name: {sorted(names)}")
    return BuildRecord(
        recipe=RecipeRef(recipe.text("repo"), recipe.text("commit", _COMMIT),
                         recipe.text("path"), recipe.digest("tree"), dirty),
        sources=tuple(_source(item) for item in top.items("sources")),
        build_requires=tuple(_dependency(item) for item in top.items("build_requires")),
        lock=top.digest("lock"),
        sandbox=SandboxRef(sandbox.text("backend"), sandbox.text("version")),
        kiln=KilnRef(kiln.text("version"), kiln.optional_text("commit", _COMMIT), kiln_dirty),
        output=output,
        log=top.digest("log"),
        build_key=top.digest("build_key"),
        source_date_epoch=epoch,
        started=top.text("started"),
        finished=top.text("finished"),
        raw=raw,
        also=also,
    )


def _output(item: object) -> Output:
    fields = _Fields(item, "output", {"name", "version", "digest", "archive"})
    return Output(fields.text("name"), fields.text("version"), fields.digest("digest"),
                  fields.digest("archive"))


def _source(item: object) -> SourceRef:
    fields = _Fields(item, "a source", {"uri"}, frozenset({"sha256", "commit"}))
    if ("sha256" in fields.value) == ("commit" in fields.value):
        raise ValueError("a source needs exactly one of sha256 and commit")
    return SourceRef(fields.text("uri"), fields.optional_text("sha256", _HEX),
                     fields.optional_text("commit", _COMMIT))


def _dependency(item: object) -> Dependency:
    fields = _Fields(item, "a build requirement", {"name", "version", "digest"})
    return Dependency(fields.text("name"), fields.text("version"), fields.digest("digest"))

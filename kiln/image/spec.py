"""`image.yaml`: an image declared as a set of packages, and its `image.lock`.

    name: kiln.dev/images/hello          # the image's name (DNS-rooted)
    version: "1"                         # its version (Debian syntax)
    packages:                            # a set: order never matters
      - kiln.dev/hello (>= 2.10)
    set: kiln.dev/sets/base@2026.11      # optional: versions from a published set
    overrides:                           # use Y wherever X is required
      debian.org/bookworm/libc6: kiln.dev/libc6-patched
    entrypoint: [/usr/bin/hello]
    cmd: []
    env: {LANG: C.UTF-8}
    user: "0"
    workdir: /
    labels: {org.example.team: platform}
    layers: 100                          # layer budget (default 100)

Every problem is reported at once with its line; unknown keys are refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kiln.canonical import Digest, canonical_json, parse_digest, parse_json
from kiln.errors import InputError
from kiln.naming import validate_name, validate_version
from kiln.recipes.yamldoc import Node, Reader, load_yaml_file
from kiln.relations import Relation, parse_alternatives

DEFAULT_LAYER_BUDGET = 100
LOCK_FORMAT = "kiln.image-lock/v1"
_KEYS = {"name", "version", "packages", "set", "overrides", "entrypoint", "cmd", "env", "user",
         "workdir", "labels", "layers"}


@dataclass(frozen=True)
class RunConfig:
    """How the image runs: what image.yaml says besides its packages."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    user: str = ""
    workdir: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ImageSpec:
    """An image spec as read: its packages and how the image runs."""

    file: Path
    name: str
    version: str
    packages: tuple[Relation, ...]
    set: str | None = None
    overrides: Mapping[str, str] = field(default_factory=dict)
    run: RunConfig = field(default_factory=RunConfig)
    layers: int = DEFAULT_LAYER_BUDGET

    @property
    def lock_path(self) -> Path:
        return self.file.with_name("image.lock")


def load_image_spec(file: Path) -> ImageSpec:
    """Parse `image.yaml`; every problem, with its line, in one error."""
    root = load_yaml_file(file)
    reader = Reader(str(file), "bad-image-spec")
    top = reader.mapping(root, "the image", _KEYS, {"name", "version", "packages"})
    name = reader.string(top.get("name"), "name", validate_name)
    version = reader.string(top.get("version"), "version", validate_version)
    packages = reader.parsed(top.get("packages"), "packages", parse_package_relation)
    if "packages" in top and not packages and not reader.problems:
        reader.problem(top["packages"].line, "packages must name at least one package")
    names = [relation.name for relation in packages]
    for duplicate in sorted({n for n in names if names.count(n) > 1}):
        reader.problem(top["packages"].line, f"{duplicate} is listed twice", "duplicate-package")
    overrides: dict[str, str] = {}
    if "overrides" in top:
        for key, line, value in _pairs(reader, top["overrides"], "overrides"):
            target = reader.string(value, f"override of {key}", validate_name)
            try:
                validate_name(key)
            except InputError as exc:
                reader.problem(line, f"overrides: {exc.message}", exc.reason)
                continue
            if target:
                overrides[key] = target
    labels = {key: text for key, _, value in _pairs(reader, top.get("labels"), "labels")
              if (text := reader.string(value, f"label {key}")) is not None}
    budget_text = reader.string(top.get("layers"), "layers")
    budget = DEFAULT_LAYER_BUDGET
    if budget_text is not None:
        if not budget_text.isdigit() or not 2 <= int(budget_text) <= 127:
            reader.problem(top["layers"].line, "layers must be a number from 2 to 127")
        else:
            budget = int(budget_text)
    spec_set = reader.string(top.get("set"), "set")
    spec = ImageSpec(
        file=file, name=name or "", version=version or "", packages=tuple(packages),
        set=spec_set, overrides=overrides,
        run=RunConfig(entrypoint=tuple(reader.strings(top.get("entrypoint"), "entrypoint")),
                      cmd=tuple(reader.strings(top.get("cmd"), "cmd")),
                      env=reader.env(top.get("env")),
                      user=reader.string(top.get("user"), "user") or "",
                      workdir=reader.string(top.get("workdir"), "workdir") or "",
                      labels=labels),
        layers=budget)
    if reader.problems:
        raise InputError("; ".join(str(p) for p in reader.problems),
                         reason=reader.problems[0].reason)
    return spec


def parse_package_relation(text: str) -> Relation:
    group = parse_alternatives(text)
    if len(group.options) != 1:
        raise InputError(f"{text!r}: an image lists packages, not alternatives",
                         reason="bad-image-spec")
    return group.options[0]


def _pairs(reader: Reader, node: Node | None, what: str) -> tuple[tuple[str, int, Node], ...]:
    if node is None or (node.kind == "scalar" and node.text is None):
        return ()
    if node.kind != "map":
        reader.problem(node.line, f"{what} must be a mapping")
        return ()
    return node.pairs


@dataclass(frozen=True)
class LockedPackage:
    """A package an image pins (image.lock), by name, version and FileSet digest."""

    name: str
    version: str
    digest: Digest

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "digest": self.digest}


@dataclass(frozen=True)
class ImageLock:
    """Every package of the image pinned by FileSet digest, and what decided them."""

    packages: tuple[LockedPackage, ...]
    overrides: Mapping[str, str] = field(default_factory=dict)
    set: Digest | None = None

    def to_bytes(self) -> bytes:
        return canonical_json({
            "format": LOCK_FORMAT,
            "packages": [p.to_json() for p in sorted(self.packages, key=lambda p: p.name)],
            "overrides": dict(sorted(self.overrides.items())),
            "set": self.set,
        }) + b"\n"


def read_image_lock(path: Path) -> ImageLock:
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise InputError(f"{path} does not exist: build once without --locked to write it",
                         reason="lock-missing") from exc
    raw = parse_json(data, where=str(path), what="image lock", reason="bad-lock")
    try:
        if raw["format"] != LOCK_FORMAT:
            raise InputError(f"{path}: format {raw['format']!r}, expected {LOCK_FORMAT}",
                             reason="bad-lock")
        packages = tuple(
            LockedPackage(validate_name(p["name"]), validate_version(p["version"]),
                          parse_digest(p["digest"])) for p in raw["packages"])
        overrides = {validate_name(k): validate_name(v) for k, v in raw["overrides"].items()}
        lock_set = parse_digest(raw["set"]) if raw["set"] else None
    except (KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"{path}: malformed image lock ({exc})", reason="bad-lock") from exc
    return ImageLock(packages, overrides, lock_set)


def write_image_lock(path: Path, lock: ImageLock) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_bytes(lock.to_bytes())
    temp.replace(path)

"""The recipe format (`<name>/recipe.yaml`), parsed into typed, frozen models.

Unknown keys are refused. Parsing collects every problem of a file, each with
its line, instead of stopping at the first: a maintainer fixes them in one go.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kiln.errors import InputError
from kiln.limits import read_limits
from kiln.naming import validate_name, validate_version
from kiln.package import DEFAULT_INSTALL, Requirements
from kiln.recipes.pipelines import RunStep, Step, read_steps
from kiln.recipes.yamldoc import (
    Node,
    Problem,
    Reader,
    load_yaml,
    pattern_check,
    yaml_problem,
)
from kiln.relations import Alternatives, parse_alternatives
from kiln.tree import check_path

RECIPE_FILE = "recipe.yaml"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_COMMIT = re.compile(r"[0-9a-f]{40}")
_DEBIAN_PACKAGE = re.compile(r"[a-z0-9][a-z0-9.+-]+")
_CAPABILITY = re.compile(r"CAP_[A-Z_]+")
_BOOLEAN = re.compile(r"true|false")
_KERNEL = re.compile(r"[0-9]+(\.[0-9]+){0,2}")


@dataclass(frozen=True)
class UrlSource:
    """A file fetched over https (or from file:), pinned by its sha256."""

    url: str
    sha256: str
    line: int


@dataclass(frozen=True)
class GitSource:
    """A git repository at one commit (what is recorded is the commit)."""

    url: str
    commit: str
    line: int

    @property
    def relative(self) -> bool:
        """A relative URL (`..`, `../upstream`) names a repository beside the recipes."""
        return not ("://" in self.url or self.url.startswith(("/", "git@", "file:")))

    def resolved(self, recipe_repository: Path) -> GitSource:
        """The source with a relative URL made absolute against the recipe repository."""
        if not self.relative:
            return self
        return GitSource(str((recipe_repository / self.url).resolve()), self.commit, self.line)


@dataclass(frozen=True)
class PathSource:
    """A file or directory inside the recipe's own directory."""

    path: str
    line: int


@dataclass(frozen=True)
class DebianSource:
    """A Debian source package, pinned by the sha256 of its .dsc.

    With `patches` (`debian-patches: true`), the build starts with the package
    unpacked as `dpkg-source -x` would, Debian's quilt series applied, in
    /build/<package>; without, /src holds the .dsc and its files untouched."""

    package: str
    version: str
    dsc_sha256: str
    line: int
    patches: bool = False


Source = UrlSource | GitSource | PathSource | DebianSource


@dataclass(frozen=True)
class PackageInfo:
    """What a recipe says of its package: name, version, summary, license."""

    name: str
    version: str
    summary: str
    license: str
    homepage: str


@dataclass(frozen=True)
class SplitOutput:
    """One more package the recipe's build makes (`outputs:`): the paths of /out its
    patterns claim, as a FileSet of its own, at the recipe's version, with its own
    requires; the recipe's package keeps what no output claims."""

    name: str
    summary: str
    paths: tuple[str, ...]  # fnmatch patterns, as `install` (a * crosses /)
    requires: tuple[Alternatives, ...]
    provides: tuple[str, ...]
    install: tuple[str, ...]
    line: int


@dataclass(frozen=True)
class Recipe:
    """One recipe, with the line of each of its top-level keys for later problems."""

    file: Path
    package: PackageInfo
    sources: tuple[Source, ...]
    build_requires: tuple[Alternatives, ...]
    test_requires: tuple[Alternatives, ...]
    requires: tuple[Alternatives, ...]
    env: Mapping[str, str]
    build: str  # the build script as written; empty when the build is a list of steps
    install: tuple[str, ...]
    test: str | None
    requirements: Requirements
    provides: tuple[str, ...]
    replaces: tuple[str, ...]
    # Build limits the recipe asks for (kiln.limits field names), within the host's ceilings.
    limits: Mapping[str, float | int] = field(default_factory=dict)
    # Why the recipe's builds are known to differ (a farm may publish it built once,
    # marked so everywhere, where its policy allows); None: it claims to reproduce.
    not_reproducible: str | None = None
    lines: Mapping[str, int] = field(default_factory=dict)
    # build-requires, test-requires, requires: the line of each entry, in order
    entry_lines: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    # The build as steps (kiln.recipes.pipelines): one `runs` for a script as written.
    steps: tuple[Step, ...] = ()
    outputs: tuple[SplitOutput, ...] = ()  # split packages, in the order they claim paths

    @property
    def directory(self) -> Path:
        return self.file.parent


_TOP = {"package", "sources", "build-requires", "test-requires", "requires", "env", "build",
        "install", "test", "requirements", "provides", "replaces", "limits",
        "not-reproducible", "outputs"}
_REQUIRED = {"package", "build"}


def load_recipe(file: Path) -> tuple[Recipe | None, list[Problem]]:
    """Parse one recipe file; the recipe is None when any problem was found."""
    name = str(file)
    try:
        root = load_yaml(file.read_text(encoding="utf-8"), name)
    except (OSError, UnicodeDecodeError) as exc:
        return None, [Problem(name, 1, f"cannot read the recipe: {exc}", "unreadable-file")]
    except InputError as exc:
        return None, [yaml_problem(exc, name)]
    reader = Reader(name, "bad-recipe")
    top = reader.mapping(root, "the recipe", _TOP, _REQUIRED)
    package = _package(reader, top.get("package"))
    steps = read_steps(reader, top.get("build"))
    recipe = Recipe(
        file=file,
        package=package or PackageInfo("", "", "", "", ""),
        sources=tuple(_sources(reader, top.get("sources"))),
        build_requires=tuple(reader.parsed(top.get("build-requires"), "build-requires",
                                           parse_alternatives)),
        test_requires=tuple(reader.parsed(top.get("test-requires"), "test-requires",
                                          parse_alternatives)),
        requires=tuple(reader.parsed(top.get("requires"), "requires", parse_alternatives)),
        env=reader.env(top.get("env")),
        build=steps[0].script if top.get("build") is not None and top["build"].kind == "scalar"
        and isinstance(steps[0], RunStep) else "",
        install=tuple(reader.parsed(top.get("install"), "install", check_path))
        if "install" in top else DEFAULT_INSTALL,
        test=reader.string(top.get("test"), "test"),
        requirements=_requirements(reader, top.get("requirements")),
        provides=tuple(reader.parsed(top.get("provides"), "provides", validate_name)),
        replaces=tuple(reader.parsed(top.get("replaces"), "replaces", validate_name)),
        limits=read_limits(reader, top.get("limits")),
        not_reproducible=reader.string(top.get("not-reproducible"), "not-reproducible",
                                       _reason_check),
        lines={key: line for key, line, _ in root.pairs} if root.kind == "map" else {},
        entry_lines={key: tuple(item.line for item in top[key].items)
                     for key in ("build-requires", "test-requires", "requires") if key in top},
        steps=steps,
        outputs=_outputs(reader, top.get("outputs"), package),
    )
    return (None if reader.problems else recipe), reader.problems


def _outputs(reader: Reader, node: Node | None, package: PackageInfo | None
             ) -> tuple[SplitOutput, ...]:
    if node is None:
        return ()
    if node.kind != "seq" or not node.items:
        reader.problem(node.line, "outputs must be a list of packages the build splits off")
        return ()
    found: list[SplitOutput] = []
    for item in node.items:
        fields = reader.mapping(item, "an output", {"name", "summary", "paths", "requires",
                                                    "provides", "install"}, {"name", "paths"})
        name = reader.string(fields.get("name"), "output name", validate_name)
        paths = tuple(reader.parsed(fields.get("paths"), "paths", check_path))
        if name is None:
            continue
        if package is not None and name == package.name:
            reader.problem(item.line, f"output {name} is the recipe's own package, which"
                           " keeps what no output claims", "duplicate-output")
            continue
        if name in {o.name for o in found}:
            reader.problem(item.line, f"output {name} is named twice", "duplicate-output")
            continue
        if "paths" in fields and not paths:
            reader.problem(fields["paths"].line, f"output {name} claims no path")
        found.append(SplitOutput(
            name, reader.string(fields.get("summary"), "summary") or "", paths,
            tuple(reader.parsed(fields.get("requires"), "requires", parse_alternatives)),
            tuple(reader.parsed(fields.get("provides"), "provides", validate_name)),
            tuple(reader.parsed(fields.get("install"), "install", check_path))
            if "install" in fields else DEFAULT_INSTALL,
            item.line))
    return tuple(found)


def _reason_check(text: str) -> str:
    if len(text.strip()) < 8 or "\n" in text.strip():
        raise InputError("give the reason in one line of words (what differs, and why)",
                         reason="bad-value")
    return text


def _package(reader: Reader, node: Node | None) -> PackageInfo | None:
    if node is None:
        return None
    fields = reader.mapping(node, "package", {"name", "version", "summary", "license",
                                              "homepage"}, {"name", "version"})
    name = reader.string(fields.get("name"), "package name", validate_name)
    version = reader.string(fields.get("version"), "package version", validate_version)
    if name is None or version is None:
        return None
    return PackageInfo(name, version, reader.string(fields.get("summary"), "summary") or "",
                       reader.string(fields.get("license"), "license") or "",
                       reader.string(fields.get("homepage"), "homepage") or "")


def _sources(reader: Reader, node: Node | None) -> list[Source]:
    if node is None:
        return []
    if node.kind != "seq":
        reader.problem(node.line, "sources must be a list")
        return []
    sources: list[Source] = []
    for item in node.items:
        source = _source(reader, item)
        if source is not None:
            sources.append(source)
    return sources


def _source(reader: Reader, node: Node) -> Source | None:
    kinds = {"url": {"url", "sha256"}, "git": {"git", "commit"}, "path": {"path"},
             "debian": {"debian", "version", "dsc-sha256"}}
    optional = {"debian": {"debian-patches"}}
    keys = {key for key, _line, _value in node.pairs} if node.kind == "map" else set()
    kind = next((k for k in kinds if k in keys), None)
    if kind is None:
        reader.problem(node.line, "a source needs one of url, git, path or debian",
                       "bad-source")
        return None
    known = kinds[kind] | optional.get(kind, set())
    fields = reader.mapping(node, f"a {kind} source", known, kinds[kind])
    if not kinds[kind] <= set(fields) <= known:
        return None
    line = node.line
    if kind == "url":
        url = reader.string(fields["url"], "url")
        sha = reader.string(fields["sha256"], "sha256", pattern_check(_SHA256, "64 hex digits"))
        if url is not None and not url.startswith(("https://", "file:")):
            reader.problem(fields["url"].line, f"url {url!r} must be https:// or file:",
                           "bad-source")
            return None
        return UrlSource(url, sha, line) if url and sha else None
    if kind == "git":
        url = reader.string(fields["git"], "git")
        commit = reader.string(fields["commit"], "commit", pattern_check(_COMMIT, "40 hex digits"))
        return GitSource(url, commit, line) if url and commit else None
    if kind == "path":
        path = reader.string(fields["path"], "path", check_path)
        return PathSource(path, line) if path else None
    package = reader.string(fields["debian"], "debian", pattern_check(_DEBIAN_PACKAGE,
                                                                 "a Debian package name"))
    version = reader.string(fields["version"], "version", validate_version)
    dsc = reader.string(fields["dsc-sha256"], "dsc-sha256", pattern_check(_SHA256, "64 hex digits"))
    patches = reader.string(fields.get("debian-patches"), "debian-patches",
                            pattern_check(_BOOLEAN, "true or false"))
    if not (package and version and dsc) or ("debian-patches" in fields and patches is None):
        return None
    return DebianSource(package, version, dsc, line, patches == "true")


def _requirements(reader: Reader, node: Node | None) -> Requirements:
    if node is None:
        return Requirements()
    fields = reader.mapping(node, "requirements", {"kernel", "capabilities"})
    kernel = reader.string(fields.get("kernel"), "kernel",
                           pattern_check(_KERNEL, "a kernel version such as 5.10"))
    capabilities = reader.parsed(fields.get("capabilities"), "capabilities",
                                 pattern_check(_CAPABILITY, "a capability such as CAP_NET_ADMIN"))
    return Requirements(kernel, tuple(capabilities))


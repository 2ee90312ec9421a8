"""The host's own settings: what the operator of a laptop, worker or farm decides.

Read from `$KILN_CONFIG`, else `/etc/kiln/kiln.yaml` when it exists; every
setting has a safe default, so a host without the file is a locked-down one:

```yaml
sandbox-uid: 2000000000        # the unprivileged host uid builds run as
toolchain: debian              # where locked Debian FileSets come from: debian (apt), or
                               # registry (what the farm's master published; a worker's)
file-sources: /srv/kiln/files  # file:// sources only beneath here (absent: none)
limits:   {wall-time: 3600, memory: 4G, build-size: 4G, out-size: 2G, log-size: 64M}
ceilings: {wall-time: 21600, memory: 16G}   # the most a recipe's limits: may ask
import:   {archive-size: 16G, archive-ratio: 200, archive-entries: 500000, bundle-size: 4M}
gc:       {keep-days: 30, max-size: 20G, threshold: 25G}   # the store's caches
                               # (kiln.store.caches): `kiln store gc`'s bounds; past the
                               # threshold a `kiln build` (a worker's) collects when it
                               # ends (to max-size, else to the threshold)
```

Read with the recipes' reader: every problem at once, each with file and line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from kiln.errors import InputError
from kiln.limits import ImportLimits, Limits, parse_limit, parse_size, read_limits, with_values

if TYPE_CHECKING:
    from kiln.recipes.model import GitSource, UrlSource
    from kiln.recipes.yamldoc import Node, Reader

DEFAULT_PATH = Path("/etc/kiln/kiln.yaml")
# Far from any uid a distribution hands out (systemd's container ranges start at
# 524288); the run's root inside its user namespace is this uid outside.
DEFAULT_SANDBOX_UID = 2_000_000_000
DEFAULT_CEILINGS = Limits(wall_time=6 * 3600.0, memory=16 << 30, pids=4096,
                          build_size=32 << 30, tmp_size=8 << 30, out_size=16 << 30,
                          out_files=1_000_000, log_size=256 << 20, source_size=8 << 30)
_IMPORT_KEYS = {"archive-size": "archive_size", "archive-ratio": "archive_ratio",
                "archive-entries": "archive_entries", "bundle-size": "bundle_size"}


@dataclass(frozen=True)
class CachePolicy:
    """The bounds of the store's caches (kiln.store.caches), from `gc:`."""

    keep_days: float | None = None  # None: no bound by age
    max_size: int | None = None  # bytes; None: no bound by size
    threshold: int | None = None  # a worker collects after a build past this many bytes

    @property
    def bounded(self) -> bool:
        return self.keep_days is not None or self.max_size is not None


@dataclass(frozen=True)
class HostConfig:
    """This host's settings (see the module's text); every one has a safe default."""

    sandbox_uid: int = DEFAULT_SANDBOX_UID
    file_sources: Path | None = None  # None: file:// sources are refused
    limits: Limits = field(default_factory=Limits)
    ceilings: Limits = DEFAULT_CEILINGS
    imports: ImportLimits = field(default_factory=ImportLimits)
    toolchain: str = "debian"  # or "registry": locked FileSets only from the farm's registry
    gc: CachePolicy = field(default_factory=CachePolicy)  # the caches' bounds
    path: Path | None = None  # where it was read from

    def build_limits(self, requested: Mapping[str, float | int], where: str) -> Limits:
        """The host's limits with what a recipe asks for, refused above the ceilings."""
        limits = with_values(self.limits, dict(requested))
        above = limits.within(self.ceilings)
        if above:
            raise InputError(f"{where}: the recipe's limits are above this host's ceilings:"
                             f" {', '.join(above)}", reason="limit-too-high")
        return limits

    def host_path_problem(self, uri: str, path: Path, beside: Path | None = None) -> str | None:
        """Why a local file or repository may not be a source, or None if it may.

        Sources come from the recipe repository, https, git and Debian. A host path
        is one only beneath the operator's `file-sources` directory (none by default,
        as on a farm), or, for a relative git URL, beside the recipe repository
        (`beside`, the directory holding it). Anything else could copy the host's
        files or environment into a published package."""
        resolved = path.resolve()
        if beside is not None and resolved.is_relative_to(beside.resolve()):
            return None
        if self.file_sources is not None and resolved.is_relative_to(
                self.file_sources.resolve()):
            return None
        where = (f"beneath {self.file_sources} (file-sources in {self.path})"
                 if self.file_sources is not None
                 else "nowhere on this host (set file-sources in the host configuration)")
        return f"{uri}: a local source is allowed only {where}"


def file_url_path(url: str) -> Path:
    """The host path a file: URL names."""
    import urllib.parse

    return Path(urllib.parse.unquote(urllib.parse.urlparse(url).path))


def local_source_problem(source: UrlSource | GitSource, recipe_repository: Path | None,
                         host: HostConfig) -> str | None:
    """Why a source on this host may not be used, or None (remote ones always may).

    A relative git URL names a repository beside the recipe repository and must
    stay there; a file: URL or an absolute path must lie beneath file-sources."""
    from kiln.recipes.model import GitSource  # the recipes' model: not every command's

    if isinstance(source, GitSource) and source.relative:
        if recipe_repository is None:
            return None  # resolved by the caller against its own recipe repository
        resolved = Path(source.resolved(recipe_repository).url)
        return host.host_path_problem(source.url, resolved,
                                         beside=recipe_repository.resolve().parent)
    if source.url.startswith("file:"):
        return host.host_path_problem(source.url, file_url_path(source.url))
    if isinstance(source, GitSource) and source.url.startswith("/"):
        return host.host_path_problem(source.url, Path(source.url))
    return None


def host_config() -> HostConfig:
    """This host's configuration ($KILN_CONFIG, else /etc/kiln/kiln.yaml, else defaults)."""
    named = os.environ.get("KILN_CONFIG")
    return _load(Path(named) if named else (DEFAULT_PATH if DEFAULT_PATH.exists() else None))


@cache
def _load(path: Path | None) -> HostConfig:
    if path is None:
        return HostConfig()
    # YAML only where there is a file: a host without one starts sooner.
    from kiln.recipes.yamldoc import Reader, load_yaml_file

    root = load_yaml_file(path)
    reader = Reader(str(path), "bad-config")
    top = reader.mapping(root, "the host configuration",
                         {"sandbox-uid", "file-sources", "limits", "ceilings", "import",
                          "toolchain", "gc"})
    uid = reader.string(top.get("sandbox-uid"), "sandbox-uid", _check_uid)
    files = reader.string(top.get("file-sources"), "file-sources", _check_absolute)
    limits = _limits(reader, top.get("limits"), Limits())
    ceilings = _limits(reader, top.get("ceilings"), DEFAULT_CEILINGS)
    above = limits.within(ceilings)
    if above:
        reader.problem(top["limits"].line if "limits" in top else 1,
                       f"limits above the ceilings: {', '.join(above)}", "limit-too-high")
    imports = _imports(reader, top.get("import"))
    toolchain = reader.string(top.get("toolchain"), "toolchain", _check_toolchain)
    gc = _gc(reader, top.get("gc"))
    if reader.problems:
        first = reader.problems[0]
        more = f" (and {len(reader.problems) - 1} more)" if len(reader.problems) > 1 else ""
        raise InputError(f"{first}{more}", reason=first.reason)
    return HostConfig(int(uid) if uid else DEFAULT_SANDBOX_UID,
                      Path(files) if files else None, limits, ceilings, imports,
                      toolchain or "debian", gc, path)


def _limits(reader: Reader, node: Node | None, base: Limits) -> Limits:
    return with_values(base, read_limits(reader, node))


def _imports(reader: Reader, node: Node | None) -> ImportLimits:
    if node is None:
        return ImportLimits()
    values: dict[str, int] = {}
    for key, value in reader.mapping(node, "import", set(_IMPORT_KEYS)).items():
        text = reader.string(value, f"import {key}")
        if key not in _IMPORT_KEYS or text is None:
            continue
        try:
            values[_IMPORT_KEYS[key]] = (parse_size(text) if key.endswith("size")
                                         else int(parse_limit("pids", text)))
        except InputError as exc:
            reader.problem(value.line, f"import {key}: {exc.message}", exc.reason)
    return ImportLimits(**values)


def _gc(reader: Reader, node: Node | None) -> CachePolicy:
    if node is None:
        return CachePolicy()
    known = {"keep-days", "max-size", "threshold"}
    found = reader.mapping(node, "gc", known)
    values: dict[str, float | int] = {}
    for key, value in found.items():
        text = reader.string(value, f"gc {key}")
        if key not in known or text is None:
            continue
        try:
            values[key] = parse_days(text) if key == "keep-days" else parse_size(text)
        except InputError as exc:
            reader.problem(value.line, f"gc {key}: {exc.message}", exc.reason)
    days = values.get("keep-days")
    size, threshold = values.get("max-size"), values.get("threshold")
    return CachePolicy(None if days is None else float(days),
                       None if size is None else int(size),
                       None if threshold is None else int(threshold))


def parse_days(text: str) -> float:
    """`30`, `0.5` -> days; 0 or less is refused (it would empty the caches at once)."""
    try:
        days = float(text)
    except ValueError:
        raise InputError(f"{text!r} is not a number of days", reason="bad-value") from None
    if not days > 0:
        raise InputError(f"{text!r} must be more than 0 days", reason="bad-value")
    return days


def _check_uid(text: str) -> None:
    # runc maps the 65536 ids from it (the run's root and the users of an image).
    if not text.isdigit() or not 0 < int(text) < 2**32 - 1 - 65536:
        raise InputError(f"{text!r} is not a uid above 0 with 65536 free above it",
                         reason="bad-value")


def _check_toolchain(text: str) -> None:
    if text not in ("debian", "registry"):
        raise InputError(f"{text!r} is not debian or registry", reason="bad-value")


def _check_absolute(text: str) -> None:
    if not text.startswith("/"):
        raise InputError(f"{text!r} is not an absolute path", reason="bad-value")

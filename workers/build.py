"""`kiln build`: one recipe, at one commit, built hermetically into a Package FileSet.

The steps (DESIGN.md 2c, section 3): read the recipes at the commit; take the
build root from the lock only; fetch and verify the sources into /src; if the
build key (a digest of every input) was built before, stop there; run the
build in the sandbox; ingest /out as the Package; run its test in a root of
the package, its runtime closure and its test-requires; write the build record.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kiln import __version__
from kiln.canonical import Digest, sha256_digest
from kiln.errors import CheckFailed, InputError, KilnError, NotFound
from kiln.fileset import FileSet
from kiln.hostconfig import HostConfig, host_config
from kiln.limits import Limits
from kiln.naming import is_debian
from kiln.package import PackageMetadata
from kiln.recipes.lock import Lock, ensure_locked
from kiln.recipes.model import DebianSource, GitSource, PathSource, Recipe, UrlSource
from kiln.recipes.pipelines import PIPELINE_URI, pipelines_used, render
from kiln.recipes.repository import RecipeRepository
from kiln.record import (
    BuildRecord,
    Dependency,
    KilnRef,
    Output,
    RecipeRef,
    SandboxRef,
    SourceRef,
    build_key,
)
from kiln.registry.fetch import FetchPackage
from kiln.store.durability import make_durable
from kiln.store.ingest import ingest_directory
from kiln.store.layout import mark_used
from kiln.store.store import Store
from workers.build_logs import keep_failed_logs
from workers.checkout import Checkout, checkout_recipes, file_sha256, recipe_tree, tree_of
from workers.debian_patches import DEBIAN_PATCHES_URI, UNPACK_SHA256, unpack_step
from workers.debsource import debian_source_uri, fetch_debian
from workers.debugging import NO_DEBUGGING, Debugging, keep_failed_tree, open_shell
from workers.root import compose_root
from workers.sandbox import Mount, RunSpec, Sandbox, Scratch, bounded
from workers.sources import SourceCache, fetch_git, fetch_path, fetch_url
from workers.splitting import split_out
from workers.variation import CHECK_VARIATIONS, Variation, variation, varied_environment
from workers.volumes import check_output, output_volume
from workers.watching import BuildWatcher, following

PATH = "/usr/bin:/bin:/usr/sbin:/sbin"


class BuildFailed(CheckFailed):
    """The build or its test ran and failed; the message ends with the log's last lines."""

    default_reason = "build-failed"


# Given a package name and a build key: the published package of that key, or None.
Substitute = Callable[[str, Digest], FileSet | None]


@dataclass(frozen=True)
class BuildOutcome:
    """What a build left: its FileSet, its record, and whether it was built before."""

    record: BuildRecord | None  # None for a substitute: the farm's signed record stands
    fileset: FileSet
    reused: bool  # the build key was built before (here or, substituted, on a farm)
    build_key: Digest
    substituted: bool = False
    split: tuple[FileSet, ...] = ()  # the recipe's split outputs (`outputs:`), in order

    @property
    def filesets(self) -> tuple[FileSet, ...]:
        """Every FileSet the build made: the package, then its split outputs."""
        return (self.fileset, *self.split)


@dataclass(frozen=True)
class BuildPlan:
    """A recipe at a commit, its root and its build key: everything but the build.

    Made without fetching a source or importing the toolchain (pins and locked
    digests are the key's inputs), so a substitute can be asked for first."""

    checkout: Checkout
    recipe: Recipe
    lock: Lock
    build_requires: tuple[Dependency, ...]  # the root, resolved from the lock and the store
    sources: tuple[SourceRef, ...]
    recipe_tree: Digest
    build_key: Digest
    limits: Limits
    scratch: Path  # a directory of the caller's, for sources and runs


def build(store: Store, sandbox: Sandbox, recipes: str | Path, name: str, *,
          commit: str | None = None, allow_dirty: bool = False, jobs: int = 2,
          work: Path | None = None, check: bool = False, fetch: FetchPackage | None = None,
          substitute: Substitute | None = None, attempt: int | None = None,
          debugging: Debugging = NO_DEBUGGING,
          watcher: BuildWatcher | None = None) -> BuildOutcome:
    """Build the recipe `name` (a package name or its directory) of `recipes`.

    A build key built here before is not built again; with `substitute`, one
    published elsewhere is taken instead. With `check`, build twice under
    CHECK_VARIATIONS (even if built before) and refuse, naming the files that
    differ, unless both trees are the same. With `attempt` (a farm's gate), build
    once under that attempt's variation, even if built before: a gate counts builds,
    never reuses. With `debugging`, a failed run's /build and /out are kept (and a shell
    opened on them)."""
    # The store's shared lock from start to end: gc (which bounds the caches this
    # build reads, its materialised inputs among them) waits for the build to end.
    # Not under the store's tmp/: gc takes everything there for a crash's leftovers.
    with store.shared(), tempfile.TemporaryDirectory(prefix="kiln-build-",
                                                     dir=work) as scratch:
        plan = prepare(store, recipes, name, Path(scratch), sandbox=sandbox.name,
                       commit=commit, allow_dirty=allow_dirty, fetch=fetch)
        if not check and attempt is None:
            previous = _previous(store, plan.build_key)
            if previous is not None:
                record, filesets = previous
                # Built before, perhaps since unnamed (`kiln fileset rm`): a build that
                # says it succeeded leaves its names resolvable.
                for fileset in filesets:
                    store.set_ref(fileset.name, fileset.version, fileset.digest)
                return BuildOutcome(record, filesets[0], True, plan.build_key,
                                    split=filesets[1:])
            published = (substitute(plan.recipe.package.name, plan.build_key)
                         if substitute is not None else None)
            if published is not None and substitute is not None:
                # A split build is taken whole, or built here.
                split = [substitute(o.name, plan.build_key) for o in plan.recipe.outputs]
                if all(split):
                    return BuildOutcome(None, published, True, plan.build_key,
                                        substituted=True,
                                        split=tuple(f for f in split if f is not None))
        variations = (CHECK_VARIATIONS if check
                      else (variation(attempt),) if attempt is not None else CHECK_VARIATIONS[:1])
        try:
            return execute(store, sandbox, plan, jobs=jobs, variations=variations,
                           debugging=debugging, watcher=watcher)
        except BuildFailed as exc:
            raise _with_kept_log(store, plan, exc) from exc


def _with_kept_log(store: Store, plan: BuildPlan, exc: BuildFailed) -> BuildFailed:
    """The failure, its logs kept whole, and where to read them."""
    package = plan.recipe.package
    runs = [*sorted(plan.scratch.glob("run*/build.log")), plan.scratch / "test.log"]
    kept = keep_failed_logs(store, package.name, package.version, plan.build_key, runs,
                            exc.reason)
    if kept is None:
        return exc
    return BuildFailed(f"{exc.message}\nthe whole log: kiln build log"
                       f" {package.name}@{package.version}", reason=exc.reason)


def prepare(store: Store, recipes: str | Path, name: str, scratch: Path, *, sandbox: str,
            commit: str | None = None, allow_dirty: bool = False,
            fetch: FetchPackage | None = None) -> BuildPlan:
    """Read the recipe at the commit, resolve its root from the lock, compute its key.

    `fetch(name, version)` brings a package of this repository's recipes that the
    store lacks (a farm worker's or a substituting laptop's store starts empty)."""
    scratch.mkdir(parents=True, exist_ok=True)
    checkout = checkout_recipes(store, recipes, name, commit, allow_dirty, scratch / "recipes")
    recipe = find_recipe(checkout.repository, name)
    limits = host_config().build_limits(recipe.limits, str(recipe.file))
    lock = checkout.repository.lock
    if lock is None:
        raise InputError(f"{recipes} has no kiln.lock; run kiln lock update",
                         reason="lock-missing")
    if fetch is None and host_config().toolchain == "registry":
        from kiln.registry.config import load_config
        from kiln.registry.fetch import registry_fetcher

        fetch = registry_fetcher(store, load_config())
    if fetch is not None:
        _fetch_recipe_packages(store, checkout.repository, fetch,
                               (*recipe.build_requires, *recipe.test_requires, *recipe.requires))
    build_requires = _resolved(store, lock, recipe.build_requires)
    sources = source_refs(recipe, checkout)
    tree = recipe_tree(recipe.directory)
    key = build_key(tree, sources, build_requires, checkout.source_date_epoch, sandbox)
    return BuildPlan(checkout, recipe, lock, build_requires, sources, tree, key, limits, scratch)


def execute(store: Store, sandbox: Sandbox, plan: BuildPlan, *, jobs: int = 2,
            variations: tuple[Variation, ...] = CHECK_VARIATIONS[:1],
            debugging: Debugging = NO_DEBUGGING,
            watcher: BuildWatcher | None = None) -> BuildOutcome:
    """Fetch and verify the sources, build under each variation (refusing builds that
    differ), ingest the first, test, and record."""
    recipe, checkout = plan.recipe, plan.checkout
    host = host_config()
    started = _now()
    build_root = _materialised(store, plan.lock, plan.build_requires)
    with ExitStack() as volumes:
        src = plan.scratch / "src"
        _tell(watcher, "fetching sources")
        unpacking = _fetch_sources(store, recipe, checkout, src, host, plan.limits)
        runs = [_run_build(store, sandbox, plan, build_root, src, plan.scratch / f"run{index}",
                           jobs, varied, volumes, debugging, watcher, unpacking)
                for index, varied in enumerate(variations)]
        out, log = runs[0]
        for other, _ in runs[1:]:
            _compare(checkout.recipes / recipe.file.relative_to(checkout.repository.root),
                     out, other)
        _tell(watcher, "storing the output")
        split = _ingest_split(store, recipe, out)
        metadata = PackageMetadata(
            summary=recipe.package.summary, license=recipe.package.license,
            homepage=recipe.package.homepage, requires=recipe.requires,
            provides=recipe.provides, replaces=recipe.replaces, install=recipe.install,
            env=recipe.env, requirements=recipe.requirements)
        package = ingest_directory(store, out, name=recipe.package.name,
                                   version=recipe.package.version, metadata=metadata).fileset
    _tell(watcher, "testing")
    with following(plan.scratch / "test.log", watcher):
        _test(store, sandbox, plan.lock, recipe, [package, *split], checkout, src,
              plan.scratch, jobs, plan.limits)
    record = BuildRecord(
        recipe=RecipeRef(checkout.origin, checkout.commit, recipe.directory.name,
                         plan.recipe_tree, checkout.dirty),
        sources=plan.sources,
        build_requires=plan.build_requires,
        lock=sha256_digest(plan.lock.to_bytes()),
        sandbox=SandboxRef(sandbox.name, sandbox.version),
        kiln=KilnRef(__version__, *kiln_source(KILN_ROOT)),
        output=Output(package.name, package.version, package.digest,
                      _archive_digest(store, package)),
        also=tuple(Output(f.name, f.version, f.digest, _archive_digest(store, f))
                   for f in split),
        log=Digest("sha256:" + file_sha256(log)),
        build_key=plan.build_key,
        source_date_epoch=checkout.source_date_epoch,
        started=started,
        finished=_now(),
    )
    _remember(store, record, log)
    return BuildOutcome(record, package, False, plan.build_key, split=tuple(split))


def _ingest_split(store: Store, recipe: Recipe, out: Path) -> list[FileSet]:
    """Each split output of `out` as a FileSet of its own (taken out of `out`, which
    then holds the recipe's package alone)."""
    made = []
    for output, place in split_out(out, recipe.outputs, str(recipe.file)):
        metadata = PackageMetadata(
            summary=output.summary or recipe.package.summary, license=recipe.package.license,
            homepage=recipe.package.homepage, requires=output.requires,
            provides=output.provides, install=output.install,
            requirements=recipe.requirements)
        made.append(ingest_directory(store, place, name=output.name,
                                     version=recipe.package.version,
                                     metadata=metadata).fileset)
        shutil.rmtree(place)
    return made


def _run_build(store: Store, sandbox: Sandbox, plan: BuildPlan, build_root: list[FileSet],
               src: Path, scratch: Path, jobs: int, variation: Variation, volumes: ExitStack,
               debugging: Debugging, watcher: BuildWatcher | None,
               unpacking: str = "") -> tuple[Path, Path]:
    """One run of the build script (after `unpacking`, the steps Kiln adds for sources
    such as `debian-patches: true`); its /out (mounted until `volumes` closes) and its
    log."""
    recipe, checkout, limits = plan.recipe, plan.checkout, plan.limits
    scratch.mkdir()
    out = volumes.enter_context(output_volume(scratch / "out", limits.out_size,
                                              sandbox.host_uid))
    # /build is a tmpfs of the run's own, unless a failure is to be kept: then one of the
    # host's, as /out is, so that it outlives the run.
    kept_build = volumes.enter_context(output_volume(
        scratch / "build", limits.build_size, sandbox.host_uid)) if debugging.keeping else None
    log = scratch / "build.log"
    env = _environment(checkout, variation.jobs or jobs, build_root, recipe)
    varied = varied_environment(variation, recipe)
    env.update(varied.env)
    if variation.reverse_env:
        env = dict(reversed(env.items()))
    root = compose_root(store, build_root)
    prologue = f"umask {variation.umask}\ncd {variation.directory}\n{unpacking}"
    spec = bounded(RunSpec(
        argv=("/bin/sh", "-ec", prologue + render(recipe.steps, checkout.repository.pipelines)),
        env=env, log=log,
        mounts=(*root.mounts, Mount("/src", src), Mount("/out", out, writable=True),
                *varied.mounts,
                *([Mount(variation.directory, kept_build, writable=True)] if kept_build else [])),
        scratch=() if kept_build else (Scratch(variation.directory, limits.build_size),),
        links=root.links, links_key=root.key, hostname=variation.hostname,
        root_cache=root.cache), limits)
    _tell(watcher, f"building ({scratch.name})" if scratch.name != "run0" else "building")
    with following(log, watcher):
        result = sandbox.run(spec)
    if not result.ok:
        message = (f"{recipe.package.name}: the build "
                   f"{'timed out' if result.timed_out else 'failed'}; last lines:\n"
                   + result.log_tail(20))
        if kept_build is not None:
            kept = keep_failed_tree(store, recipe.package.name, recipe.package.version,
                                    plan.build_key, kept_build, out)
            message += f"\nits /build and /out are kept in {kept}"
            if debugging.shell:
                print(f"kiln: a shell in the failed build's sandbox, in {variation.directory}"
                      f" (kept in {kept}); exit to end it", file=sys.stderr, flush=True)
                open_shell(sandbox, spec, kept, variation.directory)
        raise BuildFailed(message)
    check_output(out, limits, recipe.package.name)
    return out, log


def _tell(watcher: BuildWatcher | None, phase: str) -> None:
    if watcher is not None:
        watcher.phase(phase)


def _compare(recipe_file: Path, first: Path, second: Path) -> None:
    """Refuse two builds of one input whose trees differ, naming what differs."""
    trees = [tree_of(first), tree_of(second)]
    if trees[0].digest == trees[1].digest:
        return
    entries = [{e.path: e for e in tree.entries} for tree in trees]
    differing = sorted(path for path in set(entries[0]) | set(entries[1])
                       if entries[0].get(path) != entries[1].get(path))
    shown = ", ".join(differing[:10]) + (" ..." if len(differing) > 10 else "")
    raise BuildFailed(f"{recipe_file}: two builds of the same inputs differ in"
                      f" {len(differing)} paths: {shown}", reason="not-reproducible")


def find_recipe(repository: RecipeRepository, name: str) -> Recipe:
    """The recipe of a package name or a directory name; the recipes must be sound."""
    if repository.problems:
        raise InputError(f"the recipes have problems, first: {repository.problems[0]}",
                         reason="bad-recipe")
    for recipe in repository.recipes.values():
        if name in (recipe.package.name, recipe.directory.name):
            return recipe
    made = repository.recipe_making(name)  # a split output builds with its recipe
    if made is not None:
        return made
    raise NotFound(f"no recipe {name}", reason="recipe-not-found")


def _fetch_recipe_packages(store: Store, repository: RecipeRepository, fetch: FetchPackage,
                           groups: tuple[Any, ...]) -> None:
    """Fetch the packages of this repository's recipes that `groups` name, at the
    versions the commit's recipes give, with their runtime requires: a worker's
    store starts empty, and the farm published them in an earlier wave."""
    made = repository.made_here()
    pending = [o.name for g in groups for o in g.options if o.name in made]
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        recipe = repository.recipes[made[name]]
        version = recipe.package.version  # a split output has its recipe's version
        if version not in store.versions(name):
            fetch(name, version)
        output = next((o for o in recipe.outputs if o.name == name), None)
        requires = output.requires if output is not None else recipe.requires
        pending.extend(o.name for g in requires for o in g.options if o.name in made)


def _resolved(store: Store, lock: Lock, groups: tuple[Any, ...]) -> tuple[Dependency, ...]:
    """What `groups` need, dependencies included: Debian packages from the lock (nothing
    imported: their digests are locked), the rest from the store."""
    from workers.resolve import resolve

    unknown = sorted(o.name for g in groups for o in g.options
                     if is_debian(o.name) and lock.get(o.name) is None)
    if unknown:
        raise NotFound(f"build requirement {unknown[0]} is not in kiln.lock; run kiln lock"
                       " update", reason="missing-build-require")
    return tuple(Dependency(c.name, c.version, c.digest) for c in resolve(store, lock, groups))


def _materialised(store: Store, lock: Lock, needed: tuple[Dependency, ...]) -> list[FileSet]:
    """The FileSets of `needed` in the store: locked Debian ones pulled from the farm's
    registry (a worker) or imported through apt, each with its locked digest."""
    debian = {d.name for d in needed if is_debian(d.name)}
    if host_config().toolchain == "registry":
        from kiln.registry.config import load_config
        from kiln.registry.fetch import pull_locked

        pull_locked(store, load_config(), lock, debian)  # a farm worker never asks Debian
    ensure_locked(store, lock, debian)  # imported again if missing, and must match
    return [store.get(dependency.digest) for dependency in needed]


def _locked(store: Store, lock: Lock, groups: tuple[Any, ...]) -> list[FileSet]:
    """The FileSets `groups` need, in the store (the test's root)."""
    return _materialised(store, lock, _resolved(store, lock, groups))


def source_refs(recipe: Recipe, checkout: Checkout) -> tuple[SourceRef, ...]:
    """What the record says of each source, from the recipe's pins: nothing fetched.

    A path source is read from the recipe's own directory, which is at hand."""
    refs: list[SourceRef] = []
    for source in recipe.sources:
        if isinstance(source, UrlSource):
            refs.append(SourceRef(source.url, sha256=source.sha256))
        elif isinstance(source, PathSource):
            fetched = fetch_path(recipe.directory, source)
            refs.append(SourceRef(fetched.uri, sha256=fetched.sha256))
        elif isinstance(source, DebianSource):
            refs.append(SourceRef(debian_source_uri(source), sha256=source.dsc_sha256))
            if source.patches and SourceRef(DEBIAN_PATCHES_URI, UNPACK_SHA256) not in refs:
                # How Kiln unpacks and patches is an input, as a pipeline is.
                refs.append(SourceRef(DEBIAN_PATCHES_URI, sha256=UNPACK_SHA256))
        else:
            assert isinstance(source, GitSource)
            resolved = source.resolved(checkout.recipes)
            refs.append(SourceRef(f"git+{resolved.url}", commit=source.commit))
    # The pipelines the build uses are inputs too: a changed one is another build key.
    refs.extend(SourceRef(f"{PIPELINE_URI}{pipeline.name}", sha256=pipeline.sha256)
                for pipeline in pipelines_used(recipe.steps, checkout.repository.pipelines))
    return tuple(refs)


def _fetch_sources(store: Store, recipe: Recipe, checkout: Checkout, src: Path,
                   host: HostConfig, limits: Limits) -> str:
    """Each source fetched, verified and laid into `src`, in order; the steps that
    unpack the Debian sources marked `debian-patches: true`, for the build to run first."""
    cache = SourceCache(store.layout.root / "sources")
    src.mkdir()
    repositories = 0
    unpacking = []
    for source in recipe.sources:
        if isinstance(source, UrlSource):
            fetched = fetch_url(cache, source, host, limits.source_size)
            _place(fetched.path, src / fetched.name)
        elif isinstance(source, PathSource):
            fetched = fetch_path(recipe.directory, source)
            _place(fetched.path, src / fetched.name)
        elif isinstance(source, DebianSource):
            debian = fetch_debian(cache, source)
            for item in (debian.dsc, *debian.files):
                _place(item.path, src / item.name)
            if source.patches:
                unpacking.append(unpack_step(source, [item.name for item in debian.files]))
        else:
            assert isinstance(source, GitSource)
            # A relative URL names a repository beside the recipe repository.
            git_source = fetch_git(cache, source, recipe_repository=checkout.recipes,
                                   host=host)
            # The first repository at /src/git, the next at /src/git-2, /src/git-3 ...
            repositories += 1
            target = src / ("git" if repositories == 1 else f"git-{repositories}")
            target.mkdir()
            _extract_commit(git_source.mirror, git_source.commit, target,
                            f"{recipe.file}:{source.line}")
    return "".join(unpacking)


def _extract_commit(mirror: Path, commit: str, target: Path, where: str) -> None:
    """The tree of `commit` laid into `target`; a failure is an error naming the source."""
    archive = subprocess.run(["git", "-C", str(mirror), "archive", commit],
                             capture_output=True, check=False)
    if archive.returncode == 0:
        unpacked = subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout,
                                  capture_output=True, check=False)
        if unpacked.returncode == 0:
            return
        archive = unpacked
    raise InputError(f"{where}: the git source at {commit} cannot be laid out:"
                     f" {archive.stderr.decode(errors='replace').strip()[-300:]}",
                     reason="bad-source")


def _place(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _environment(checkout: Checkout, jobs: int, root: list[FileSet],
                 recipe: Recipe) -> dict[str, str]:
    env = {"PATH": PATH, "HOME": "/tmp", "TZ": "UTC", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
           "SOURCE_DATE_EPOCH": str(checkout.source_date_epoch), "JOBS": str(jobs)}
    for fileset in root:
        if isinstance(fileset.metadata, PackageMetadata):
            env.update(fileset.metadata.env)
    env.update(recipe.env)
    return env


def _test(store: Store, sandbox: Sandbox, lock: Lock, recipe: Recipe, made: list[FileSet],
          checkout: Checkout, src: Path, scratch: Path, jobs: int, limits: Limits) -> None:
    """The recipe's test, in a root of everything the build made (its split outputs
    too), their runtime requires and the test-requires; $PACKAGE is the package's."""
    if not recipe.test:
        return
    package = made[0]
    runtime = [f for f in _locked(store, lock, (
        *recipe.requires, *recipe.test_requires,
        *(g for output in recipe.outputs for g in output.requires)))
        if f.name not in {m.name for m in made}]
    root = compose_root(store, [*made, *runtime])
    env = {**_environment(checkout, jobs, runtime, recipe),
           "PACKAGE": f"/{package.mount_point}"}
    log = scratch / "test.log"
    result = sandbox.run(bounded(RunSpec(
        argv=("/bin/sh", "-ec", "cd /tmp\n" + recipe.test), env=env, log=log,
        mounts=(*root.mounts, Mount("/src", src)), links=root.links, links_key=root.key,
        root_cache=root.cache), limits))
    if not result.ok:
        raise BuildFailed(f"{recipe.package.name}: the test failed; last lines:\n"
                          + result.log_tail(20), reason="test-failed")


def _previous(store: Store, build_key: Digest
              ) -> tuple[BuildRecord, tuple[FileSet, ...]] | None:
    """The record of `build_key` built here, and every FileSet it made (all still here)."""
    path = store.layout.cache / "builds" / f"{build_key.split(':')[1]}.json"
    try:
        record = BuildRecord.from_bytes(path.read_bytes(), str(path))
        filesets = tuple(store.get(output.digest) for output in record.outputs)
    except (OSError, KilnError):
        return None  # never built here, or by an older Kiln: build it
    mark_used(path)  # used: the caches' bounds keep it longest
    return record, filesets


def _remember(store: Store, record: BuildRecord, log: Path) -> None:
    directory = store.layout.cache / "builds"
    directory.mkdir(exist_ok=True)
    name = record.build_key.split(":")[1]
    shutil.copyfile(log, directory / f"{name}.log")
    (directory / f"{name}.json").write_bytes(record.to_bytes())
    # Reported with the build: on the disk before the command says it built.
    make_durable(store.layout.root, [directory / f"{name}.log", directory / f"{name}.json",
                                     directory, directory.parent])


def forget_dead_builds(store: Store, live: set[Digest]) -> int:
    """Drop the records and logs of builds whose output is no longer in the store
    (after gc); returns how many. Call with the store's exclusive lock held."""
    directory = store.layout.cache / "builds"
    if not directory.is_dir():
        return 0
    removed = 0
    for path in directory.glob("*.json"):
        try:
            outputs = {o.digest for o in BuildRecord.from_bytes(path.read_bytes(),
                                                                str(path)).outputs}
        except (OSError, KilnError):
            outputs = {Digest("")}  # unreadable: nothing can reuse it
        if not outputs <= live:
            path.unlink()
            path.with_suffix(".log").unlink(missing_ok=True)
            removed += 1
    return removed


KILN_ROOT = Path(__file__).resolve().parent.parent  # where kiln/, workers/ ... lie
KILN_SOURCES = ("kiln", "workers", "provenance", "master", "pyproject.toml")


def kiln_source(root: Path) -> tuple[str | None, bool]:
    """(commit, dirty) of the Kiln checkout at `root`; (None, False) when Kiln does not
    run from a checkout of its own (installed, or inside some other repository)."""
    def git(*args: str) -> str | None:
        try:
            result = subprocess.run(["git", "-C", str(root), *args], capture_output=True,
                                    text=True, check=False)
        except OSError:
            return None
        return result.stdout.strip() if result.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != root.resolve():
        return None, False  # the enclosing repository is not Kiln's
    commit = git("rev-parse", "HEAD")
    changes = git("status", "--porcelain", "--", *KILN_SOURCES)
    return commit or None, bool(changes)


def _archive_digest(store: Store, fileset: FileSet) -> Digest:
    """The digest of the FileSet's stable archive: its OCI layer, wherever it goes.
    Exported once into the store's archive cache, where a push or an image that
    follows the build finds it (it was once exported twice: here to a discard sink,
    then again to push)."""
    from kiln.registry.artifact import ArchiveCache

    return ArchiveCache(store).layer(fileset)[0].digest


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

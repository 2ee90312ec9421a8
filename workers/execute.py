"""Running a build plan: fetch and verify its sources, build under each variation in
the sandbox (refusing builds that differ), ingest /out as the Package (and its split
outputs), run its test, and write the build record (DESIGN.md 2c, section 3)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kiln import __version__
from kiln.canonical import Digest, sha256_digest
from kiln.errors import CheckFailed, InputError
from kiln.fileset import FileSet
from kiln.hostconfig import HostConfig, host_config
from kiln.limits import Limits
from kiln.naming import is_debian
from kiln.package import PackageMetadata
from kiln.recipes.lock import Lock, ensure_locked
from kiln.recipes.model import DebianSource, GitSource, PathSource, Recipe, UrlSource
from kiln.recipes.pipelines import render
from kiln.record import BuildRecord, Dependency, KilnRef, Output, RecipeRef, SandboxRef
from kiln.store.ingest import ingest_directory
from kiln.store.store import Store
from workers.build import BuildOutcome
from workers.build_plan import BuildPlan, resolved
from workers.build_records import remember
from workers.checkout import Checkout, file_sha256, tree_of
from workers.debian_patches import unpack_step
from workers.debsource import fetch_debian
from workers.debugging import NO_DEBUGGING, Debugging, keep_failed_tree, open_shell
from workers.root import compose_root
from workers.sandbox import Mount, RunSpec, Sandbox, Scratch, bounded
from workers.sources import SourceCache, fetch_git, fetch_path, fetch_url
from workers.splitting import split_out
from workers.variation import CHECK_VARIATIONS, Variation, varied_environment
from workers.volumes import check_output, output_volume
from workers.watching import BuildWatcher, following

PATH = "/usr/bin:/bin:/usr/sbin:/sbin"


class BuildFailed(CheckFailed):
    """The build or its test ran and failed; the message ends with the log's last lines."""

    default_reason = "build-failed"


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
    remember(store, record, log)
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
    return _materialised(store, lock, resolved(store, lock, groups))


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

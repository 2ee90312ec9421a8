"""`kiln build`: one recipe, at one commit, built hermetically into a Package FileSet.

The steps (DESIGN.md 2c, section 3): read the recipes at the commit; take the
build root from the lock only; fetch and verify the sources into /src; if the
build key (a digest of every input) was built before, stop there; run the
build in the sandbox; ingest /out as the Package; run its test in a root of
the package, its runtime closure and its test-requires; write the build record.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kiln import __version__
from kiln.canonical import Digest, canonical_json, sha256_digest
from kiln.errors import CheckFailed, InputError, NotFound
from kiln.fileset import FileSet
from kiln.hostconfig import HostConfig, host_config
from kiln.limits import Limits
from kiln.naming import is_debian
from kiln.package import PackageMetadata
from kiln.recipes.lock import Lock, ensure_locked
from kiln.recipes.model import DebianSource, GitSource, PathSource, Recipe, UrlSource
from kiln.recipes.repository import LOCAL_REPOSITORY, RecipeRepository, load_repository
from kiln.store.ingest import ingest_directory
from kiln.store.scan import ScannedFile, walk_directory
from kiln.store.store import Store
from kiln.tree import Entry, FileEntry, Tree
from workers.debsource import fetch_debian
from workers.root import compose_root
from workers.sandbox import Mount, RunSpec, Sandbox, Scratch, bounded
from workers.sources import SourceCache, fetch_git, fetch_path, fetch_url
from workers.volumes import check_output, output_volume

BUILD_FORMAT = "kiln.build/v1"
FETCH_TIMEOUT = 60  # seconds to ask a remote whether it holds the recipe commit
PATH = "/usr/bin:/bin:/usr/sbin:/sbin"


class BuildFailed(CheckFailed):
    """The build or its test ran and failed; the message ends with the log's last lines."""

    default_reason = "build-failed"


@dataclass(frozen=True)
class Variation:
    """What `--check` varies between its two builds; none of it may change the output.
    The clock varies by itself: the second build runs later."""

    directory: str = "/build"
    umask: str = "022"
    jobs: int | None = None  # None: the build's own
    reverse_env: bool = False


CHECK_VARIATIONS = (Variation(), Variation("/var/elsewhere/build", "002", 1, reverse_env=True))


@dataclass(frozen=True)
class BuildOutcome:
    record: dict[str, Any]
    fileset: FileSet
    reused: bool  # the build key was built before: nothing ran


@dataclass(frozen=True)
class Checkout:
    """The recipe repository as a commit holds it, read from a temporary copy."""

    repository: RecipeRepository
    commit: str
    origin: str
    dirty: bool
    source_date_epoch: int
    recipes: Path  # where the recipe repository lies in its working tree


def build(store: Store, sandbox: Sandbox, recipes: str | Path, name: str, *,
          commit: str | None = None, allow_dirty: bool = False, jobs: int = 2,
          work: Path | None = None, check: bool = False) -> BuildOutcome:
    """Build the recipe `name` (a package name or its directory) of `recipes`.

    With `check`, build twice under CHECK_VARIATIONS (even if built before) and
    refuse, naming the files that differ, unless both trees are the same."""
    host = host_config()
    # Not under the store's tmp/: gc takes everything there for a crash's leftovers.
    with tempfile.TemporaryDirectory(prefix="kiln-build-", dir=work) as scratch, \
            ExitStack() as volumes:
        scratch_dir = Path(scratch)
        checkout = checkout_recipes(store, recipes, name, commit, allow_dirty,
                                    scratch_dir / "recipes")
        recipe = _find(checkout.repository, name)
        limits = host.build_limits(recipe.limits, str(recipe.file))
        lock = checkout.repository.lock
        if lock is None:
            raise InputError(f"{recipes} has no kiln.lock; run kiln lock update",
                             reason="lock-missing")
        build_root = _locked(store, lock, recipe.build_requires)
        src = scratch_dir / "src"
        sources = _fetch_sources(store, recipe, checkout, src, host, limits)
        inputs = {
            "format": BUILD_FORMAT,
            "recipe": _recipe_tree(recipe.directory),
            "sources": sources,
            "build_requires": [_dependency(fs) for fs in build_root],
            "lock": sha256_digest(lock.to_bytes()),
            "sandbox": sandbox.name,
        }
        build_key = sha256_digest(canonical_json(inputs))
        previous = None if check else _previous(store, build_key)
        if previous is not None:
            return BuildOutcome(previous[0], previous[1], reused=True)

        started = _now()
        runs = [_run_build(store, sandbox, recipe, checkout, build_root, src,
                           scratch_dir / f"run{index}", jobs, variation, limits, volumes)
                for index, variation in enumerate(CHECK_VARIATIONS if check
                                                  else CHECK_VARIATIONS[:1])]
        out, log = runs[0]
        if check:
            _compare(checkout.recipes / recipe.file.relative_to(checkout.repository.root),
                     out, runs[1][0])
        metadata = PackageMetadata(
            summary=recipe.package.summary, license=recipe.package.license,
            homepage=recipe.package.homepage, requires=recipe.requires,
            provides=recipe.provides, replaces=recipe.replaces, install=recipe.install,
            env=recipe.env, requirements=recipe.requirements)
        package = ingest_directory(store, out, name=recipe.package.name,
                                   version=recipe.package.version, metadata=metadata).fileset
        _test(store, sandbox, lock, recipe, package, checkout, src, scratch_dir, jobs, limits)
        record = {
            "recipe": {"repo": checkout.origin, "commit": checkout.commit,
                       "path": recipe.directory.name, "tree": inputs["recipe"],
                       "dirty": checkout.dirty},
            "sources": sources,
            "build_requires": inputs["build_requires"],
            "lock": inputs["lock"],
            "sandbox": {"backend": sandbox.name, "version": sandbox.version},
            "kiln": {"version": __version__, "commit": _kiln_commit()},
            "output": {"name": package.name, "version": package.version,
                       "digest": package.digest, "archive": _archive_digest(store, package)},
            "log": "sha256:" + _file_sha256(log),
            "build_key": build_key,
            "source_date_epoch": checkout.source_date_epoch,
            "started": started,
            "finished": _now(),
        }
        _remember(store, build_key, record, log)
        return BuildOutcome(record, package, reused=False)


def _run_build(store: Store, sandbox: Sandbox, recipe: Recipe, checkout: Checkout,
               build_root: list[FileSet], src: Path, scratch: Path, jobs: int,
               variation: Variation, limits: Limits, volumes: ExitStack) -> tuple[Path, Path]:
    """One run of the build script; its /out (mounted until `volumes` closes) and its log."""
    scratch.mkdir()
    out = volumes.enter_context(output_volume(scratch / "out", limits.out_size,
                                              sandbox.host_uid))
    log = scratch / "build.log"
    env = _environment(checkout, variation.jobs or jobs, build_root, recipe)
    if variation.reverse_env:
        env = dict(reversed(env.items()))
    root = compose_root(store, build_root)
    prologue = f"umask {variation.umask}\ncd {variation.directory}\n"
    result = sandbox.run(bounded(RunSpec(
        argv=("/bin/sh", "-ec", prologue + recipe.build), env=env, log=log,
        mounts=(*root.mounts, Mount("/src", src), Mount("/out", out, writable=True)),
        scratch=(Scratch(variation.directory, limits.build_size),),
        links=root.links, links_key=root.key), limits))
    if not result.ok:
        raise BuildFailed(f"{recipe.package.name}: the build "
                          f"{'timed out' if result.timed_out else 'failed'}; last lines:\n"
                          + result.log_tail(20))
    check_output(out, limits, recipe.package.name)
    return out, log



def _compare(recipe_file: Path, first: Path, second: Path) -> None:
    """Refuse two builds of one input whose trees differ, naming what differs."""
    trees = [_tree(first), _tree(second)]
    if trees[0].digest == trees[1].digest:
        return
    entries = [{e.path: e for e in tree.entries} for tree in trees]
    differing = sorted(path for path in set(entries[0]) | set(entries[1])
                       if entries[0].get(path) != entries[1].get(path))
    shown = ", ".join(differing[:10]) + (" ..." if len(differing) > 10 else "")
    raise BuildFailed(f"{recipe_file}: two builds of the same inputs differ in"
                      f" {len(differing)} paths: {shown}", reason="not-reproducible")


def checkout_recipes(store: Store, recipes: str | Path, name: str, commit: str | None,
                     allow_dirty: bool, into: Path) -> Checkout:
    """The recipe repository at a commit: a directory in a git working tree, or a git
    URL (`URL#PATH`, PATH by default `recipes` if the repository has it, else its top)."""
    import git

    if Path(recipes).is_dir():
        try:
            repo = git.Repo(recipes, search_parent_directories=True)
        except git.InvalidGitRepositoryError:
            raise InputError(f"{recipes} is not inside a git repository; recipes are built"
                             " from commits", reason="not-a-repository") from None
        top = Path(repo.working_tree_dir or recipes).resolve()
        location = Path(recipes).resolve()
        relative = location.relative_to(top)
    else:
        origin, _, path = str(recipes).partition("#")
        repo = _mirror(store, origin)
        rev = repo.commit(commit or "HEAD")
        relative = Path(path or ("recipes" if _has_directory(rev, "recipes") else "."))
        location = Path(repo.git_dir) / relative
    rev_sha = repo.commit(commit or "HEAD").hexsha
    dirty = (commit is None and repo.working_tree_dir is not None
             and bool(repo.git.status("--porcelain", "--", str(relative))))
    if Path(recipes).is_dir():
        origin = _remote_holding(repo, rev_sha) or f"{LOCAL_REPOSITORY}{top}"
    if dirty and not allow_dirty:
        raise InputError(f"{recipes} has uncommitted changes; commit them or pass"
                         " --allow-dirty (the record says so)", reason="dirty-recipes")
    if dirty:
        shutil.copytree(location, into, symlinks=True)
    else:
        archive = into.parent / "recipes.tar"
        with open(archive, "wb") as out:
            repo.archive(out, rev_sha, path=str(relative) if str(relative) != "." else None)
        with tarfile.open(archive) as tar:
            tar.extractall(into.parent / "checkout", filter="data")
        (into.parent / "checkout" / relative).rename(into)
    epoch = int(repo.git.log("-1", "--format=%ct", rev_sha, "--", str(relative / name)) or 0) \
        or int(repo.commit(rev_sha).committed_date)
    return Checkout(load_repository(into), rev_sha, origin, dirty, epoch, location)


def _remote_holding(repo: Any, commit: str) -> str | None:
    """The URL of a remote of `repo` that holds `commit`, fetched now to be sure.

    The record names the repository a consumer can get the recipes from: a
    commit never pushed is in none, whatever the checkout's first remote says."""
    for remote in repo.remotes:
        fetched = subprocess.run(["git", "-C", repo.git_dir, "fetch", "--quiet", "--no-tags",
                                  remote.name], capture_output=True, timeout=FETCH_TIMEOUT,
                                 env={**os.environ, "GIT_TERMINAL_PROMPT": "0"}, check=False)
        if fetched.returncode != 0:
            continue  # unreachable now: it cannot be said to hold the commit
        holding = subprocess.run(["git", "-C", repo.git_dir, "branch", "--remotes",
                                  "--contains", commit, "--list", f"{remote.name}/*"],
                                 capture_output=True, text=True, check=False)
        if holding.returncode == 0 and holding.stdout.strip():
            return str(remote.url)
    return None


def _mirror(store: Store, url: str) -> Any:
    """A mirror of a remote recipe repository in the source cache, fetched anew."""
    import git

    mirror = SourceCache(store.layout.root / "sources").mirror_path(url)
    try:
        if mirror.exists():
            repo = git.Repo(mirror)
            repo.git.fetch("origin", "+refs/*:refs/*", "--prune")
            return repo
        return git.Repo.clone_from(url, mirror, mirror=True)
    except git.GitCommandError as exc:
        raise InputError(f"{url}: cannot fetch the recipes: {exc.stderr.strip() or exc}",
                         reason="not-a-repository") from exc


def _has_directory(commit: Any, path: str) -> bool:
    try:
        return bool(commit.tree[path].type == "tree")
    except KeyError:
        return False


def _find(repository: RecipeRepository, name: str) -> Recipe:
    if repository.problems:
        raise InputError(f"the recipes have problems, first: {repository.problems[0]}",
                         reason="bad-recipe")
    for recipe in repository.recipes.values():
        if name in (recipe.package.name, recipe.directory.name):
            return recipe
    raise NotFound(f"no recipe {name}", reason="recipe-not-found")


def _locked(store: Store, lock: Lock, groups: tuple[Any, ...]) -> list[FileSet]:
    """The FileSets `groups` need: Debian ones from the lock, the rest from the store."""
    from workers.resolve import resolve

    unknown = sorted(o.name for g in groups for o in g.options
                     if is_debian(o.name) and lock.get(o.name) is None)
    if unknown:
        raise NotFound(f"build requirement {unknown[0]} is not in kiln.lock; run kiln lock"
                       " update", reason="missing-build-require")
    resolved = resolve(store, lock, groups)
    debian = {c.name for c in resolved if is_debian(c.name)}
    ensure_locked(store, lock, debian)  # imported again if missing, and must match
    return [store.get(candidate.digest) for candidate in resolved]


def _fetch_sources(store: Store, recipe: Recipe, checkout: Checkout, src: Path,
                   host: HostConfig, limits: Limits) -> list[dict[str, str]]:
    """Each source fetched, verified and laid into `src`; their records, in order."""
    cache = SourceCache(store.layout.root / "sources")
    src.mkdir()
    records: list[dict[str, str]] = []
    for source in recipe.sources:
        if isinstance(source, UrlSource):
            fetched = fetch_url(cache, source, host, limits.source_size)
            _place(fetched.path, src / fetched.name)
            records.append({"uri": source.url, "sha256": fetched.sha256})
        elif isinstance(source, PathSource):
            fetched = fetch_path(recipe.directory, source)
            _place(fetched.path, src / fetched.name)
            records.append({"uri": fetched.uri, "sha256": fetched.sha256})
        elif isinstance(source, DebianSource):
            debian = fetch_debian(cache, source)
            for item in (debian.dsc, *debian.files):
                _place(item.path, src / item.name)
            records.append({"uri": debian.dsc.uri, "sha256": source.dsc_sha256})
        else:
            assert isinstance(source, GitSource)
            # A relative URL names a repository beside the recipe repository.
            git_source = fetch_git(cache, source, recipe_repository=checkout.recipes,
                                   host=host)
            target = src / "git"
            target.mkdir()
            archive = subprocess.run(["git", "-C", str(git_source.mirror), "archive",
                                      git_source.commit], capture_output=True, check=True)
            subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
            records.append({"uri": git_source.uri, "commit": git_source.commit})
    return records


def _place(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _recipe_tree(directory: Path) -> Digest:
    """The tree digest of the recipe's directory, as a FileSet of it would have."""
    return _tree(directory).digest


def _tree(directory: Path) -> Tree:
    """The tree of a directory, hashed here without storing anything."""
    entries: list[Entry] = []
    for item in walk_directory(directory):
        if isinstance(item, ScannedFile):
            entries.append(FileEntry(item.path, item.size, _file_sha256(item.source),
                                     item.executable))
        elif not isinstance(item, str):
            entries.append(item)
    return Tree.from_entries(entries)


def _file_sha256(path: Path | str) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _dependency(fileset: FileSet) -> dict[str, str]:
    return {"name": fileset.name, "version": fileset.version, "digest": fileset.digest}


def _environment(checkout: Checkout, jobs: int, root: list[FileSet],
                 recipe: Recipe) -> dict[str, str]:
    env = {"PATH": PATH, "HOME": "/tmp", "TZ": "UTC", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
           "SOURCE_DATE_EPOCH": str(checkout.source_date_epoch), "JOBS": str(jobs)}
    for fileset in root:
        if isinstance(fileset.metadata, PackageMetadata):
            env.update(fileset.metadata.env)
    env.update(recipe.env)
    return env


def _test(store: Store, sandbox: Sandbox, lock: Lock, recipe: Recipe, package: FileSet,
          checkout: Checkout, src: Path, scratch: Path, jobs: int, limits: Limits) -> None:
    if not recipe.test:
        return
    runtime = _locked(store, lock, (*recipe.requires, *recipe.test_requires))
    root = compose_root(store, [package, *runtime])
    env = {**_environment(checkout, jobs, runtime, recipe),
           "PACKAGE": f"/{package.mount_point}"}
    log = scratch / "test.log"
    result = sandbox.run(bounded(RunSpec(
        argv=("/bin/sh", "-ec", "cd /tmp\n" + recipe.test), env=env, log=log,
        mounts=(*root.mounts, Mount("/src", src)), links=root.links, links_key=root.key),
        limits))
    if not result.ok:
        raise BuildFailed(f"{recipe.package.name}: the test failed; last lines:\n"
                          + result.log_tail(20), reason="test-failed")


def _previous(store: Store, build_key: Digest) -> tuple[dict[str, Any], FileSet] | None:
    path = store.layout.cache / "builds" / f"{build_key.split(':')[1]}.json"
    try:
        record = json.loads(path.read_text())
        fileset = store.get(Digest(record["output"]["digest"]))
    except (OSError, ValueError, KeyError, NotFound):
        return None
    return record, fileset


def _remember(store: Store, build_key: Digest, record: dict[str, Any], log: Path) -> None:
    directory = store.layout.cache / "builds"
    directory.mkdir(exist_ok=True)
    name = build_key.split(":")[1]
    shutil.copyfile(log, directory / f"{name}.log")
    (directory / f"{name}.json").write_text(json.dumps(record, indent=2, sort_keys=True))


def forget_dead_builds(store: Store, live: set[Digest]) -> int:
    """Drop the records and logs of builds whose output is no longer in the store
    (after gc); returns how many. Call with the store's exclusive lock held."""
    directory = store.layout.cache / "builds"
    if not directory.is_dir():
        return 0
    removed = 0
    for path in directory.glob("*.json"):
        try:
            output = Digest(json.loads(path.read_text())["output"]["digest"])
        except (OSError, ValueError, KeyError, TypeError):
            output = Digest("")  # unreadable: nothing can reuse it
        if output not in live:
            path.unlink()
            path.with_suffix(".log").unlink(missing_ok=True)
            removed += 1
    return removed


def _kiln_commit() -> str | None:
    """The commit of the Kiln checkout running, when it runs from one."""
    try:
        result = subprocess.run(["git", "-C", str(Path(__file__).resolve().parent), "rev-parse",
                                 "HEAD"], capture_output=True, text=True, check=False)
    except OSError:
        return None
    return result.stdout.strip() or None


def _archive_digest(store: Store, fileset: FileSet) -> str:
    """The digest of the FileSet's stable archive: its OCI layer, wherever it goes."""
    from kiln.archive.export import write_archive

    class _Discard:
        def write(self, data: bytes | memoryview) -> int:
            return len(data)

    return write_archive(store, fileset, _Discard()).digest  # type: ignore[arg-type]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

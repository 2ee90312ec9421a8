"""The recipe repository at one commit, read from git into a temporary copy.

A directory in a git working tree, or a git URL (`URL#PATH`) mirrored in the
store. The record names the repository a consumer can fetch the commit from:
a remote of the checkout that holds it (asked now), or `local:PATH` when none
does, which a policy on recipe repositories refuses.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiln.canonical import Digest
from kiln.errors import InputError
from kiln.recipes.repository import LOCAL_REPOSITORY, RecipeRepository, load_repository
from kiln.store.layout import mark_used
from kiln.store.scan import ScannedFile, walk_directory
from kiln.store.store import Store
from kiln.tree import Entry, FileEntry, Tree
from workers.sources import SourceCache

FETCH_TIMEOUT = 60  # seconds to ask a remote whether it holds the recipe commit


@dataclass(frozen=True)
class Checkout:
    """The recipe repository as a commit holds it, read from a temporary copy."""

    repository: RecipeRepository
    commit: str
    origin: str
    dirty: bool
    source_date_epoch: int
    recipes: Path  # where the recipe repository lies in its working tree


def checkout_recipes(store: Store, recipes: str | Path, name: str, commit: str | None,
                     allow_dirty: bool, into: Path) -> Checkout:
    """The recipe repository at a commit: a directory in a git working tree, or a git
    URL (`URL#PATH`, PATH by default `recipes` if the repository has it, else its top)."""
    if Path(recipes).is_dir():
        local = _in_work_tree(Path(recipes), name, commit, allow_dirty, into)
        if local is not None:
            return local
    import git  # a URL, or a bare repository: GitPython (no small import)

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
    _refuse_dirty(recipes, dirty, allow_dirty)
    if Path(recipes).is_dir():
        origin = _remote_holding(str(repo.git_dir), rev_sha) or f"{LOCAL_REPOSITORY}{top}"
    return _checked_out(Path(repo.git_dir), rev_sha, relative, location, dirty, origin,
                        name, into)


def _in_work_tree(recipes: Path, name: str, commit: str | None, allow_dirty: bool,
                  into: Path) -> Checkout | None:
    """`checkout_recipes` for a directory of a git working tree, with git itself (a
    handful of git calls cost less than importing GitPython); None for a directory
    that is not in one, which the caller reports (or reads, if it is bare)."""
    found = _git(recipes, "rev-parse", "--show-toplevel", "--absolute-git-dir")
    if found.returncode != 0 or len(found.stdout.splitlines()) != 2:
        return None
    top_text, git_dir = found.stdout.splitlines()
    top = Path(top_text).resolve()
    location = recipes.resolve()
    relative = location.relative_to(top)
    asked = commit or "HEAD"
    resolved = _git(top, "rev-parse", "--verify", "--quiet", f"{asked}^{{commit}}")
    if resolved.returncode != 0:
        raise InputError(f"{recipes}: no commit {asked}", reason="not-found")
    rev_sha = resolved.stdout.strip()
    dirty = commit is None and bool(
        _git(top, "status", "--porcelain", "--", str(relative)).stdout.strip())
    _refuse_dirty(recipes, dirty, allow_dirty)
    origin = _remote_holding(git_dir, rev_sha) or f"{LOCAL_REPOSITORY}{top}"
    return _checked_out(Path(git_dir), rev_sha, relative, location, dirty, origin, name, into)


def _refuse_dirty(recipes: str | Path, dirty: bool, allow_dirty: bool) -> None:
    if dirty and not allow_dirty:
        raise InputError(f"{recipes} has uncommitted changes; commit them or pass"
                         " --allow-dirty (the record says so)", reason="dirty-recipes")


def _checked_out(git_dir: Path, rev_sha: str, relative: Path, location: Path, dirty: bool,
                 origin: str, name: str, into: Path) -> Checkout:
    """The recipe repository laid out at `into` (copied when dirty, from the commit
    otherwise), and the recipe `name`'s own last commit's time."""
    if dirty:
        shutil.copytree(location, into, symlinks=True)
    else:
        _extract(str(git_dir), rev_sha, relative, into)
    repository = load_repository(into)
    # The recipe's own last commit, whether it was asked for by directory or by package
    # name (the same build either way: the epoch is in the build key).
    directory = next((recipe.directory.name for recipe in repository.recipes.values()
                      if name in (recipe.package.name, recipe.directory.name)), None)
    epoch = 0
    if directory:
        epoch = int(_git(git_dir, "log", "-1", "--format=%ct", rev_sha, "--",
                         str(relative / directory)).stdout.strip() or 0)
    epoch = epoch or int(_git(git_dir, "show", "-s", "--format=%ct", rev_sha).stdout.strip())
    return Checkout(repository, rev_sha, origin, dirty, epoch, location)


def _git(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(directory), *args], capture_output=True,
                          text=True, check=False)


def repository_at(recipes: Path, rev: str, into: Path) -> tuple[RecipeRepository, str]:
    """The recipe repository in the git working tree `recipes` as commit `rev` holds it,
    read from a copy under `into`; and the commit's full hash."""
    import git

    try:
        repo = git.Repo(recipes, search_parent_directories=True)
        commit = repo.commit(rev).hexsha
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise InputError(f"{recipes} is not inside a git repository", reason="not-a-repository")\
            from None
    except (git.BadName, ValueError):
        raise InputError(f"{recipes}: no commit {rev}", reason="not-found") from None
    top = Path(repo.working_tree_dir or recipes).resolve()
    return repository_in(repo, Path(recipes).resolve().relative_to(top), commit, into), commit


def repository_in(repo: Any, relative: Path, commit: str, into: Path) -> RecipeRepository:
    """The recipe repository at `relative` in git repository `repo` (bare or not) as
    `commit` holds it, read from a copy under `into`."""
    into.mkdir(parents=True, exist_ok=True)
    target = into / commit
    if not target.exists():
        _extract(str(repo.git_dir), commit, relative, target)
    return load_repository(target)


def _extract(git_dir: str, commit: str, relative: Path, into: Path) -> None:
    """Lay the directory `relative` of `commit` at `into`, as git itself writes a tree:
    never through a symlink the tree holds, whatever a hostile recipe commits. (Through
    an index of its own, so a bare repository's is untouched; not `git archive` and
    tarfile, whose safe extraction Debian 12's Python 3.11.2 lacks.)"""
    tree = commit if str(relative) == "." else f"{commit}:{relative.as_posix()}"
    into.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="kiln-checkout-") as scratch:
        git = ["git", f"--git-dir={git_dir}", f"--work-tree={into}"]
        env = {**os.environ, "GIT_INDEX_FILE": str(Path(scratch) / "index")}
        for command in (["read-tree", tree], ["checkout-index", "--all"]):
            done = subprocess.run([*git, *command], env=env, capture_output=True, text=True,
                                  check=False)
            if done.returncode != 0:
                shutil.rmtree(into, ignore_errors=True)
                raise InputError(f"cannot lay out {relative} of {commit[:12]}:"
                                 f" {done.stderr.strip()}", reason="bad-recipe")


def _remote_holding(git_dir: str, commit: str) -> str | None:
    """The URL of a remote of the repository at `git_dir` that holds `commit`.

    The record names the repository a consumer can get the recipes from: a
    commit never pushed is in none, whatever the checkout's first remote says. A
    commit a remote-tracking branch already holds (pushed, or fetched) costs no
    fetch, so a build of it neither waits for the network nor needs it; any other
    is looked for again after fetching each remote, to be sure."""
    remotes = _git(Path(git_dir), "remote").stdout.split()
    holder = _remote_with(git_dir, commit, remotes)
    if holder is None:
        for remote in remotes:
            fetched = subprocess.run(
                ["git", "-C", git_dir, "fetch", "--quiet", "--no-tags", remote],
                capture_output=True, timeout=FETCH_TIMEOUT,
                env={**os.environ, "GIT_TERMINAL_PROMPT": "0"}, check=False)
            if fetched.returncode != 0:
                continue  # unreachable now: it cannot be said to hold the commit
            holder = _remote_with(git_dir, commit, [remote])
            if holder is not None:
                break
        else:
            return None
    return _git(Path(git_dir), "remote", "get-url", holder).stdout.strip() or None


def _remote_with(git_dir: str, commit: str, remotes: list[str]) -> str | None:
    """The first of `remotes` one of whose remote-tracking branches contains `commit`."""
    holding = subprocess.run(["git", "-C", git_dir, "branch", "--remotes", "--contains",
                              commit, "--format=%(refname)"],
                             capture_output=True, text=True, check=False)
    if holding.returncode != 0:
        return None
    branches = holding.stdout.split()
    return next((remote for remote in remotes
                 if any(branch.startswith(f"refs/remotes/{remote}/") for branch in branches)),
                None)


def _mirror(store: Store, url: str) -> Any:
    """A mirror of a remote recipe repository in the source cache, fetched anew."""
    import git

    mirror = SourceCache(store.layout.root / "sources").mirror_path(url)
    try:
        if mirror.exists():
            mark_used(mirror)
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


def recipe_tree(directory: Path) -> Digest:
    """The tree digest of the recipe's directory, as a FileSet of it would have."""
    return tree_of(directory).digest


def tree_of(directory: Path) -> Tree:
    """The tree of a directory, hashed here without storing anything."""
    entries: list[Entry] = []
    for item in walk_directory(directory):
        if isinstance(item, ScannedFile):
            entries.append(FileEntry(item.path, item.size, file_sha256(item.source),
                                     item.executable))
        elif not isinstance(item, str):
            entries.append(item)
    return Tree.from_entries(entries)


def file_sha256(path: Path | str) -> str:
    """The hex sha256 of a file, read in chunks."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()

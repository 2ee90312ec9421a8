"""A recipe repository: `<name>/recipe.yaml` for each package, checked as a whole.

`check_repository` reports every problem at once: each recipe's own, a
directory that does not match its package, two recipes of one package, `path`
sources that are not there, requirements nothing provides, build cycles, and
lock drift. Names under `debian.org/` come from the locked toolchain
(`kiln.lock`, which `kiln lock update` writes): one the lock lacks, or locks at a
version the recipe does not accept, and a locked package no recipe needs any
more, are drift.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kiln.errors import InputError
from kiln.naming import is_debian
from kiln.recipes.lock import Lock, read_lock
from kiln.recipes.model import RECIPE_FILE, GitSource, PathSource, Recipe, UrlSource, load_recipe
from kiln.recipes.pipelines import Pipeline, check_steps, load_pipelines
from kiln.recipes.yamldoc import Problem
from kiln.relations import Alternatives

LOCK_FILE = "kiln.lock"


# A build record's repository when no remote of the recipe checkout holds its commit:
# it says plainly the commit is local, and a policy on repositories refuses it.
LOCAL_REPOSITORY = "local:"

@dataclass(frozen=True)
class RecipeRepository:
    """A recipe repository as read: its recipes, their problems and its lock."""

    root: Path
    recipes: dict[str, Recipe]  # by package name
    problems: tuple[Problem, ...]
    lock: Lock | None = None
    unreadable: tuple[str, ...] = ()  # recipe files that could not be read
    pipelines: Mapping[str, Pipeline] = field(default_factory=dict)  # pipelines/, by name

    def recipe_making(self, name: str) -> Recipe | None:
        """The recipe whose package, or one of whose split outputs, is `name`."""
        recipe = self.recipes.get(name)
        if recipe is not None:
            return recipe
        return next((r for r in self.recipes.values()
                     if any(output.name == name for output in r.outputs)), None)

    def made_here(self) -> dict[str, str]:
        """Every package the recipes make (split outputs too) -> its recipe's package."""
        return {**{o.name: name for name, r in self.recipes.items() for o in r.outputs},
                **{name: name for name in self.recipes}}


def load_repository(root: Path) -> RecipeRepository:
    """Every recipe under `root`, and every problem found while reading them."""
    if not root.is_dir():
        raise InputError(f"{root} is not a directory of recipes", reason="not-found")
    recipes: dict[str, Recipe] = {}
    pipelines, problems = load_pipelines(root)
    unreadable: list[str] = []
    for file in sorted(root.glob(f"*/{RECIPE_FILE}")):
        recipe, found = load_recipe(file)
        if recipe is not None:  # a recipe using what is not there cannot be built
            found = check_steps(file, recipe.steps, pipelines)
            recipe = None if found else recipe
        problems.extend(found)
        if recipe is None:
            unreadable.append(str(file))
            continue
        name = recipe.package.name
        line = recipe.lines.get("package", 1)
        if file.parent.name != name.rsplit("/", 1)[1]:
            problems.append(Problem(str(file), line, f"package {name} lives in"
                                    f" {file.parent.name}/; its directory must be"
                                    f" {name.rsplit('/', 1)[1]}/", "directory-mismatch"))
        taken = {made: other for other in recipes.values()
                 for made in (other.package.name, *(o.name for o in other.outputs))}
        clash = next((made for made in (name, *(o.name for o in recipe.outputs))
                      if made in taken), None)
        if clash is not None:
            problems.append(Problem(str(file), line, f"package {clash} is also made by"
                                    f" {taken[clash].file}", "duplicate-package"))
            continue
        recipes[name] = recipe
    try:
        lock = read_lock(root / LOCK_FILE)
    except InputError as exc:
        problems.append(Problem(str(root / LOCK_FILE), 1, exc.message, exc.reason))
        lock = None
    return RecipeRepository(root, recipes, tuple(problems), lock, tuple(unreadable), pipelines)


def debian_requirements(repository: RecipeRepository) -> set[str]:
    """The Debian packages the recipes build, test and run with (the lock's roots)."""
    return {option.name for recipe in repository.recipes.values()
            for group in (*recipe.build_requires, *recipe.test_requires, *recipe.requires,
                          *(g for output in recipe.outputs for g in output.requires))
            for option in group.options if is_debian(option.name)}


def check_repository(root: Path) -> tuple[RecipeRepository, list[Problem]]:
    """The repository and every problem of it, sorted by file and line."""
    repository = load_repository(root)
    problems = list(repository.problems)
    for recipe in repository.recipes.values():
        problems.extend(_check_sources(repository, recipe))
        problems.extend(_check_relations(repository, recipe))
    problems.extend(_check_cycles(repository))
    problems.extend(_check_stale_lock(repository))
    return repository, sorted(set(problems), key=lambda p: (p.file, p.line, p.message))


def _check_sources(repository: RecipeRepository, recipe: Recipe) -> list[Problem]:
    from kiln.hostconfig import host_config, local_source_problem

    problems = []
    host = host_config()
    for source in recipe.sources:
        local = (local_source_problem(source, repository.root, host)
                 if isinstance(source, UrlSource | GitSource) else None)
        if local:
            problems.append(Problem(str(recipe.file), source.line, local,
                                    "local-source-not-allowed"))
        elif isinstance(source, PathSource) and not (recipe.directory / source.path).exists():
            problems.append(Problem(str(recipe.file), source.line,
                                    f"path source {source.path!r} is not in {recipe.directory}",
                                    "missing-source"))
        elif isinstance(source, GitSource) and source.relative:
            # A repository beside the recipes is checked here; remote ones at fetch time.
            problem = _check_local_commit(Path(source.resolved(repository.root).url),
                                          source.commit)
            if problem:
                problems.append(Problem(str(recipe.file), source.line, problem,
                                        "source-commit-missing"))
    return problems


def _check_local_commit(path: Path, commit: str) -> str | None:
    import git

    try:
        repo = git.Repo(path, search_parent_directories=False)
        if repo.commit(commit).hexsha == commit:
            return None
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return f"git source {path} is not a git repository"
    except (ValueError, git.BadName):
        pass
    return f"git source {path} has no commit {commit}"


def _check_relations(repository: RecipeRepository, recipe: Recipe) -> list[Problem]:
    problems = []
    for key, relations in (("build-requires", recipe.build_requires),
                           ("test-requires", recipe.test_requires),
                           ("requires", recipe.requires)):
        lines = recipe.entry_lines.get(key, ())
        for index, group in enumerate(relations):
            if not _satisfiable(repository, group):
                line = lines[index] if index < len(lines) else recipe.lines.get(key, 1)
                debian = all(is_debian(name) for name in group.names)
                problems.append(Problem(str(recipe.file), line,
                                        _unsatisfied(repository, group, key),
                                        "lock-drift" if debian
                                        else f"missing-{key.removesuffix('s')}"))
    for output in recipe.outputs:
        for group in output.requires:
            if not _satisfiable(repository, group):
                debian = all(is_debian(name) for name in group.names)
                problems.append(Problem(str(recipe.file), output.line,
                                        f"output {output.name}: "
                                        + _unsatisfied(repository, group, "requires"),
                                        "lock-drift" if debian else "missing-require"))
    return problems


def _satisfiable(repository: RecipeRepository, group: Alternatives) -> bool:
    for option in group.options:
        locked = repository.lock.get(option.name) if repository.lock else None
        if locked is not None and option.satisfied_by(locked.name, locked.version):
            return True
        recipe = repository.recipe_making(option.name)
        # A split output has its recipe's version.
        if recipe is not None and option.satisfied_by(option.name, recipe.package.version):
            return True
        if any(option.name in (*other.provides, *(p for o in other.outputs for p in o.provides))
               for other in repository.recipes.values()):
            return True
    return False


def _unsatisfied(repository: RecipeRepository, group: Alternatives, key: str) -> str:
    if all(is_debian(name) for name in group.names):
        locked = [f"{p.name}@{p.version}" for name in group.names
                  if repository.lock and (p := repository.lock.get(name)) is not None]
        where = f"locks {', '.join(locked)}" if locked else "lacks it"
        return (f"{key} {group}: {LOCK_FILE} {where}; Debian packages come from the locked"
                " toolchain (run kiln lock update)")
    versions = [f"{name}@{repository.recipes[name].package.version}"
                for name in group.names if name in repository.recipes]
    have = f" (here: {', '.join(versions)})" if versions else ""
    return f"{key} {group} is neither a recipe here nor provided by one{have}"


def _check_stale_lock(repository: RecipeRepository) -> list[Problem]:
    if repository.lock is None or repository.unreadable:
        # What an unreadable recipe needs is unknown: its packages are not stale, and
        # saying so would bury its own error under drift that is not there.
        return []
    needed = repository.lock.closure(debian_requirements(repository))
    return [Problem(str(repository.root / LOCK_FILE), 1,
                    f"{p.name}@{p.version} is locked but no recipe needs it any more"
                    " (run kiln lock update)", "lock-drift")
            for p in repository.lock.packages if p.name not in needed]


def _check_cycles(repository: RecipeRepository) -> list[Problem]:
    """Build cycles among recipes: a package cannot be needed to build itself."""
    made = repository.made_here()
    graph = {name: sorted({made[option.name] for group in recipe.build_requires
                           for option in group.options if option.name in made})
             for name, recipe in repository.recipes.items()}
    problems = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for child in graph[name]:
            if state.get(child) == 1:
                cycle = [*path[path.index(child):], child]
                recipe = repository.recipes[child]
                problems.append(Problem(str(recipe.file), recipe.lines.get("build-requires", 1),
                                        "build cycle: " + " -> ".join(cycle), "build-cycle"))
            elif child not in state:
                visit(child)
        path.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
    return problems

"""From a recipe repository to what the planner needs: each recipe's own inputs
and the recipes its build uses, computed without fetching or building anything."""

from __future__ import annotations

from kiln.canonical import canonical_json, sha256_digest
from kiln.recipes.model import DebianSource, GitSource, PathSource, Recipe, UrlSource
from kiln.recipes.pipelines import PIPELINE_URI, pipelines_used
from kiln.recipes.repository import RecipeRepository
from kiln.relations import Alternatives
from master.plan import RecipeInputs
from workers.checkout import file_sha256, recipe_tree
from workers.debian_patches import DEBIAN_PATCHES_URI, UNPACK_SHA256


def recipe_inputs(repository: RecipeRepository) -> dict[str, RecipeInputs]:
    """Every recipe of `repository`, and every recipe file that cannot be read (broken,
    named by its directory as `?/DIRECTORY`)."""
    recipes = repository.recipes
    providers = _providers(repository)
    runtime = {name: _recipe_options((*recipe.requires,
                                      *(g for o in recipe.outputs for g in o.requires)),
                                     providers)
               for name, recipe in recipes.items()}
    inputs: dict[str, RecipeInputs] = {}
    for name, recipe in recipes.items():
        direct = _recipe_options((*recipe.build_requires, *recipe.test_requires,
                                  *recipe.requires), providers) - {name}
        needs = _closure(direct, runtime) - {name}
        inputs[name] = RecipeInputs(name, _own(repository, recipe), tuple(sorted(needs)))
    for problem in repository.problems:
        directory = problem.file.rsplit("/", 2)[-2] if problem.file.endswith(".yaml") else ""
        if directory and not any(r.directory.name == directory for r in recipes.values()):
            key = f"?/{directory}"
            inputs.setdefault(key, RecipeInputs(key, "", (), str(problem)))
    return inputs


def _own(repository: RecipeRepository, recipe: Recipe) -> str:
    """A digest of the recipe's own inputs: its tree, its pins and the pipelines it uses,
    its locked Debian closure."""
    lock = repository.lock
    debian: list[tuple[str, str]] = []
    if lock is not None:
        names = {option.name for group in (*recipe.build_requires, *recipe.test_requires,
                                           *recipe.requires,
                                           *(g for o in recipe.outputs for g in o.requires))
                 for option in group.options if lock.get(option.name) is not None}
        for locked_name in sorted(lock.closure(names)):
            locked = lock.get(locked_name)
            assert locked is not None
            debian.append((locked_name, locked.digest))
    return sha256_digest(canonical_json({
        "tree": recipe_tree(recipe.directory),
        "sources": [_pin(recipe, source) for source in recipe.sources]
        + [f"{PIPELINE_URI}{pipeline.name}:{pipeline.sha256}"
           for pipeline in pipelines_used(recipe.steps, repository.pipelines)],
        "debian": [list(pair) for pair in debian],
    }))


def _pin(recipe: Recipe, source: object) -> str:
    if isinstance(source, UrlSource):
        return f"sha256:{source.sha256}"
    if isinstance(source, GitSource):
        return f"git:{source.url}@{source.commit}"
    if isinstance(source, DebianSource):
        # With its patches applied, how Kiln applies them is an input too.
        return f"dsc:{source.dsc_sha256}" + (f" {DEBIAN_PATCHES_URI}:{UNPACK_SHA256}"
                                             if source.patches else "")
    assert isinstance(source, PathSource)
    path = recipe.directory / source.path
    return f"path:{source.path}:{file_sha256(path) if path.is_file() else 'missing'}"


def _providers(repository: RecipeRepository) -> dict[str, str]:
    """Package name or provided name -> the recipe (package name) that makes it."""
    found: dict[str, str] = {}
    for name, recipe in repository.recipes.items():
        found.setdefault(name, name)
        for provided in recipe.provides:
            found.setdefault(provided, name)
        for output in recipe.outputs:  # a split output is made by its recipe's build
            for made in (output.name, *output.provides):
                found.setdefault(made, name)
    return found


def _recipe_options(groups: tuple[Alternatives, ...], providers: dict[str, str]) -> set[str]:
    """The recipes that satisfy each group: the first alternative a recipe makes."""
    chosen: set[str] = set()
    for group in groups:
        for option in group.options:
            if option.name in providers:
                chosen.add(providers[option.name])
                break
    return chosen


def _closure(start: set[str], runtime: dict[str, set[str]]) -> set[str]:
    """`start` and every recipe their runtime requires bring in."""
    found = set(start)
    pending = list(start)
    while pending:
        for name in runtime.get(pending.pop(), ()):
            if name not in found:
                found.add(name)
                pending.append(name)
    return found

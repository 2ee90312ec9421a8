"""What a build is, before it runs: a recipe at a commit, its root resolved from the
lock and the store, its sources' pins, and its build key (DESIGN.md 2c, section 3).

No source is fetched and nothing runs in a sandbox here (only the root's packages a
worker's store lacks are brought), so that a build found built before, or published
by a farm under the same key, costs a read of the recipes and a resolution."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiln.canonical import Digest
from kiln.errors import InputError, NotFound
from kiln.hostconfig import host_config
from kiln.limits import Limits
from kiln.naming import is_debian
from kiln.recipes.lock import Lock
from kiln.recipes.model import DebianSource, GitSource, PathSource, Recipe, UrlSource
from kiln.recipes.pipelines import PIPELINE_URI, pipelines_used
from kiln.recipes.repository import RecipeRepository
from kiln.record import Dependency, SourceRef, build_key
from kiln.registry.fetch import FetchPackage
from kiln.store.store import Store
from workers.checkout import Checkout, checkout_recipes, recipe_tree
from workers.debian_patches import DEBIAN_PATCHES_URI, UNPACK_SHA256
from workers.debsource import debian_source_uri
from workers.sources import fetch_path


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
    build_requires = resolved(store, lock, recipe.build_requires)
    sources = source_refs(recipe, checkout)
    tree = recipe_tree(recipe.directory)
    key = build_key(tree, sources, build_requires, checkout.source_date_epoch, sandbox)
    return BuildPlan(checkout, recipe, lock, build_requires, sources, tree, key, limits, scratch)


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


def resolved(store: Store, lock: Lock, groups: tuple[Any, ...]) -> tuple[Dependency, ...]:
    """What `groups` need, dependencies included: Debian packages from the lock (nothing
    imported: their digests are locked), the rest from the store."""
    from workers.resolve import resolve

    unknown = sorted(o.name for g in groups for o in g.options
                     if is_debian(o.name) and lock.get(o.name) is None)
    if unknown:
        raise NotFound(f"build requirement {unknown[0]} is not in kiln.lock; run kiln lock"
                       " update", reason="missing-build-require")
    return tuple(Dependency(c.name, c.version, c.digest) for c in resolve(store, lock, groups))


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

"""The plan of one commit of the farm's recipe repository, against what the farm's
registry holds: what the master's plan step runs (in a thread, no Buildbot here)."""

from __future__ import annotations

import dataclasses
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from kiln.errors import InputError
from kiln.recipes.model import Recipe
from kiln.relations import Alternatives
from master.config import FarmConfig
from master.gate_config import GateRule
from master.inputs import recipe_inputs
from master.plan import Plan, RecipeInputs, plan, plan_keys
from master.publishing import published_keys
from master.toolchain import publish_toolchain
from workers.checkout import repository_in


@dataclass(frozen=True)
class FarmPlan:
    """A plan for one commit of the recipes, with each recipe's inputs."""

    commit: str
    plan: Plan
    inputs: dict[str, RecipeInputs]
    directories: dict[str, str]  # package name -> its recipe's directory
    toolchain: tuple[str, ...] = ()  # locked Debian FileSets published for this plan
    forced: bool = False  # a maintainer's rebuild: build even what is published
    requires: dict[str, tuple[str, ...]] = field(default_factory=dict)  # runtime, as written
    # What the reproducibility gate asks of each package, and the reason of a recipe
    # that declares itself not reproducible (built once, where the farm allows it).
    gates: dict[str, GateRule] = field(default_factory=dict)
    unreproducible: dict[str, str] = field(default_factory=dict)

    def packages(self) -> list[list[dict[str, object]]]:
        """Each wave's build requests: the properties of one package build."""
        waves = []
        for index, wave in enumerate(self.plan.waves, start=1):
            requests = []
            for name in wave:
                needs = {need: self.plan.keys[need] for need in self.inputs[name].needs}
                requests.append({
                    "package": name, "recipe": self.directories[name], "wave": index,
                    "plan_key": self.plan.keys[name], "commit": self.commit,
                    "needs": needs,
                    "need_waves": {need: self.plan.wave_of(need) for need in needs
                                   if need in self.plan.to_build},
                    "forced": self.forced,
                    "builds": self.gates[name].builds, "agree": self.gates[name].agree,
                    "unreproducible": self.unreproducible.get(name, ""),
                })
            waves.append(requests)
        return waves

    def describe(self) -> str:
        lines = [f"plan of {self.commit}: {len(self.plan.to_build)} to build in"
                 f" {len(self.plan.waves)} waves; {len(self.plan.published)} published"]
        if self.toolchain:
            lines.append(f"toolchain published: {' '.join(self.toolchain)}")
        for index, wave in enumerate(self.plan.waves, start=1):
            lines.append(f"wave {index}: {' '.join(wave)}")
        lines += [f"broken: {name}: {why}" for name, why in sorted(self.plan.broken.items())]
        lines += [f"skipped: {name} (needs {below}, which is broken)"
                  for name, below in sorted(self.plan.skipped.items())]
        return "\n".join(lines)


def mirror(farm: FarmConfig) -> Path:
    """The master's mirror of the recipe repository, fetched now."""
    path = farm.path("master/recipes.git")
    if not path.exists():
        subprocess.run(["git", "clone", "--quiet", "--mirror", farm.recipes_for_master,
                        str(path)],
                       check=True, capture_output=True)
    else:
        subprocess.run(["git", "-C", str(path), "fetch", "--quiet", "--prune", "origin",
                        "+refs/*:refs/*"], check=True, capture_output=True)
    return path


def plan_commit(farm: FarmConfig, revision: str, forced: str | None = None,
                dependents: bool = False) -> FarmPlan:
    """Plan `revision` (a commit or branch) against the registry's published keys.

    `forced` (a maintainer's rebuild) is built even though published, with its
    dependants if asked; nothing else is."""
    import git

    repo = git.Repo(mirror(farm))
    commit = repo.commit(revision).hexsha
    with tempfile.TemporaryDirectory(prefix="kiln-farm-plan-") as scratch:
        repository = repository_in(repo, Path(farm.recipes.path), commit, Path(scratch))
        inputs = recipe_inputs(repository)
        gates, unreproducible = _gates(farm, repository.recipes.values(), inputs)
        keys, _ = plan_keys(inputs)
        if forced is not None:
            if forced not in keys:
                raise InputError(f"no recipe of {forced} at {commit[:12]}", reason="not-found")
            again = {forced}
            if dependents:
                again |= set(plan(inputs, ()).dependants(inputs, forced))
            published = {key for name, key in keys.items() if name not in again}
        else:
            published = published_keys(farm, keys)
        planned = plan(inputs, published)
        directories = {name: recipe.directory.name
                       for name, recipe in repository.recipes.items()}
        toolchain: list[str] = []
        lock = repository.lock
        if planned.to_build and lock is not None:
            names = {option.name for name in planned.to_build
                     for group in _relations(repository.recipes[name])
                     for option in group.options if lock.get(option.name) is not None}
            toolchain = publish_toolchain(farm, lock, names)
        requires = {name: tuple(str(group) for group in recipe.requires)
                    for name, recipe in repository.recipes.items()}
    return FarmPlan(commit, planned, inputs, directories, tuple(toolchain), forced is not None,
                    requires, gates, unreproducible)


def _gates(farm: FarmConfig, recipes: Iterable[Recipe], inputs: dict[str, RecipeInputs]
           ) -> tuple[dict[str, GateRule], dict[str, str]]:
    """Each recipe's gate. A recipe that declares itself not reproducible is built once
    where the farm allows it, and planned as broken (its dependants skipped) where not:
    `inputs` is changed in place for those."""
    policy = farm.reproducibility
    gates: dict[str, GateRule] = {}
    unreproducible: dict[str, str] = {}
    for recipe in recipes:
        name = recipe.package.name
        gates[name] = policy.rule_for(name)
        reason = recipe.not_reproducible
        if reason is None or name not in inputs:
            continue
        if policy.allow_unreproducible:
            gates[name], unreproducible[name] = GateRule(1, 1), reason
        else:
            inputs[name] = dataclasses.replace(
                inputs[name], own="", problem=f"{recipe.file.name} declares it does not"
                f" reproduce ({reason}), and farm.yaml's reproducibility does not allow"
                " unreproducible packages")
    return gates, unreproducible


def _relations(recipe: Recipe) -> tuple[Alternatives, ...]:
    return (*recipe.build_requires, *recipe.test_requires, *recipe.requires)

"""Planning from git: the waves a change of the recipe repository asks for.

What is published is taken, for `kiln farm plan`, as everything the `--from`
commit planned (the farm had built it); the master passes the keys it has
published instead."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path

from master.inputs import recipe_inputs
from master.plan import Plan, RecipeInputs, plan, plan_keys
from workers.checkout import repository_at


def plan_commits(recipes: Path, to_rev: str = "HEAD", from_rev: str | None = None,
                 published: Iterable[str] = ()) -> tuple[Plan, dict[str, RecipeInputs], str]:
    """The plan at `to_rev`, given what `from_rev` planned and `published`; the
    recipes' inputs; the full commit planned."""
    with tempfile.TemporaryDirectory(prefix="kiln-plan-") as scratch:
        repository, commit = repository_at(recipes, to_rev, Path(scratch))
        inputs = recipe_inputs(repository)
        done = set(published)
        if from_rev is not None:
            before, _ = repository_at(recipes, from_rev, Path(scratch))
            keys, _ = plan_keys(recipe_inputs(before))
            done |= set(keys.values())
        return plan(inputs, done), inputs, commit


def closure_plan(recipes: Path, name: str, to_rev: str = "HEAD") -> list[list[str]]:
    """The waves that build `name` and the recipes it needs (`kiln build --deps`)."""
    planned, inputs, _ = plan_commits(recipes, to_rev)
    wanted = {name}
    pending = [name]
    while pending:
        for need in inputs[pending.pop()].needs:
            if need not in wanted:
                wanted.add(need)
                pending.append(need)
    return [[n for n in wave if n in wanted] for wave in planned.waves
            if any(n in wanted for n in wave)]

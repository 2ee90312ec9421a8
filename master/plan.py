"""The planner: which recipes a commit asks to build, and in which waves.

Plain Python, no Buildbot: the master's plan step, `kiln farm plan` and
`kiln build --deps` all call it. Each recipe gets a *plan key*, input-addressed
as Nix's derivation hashes are: the digest of its own inputs (recipe tree,
source pins, the locked Debian packages its build uses) and of the plan keys of
the recipes it builds with. A change anywhere below a recipe changes its key,
so "the recipes whose inputs changed, and every recipe whose build closure
holds one" is simply "the recipes whose key is not published yet". Those are
ordered in waves, topological levels: a recipe waits only for the recipes of
its own closure that are being built.

A cycle fails the plan, naming it. A recipe that cannot be read fails on its
own: it is planned as broken, its dependants are skipped naming it, and the
rest of the plan goes on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from kiln.errors import InputError

PLAN_FORMAT = "kiln.plan/v1"


class PlanCycle(InputError):
    """Recipes that build with each other: no order can build them."""

    default_reason = "build-cycle"


@dataclass(frozen=True)
class RecipeInputs:
    """What the planner needs of one recipe."""

    name: str  # the package name
    own: str  # a digest of its own inputs; "" when the recipe cannot be read
    needs: tuple[str, ...]  # the recipes (package names) its build uses
    problem: str = ""  # why it cannot be read, when it cannot


@dataclass(frozen=True)
class Plan:
    """The recipes to build for a push, wave by wave, with their plan keys."""

    waves: tuple[tuple[str, ...], ...]  # the recipes to build, wave by wave
    keys: Mapping[str, str]  # plan key of every recipe that has one
    published: frozenset[str] = frozenset()  # recipes whose key is published: not built
    broken: Mapping[str, str] = field(default_factory=dict)  # recipe -> why it fails alone
    skipped: Mapping[str, str] = field(default_factory=dict)  # recipe -> which broken one

    @property
    def to_build(self) -> list[str]:
        return [name for wave in self.waves for name in wave]

    def wave_of(self, name: str) -> int:
        """The wave (from 1) a recipe builds in."""
        for index, wave in enumerate(self.waves, start=1):
            if name in wave:
                return index
        raise KeyError(name)

    def dependants(self, recipes: Mapping[str, RecipeInputs], failed: str) -> list[str]:
        """The recipes of this plan that build with `failed`, directly or not: what a
        failure of `failed` skips."""
        users: dict[str, list[str]] = {}
        for recipe in recipes.values():
            for need in recipe.needs:
                users.setdefault(need, []).append(recipe.name)
        planned = set(self.to_build)
        found: list[str] = []
        stack = [failed]
        seen = {failed}
        while stack:
            for user in users.get(stack.pop(), ()):
                if user not in seen:
                    seen.add(user)
                    stack.append(user)
                    if user in planned:
                        found.append(user)
        return sorted(found)

    def to_json(self) -> dict[str, object]:
        return {"waves": [list(wave) for wave in self.waves],
                "published": sorted(self.published), "broken": dict(self.broken),
                "skipped": dict(self.skipped), "keys": dict(self.keys)}


def plan_keys(recipes: Mapping[str, RecipeInputs]) -> tuple[dict[str, str], dict[str, str]]:
    """The plan key of every recipe that can have one; and recipe -> the broken recipe
    below it, for those that cannot. A cycle raises PlanCycle naming it."""
    keys: dict[str, str] = {}
    blocked: dict[str, str] = {}
    order = _topological(recipes)
    for name in order:
        recipe = recipes[name]
        if recipe.problem:
            blocked[name] = name
            continue
        below = next((blocked[need] for need in recipe.needs if need in blocked), None)
        if below is not None:
            blocked[name] = below
            continue
        digest = hashlib.sha256(PLAN_FORMAT.encode())
        digest.update(b"\0" + recipe.own.encode())
        for need in sorted(recipe.needs):
            digest.update(b"\0" + need.encode() + b"=" + keys[need].encode())
        keys[name] = "sha256:" + digest.hexdigest()
    return keys, blocked


def plan(recipes: Mapping[str, RecipeInputs], published: Iterable[str]) -> Plan:
    """The waves that build every recipe whose plan key is not in `published`."""
    keys, blocked = plan_keys(recipes)
    done = set(published)
    wanted = {name for name, key in keys.items() if key not in done}
    level: dict[str, int] = {}
    for name in _topological(recipes):
        if name in wanted:
            level[name] = 1 + max((level[need] for need in recipes[name].needs
                                   if need in level), default=0)
    waves: list[list[str]] = [[] for _ in range(max(level.values(), default=0))]
    for name, depth in level.items():
        waves[depth - 1].append(name)
    broken = {name: recipes[name].problem for name, below in blocked.items() if below == name}
    skipped = {name: below for name, below in blocked.items() if below != name}
    return Plan(tuple(tuple(sorted(wave)) for wave in waves), keys,
                frozenset(name for name, key in keys.items() if key in done), broken, skipped)


def _topological(recipes: Mapping[str, RecipeInputs]) -> list[str]:
    """Recipes, each after every recipe it needs; a cycle raises, naming its members.

    Iterative (a 30,000-recipe distribution is deeper than Python's recursion)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    order: list[str] = []
    for root in sorted(recipes):
        if state.get(root) == 2:
            continue
        path: list[str] = [root]
        iterators = [iter(sorted(n for n in recipes[root].needs if n in recipes))]
        state[root] = 1
        while iterators:
            child = next(iterators[-1], None)
            if child is None:
                iterators.pop()
                done = path.pop()
                state[done] = 2
                order.append(done)
                continue
            if state.get(child) == 1:
                cycle = [*path[path.index(child):], child]
                raise PlanCycle(f"these recipes build with each other: {' -> '.join(cycle)}")
            if state.get(child) == 2:
                continue
            state[child] = 1
            path.append(child)
            iterators.append(iter(sorted(n for n in recipes[child].needs if n in recipes)))
    return order

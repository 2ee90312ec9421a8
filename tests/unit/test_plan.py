"""The planner: changed recipes and their reverse closure, in waves; cycles named;
a broken recipe fails alone."""

from __future__ import annotations

import pytest

from master.plan import PlanCycle, RecipeInputs, plan, plan_keys


def graph(edges: dict[str, tuple[str, ...]], own: dict[str, str] | None = None,
          broken: dict[str, str] | None = None) -> dict[str, RecipeInputs]:
    own = own or {}
    broken = broken or {}
    return {name: RecipeInputs(name, "" if name in broken else own.get(name, f"own-{name}"),
                               needs, broken.get(name, ""))
            for name, needs in edges.items()}


# zlib <- libpng <- app; zlib <- curl; hello stands alone.
EDGES = {"zlib": (), "libpng": ("zlib",), "curl": ("zlib",), "app": ("libpng", "curl"),
         "hello": ()}


def test_everything_unpublished_is_built_in_topological_waves() -> None:
    planned = plan(graph(EDGES), published=())
    assert planned.waves == (("hello", "zlib"), ("curl", "libpng"), ("app",))


def test_a_change_rebuilds_the_recipe_and_its_reverse_closure_only() -> None:
    before, _ = plan_keys(graph(EDGES))
    changed = graph(EDGES, own={"libpng": "a new libpng"})
    planned = plan(changed, published=before.values())
    assert planned.waves == (("libpng",), ("app",))
    assert planned.published == {"zlib", "curl", "hello"}
    # A change at the bottom reaches everything above it, nothing beside it.
    planned = plan(graph(EDGES, own={"zlib": "zlib 1.3.1"}), published=before.values())
    assert planned.waves == (("zlib",), ("curl", "libpng"), ("app",))
    assert planned.wave_of("app") == 3


def test_nothing_is_built_when_every_key_is_published() -> None:
    keys, _ = plan_keys(graph(EDGES))
    planned = plan(graph(EDGES), published=keys.values())
    assert planned.waves == ()
    assert planned.to_build == []


def test_a_cycle_fails_the_plan_naming_it() -> None:
    edges = {**EDGES, "zlib": ("app",)}
    with pytest.raises(PlanCycle) as raised:
        plan(graph(edges), published=())
    assert raised.value.reason == "build-cycle"
    message = raised.value.message
    # One of the two cycles through zlib and app, named from end to end.
    assert message.endswith(("app -> curl -> zlib -> app", "app -> libpng -> zlib -> app"))
    assert "hello" not in message


def test_a_broken_recipe_fails_alone_and_skips_its_dependants() -> None:
    planned = plan(graph(EDGES, broken={"libpng": "libpng/recipe.yaml:3: bad"}), published=())
    assert planned.broken == {"libpng": "libpng/recipe.yaml:3: bad"}
    assert planned.skipped == {"app": "libpng"}
    assert planned.waves == (("hello", "zlib"), ("curl",))


def test_a_failed_package_names_the_dependants_it_skips() -> None:
    recipes = graph(EDGES)
    planned = plan(recipes, published=())
    assert planned.dependants(recipes, "zlib") == ["app", "curl", "libpng"]
    assert planned.dependants(recipes, "curl") == ["app"]
    assert planned.dependants(recipes, "hello") == []


def test_keys_do_not_depend_on_the_order_needs_are_listed_in() -> None:
    one, _ = plan_keys(graph(EDGES))
    two, _ = plan_keys(graph({**EDGES, "app": ("curl", "libpng")}))
    assert one == two

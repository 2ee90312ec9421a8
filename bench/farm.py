"""Farm benchmark: the planner on synthetic distributions, in-process.

    ./dev bench farm [--runs N]

A random DAG ten levels deep (each recipe needs up to four recipes of lower
levels), as large as a small distribution (1,000 recipes) and as Debian
(30,000). Measured: planning everything from nothing, and replanning after one
change at the bottom (a base library every level above builds with), as the
master does on every push; and the planner's peak memory. Targets from the
issue: 1,000 under 1 s, 30,000 under 10 s. Hydra's evaluator, whose minutes
for nixpkgs users complain about, is the anchor; it cannot run here, so the
figures stand against the targets.
"""

from __future__ import annotations

import argparse
import random
import sys
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.timing import REPO, median, timed
from master.plan import RecipeInputs, plan, plan_keys
from master.planning import plan_commits

LEVELS = 10


def distribution(size: int, seed: int = 1) -> dict[str, RecipeInputs]:
    """`size` recipes on ten levels; each needs up to four recipes of lower levels."""
    rng = random.Random(seed)
    levels: list[list[str]] = [[] for _ in range(LEVELS)]
    recipes: dict[str, RecipeInputs] = {}
    for index in range(size):
        level = min(LEVELS - 1, int(rng.expovariate(0.35)))  # many leaves, few bases
        level = LEVELS - 1 - level
        name = f"kiln.dev/p{index}"
        lower = [names for names in levels[:level] if names]
        needs = tuple(sorted({rng.choice(rng.choice(lower))
                              for _ in range(rng.randint(0, 4) if lower else 0)}))
        levels[level].append(name)
        recipes[name] = RecipeInputs(name, f"sha256:{index:064x}", needs)
    return recipes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print("| recipes | plan all (s) | replan after a base change (s) | to rebuild | waves |"
          " peak memory (MB) | target |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for size, target in ((1_000, 1.0), (30_000, 10.0)):
        recipes = distribution(size)
        everything = median(args.runs, lambda r=recipes: plan(r, ()))  # type: ignore[misc]
        published = set(plan_keys(recipes)[0].values())
        # The base most recipes build with directly, as libc would be.
        users: dict[str, int] = {}
        for recipe in recipes.values():
            for need in recipe.needs:
                users[need] = users.get(need, 0) + 1
        base = max((n for n, r in recipes.items() if not r.needs),
                   key=lambda n: users.get(n, 0))
        changed = dict(recipes)
        changed[base] = RecipeInputs(base, "sha256:changed", recipes[base].needs)
        def replan_once(changed: dict[str, RecipeInputs] = changed,
                        published: set[str] = published) -> object:
            return plan(changed, published)

        replan = median(args.runs, replan_once)
        result = plan(changed, published)
        tracemalloc.start()
        timed(replan_once)
        peak = tracemalloc.get_traced_memory()[1] / 1e6
        tracemalloc.stop()
        met = "met" if max(everything, replan) < target else "MISSED"
        print(f"| {size:,} | {everything:.3f} | {replan:.3f} | {len(result.to_build):,} |"
              f" {len(result.waves)} | {peak:.1f} | under {target:g} s: {met} |")
    # From git, as the master and `kiln farm plan` do it: archive the commit, read
    # every recipe, hash its tree and pins, then plan.
    curated = median(args.runs, lambda: plan_commits(REPO / "recipes", "HEAD", "HEAD~1"))
    print(f"\nthe curated recipes from git (`kiln farm plan --from HEAD~1`, in-process):"
          f" {curated:.3f} s")


if __name__ == "__main__":
    main()

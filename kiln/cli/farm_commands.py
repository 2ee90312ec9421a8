"""`kiln farm ...`: the farm's plan, and (later) running and talking to a farm."""

from __future__ import annotations

import argparse
from pathlib import Path

from kiln.cli.common import add_json_flag
from kiln.cli.output import print_json


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = commands.add_parser("farm", help="plan what the build farm builds")
    sub = group.add_subparsers(dest="farm_command", metavar="COMMAND", required=True)
    plan = sub.add_parser("plan", help="the waves a change of the recipes asks for,"
                                       " building nothing")
    plan.add_argument("--recipes", type=Path, default=Path("recipes"), metavar="REPO",
                      help="a recipe repository in a git working tree (default: recipes)")
    plan.add_argument("--from", dest="from_rev", metavar="REV",
                      help="the commit already built (default: none, so everything)")
    plan.add_argument("--to", dest="to_rev", default="HEAD", metavar="REV",
                      help="the commit to plan (default: HEAD)")
    add_json_flag(plan)
    plan.set_defaults(handler=cmd_plan)


def cmd_plan(args: argparse.Namespace) -> int:
    from master.planning import plan_commits

    planned, _inputs, commit = plan_commits(args.recipes, args.to_rev, args.from_rev)
    if args.json:
        print_json({"commit": commit, **planned.to_json()})
        return 0
    print(f"plan of {commit[:12]}: {len(planned.to_build)} to build in"
          f" {len(planned.waves)} waves, {len(planned.published)} already published")
    for index, wave in enumerate(planned.waves, start=1):
        print(f"wave {index}: {' '.join(wave)}")
    for name, problem in sorted(planned.broken.items()):
        print(f"broken: {name}: {problem}")
    for name, below in sorted(planned.skipped.items()):
        print(f"skipped: {name} (needs {below}, which is broken)")
    return 0

"""`kiln recipe ...`: check a recipe repository."""

from __future__ import annotations

import argparse
from pathlib import Path

from kiln.cli.common import add_json_flag
from kiln.cli.output import print_json


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = commands.add_parser("recipe", help="check recipes")
    sub = group.add_subparsers(dest="recipe_command", metavar="COMMAND", required=True)
    check = sub.add_parser("check", help="report every problem of a recipe repository at once")
    check.add_argument("repository", type=Path, metavar="REPO",
                       help="a directory holding <name>/recipe.yaml")
    add_json_flag(check)
    check.set_defaults(handler=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    from kiln.recipes.repository import check_repository

    repository, problems = check_repository(args.repository)
    if args.json:
        print_json({"recipes": len(repository.recipes),
                    "problems": [{"file": p.file, "line": p.line, "message": p.message,
                                  "reason": p.reason} for p in problems]})
    else:
        for problem in problems:
            print(problem)
        print(f"{len(problems)} problems" if problems else "recipes are clean")
    return 1 if problems else 0


def register_lock(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = commands.add_parser("lock", help="the toolchain lock of a recipe repository")
    sub = group.add_subparsers(dest="lock_command", metavar="COMMAND", required=True)
    update = sub.add_parser("update", help="import what the recipes build with; rewrite kiln.lock")
    update.add_argument("--recipes", type=Path, default=Path("recipes"), metavar="REPO",
                        help="the recipe repository (default: recipes)")
    add_json_flag(update)
    update.set_defaults(handler=cmd_lock_update)


def cmd_lock_update(args: argparse.Namespace) -> int:
    from kiln.cli.common import open_store
    from kiln.cli.output import print_table
    from kiln.recipes.lock import update_lock

    lock = update_lock(open_store(args), args.recipes)
    if args.json:
        print_json([p.to_json() for p in lock.packages])
    else:
        print_table([(p.name, p.version, p.digest) for p in lock.packages],
                    ("NAME", "VERSION", "DIGEST"))
        print(f"{len(lock.packages)} packages locked in {args.recipes / 'kiln.lock'}")
    return 0

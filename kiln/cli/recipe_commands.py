"""`kiln recipe ...`: check a recipe repository, start a new recipe; `kiln source pin`,
`kiln lock update`."""

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
    new = sub.add_parser("new", help="write a recipe from a pinned source, its build system"
                                     " guessed, and lock what it needs")
    new.add_argument("name", metavar="NAME",
                     help="the package's name (kiln.dev/lz4), or its last part (lz4) under"
                          " the prefix the repository's recipes use")
    source = new.add_mutually_exclusive_group(required=True)
    source.add_argument("--debian", metavar="SOURCE[=VERSION]",
                        help="a Debian source package (apt's candidate without a version)")
    source.add_argument("--url", metavar="URL", help="a tarball, https:// or file:")
    source.add_argument("--git", metavar="URL@REF", help="a git repository at a branch, tag"
                                                         " or commit")
    new.add_argument("--version", metavar="V",
                     help="the package's version (default: the source's, revision -1)")
    new.add_argument("--recipes", type=Path, default=Path("recipes"), metavar="REPO",
                     help="the recipe repository (default: recipes)")
    new.add_argument("--no-lock", action="store_true",
                     help="leave kiln.lock as it is (kiln lock update adds what is missing)")
    add_json_flag(new)
    new.set_defaults(handler=cmd_new)


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


def cmd_new(args: argparse.Namespace) -> int:
    import sys

    from kiln.cli.common import open_store
    from workers.scaffold import new_recipe

    created = new_recipe(open_store(args), args.recipes, args.name, debian=args.debian,
                         url=args.url, git=args.git, version=args.version,
                         update_the_lock=not args.no_lock)
    recipe = created.recipe
    if args.json:
        print_json({"file": str(created.file), "name": recipe.name, "version": recipe.version,
                    "build_system": recipe.system.name,
                    "build_requires": list(recipe.build_requires),
                    "left_out": list(created.dropped),
                    "lock": created.lock.to_json() if created.lock else None})
        return 0
    print(f"{created.file}: {recipe.name} {recipe.version}, built with {recipe.system.name},"
          f" {len(recipe.build_requires)} build-requires")
    for note in recipe.notes:
        print(f"kiln: {note}", file=sys.stderr)
    if created.lock is not None:
        for line in created.lock.diff_lines():
            print(line)
        print(f"{args.recipes / 'kiln.lock'}: {len(created.lock.added)} added")
    print(f"next: read it, commit it, then kiln build {recipe.name} --recipes {args.recipes}"
          " --check", file=sys.stderr)
    return 0


def register_source(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = commands.add_parser("source", help="a recipe's sources")
    sub = group.add_subparsers(dest="source_command", metavar="COMMAND", required=True)
    pin = sub.add_parser("pin", help="fetch a source once and print the pin a recipe writes"
                                     " (as nix-prefetch-url)")
    pin.add_argument("uri", metavar="URI",
                     help="https://..., file:..., git+URL@REF or debian:SOURCE[=VERSION]")
    add_json_flag(pin)
    pin.set_defaults(handler=cmd_source_pin)


def cmd_source_pin(args: argparse.Namespace) -> int:
    import sys

    from kiln.cli.common import open_store
    from workers.pin import pin_source
    from workers.sources import SourceCache

    store = open_store(args)
    pin = pin_source(SourceCache(store.layout.root / "sources"), args.uri)
    if args.json:
        print_json({**pin.fields, "note": pin.note})
    else:
        print(pin.yaml())
        if pin.note:
            print(f"kiln: {pin.note}", file=sys.stderr)
    return 0


def register_lock(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = commands.add_parser("lock", help="the toolchain lock of a recipe repository")
    sub = group.add_subparsers(dest="lock_command", metavar="COMMAND", required=True)
    update = sub.add_parser("update", help="add what the recipes need to kiln.lock, moving"
                                           " nothing locked unless named")
    update.add_argument("--recipes", type=Path, default=Path("recipes"), metavar="REPO",
                        help="the recipe repository (default: recipes)")
    update.add_argument("--add", action="append", default=[], metavar="PKG",
                        help="add a Debian package (and its closure) no recipe names yet")
    update.add_argument("--only", action="append", default=[], metavar="PKG",
                        help="move this locked package to apt's candidate, and nothing else")
    update.add_argument("--all", action="store_true", dest="everything",
                        help="resolve everything again and drop what no recipe needs")
    add_json_flag(update)
    update.set_defaults(handler=cmd_lock_update)


def cmd_lock_update(args: argparse.Namespace) -> int:
    from kiln.cli.common import open_store
    from kiln.recipes.lock_update import update_lock

    change = update_lock(open_store(args), args.recipes, add=args.add, only=args.only,
                         everything=args.everything)
    if args.json:
        print_json(change.to_json())
        return 0
    for line in change.diff_lines():
        print(line)
    lock = args.recipes / "kiln.lock"
    print(f"{lock}: {len(change.added)} added, {len(change.updated)} updated,"
          f" {len(change.removed)} removed, {change.kept} as they were"
          if change.changed else f"{lock}: nothing to change ({change.kept} locked)")
    return 0

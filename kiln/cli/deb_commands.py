"""`kiln deb import`: Debian binary packages as Package FileSets."""

from __future__ import annotations

import argparse

from kiln.cli.common import add_json_flag, open_store
from kiln.cli.output import print_json, print_table


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = commands.add_parser("deb", help="import Debian packages")
    sub = group.add_subparsers(dest="deb_command", metavar="COMMAND", required=True)
    imp = sub.add_parser("import", help="download (through apt) and import Debian packages")
    imp.add_argument("packages", nargs="+", metavar="PKG[=VERSION]")
    imp.add_argument("--closure", action="store_true",
                     help="also import everything they depend on")
    imp.add_argument("--suite", help="the suite in the names (default: this host's)")
    add_json_flag(imp)
    imp.set_defaults(handler=cmd_import)


def cmd_import(args: argparse.Namespace) -> int:
    from kiln.debian.importer import import_debs

    store = open_store(args)
    imported = import_debs(store, args.packages, with_closure=args.closure, suite=args.suite)
    rows = [{"name": item.fileset.name, "version": item.fileset.version,
             "digest": item.fileset.digest, "deb_sha256": item.package.sha256}
            for item in imported]
    if args.json:
        print_json(rows)
    else:
        print_table([(r["name"], r["version"], r["digest"]) for r in rows],
                    ("NAME", "VERSION", "DIGEST"))
    return 0

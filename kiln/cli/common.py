"""What every command shares: opening the store, resolving references."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kiln.fileset import FileSet
    from kiln.store import Store


def open_store(args: argparse.Namespace) -> Store:
    from kiln.store import Store, default_store_path

    return Store.open(args.store or default_store_path())


def resolve_ref(store: Store, ref: str) -> FileSet:
    from kiln.refs import resolve

    return resolve(store, ref)


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the result as JSON")

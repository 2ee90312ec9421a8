"""`kiln fileset ...`: add, import, export, materialize, show, ls, rm."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiln.cli.common import add_json_flag, open_store, resolve_ref
from kiln.cli.output import human_size, print_json, print_table
from kiln.errors import InputError

if TYPE_CHECKING:
    from kiln.fileset import FileSet
    from kiln.store import Store


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = commands.add_parser("fileset", help="add, move and inspect FileSets")
    sub = group.add_subparsers(dest="fileset_command", metavar="COMMAND", required=True)

    add = sub.add_parser("add", help="add a directory to the store as a FileSet")
    add.add_argument("directory", type=Path)
    add.add_argument("--name", required=True, help="a DNS-rooted name, e.g. kiln.dev/hello")
    add.add_argument("--version", required=True, help="a Debian-syntax version, e.g. 2.10-1")
    add.add_argument("--import", dest="imports", action="append", default=[],
                     metavar="PATH=REF", help="join FileSet REF in at PATH (repeatable)")
    add.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                     help="a free-form label kept in the metadata (repeatable)")
    add.add_argument("--jobs", type=int, default=None, help="hashing threads (default: cores)")
    add_json_flag(add)
    add.set_defaults(handler=cmd_add)

    imp = sub.add_parser("import", help="import a stable archive (.tar or .tar.gz)")
    imp.add_argument("archive", type=Path)
    imp.add_argument("--name", help="name for a plain tar without a Kiln manifest")
    imp.add_argument("--version", help="version for a plain tar without a Kiln manifest")
    add_json_flag(imp)
    imp.set_defaults(handler=cmd_import)

    export = sub.add_parser("export", help="write a FileSet's stable archive")
    export.add_argument("ref")
    export.add_argument("-o", "--output", required=True, help="the .tar to write, or -")
    add_json_flag(export)
    export.set_defaults(handler=cmd_export)

    mat = sub.add_parser("materialize", help="a read-only tree of a FileSet, imports joined")
    mat.add_argument("ref")
    mat.add_argument("directory", type=Path, nargs="?",
                     help="where to make it (default: the store's own tree, printed)")
    add_json_flag(mat)
    mat.set_defaults(handler=cmd_materialize)

    show = sub.add_parser("show", help="describe one FileSet")
    show.add_argument("ref")
    show.add_argument("--tree", action="store_true", help="list every entry too")
    add_json_flag(show)
    show.set_defaults(handler=cmd_show)

    ls = sub.add_parser("ls", help="list named FileSets")
    ls.add_argument("name", nargs="?", help="only this name")
    add_json_flag(ls)
    ls.set_defaults(handler=cmd_ls)

    rm = sub.add_parser("rm", help="forget NAME@VERSION (gc then frees what it alone used)")
    rm.add_argument("refs", nargs="+", metavar="NAME@VERSION")
    add_json_flag(rm)
    rm.set_defaults(handler=cmd_rm)


def _summary(store: Store, fileset: FileSet) -> dict[str, Any]:
    tree = store.tree(fileset)
    return {
        "name": fileset.name,
        "version": fileset.version,
        "digest": fileset.digest,
        "tree": fileset.tree,
        "files": sum(1 for _ in tree.files()),
        "size": tree.total_size,
        "imports": [item.to_json() for item in fileset.imports],
        "metadata": fileset.metadata.to_json(),
    }


def _split_pairs(values: list[str], flag: str) -> list[tuple[str, str]]:
    pairs = []
    for value in values:
        key, eq, rest = value.partition("=")
        if not eq or not key or not rest:
            raise InputError(f"{flag} {value!r} must be of the form KEY=VALUE",
                             reason="bad-usage")
        pairs.append((key, rest))
    return pairs


def cmd_add(args: argparse.Namespace) -> int:
    from kiln.cli.progress import progress_for_stderr
    from kiln.fileset import Metadata, make_imports
    from kiln.store.ingest import ingest_directory

    store = open_store(args)
    imports = make_imports([(path, resolve_ref(store, ref))
                            for path, ref in _split_pairs(args.imports, "--import")])
    metadata = Metadata(labels=dict(_split_pairs(args.label, "--label")))
    result = ingest_directory(store, args.directory, name=args.name, version=args.version,
                              imports=imports, metadata=metadata,
                              progress=progress_for_stderr(), jobs=args.jobs)
    if args.json:
        print_json({**_summary(store, result.fileset), "bytes_hashed": result.bytes_hashed,
                    "bytes_written": result.bytes_written})
    else:
        print(f"{result.fileset.label} {result.fileset.digest}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from kiln.archive.importer import import_archive

    store = open_store(args)
    result = import_archive(store, args.archive, name=args.name, version=args.version)
    if args.json:
        print_json(_summary(store, result.fileset))
    else:
        print(f"{result.fileset.label} {result.fileset.digest}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import os
    import tempfile

    from kiln.archive.export import write_archive

    store = open_store(args)
    fileset = resolve_ref(store, args.ref)
    if args.output == "-":
        info = write_archive(store, fileset, sys.stdout.buffer)
        sys.stdout.buffer.flush()
    else:
        # Written beside the target and renamed, so a failed export leaves no half file.
        target = Path(args.output)
        fd, tmp = tempfile.mkstemp(dir=target.parent or Path("."), prefix=".kiln-export-")
        try:
            with os.fdopen(fd, "wb") as out:
                info = write_archive(store, fileset, out)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            os.unlink(tmp)
            raise
    if args.json:
        print_json({"fileset": fileset.digest, "archive": info.digest, "size": info.size})
    elif args.output != "-":
        print(f"{info.digest} {human_size(info.size)} {args.output}")
    return 0


def cmd_materialize(args: argparse.Namespace) -> int:
    from kiln.store.materialize import materialize, store_tree

    store = open_store(args)
    fileset = resolve_ref(store, args.ref)
    if args.directory is None:
        path, linked, copied = store_tree(store, fileset), None, None
    else:
        made = materialize(store, fileset, args.directory)
        path, linked, copied = made.path, made.linked, made.copied
    if args.json:
        print_json({"path": str(path), "fileset": fileset.digest, "linked": linked,
                    "copied": copied})
    else:
        print(path)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from kiln.store.join import joined_entries
    from kiln.tree import FileEntry, SymlinkEntry

    store = open_store(args)
    fileset = resolve_ref(store, args.ref)
    summary = _summary(store, fileset)
    if args.tree:
        summary["entries"] = [{**joined.entry.to_json(), "owner": joined.owner}
                              for joined in joined_entries(store, fileset)]
    if args.json:
        print_json(summary)
        return 0
    print(f"name:     {fileset.name}\nversion:  {fileset.version}\ndigest:   {fileset.digest}\n"
          f"tree:     {fileset.tree}\nkind:     {fileset.metadata.kind}\n"
          f"files:    {summary['files']} ({human_size(summary['size'])})")
    for item in fileset.imports:
        print(f"import:   /{item.path} <- {item.name}@{item.version} ({item.digest})")
    for key, value in sorted(fileset.metadata.labels.items()):
        print(f"label:    {key}={value}")
    if args.tree:
        for joined in joined_entries(store, fileset):
            entry = joined.entry
            if isinstance(entry, FileEntry):
                mode = "-rwxr-xr-x" if entry.executable else "-rw-r--r--"
                print(f"{mode} {entry.size:>10} {entry.path}")
            elif isinstance(entry, SymlinkEntry):
                print(f"lrwxrwxrwx {'':>10} {entry.path} -> {entry.target}")
            else:
                print(f"drwxr-xr-x {'':>10} {entry.path}/")
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    store = open_store(args)
    named = [item for item in store.named() if args.name in (None, item.name)]
    if args.json:
        print_json([{"name": item.name, "version": item.version, "digest": item.digest}
                    for item in named])
    else:
        print_table([(item.name, item.version, item.digest) for item in named],
                    ("NAME", "VERSION", "DIGEST"))
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    store = open_store(args)
    removed = []
    with store.shared():
        for ref in args.refs:
            name, at, version = ref.partition("@")
            if not at or version.startswith("sha256:"):
                raise InputError(f"{ref!r}: rm takes NAME@VERSION", reason="bad-usage")
            removed.append({"name": name, "version": version,
                            "digest": store.remove_ref(name, version)})
    if args.json:
        print_json(removed)
    else:
        for item in removed:
            print(f"removed {item['name']}@{item['version']} ({item['digest']})")
    return 0

"""`kiln store ...`: fsck, gc, pin, unpin."""

from __future__ import annotations

import argparse

from kiln.cli.common import add_json_flag, open_store, resolve_ref
from kiln.cli.output import human_size, print_json


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = commands.add_parser("store", help="check and clean the store")
    sub = group.add_subparsers(dest="store_command", metavar="COMMAND", required=True)

    fsck = sub.add_parser("fsck", help="re-hash every object and check every record")
    fsck.add_argument("--jobs", type=int, default=None)
    add_json_flag(fsck)
    fsck.set_defaults(handler=cmd_fsck)

    gc = sub.add_parser("gc", help="drop what no named FileSet, import or pin uses")
    gc.add_argument("--pin", action="append", default=[], metavar="REF",
                    help="pin REF first, so it is kept now and by later gcs (repeatable)")
    add_json_flag(gc)
    gc.set_defaults(handler=cmd_gc)

    pin = sub.add_parser("pin", help="keep FileSets through gc, named or not")
    pin.add_argument("refs", nargs="+", metavar="REF")
    add_json_flag(pin)
    pin.set_defaults(handler=cmd_pin)

    unpin = sub.add_parser("unpin", help="let gc drop FileSets again")
    unpin.add_argument("refs", nargs="+", metavar="REF")
    add_json_flag(unpin)
    unpin.set_defaults(handler=cmd_unpin)


def cmd_fsck(args: argparse.Namespace) -> int:
    from kiln.cli.progress import progress_for_stderr
    from kiln.store.fsck import check_store

    store = open_store(args)
    report = check_store(store, jobs=args.jobs, progress=progress_for_stderr())
    if args.json:
        print_json({
            "clean": report.clean,
            "objects_checked": report.objects_checked,
            "bytes_checked": report.bytes_checked,
            "filesets_checked": report.filesets_checked,
            "problems": [{"reason": p.reason, "path": p.path, "message": p.message,
                          "filesets": list(p.filesets)} for p in report.problems],
        })
    else:
        for problem in report.problems:
            used = f" (used by {', '.join(problem.filesets)})" if problem.filesets else ""
            print(f"{problem.path}: {problem.message}{used} [{problem.reason}]")
        state = "clean" if report.clean else f"{len(report.problems)} problems"
        print(f"checked {report.filesets_checked} FileSets, {report.objects_checked} objects"
              f" ({human_size(report.bytes_checked)}): {state}")
    return 0 if report.clean else 1


def cmd_gc(args: argparse.Namespace) -> int:
    from kiln.store.gc import collect_garbage, live_filesets
    from workers.build import forget_dead_builds

    store = open_store(args)
    with store.shared():
        for ref in args.pin:
            store.pin(resolve_ref(store, ref).digest)
    report = collect_garbage(store)
    with store.exclusive():
        builds_forgotten = forget_dead_builds(store, live_filesets(store))
    if args.json:
        print_json({"filesets_removed": report.filesets_removed,
                    "trees_removed": report.trees_removed,
                    "objects_removed": report.objects_removed,
                    "bytes_freed": report.bytes_freed,
                    "materialized_removed": report.materialized_removed,
                    "temporary_removed": report.temporary_removed,
                    "archives_removed": report.archives_removed,
                    "build_records_removed": builds_forgotten})
    else:
        for item in report.filesets_removed:
            print(f"removed {item}")
        print(f"freed {human_size(report.bytes_freed)} in {report.objects_removed} objects;"
              f" {len(report.filesets_removed)} FileSets, {report.materialized_removed}"
              f" materialised trees, {report.archives_removed} cached archives,"
              f" {builds_forgotten} build records, {report.temporary_removed} leftovers"
              " removed")
    return 0


def cmd_pin(args: argparse.Namespace) -> int:
    store = open_store(args)
    pinned = []
    with store.shared():
        for ref in args.refs:
            fileset = resolve_ref(store, ref)
            store.pin(fileset.digest)
            pinned.append(fileset.digest)
            if not args.json:
                print(f"pinned {fileset.label} ({fileset.digest})")
    if args.json:
        print_json(pinned)
    return 0


def cmd_unpin(args: argparse.Namespace) -> int:
    from kiln.canonical import parse_digest

    store = open_store(args)
    unpinned = []
    with store.shared():
        for ref in args.refs:
            digest = (parse_digest(ref) if ref.startswith("sha256:")
                      else resolve_ref(store, ref).digest)
            store.unpin(digest)
            unpinned.append(digest)
            if not args.json:
                print(f"unpinned {digest}")
    if args.json:
        print_json(unpinned)
    return 0

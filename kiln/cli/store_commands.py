"""`kiln store ...`: fsck, gc, pin, unpin."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from kiln.cli.common import add_json_flag, open_store, resolve_ref
from kiln.cli.output import human_size, print_json

if TYPE_CHECKING:
    from kiln.hostconfig import CachePolicy
    from kiln.store.caches import Freed
    from kiln.store.gc import GcReport
    from kiln.store.store import Store


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = commands.add_parser("store", help="check and clean the store")
    sub = group.add_subparsers(dest="store_command", metavar="COMMAND", required=True)

    fsck = sub.add_parser("fsck", help="re-hash every object and check every record")
    fsck.add_argument("--jobs", type=int, default=None)
    add_json_flag(fsck)
    fsck.set_defaults(handler=cmd_fsck)

    gc = sub.add_parser("gc", help="drop what no named FileSet, import or pin uses, and"
                                   " bound the caches")
    gc.add_argument("--pin", action="append", default=[], metavar="REF",
                    help="pin REF first, so it is kept now and by later gcs (repeatable)")
    gc.add_argument("--keep-days", metavar="DAYS",
                    help="remove cache entries unused for longer (default: the host"
                         " configuration's gc keep-days, else no bound)")
    gc.add_argument("--max-size", metavar="SIZE",
                    help="then remove the least recently used until the caches fit, such"
                         " as 20G (default: gc max-size, else no bound); 0 empties them")
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
    from kiln.store.gc import live_filesets
    from workers.build_records import forget_dead_builds

    store = open_store(args)
    policy = gc_policy(args)
    with store.shared():
        for ref in args.pin:
            store.pin(resolve_ref(store, ref).digest)
    report, freed = collect_bounded(store, policy)
    with store.exclusive():
        builds_forgotten = forget_dead_builds(store, live_filesets(store))
    if args.json:
        print_json({"filesets_removed": report.filesets_removed,
                    "trees_removed": report.trees_removed,
                    "objects_removed": report.objects_removed,
                    "bytes_freed": report.bytes_freed + report.caches.bytes_freed,
                    "materialized_removed": report.materialized_removed,
                    "temporary_removed": report.temporary_removed,
                    "archives_removed": report.archives_removed,
                    "build_records_removed": builds_forgotten,
                    "caches": {kind: {"entries": item.entries, "bytes": item.bytes}
                               for kind, item in freed.items()},
                    "caches_kept_bytes": report.caches.kept_bytes})
    else:
        for item in report.filesets_removed:
            print(f"removed {item}")
        print(f"freed {human_size(report.bytes_freed)} in {report.objects_removed} objects;"
              f" {len(report.filesets_removed)} FileSets, {report.materialized_removed}"
              f" materialised trees, {report.archives_removed} cached archives,"
              f" {builds_forgotten} build records, {report.temporary_removed} leftovers"
              " removed")
        if policy.bounded:
            print(describe_freed(freed, report.caches.kept_bytes))
    return 0


def gc_policy(args: argparse.Namespace) -> CachePolicy:
    """The command line's bounds, else the host configuration's."""
    from kiln.hostconfig import CachePolicy, host_config, parse_days
    from kiln.limits import parse_size

    configured = host_config().gc
    days = parse_days(args.keep_days) if args.keep_days else configured.keep_days
    size = parse_size(args.max_size) if args.max_size else configured.max_size
    return CachePolicy(days, size, configured.threshold)


def collect_bounded(store: Store, policy: CachePolicy) -> tuple[GcReport, dict[str, Freed]]:
    """gc with the caches' bounds, then the host's cached build roots by the same
    bounds; the report and what went, by kind."""
    from kiln.store.caches import KINDS, Freed
    from kiln.store.gc import collect_garbage
    from workers.rootfs import prune_roots

    report = collect_garbage(store, policy)
    freed = {kind: report.caches.freed.get(kind, Freed()) for kind in KINDS}
    if policy.bounded:
        freed["roots"] = Freed(prune_roots(policy.keep_days, empty=policy.max_size == 0,
                                               store_cache=store.layout.cache / "roots"), 0)
    return report, freed


def describe_freed(freed: dict[str, Freed], kept: int) -> str:
    parts = [f"{kind} {item.entries} ({human_size(item.bytes)})"
             for kind, item in freed.items() if item.entries]
    return (f"caches: freed {', '.join(parts) or 'nothing'}; {human_size(kept)} kept")


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

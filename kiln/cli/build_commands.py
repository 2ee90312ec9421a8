"""`kiln build`: one recipe, hermetically, into a Package FileSet."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiln.cli.common import add_json_flag, open_store
from kiln.cli.output import print_json

if TYPE_CHECKING:
    from kiln.store import Store
    from workers.build import BuildOutcome


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    log = commands.add_parser("build-log", help="print the whole log of a package's newest"
                                                " build kept here (also: kiln build log)")
    log.add_argument("package", metavar="NAME[@VERSION]")
    log.add_argument("--list", action="store_true",
                     help="list every kept build of it instead, the newest last")
    add_json_flag(log)
    log.set_defaults(handler=cmd_build_log)
    build = commands.add_parser("build", help="build a recipe in the sandbox")
    build.add_argument("recipe", help="a package name (kiln.dev/hello) or its directory (hello)")
    build.add_argument("--recipes", default="recipes", metavar="REPO",
                       help="the recipe repository: a directory in a git working tree, or a"
                            " git URL[#PATH] (default: recipes)")
    build.add_argument("--commit", metavar="REV", help="build the recipes as REV holds them"
                       " (default: HEAD; uncommitted changes are refused)")
    build.add_argument("--allow-dirty", action="store_true",
                       help="build uncommitted recipes (the record says so)")
    build.add_argument("--record", type=Path, metavar="FILE", help="write the build record here")
    build.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    build.add_argument("--sandbox", choices=["bwrap", "runc"], default="bwrap",
                       help="the sandbox backend (default: bwrap)")
    build.add_argument("--check", action="store_true",
                       help="build twice, varying directory, umask, JOBS, environment order"
                            " and clock; fail naming the files that differ")
    build.add_argument("--keep-failed", action="store_true",
                       help="keep a failed build's /build and /out (the error says where)")
    build.add_argument("--shell", action="store_true",
                       help="after a failure, a shell in the same sandbox (root, sources,"
                            " environment) on the failed build's /build and /out")
    build.add_argument("--attempt", type=int, metavar="N",
                       help="a farm's reproducibility gate: build under the Nth variation"
                            " (1 is a plain build), even if built before")
    build.add_argument("--deps", action="store_true",
                       help="build first the recipes of the same repository it needs, in"
                            " waves, with the farm's planner (each built once)")
    build.add_argument("--push-by-digest", type=Path, metavar="FILE",
                       help="push the package's blobs and manifest to where registries.yaml"
                            " places it, by digest, moving no tag; write the reference to"
                            " FILE (a farm worker's hand-back; the master publishes)")
    build.add_argument("--no-substitute", action="store_true",
                       help="build even if the registry has this build key published")
    build.add_argument("--key", type=Path, metavar="PUB.pem",
                       help="take a published build of the same key (a substitute) only"
                            " signed by this key")
    build.add_argument("--policy", type=Path, metavar="FILE",
                       help="... or only as this trust policy allows")
    build.add_argument("--sign", metavar="URI",
                       help="sign the provenance and attach it with the package in the registry"
                            " (file:KEY.pem, sigstore:...)")
    add_json_flag(build)
    build.set_defaults(handler=cmd_build)


def cmd_build_log(args: argparse.Namespace) -> int:
    from workers.build_logs import build_logs, newest_log

    store = open_store(args)
    name, _, version = args.package.partition("@")
    if args.list or args.json:
        logs = build_logs(store, name, version or None)
        if args.json:
            print_json([{"name": entry.name, "version": entry.version,
                         "build_key": entry.build_key, "failed": entry.failed,
                         "reason": entry.reason, "ended": entry.ended,
                         "log": str(entry.path)} for entry in logs])
        else:
            for entry in logs:
                print(entry.describe())
        return 0
    entry = newest_log(store, args.package)
    print(f"kiln: {entry.describe()}", file=sys.stderr)
    sys.stdout.flush()
    with open(entry.path, "rb") as log:
        while chunk := log.read(1 << 20):
            sys.stdout.buffer.write(chunk)
    return 0


def _watched_build(args: argparse.Namespace, store: Store, fetch: Any,
                   substitute: Any) -> BuildOutcome:
    """The build, its phase and log's last line on stderr while it runs."""
    from kiln.cli.progress import BuildLines
    from workers.build import build
    from workers.debugging import Debugging

    # The shell's own prompt has the terminal: no status line over it.
    watcher = None if args.shell else BuildLines(args.recipe)
    try:
        # The backend by name: opened only if the build runs.
        return build(store, args.sandbox, args.recipes, args.recipe, commit=args.commit,
                     allow_dirty=args.allow_dirty, jobs=args.jobs, check=args.check,
                     fetch=fetch, substitute=substitute, attempt=args.attempt,
                     debugging=Debugging(keep=args.keep_failed, shell=args.shell),
                     watcher=watcher)
    finally:
        if watcher is not None:
            watcher.close()


def cmd_build(args: argparse.Namespace) -> int:
    store = open_store(args)
    if args.deps:
        _build_needs(args, store)
    fetch, substitute = _substitution(args, store)
    outcome = _watched_build(args, store, fetch, substitute)
    if outcome.record is None:  # a substitute: the farm built, signed and published it
        if args.json:
            print_json({"output": {"name": outcome.fileset.name,
                                   "version": outcome.fileset.version,
                                   "digest": outcome.fileset.digest},
                        "build_key": outcome.build_key, "reused": True, "substituted": True})
        else:
            print(f"{outcome.fileset.label} {outcome.fileset.digest} (substituted: published"
                  " by the farm under the same build key, verified)")
        return 0
    if args.sign:
        from kiln.cli.provenance_commands import sign_fileset
        from kiln.registry.config import load_config
        from provenance.statement import package_statement

        signed = []
        for fileset in outcome.filesets:  # a split build: each output's own statement
            with store.shared():
                attested = sign_fileset(store, fileset, package_statement(
                    outcome.record, output=outcome.record.output_named(fileset.name)),
                    args.sign, load_config())
            signed.append({"name": fileset.name, "signer": attested.signer,
                           "artifact": str(attested.artifact), "bundle": attested.referrer})
            # Said on stderr, so that stdout stays the build's line (or its JSON).
            print(f"signed the provenance of {fileset.label} with {attested.signer};"
                  f" attached to {attested.artifact} (bundle {attested.referrer})",
                  file=sys.stderr)
    if args.push_by_digest:
        from kiln.registry.artifact import push_fileset
        from kiln.registry.client import client_for
        from kiln.registry.config import load_config

        config = load_config()
        lines = []
        for fileset in outcome.filesets:  # one line each: the package, then its outputs
            target = config.locate(fileset.name)
            client = client_for(target.host, config)
            try:
                with store.shared():
                    lines.append(f"{push_fileset(store, fileset, client, target).reference}\n")
            finally:
                client.close()
        args.push_by_digest.write_text("".join(lines))
    if args.record:
        args.record.write_bytes(outcome.record.to_bytes())
    if args.json:
        # `signed` is the package's, as for any build; a split build's other packages
        # are in `signed_outputs`.
        print_json({**outcome.record.to_json(), "reused": outcome.reused,
                    **({"signed": signed[0]} if args.sign else {}),
                    **({"signed_outputs": signed[1:]} if args.sign and outcome.split else {})})
    else:
        state = "already built" if outcome.reused else (
            "built twice, identical" if args.check else "built")
        print(f"{outcome.fileset.label} {outcome.fileset.digest} ({state})")
        for fileset in outcome.split:
            print(f"{fileset.label} {fileset.digest} (split from {outcome.fileset.name})")
    _collect_past_threshold(store)
    return 0


def _collect_past_threshold(store: Store) -> None:
    """Between builds, never during one: past the host's gc threshold, a build that
    ended bounds the store's caches (gc's exclusive lock waits for other builds).
    Without a max-size, the threshold is the bound."""
    from kiln.hostconfig import host_config

    policy = host_config().gc
    threshold = policy.threshold
    if threshold is None:
        return
    import dataclasses

    from kiln.cli.output import human_size
    from kiln.cli.store_commands import collect_bounded, describe_freed
    from kiln.store.caches import caches_size

    size = caches_size(store)
    if size <= threshold:
        return
    if policy.max_size is None:
        policy = dataclasses.replace(policy, max_size=threshold)
    report, by_kind = collect_bounded(store, policy)
    freed = describe_freed(by_kind, report.caches.kept_bytes)
    print(f"kiln: the caches held {human_size(size)}, above the gc threshold of"
          f" {human_size(threshold)}: {freed}", file=sys.stderr)


def _build_needs(args: argparse.Namespace, store: Store) -> None:
    """Build, wave by wave, the recipes the one asked for needs (not itself)."""
    from kiln.errors import InputError
    from master.planning import closure_plan
    from workers.build import build

    recipes = Path(args.recipes)
    if not recipes.is_dir():
        raise InputError("--deps plans from a recipe repository in a git working tree",
                         reason="bad-usage")
    name = args.recipe if "/" in args.recipe else _package_name(recipes, args.recipe)
    for index, wave in enumerate(closure_plan(recipes, name, args.commit or "HEAD"), 1):
        for needed in wave:
            if needed == name:
                continue
            outcome = build(store, args.sandbox, recipes, needed, commit=args.commit,
                            allow_dirty=args.allow_dirty, jobs=args.jobs)
            state = "already built" if outcome.reused else "built"
            print(f"wave {index}: {outcome.fileset.label} ({state})", file=sys.stderr)


def _package_name(recipes: Path, directory: str) -> str:
    from kiln.recipes.repository import load_repository

    for name, recipe in load_repository(recipes).recipes.items():
        if recipe.directory.name == directory:
            return name
    return directory


def _substitution(args: argparse.Namespace, store: Store) -> tuple[Any, Any]:
    """The verified fetcher and substitute `kiln build` uses, when the registry holds
    the names and a key or policy says whom to trust; else (None, None)."""
    if args.no_substitute or not (args.key or args.policy):
        return None, None
    from kiln.registry.config import load_config
    from provenance.check import Checker
    from provenance.policy import load_policy
    from provenance.substitute import published_build, verified_fetcher
    from provenance.verify import Trust, load_public_key

    config = load_config()
    if not config.mappings:
        return None, None
    trust = Trust(keys=(load_public_key(args.key),)) if args.key else None
    policy = load_policy(args.policy) if args.policy else None
    check = Checker(store, config, policy, trust)

    def substitute(name: str, build_key: str) -> Any:
        return published_build(store, config, check, name, build_key)

    return verified_fetcher(store, config, check), substitute

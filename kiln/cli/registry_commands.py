"""`kiln push` and `kiln pull`: FileSets to and from OCI registries."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from kiln.cli.common import add_json_flag, open_store, resolve_ref
from kiln.cli.output import print_json

if TYPE_CHECKING:
    pass


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    push = commands.add_parser("push", help="push a FileSet to an OCI registry")
    push.add_argument("ref", metavar="REF", help="NAME[@VERSION|@sha256:...] in the store")
    push.add_argument("target", nargs="?", metavar="REGISTRY/REPO[:TAG]",
                      help="where to (default: registries.yaml's location for the name,"
                           " tagged with the version)")
    add_json_flag(push)
    push.set_defaults(handler=cmd_push)
    pull = commands.add_parser("pull", help="pull a FileSet from an OCI registry, verified")
    pull.add_argument("source", metavar="REGISTRY/REPO[:TAG|@DIGEST]|NAME@VERSION")
    add_json_flag(pull)
    pull.set_defaults(handler=cmd_pull)


def cmd_push(args: argparse.Namespace) -> int:
    from kiln.registry.artifact import imports_first, push_fileset
    from kiln.registry.client import client_for
    from kiln.registry.config import load_config
    from kiln.registry.naming import version_to_tag
    from kiln.registry.reference import parse_reference

    store = open_store(args)
    config = load_config()
    with store.shared():
        fileset = resolve_ref(store, args.ref)
        if args.target:
            target = parse_reference(args.target)
            if target.digest:
                raise_usage("push to a tag, not a digest")
            target = target.with_tag(target.tag or version_to_tag(fileset.version))
        else:
            target = config.locate(fileset.name, fileset.version)
        # What it imports goes first, each to its own place, so that a pull finds it.
        for imported in imports_first(store, fileset):
            home = config.locate(imported.name, imported.version)
            home_client = client_for(home.host, config)
            try:
                push_fileset(store, imported, home_client, home)
            finally:
                home_client.close()
        client = client_for(target.host, config)
        try:
            pushed = push_fileset(store, fileset, client, target)
        finally:
            client.close()
    if args.json:
        print_json({"reference": str(pushed.reference), "name": fileset.name,
                    "version": fileset.version, "fileset": fileset.digest,
                    "layer": pushed.layer.digest, "blobs": pushed.blobs,
                    "requests": client.traffic.total(), "bytes_sent": client.traffic.bytes_sent})
    else:
        uploaded = sum(1 for how in pushed.blobs.values() if how == "uploaded")
        print(f"pushed {fileset.label} to {pushed.reference} ({uploaded} of"
              f" {len(pushed.blobs)} blobs uploaded)")
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    from kiln.registry.config import load_config
    from kiln.registry.reference import is_registry_reference, parse_reference

    store = open_store(args)
    config = load_config()
    if is_registry_reference(args.source):
        source = parse_reference(args.source)
    else:
        name, at, version = args.source.partition("@")
        if not at or version.startswith("sha256:"):
            raise_usage(f"{args.source!r}: pull REGISTRY/REPO[:TAG|@DIGEST] or NAME@VERSION")
        source = config.locate(name, version)
    from kiln.registry.fetch import pull_with_imports

    fileset = pull_with_imports(store, config, source)
    if args.json:
        print_json({"reference": str(source), "name": fileset.name, "version": fileset.version,
                    "digest": fileset.digest})
    else:
        print(f"pulled {fileset.label} ({fileset.digest}) from {source}")
    return 0


def raise_usage(message: str) -> None:
    from kiln.errors import InputError

    raise InputError(message, reason="bad-usage")

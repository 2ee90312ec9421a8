"""`kiln index sync` and `kiln query ...`: the index of what registries hold, and the
questions it answers, for a farm or for anyone with a registry to read."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from kiln.cli.common import add_json_flag
from kiln.cli.output import print_json


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    index = commands.add_parser("index", help="the index of packages, builds, provenance"
                                              " and images")
    sub = index.add_subparsers(dest="index_command", required=True, metavar="COMMAND")
    sync = sub.add_parser("sync", help="index everything a registry holds (the registry is"
                                       " the truth: run it again at any time)")
    sync.add_argument("registry", metavar="HOST[:PORT]")
    sync.add_argument("--key", type=Path, metavar="PUB.pem",
                      help="verify every bundle against this key (else: signer recorded,"
                           " verification unknown)")
    _index_option(sync)
    add_json_flag(sync)
    sync.set_defaults(handler=cmd_sync)

    query = commands.add_parser("query", help="ask the index")
    questions = query.add_subparsers(dest="query_command", required=True, metavar="QUESTION")
    affected = questions.add_parser("affected", help="published images (and packages built"
                                                     " with it) that carry NAME below VERSION")
    affected.add_argument("name", metavar="NAME")
    affected.add_argument("--below", required=True, metavar="VERSION")
    package = questions.add_parser("package", help="versions, builds, provenance, images")
    package.add_argument("name", metavar="NAME")
    image = questions.add_parser("image", help="packages, versions, digests, provenance")
    image.add_argument("ref", metavar="HOST/REPOSITORY:TAG|sha256:...")
    built = questions.add_parser("built-with", help="packages whose builds used"
                                                    " NAME@VERSION (a toolchain package)")
    built.add_argument("input", metavar="NAME@VERSION")
    for parser in (affected, package, image, built):
        _index_option(parser)
        add_json_flag(parser)
        parser.set_defaults(handler=cmd_query)


def _index_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index", metavar="URL",
                        help="sqlite:///PATH or postgresql://... (default: $KILN_INDEX, else"
                             " index.sqlite in the store's directory)")


def open_index_for(args: argparse.Namespace) -> Any:
    from kiln.store import default_store_path
    from master.index.database import open_index

    url = args.index or os.environ.get("KILN_INDEX")
    if not url:
        store = Path(args.store or default_store_path())
        store.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{store.resolve() / 'index.sqlite'}"
    return open_index(url)


def cmd_sync(args: argparse.Namespace) -> int:
    from kiln.registry.client import client_for
    from kiln.registry.config import load_config
    from master.index.sync import sync_registry
    from provenance.verify import Trust, load_public_key

    trust = Trust(keys=(load_public_key(args.key),)) if args.key else None
    engine = open_index_for(args)
    client = client_for(args.registry, load_config())
    try:
        report = sync_registry(engine, client, args.registry, trust)
    finally:
        client.close()
    if args.json:
        print_json(report.to_json())
    else:
        print(f"{args.registry}: {report.repositories} repositories; indexed {report.packages}"
              f" packages and {report.images} images; {report.unchanged} unchanged")
        for why in report.skipped:
            print(f"  skipped {why}")
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    from kiln.errors import InputError
    from master.index import queries

    engine = open_index_for(args)
    question = args.query_command
    if question == "affected":
        answer = queries.affected(engine, args.name, args.below)
    elif question == "package":
        answer = queries.package(engine, args.name)
    elif question == "image":
        answer = queries.image(engine, args.ref)
    else:
        name, at, version = args.input.rpartition("@")
        if not at or not name or not version:
            raise InputError(f"{args.input!r}: write NAME@VERSION", reason="bad-usage")
        answer = queries.built_with(engine, name, version)
    if args.json:
        print_json(answer)
    else:
        _print(question, answer)
    return 0


def _print(question: str, answer: dict[str, Any]) -> None:
    if question == "affected":
        print(f"{_count(answer['images'], 'image')} carry {answer['name']} below"
              f" {answer['below']}:")
        for c in answer["images"]:
            override = " (an override)" if c["overridden"] else ""
            print(f"  {c['image']}  {c['name']}@{c['version']}  carries {c['carries']}"
                  f"{override}  {c['digest']}")
        print(f"{_count(answer['packages'], 'package')} built with it:")
        for b in answer["packages"]:
            print(f"  {b['name']}@{b['version']}  with {b['input']}  by {b['builder']}"
                  f"{' on ' + b['worker'] if b['worker'] else ''}")
    elif question == "built-with":
        print(f"{_count(answer['packages'], 'package')} built with {answer['input']}:")
        for b in answer["packages"]:
            print(f"  {b['name']}@{b['version']}  {b['fileset']}  by {b['builder']}")
    elif question == "package":
        print(answer["name"])
        for v in answer["versions"]:
            print(f"  {v['version']}  {v['fileset']}")
            for p in v["publications"]:
                signed = ", ".join(_proof(s) for s in p["provenance"]) or "no provenance"
                print(f"    published {p['reference']}  {signed}")
            for b in v["builds"]:
                print(f"    built {b['started']} by {b['builder']}"
                      f"{' on ' + b['worker'] if b['worker'] else ''} from"
                      f" {b['recipe_commit'][:12]} (key {b['build_key']})")
            for i in v["images"]:
                print(f"    in {i['image']} {i['digest']}")
    else:
        print(f"{answer['image']}  {answer['name']}@{answer['version']}  {answer['digest']}")
        print(f"  provenance: {', '.join(_proof(s) for s in answer['provenance']) or 'none'}")
        for p in answer["packages"]:
            signed = ", ".join(_proof(s) for s in p["provenance"]) or "no provenance indexed"
            override = " (override)" if p["overridden"] else ""
            print(f"  {p['name']}@{p['version']}{override}  {p['fileset']}  {signed}")


def _count(items: list[Any], noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def _proof(state: dict[str, Any]) -> str:
    verdict = {True: "verified", False: "does not verify", None: "not verified"}[
        state["verified"]]
    return f"{state['signer'] or 'unsigned'} ({verdict})"

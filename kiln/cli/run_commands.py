"""`kiln run IMAGE.yaml|IMAGE_REF [-- CMD...]`: run an image from the host store."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from kiln.cli.common import open_store


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = commands.add_parser("run", help="run an image from the host store (late binding)")
    run.add_argument("image", metavar="IMAGE.yaml|IMAGE_REF",
                     help="an image spec (resolved in the store, or its lock with --locked),"
                          " oci:DIR[:TAG] or HOST/REPO:TAG")
    run.add_argument("--locked", action="store_true", help="run exactly what image.lock pins")
    run.add_argument("--sandbox", choices=("bwrap", "runc"), default="bwrap")
    run.add_argument("--allow-capability", action="append", default=[], metavar="CAP",
                     help="grant CAP if the image requires it, beyond the default set"
                          " (CAP_NET_BIND_SERVICE, CAP_CHOWN, ...)")
    run.set_defaults(handler=cmd_run, command_args=[])
    run.epilog = ("Arguments after -- replace the image's cmd and follow its entrypoint:"
                  " kiln run IMAGE.yaml -- -g hi")


def cmd_run(args: argparse.Namespace) -> int:
    from kiln.cli.image_commands import spec_set
    from kiln.image.build import ensure_package, resolve_spec
    from kiln.image.spec import load_image_spec
    from kiln.registry.config import load_config
    from kiln.registry.fetch import registry_fetcher
    from workers.backends import open_sandbox
    from workers.run import run_image

    store = open_store(args)
    config = load_config()
    sandbox = open_sandbox(args.sandbox)
    with store.shared():
        if args.image.endswith((".yaml", ".yml")) and Path(args.image).is_file():
            spec = load_image_spec(Path(args.image))
            packages, _ = resolve_spec(store, spec, locked=args.locked,
                                       package_set=spec_set(spec, config),
                                       fetch=registry_fetcher(store, config))
            run = spec.run
        else:
            from kiln.image.inspect import run_config_of, summarize
            from kiln.image.location import open_location, packages_from_layers

            location = open_location(args.image, config)
            try:
                manifest, digest = location.manifest()
                summary = summarize(manifest, digest, location.describe())
                run = run_config_of(summary, json.loads(location.blob(summary.config)))
                fetch = packages_from_layers(
                    store, location, [(layer.descriptor, layer.packages)
                                      for layer in summary.layers])
                packages = [ensure_package(store, p, fetch) for p in summary.packages]
            finally:
                location.close()
        sys.stdout.flush()
        result = run_image(store, packages, run, args.command_args, sandbox, Path(os.devnull),
                           output_fd=sys.stdout.fileno(),
                           allowed=frozenset(args.allow_capability))
    if result.timed_out:
        return 124
    return result.exit_code if result.exit_code is not None else 1

"""`kiln image build|update|inspect|diff` and `kiln set publish`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiln.cli.common import add_json_flag, open_store
from kiln.cli.output import human_size, print_json, print_table

if TYPE_CHECKING:
    from collections.abc import Callable

    from kiln.canonical import Digest
    from kiln.fileset import FileSet
    from kiln.image.build import Composed, FetchPackage
    from kiln.image.inspect import ImageSummary
    from kiln.image.location import Attachment, LayoutStore, RegistryImageStore
    from kiln.image.spec import ImageSpec, LockedPackage
    from kiln.registry.config import RegistryConfig
    from kiln.store.store import Store


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = commands.add_parser("image", help="compose, update and inspect OCI images")
    sub = group.add_subparsers(dest="image_command", metavar="COMMAND", required=True)

    build = sub.add_parser("build", help="compose an image from image.yaml")
    build.add_argument("spec", type=Path, metavar="IMAGE.yaml")
    _add_destination(build, required=True)
    build.add_argument("--locked", action="store_true",
                       help="compose exactly what image.lock pins (refuse a stale lock)")
    build.add_argument("--sign", metavar="URI", help="sign the image's provenance and attach"
                                                     " it (file:KEY.pem, sigstore:...)")
    build.add_argument("--require-provenance", type=Path, metavar="POLICY",
                       help="refuse packages whose provenance fails this trust policy")
    add_json_flag(build)
    build.set_defaults(handler=cmd_build)

    update = sub.add_parser("update", help="replace packages of an image, reusing every"
                                           " other layer")
    update.add_argument("image", metavar="IMAGE_REF", help="oci:DIR[:TAG] or HOST/REPO:TAG")
    update.add_argument("--set", action="append", required=True, dest="changes",
                        metavar="NAME=VERSION")
    _add_destination(update, required=False)
    update.add_argument("--lock", type=Path, metavar="FILE", help="write the new image.lock")
    update.add_argument("--sign", metavar="URI", help="sign the new image's provenance")
    update.add_argument("--version", dest="new_version", metavar="V",
                        help="the new image's version (default: the previous one's last"
                             " number counted up: 1 -> 2, 2026.12-3 -> 2026.12-4)")
    add_json_flag(update)
    update.set_defaults(handler=cmd_update)

    inspect = sub.add_parser("inspect", help="packages, versions, digests and requirements,"
                                             " from the image alone")
    inspect.add_argument("image", metavar="IMAGE_REF")
    add_json_flag(inspect)
    inspect.set_defaults(handler=cmd_inspect)

    diff = sub.add_parser("diff", help="package-level changes between two images")
    diff.add_argument("before", metavar="A")
    diff.add_argument("after", metavar="B")
    add_json_flag(diff)
    diff.set_defaults(handler=cmd_diff)

    sets = commands.add_parser("set", help="publish curated package sets")
    set_sub = sets.add_subparsers(dest="set_command", metavar="COMMAND", required=True)
    publish = set_sub.add_parser("publish", help="resolve SET.yaml, push its packages and it")
    publish.add_argument("spec", type=Path, metavar="SET.yaml")
    add_json_flag(publish)
    publish.set_defaults(handler=cmd_set_publish)


def _add_destination(parser: argparse.ArgumentParser, *, required: bool) -> None:
    where = parser.add_mutually_exclusive_group(required=required)
    where.add_argument("-o", "--output", metavar="oci:DIR[:TAG]",
                       help="write an OCI image layout")
    where.add_argument("--push", metavar="HOST/REPO[:TAG]", help="push to a registry")


def spec_set(spec: ImageSpec, config: RegistryConfig,
             ) -> tuple[Digest, tuple[LockedPackage, ...]] | None:
    """The digest and pins of the set `spec` draws its versions from, if any."""
    if not spec.set:
        return None  # (before the import: a registry client is no small import)
    from kiln.image.sets import fetch_set

    fetched = fetch_set(spec.set, config)
    return fetched.digest, fetched.packages


def _destination(args: argparse.Namespace, config: RegistryConfig,
                 default_tag: str) -> LayoutStore | RegistryImageStore:
    from kiln.image.location import open_location
    from kiln.registry.reference import parse_reference

    if args.push:
        # Push to a tag: the one given, else the image's version (never to a bare digest).
        reference = parse_reference(args.push)
        return open_location(str(reference.with_tag(reference.tag or default_tag)), config)
    return open_location(args.output, config)


def _publish(store: Store, composed: Composed, destination: LayoutStore | RegistryImageStore,
             config: RegistryConfig, present: frozenset[Digest] = frozenset(),
             sign: str | None = None) -> dict[str, object]:
    from kiln.errors import KilnError
    from kiln.image.location import Attachment, RegistryImageStore
    from kiln.image.sbom import SBOM_TYPE, spdx_document

    mounts = {}
    if isinstance(destination, RegistryImageStore):
        # A package's layer is its artifact's blob: mount it from the package's repository.
        for layer in composed.image.layers:
            if len(layer.packages) == 1:
                try:
                    home = config.locate(layer.packages[0].name)
                except KilnError:  # a name no registry is mapped for is just not mounted
                    continue
                if home.host == destination.reference.host:
                    mounts[layer.descriptor.digest] = home.repository
    attachments = [Attachment(SBOM_TYPE, spdx_document(composed.image), SBOM_TYPE)]
    if sign:
        attachments.append(_signed_statement(composed, sign))
    try:
        digest = destination.put(composed.image, attachments, mounts, present)
        traffic = (destination.client.traffic if isinstance(destination, RegistryImageStore)
                   else None)
    finally:
        destination.close()
    report: dict[str, object] = {
        "image": destination.describe(), "digest": digest,
        "name": composed.image.name, "version": composed.image.version,
        "packages": len(composed.image.packages), "layers": len(composed.image.layers),
        "size": sum(layer.descriptor.size for layer in composed.image.layers),
    }
    if traffic is not None:
        report["requests"] = dict(traffic.requests)
        report["bytes_sent"] = traffic.bytes_sent
    return report


def _signed_statement(composed: Composed, signer_uri: str) -> Attachment:
    """The image's provenance, signed: its packages, lock, set and previous image."""
    from kiln.canonical import sha256_digest
    from kiln.image.compose import package_entry
    from kiln.image.location import Attachment
    from provenance.bundle import BUNDLE_TYPE
    from provenance.signers import open_signer
    from provenance.statement import image_statement

    image = composed.image
    statement = image_statement(image.name, image.version, image.digest,
                                [package_entry(f) for f in image.packages],
                                sha256_digest(composed.lock.to_bytes()), image.set_digest,
                                image.previous)
    return Attachment(BUNDLE_TYPE, open_signer(signer_uri).sign(statement), BUNDLE_TYPE)


def _admission(store: Store, config: RegistryConfig,
               policy_file: Path | None) -> Callable[[list[FileSet]], None] | None:
    """With --require-provenance: every package's provenance must pass the policy."""
    if policy_file is None:
        return None
    from provenance.check import Checker
    from provenance.policy import load_policy

    policy = load_policy(policy_file)

    def admit(packages: list[FileSet]) -> None:
        checker = Checker(store, config, policy)
        try:
            for fileset in packages:
                checker.package(config.locate(fileset.name, fileset.version))
        finally:
            checker.close()

    return admit


def _print_report(args: argparse.Namespace, report: dict[str, object]) -> None:
    if args.json:
        print_json(report)
    else:
        size = report["size"]
        assert isinstance(size, int)
        print(f"{report['image']}@{report['digest']}: {report['name']}@{report['version']},"
              f" {report['packages']} packages in {report['layers']} layers"
              f" ({human_size(size)})")


def cmd_build(args: argparse.Namespace) -> int:
    from kiln.image.build import build_from_spec
    from kiln.image.spec import load_image_spec, write_image_lock
    from kiln.registry.config import load_config
    from kiln.registry.naming import version_to_tag

    store = open_store(args)
    config = load_config()
    spec = load_image_spec(args.spec)
    package_set = spec_set(spec, config)
    with store.shared():
        composed = build_from_spec(store, spec, locked=args.locked, package_set=package_set,
                                   fetch=_fetcher(store, config),
                                   admit=_admission(store, config, args.require_provenance))
        if not args.locked:
            write_image_lock(spec.lock_path, composed.lock)
        report = _publish(store, composed,
                          _destination(args, config, version_to_tag(spec.version)), config,
                          sign=args.sign)
    _print_report(args, report)
    return 0


def _read_image(text: str, config: RegistryConfig, *, attached: bool = False,
                ) -> tuple[ImageSummary, dict[str, Any], list[tuple[str, Digest]]]:
    """The image's summary, its config and (if asked) what is attached to it."""
    from kiln.image.inspect import summarize
    from kiln.image.location import open_location

    location = open_location(text, config)
    try:
        manifest, digest = location.manifest()
        summary = summarize(manifest, digest, location.describe())
        image_config = json.loads(location.blob(summary.config))
        attachments = location.attached(digest) if attached else []
    finally:
        location.close()
    return summary, image_config, attachments


def cmd_update(args: argparse.Namespace) -> int:
    from kiln.errors import InputError
    from kiln.image.build import update_image
    from kiln.image.inspect import run_config_of
    from kiln.image.location import RegistryImageStore
    from kiln.image.spec import write_image_lock
    from kiln.naming import validate_name, validate_version
    from kiln.registry.config import load_config
    from kiln.registry.naming import version_to_tag
    from kiln.registry.reference import parse_reference

    changes = {}
    for change in args.changes:
        name, equals, version = change.partition("=")
        if not equals:
            raise InputError(f"--set {change!r}: write NAME=VERSION", reason="bad-usage")
        changes[validate_name(name)] = validate_version(version)
    store = open_store(args)
    config = load_config()
    previous, image_config, _ = _read_image(args.image, config)
    run = run_config_of(previous, image_config)
    with store.shared():
        composed = update_image(store, previous, changes, run,
                                fetch=_fetcher(store, config),
                                budget=previous.budget, version=args.new_version)
        new_tag = version_to_tag(composed.image.version)
        if args.lock:
            write_image_lock(args.lock, composed.lock)
        if not (args.push or args.output):
            # Beside the previous image, under the new version's tag: the old tag keeps
            # naming the old image, as a version names one content.
            if args.image.startswith("oci:"):
                args.output = f"oci:{_layout_dir(args.image)}:{new_tag}"
            else:
                reference = parse_reference(args.image)
                args.push = str(reference.with_tag(new_tag))
        destination = _destination(args, config, new_tag)
        # The previous image's layers are in its repository: an update does not ask again.
        same_repository = (isinstance(destination, RegistryImageStore)
                           and not args.image.startswith("oci:")
                           and _repository_of(args.image) == (destination.reference.host,
                                                              destination.reference.repository))
        present = (frozenset(layer.descriptor.digest for layer in previous.layers)
                   if same_repository else frozenset())
        report = _publish(store, composed, destination, config, present, sign=args.sign)
    report["previous"] = previous.digest
    _print_report(args, report)
    return 0


def _layout_dir(text: str) -> str:
    """`oci:DIR[:TAG]` -> DIR (as kiln.image.location.open_location reads it)."""
    return text.removeprefix("oci:").partition(":")[0]


def _repository_of(text: str) -> tuple[str, str]:
    from kiln.registry.reference import parse_reference

    reference = parse_reference(text)
    return reference.host, reference.repository


def cmd_inspect(args: argparse.Namespace) -> int:
    from kiln.registry.config import load_config

    summary, _, attachments = _read_image(args.image, load_config(), attached=True)
    if args.json:
        print_json({**summary.to_json(), "attached": [
            {"artifactType": kind, "digest": digest} for kind, digest in attachments]})
        return 0
    print(f"{summary.name}@{summary.version}  {summary.digest}")
    kinds = sorted({kind for kind, _ in attachments})
    print("attached: " + (", ".join(f"{kind} ({sum(1 for k, _ in attachments if k == kind)})"
                                    for kind in kinds) or "nothing"))
    requirements = summary.requirements
    print(f"requires: kernel >= {requirements.get('kernel') or 'any'}, capabilities:"
          f" {', '.join(requirements.get('capabilities') or []) or 'none'}")
    if summary.previous:
        print(f"updated from: {summary.previous}")
    print_table([(p.name, p.version, p.digest) for p in summary.packages],
                ("PACKAGE", "VERSION", "DIGEST"))
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from kiln.image.inspect import diff
    from kiln.registry.config import load_config

    config = load_config()
    before, _, _ = _read_image(args.before, config)
    after, _, _ = _read_image(args.after, config)
    changes = diff(before, after)
    if args.json:
        print_json([change.to_json() for change in changes])
        return 0
    print_table([(c.name, c.kind, c.before.version if c.before else "-",
                  c.after.version if c.after else "-") for c in changes],
                ("PACKAGE", "CHANGE", "BEFORE", "AFTER"))
    return 0


def cmd_set_publish(args: argparse.Namespace) -> int:
    from kiln.image.sets import publish_set, resolve_set
    from kiln.registry.config import load_config

    store = open_store(args)
    with store.shared():
        package_set = resolve_set(store, args.spec)
        reference = publish_set(store, package_set, load_config())
    if args.json:
        print_json({"reference": str(reference), "name": package_set.name,
                    "version": package_set.version, "digest": package_set.digest,
                    "packages": [p.to_json() for p in package_set.packages]})
    else:
        print(f"published {package_set.name}@{package_set.version} ({package_set.digest},"
              f" {len(package_set.packages)} packages) as {reference}")
    return 0


def _fetcher(store: Store, config: RegistryConfig) -> FetchPackage | None:
    from kiln.registry.fetch import registry_fetcher

    return registry_fetcher(store, config)

"""`kiln attest`, `kiln verify` and `kiln policy check`: signed provenance."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from kiln.cli.common import add_json_flag, open_store, resolve_ref
from kiln.cli.output import print_json, print_table

if TYPE_CHECKING:
    from kiln.fileset import FileSet
    from kiln.registry.config import RegistryConfig
    from kiln.registry.reference import Reference
    from kiln.store.store import Store
    from provenance.attest import Attested
    from provenance.check import Checker
    from provenance.policy import TrustPolicy
    from provenance.verify import Trust


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    key = commands.add_parser("key", help="signing keys")
    key_commands = key.add_subparsers(dest="key_command", metavar="COMMAND", required=True)
    generate = key_commands.add_parser(
        "generate", help="make an ECDSA P-256 key pair: DIR/NAME.pem (0600) and DIR/NAME.pub")
    generate.add_argument("directory", type=Path, metavar="DIR")
    generate.add_argument("--name", default="kiln", help="the files' stem (default: kiln)")
    add_json_flag(generate)
    generate.set_defaults(handler=cmd_key_generate)

    attest = commands.add_parser("attest", help="sign a package's provenance and attach it")
    attest.add_argument("source", metavar="RECORD|REF",
                        help="a build record (kiln build --record), or a Debian package"
                             " imported with kiln deb import")
    attest.add_argument("--signer", required=True, metavar="URI",
                        help="file:KEY.pem, sigstore:production|staging|TRUST_CONFIG")
    attest.add_argument("--to", metavar="HOST/REPO[:TAG]",
                        help="where the FileSet and its bundle go (default: registries.yaml)")
    attest.add_argument("-o", "--output", type=Path, metavar="BUNDLE",
                        help="also write the bundle here")
    add_json_flag(attest)
    attest.set_defaults(handler=cmd_attest)

    verify = commands.add_parser("verify", help="verify a package's or an image's provenance")
    verify.add_argument("target", metavar="REF|IMAGE_REF",
                        help="HOST/REPO:TAG (a package or an image), NAME@VERSION through"
                             " registries.yaml, or oci:DIR[:TAG]")
    add_trust_flags(verify)
    verify.add_argument("--bundle", type=Path, metavar="FILE",
                        help="verify this bundle against the FileSet in the store")
    add_json_flag(verify)
    verify.set_defaults(handler=cmd_verify)

    policy = commands.add_parser("policy", help="admission checks against a trust policy")
    policy_sub = policy.add_subparsers(dest="policy_command", metavar="COMMAND", required=True)
    check = policy_sub.add_parser("check", help="an image's packages, versions and provenance"
                                                " against a policy")
    check.add_argument("image", metavar="IMAGE_REF")
    check.add_argument("--policy", type=Path, required=True, metavar="FILE")
    add_json_flag(check)
    check.set_defaults(handler=cmd_policy_check)


def add_trust_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--key", type=Path, metavar="PUB.pem", help="trust this public key")
    parser.add_argument("--identity", metavar="ID", help="trust this keyless identity")
    parser.add_argument("--issuer", metavar="URL", help="... issued by this OIDC issuer")
    parser.add_argument("--trusted-root", default="production",
                        metavar="production|staging|FILE",
                        help="the root keyless signatures chain to (default: production)")
    parser.add_argument("--policy", type=Path, metavar="FILE", help="a trust policy")


def checker(store: Store, config: RegistryConfig, args: argparse.Namespace) -> Checker:
    from provenance.check import Checker

    trust, policy = trust_given(args)
    return Checker(store, config, policy, trust)


def trust_given(args: argparse.Namespace) -> tuple[Trust | None, TrustPolicy | None]:
    """The trust the command line names (--key, or --identity with --issuer) and the
    policy file (--policy), either of them None."""
    from kiln.errors import InputError
    from provenance.verify import Identity, Trust, load_public_key

    if bool(args.identity) != bool(args.issuer):
        raise InputError("--identity and --issuer go together", reason="bad-usage")
    trust = None
    if args.key or args.identity:
        trust = Trust(keys=(load_public_key(args.key),) if args.key else (),
                      identities=(Identity(args.identity, args.issuer),) if args.identity
                      else (), trusted_root=args.trusted_root)
    if not args.policy:
        return trust, None
    from provenance.policy import load_policy  # a key alone needs none of the policy's rules

    return trust, load_policy(args.policy)


def sign_fileset(store: Store, fileset: FileSet, statement: bytes, signer_uri: str,
                 config: RegistryConfig, target: str | None = None,
                 output: Path | None = None) -> Attested:
    from provenance.attest import attest_fileset
    from provenance.signers import open_signer

    return attest_fileset(store, fileset, statement, open_signer(signer_uri), config,
                          target=target, output=output)


def cmd_attest(args: argparse.Namespace) -> int:
    from kiln.errors import InputError
    from kiln.record import BuildRecord
    from kiln.registry.config import load_config
    from provenance.statement import debian_statement, package_statement

    store = open_store(args)
    config = load_config()
    with store.shared():
        source = Path(args.source)
        if source.is_file():
            record = BuildRecord.from_bytes(source.read_bytes(), str(source))
            if record.also and (args.to or args.output):
                raise InputError(f"{source} is a split build's ({len(record.outputs)}"
                                 " packages): each is signed where registries.yaml places"
                                 " it, and --to or -o name one place", reason="bad-usage")
            signing = [(store.get(output.digest), package_statement(record, output=output))
                       for output in record.outputs]
        else:
            fileset = resolve_ref(store, args.source)
            signing = [(fileset, debian_statement(fileset))]
        reports = []
        for fileset, statement in signing:
            attested = sign_fileset(store, fileset, statement, args.signer, config, args.to,
                                    args.output)
            reports.append({"name": fileset.name, "version": fileset.version,
                            "digest": fileset.digest,
                            "artifact": str(attested.artifact) if attested.artifact else None,
                            "bundle": attested.referrer})
            if not args.json:
                where = (f"attached to {attested.artifact}" if attested.artifact
                         else f"in {args.output}")
                print(f"signed the provenance of {fileset.label}, {where}")
    if args.json:  # one object, as before; a split build's, one each in a list
        print_json(reports[0] if len(reports) == 1 else reports)
    return 0


def cmd_key_generate(args: argparse.Namespace) -> int:
    from provenance.keys import generate_key_pair

    pair = generate_key_pair(args.directory, args.name)
    if args.json:
        print_json({"private": str(pair.private), "public": str(pair.public),
                    "signer": f"key {pair.hint}"})
    else:
        print(f"wrote {pair.private} (private, 0600: sign with --signer file:{pair.private})")
        print(f"wrote {pair.public} (public: verify with --key {pair.public}); key {pair.hint}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    store = open_store(args)
    if args.bundle:  # the store and a file: no registry, so none of its modules
        with store.shared():
            result = _verify_bundle_file(store, args)
        _print_verified(args, result)
        return 0
    from kiln.registry.config import load_config
    from kiln.registry.reference import is_registry_reference, parse_reference

    config = load_config()
    check = checker(store, config, args)
    try:
        with store.shared():
            if args.target.startswith("oci:"):
                from kiln.image.location import open_location

                result = check.image(open_location(args.target, config)).to_json()
            else:
                reference = (parse_reference(args.target) if is_registry_reference(args.target)
                             else _located(config, args.target))
                result = _verify_reference(check, reference)
    finally:
        check.close()
    _print_verified(args, result)
    return 0


def _print_verified(args: argparse.Namespace, result: dict[str, object]) -> None:
    if args.json:
        print_json(result)
    else:
        packages = result.get("packages", [])
        count = len(packages) if isinstance(packages, list) else 0
        extra = f" and its {count} packages" if count else ""
        print(f"verified {result['name']}@{result['version']} ({result['digest']}){extra},"
              f" signed by {result['signer']}")


def _located(config: RegistryConfig, text: str) -> Reference:
    from kiln.errors import InputError

    name, at, version = text.partition("@")
    if not at or version.startswith("sha256:"):
        raise InputError(f"{text!r}: give HOST/REPO:TAG, NAME@VERSION or oci:DIR",
                         reason="bad-reference")
    return config.locate(name, version)


def _verify_reference(check: Checker, reference: Reference) -> dict[str, object]:
    """A package or an image, told apart by the manifest's artifactType."""
    from kiln.registry.artifact import ARTIFACT_TYPE
    from provenance.check import as_check_named

    client = check.client(reference.host)
    # A package an image names and the registry lacks fails the image's check instead.
    manifest, _, _ = as_check_named(lambda: client.get_manifest(reference))
    if json.loads(manifest).get("artifactType") == ARTIFACT_TYPE:
        return dict(check.package(reference).to_json())
    from kiln.image.location import RegistryImageStore

    return check.image(RegistryImageStore(reference, client)).to_json()


def _verify_bundle_file(store: Store, args: argparse.Namespace) -> dict[str, object]:
    from provenance.bundle import parse_bundle, read_bundle_file
    from provenance.verify import trusted_for, verify_bundle

    trust, policy = trust_given(args)
    fileset = resolve_ref(store, args.target)
    bundle = parse_bundle(read_bundle_file(args.bundle), str(args.bundle))
    verified = verify_bundle(bundle, trusted_for(fileset.name, trust, policy), fileset.digest,
                             str(args.bundle))
    if policy is not None:
        from provenance.policy import Evidence

        policy.rules.verify(Evidence(fileset.name, fileset.version, verified))
    return {"name": fileset.name, "version": fileset.version, "digest": fileset.digest,
            "signer": verified.signer, "buildType": verified.build_type,
            "builder": verified.builder}


def cmd_policy_check(args: argparse.Namespace) -> int:
    from kiln.image.location import open_location
    from kiln.registry.config import load_config

    store = open_store(args)
    config = load_config()
    args.key = args.identity = args.issuer = None
    args.trusted_root = "production"
    check = checker(store, config, args)
    try:
        with store.shared():
            proof = check.admit(open_location(args.image, config))
    finally:
        check.close()
    if args.json:
        print_json(proof.to_json())
    else:
        print(f"admitted {proof.name}@{proof.version} ({proof.digest})")
        print_table([(p.name, p.version, p.signer) for p in proof.packages],
                    ("PACKAGE", "VERSION", "SIGNED BY"))
    return 0

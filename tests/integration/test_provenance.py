"""Signed provenance through the registry: key signing and verification for packages,
Debian imports and images; every kind of tampering refused with its reason; keyless
bundles of the public Sigstore instances verified offline; keyless signing for
real against a private Sigstore instance the fixtures run on loopback."""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf import json_format
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
from in_toto_attestation.v1 import statement_pb2
from sigstore_models.bundle.v1 import Bundle

from kiln.canonical import Digest, canonical_json, sha256_digest
from kiln.errors import CheckFailed
from kiln.fileset import FileSet
from kiln.record import BuildRecord
from kiln.registry.artifact import MANIFEST_TYPE, ArchiveCache, Descriptor, fileset_manifest
from kiln.registry.client import RegistryClient
from kiln.store import Store
from provenance.bundle import parse_bundle
from provenance.registry import attach_bundle
from provenance.signers.key import KeySigner
from provenance.statement import SLSA_PROVENANCE, package_statement
from provenance.verify import Identity, Trust, verify_bundle
from tests.conftest import SHARED, Kiln
from tests.fixtures.keys import write_key
from tests.fixtures.packages import ensure_apt_lists, make_package
from tests.fixtures.registry import Registry, registry_config, run_registry
from tests.fixtures.sigstore_instance import SigstoreInstance, run_sigstore
from tests.unit.test_record import record_json

BUILDER = "https://kiln.dev/builders/test-farm"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with run_registry(tmp_path_factory.mktemp("registry")) as running:
        yield running


@pytest.fixture
def farm(tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Two keys (the farm's and another), registries.yaml, and the farm's builder id."""
    keys = tmp_path / "keys"
    keys.mkdir()
    farm_key, farm_pub = write_key(keys, "farm")
    other_key, other_pub = write_key(keys, "other")
    monkeypatch.setenv("KILN_REGISTRIES",
                       str(registry_config(tmp_path / "registries.yaml", registry.host)))
    monkeypatch.setenv("KILN_BUILDER_ID", BUILDER)
    return {"key": farm_key, "pub": farm_pub, "other_key": other_key, "other_pub": other_pub}


def record_for(store: Store, fileset: FileSet, tmp_path: Path,
               repo: str = "https://git.example.org/recipes.git") -> Path:
    """A build record of `fileset`, as `kiln build --record` writes them."""
    archive = ArchiveCache(store).layer(fileset)[0]
    record = record_json()
    record["recipe"].update(repo=repo, path=fileset.name.rsplit("/", 1)[-1])
    record["sources"][0]["uri"] = "https://example.org/src.tar.gz"
    record["output"] = {"name": fileset.name, "version": fileset.version,
                        "digest": fileset.digest, "archive": archive.digest}
    path = tmp_path / f"{fileset.name.replace('/', '_')}.record.json"
    path.write_text(json.dumps(record))
    return path


def strictly_parsed(statement: bytes) -> tuple[statement_pb2.Statement, Any]:
    """The in-toto-attestation models, refusing any field they do not know."""
    parsed = json_format.Parse(statement, statement_pb2.Statement(),
                               ignore_unknown_fields=False)
    predicate = json_format.Parse(json.dumps(json.loads(statement)["predicate"]),
                                  provenance_pb2.Provenance(), ignore_unknown_fields=False)
    return parsed, predicate


def test_a_package_signed_with_a_key_verifies_through_the_registry(
        kiln: Kiln, store: Store, tmp_path: Path, farm: dict[str, Path]) -> None:
    tool = make_package(store, tmp_path, "kiln.dev/tool", "1.0-1", {"usr/bin/tool*": "t\n"})
    signed = kiln("attest", record_for(store, tool, tmp_path), "--signer",
                  f"file:{farm['key']}", "-o", tmp_path / "tool.sigstore.json", "--json")
    assert signed.code == 0, signed.err
    bundle = (tmp_path / "tool.sigstore.json").read_bytes()
    parsed = Bundle.from_json(bundle)  # sigstore-models: strict, unknown fields refused
    assert parsed.media_type == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert parsed.verification_material.public_key is not None
    assert parsed.verification_material.tlog_entries == []
    assert parsed.dsse_envelope is not None
    statement, predicate = strictly_parsed(bytes(parsed.dsse_envelope.payload))
    assert statement.predicate_type == SLSA_PROVENANCE
    assert statement.subject[0].name == "kiln.dev/tool"
    assert statement.subject[0].digest["sha256"] == tool.digest.removeprefix("sha256:")
    assert predicate.run_details.builder.id == BUILDER
    uris = [d.uri for d in predicate.build_definition.resolved_dependencies]
    assert "https://git.example.org/recipes.git@" + "c" * 40 in uris
    assert "kiln:debian.org/bookworm/gcc-12@12.2.0-14" in uris

    # A consumer with an empty store: pulls, checks every digest, then the provenance.
    consumer = Kiln(tmp_path / "consumer", kiln._capsys)
    verified = consumer("verify", "kiln.dev/tool@1.0-1", "--key", farm["pub"], "--json")
    assert verified.code == 0, verified.err
    report = json.loads(verified.out)
    assert report["digest"] == tool.digest
    assert report["builder"] == BUILDER
    assert report["buildType"] == "https://kiln.dev/buildtypes/recipe/v1"


def test_a_debian_import_has_provenance_naming_the_deb_apt_verified(
        kiln: Kiln, store: Store, tmp_path: Path, farm: dict[str, Path]) -> None:
    ensure_apt_lists()
    imported = json.loads(kiln("deb", "import", "hello", "--json").out)[0]
    signed = kiln("attest", f"{imported['name']}@{imported['version']}", "--signer",
                  f"file:{farm['key']}", "-o", tmp_path / "b.json")
    assert signed.code == 0, signed.err
    envelope = json.loads((tmp_path / "b.json").read_text())["dsseEnvelope"]
    _, predicate = strictly_parsed(base64.b64decode(envelope["payload"]))
    (dependency,) = predicate.build_definition.resolved_dependencies
    assert dependency.digest["sha256"] == imported["deb_sha256"]
    consumer = Kiln(tmp_path / "consumer", kiln._capsys)
    verified = consumer("verify", f"{imported['name']}@{imported['version']}", "--key",
                        farm["pub"], "--json")
    assert verified.code == 0, verified.err
    assert json.loads(verified.out)["buildType"] == (
        "https://kiln.dev/buildtypes/debian-import/v1")


def signed_image(kiln: Kiln, store: Store, tmp_path: Path, farm: dict[str, Path],
                 registry: Registry, repository: str) -> str:
    """An image of a tool and its library, every package and the image signed."""
    lib = make_package(store, tmp_path, "kiln.dev/libfoo", "1.0-1",
                       {"usr/lib/libfoo.so.1": "foo\n"})
    tool = make_package(store, tmp_path, "kiln.dev/tool", "1.0-1", {"usr/bin/tool*": "t\n"},
                        requires=("kiln.dev/libfoo",))
    for fileset in (lib, tool):
        assert kiln("attest", record_for(store, fileset, tmp_path), "--signer",
                    f"file:{farm['key']}").code == 0
    spec = tmp_path / "image.yaml"
    spec.write_text(json.dumps({"name": "kiln.dev/images/tool", "version": "1",
                                "packages": ["kiln.dev/tool"]}))
    reference = f"{registry.host}/{repository}:1"
    built = kiln("image", "build", spec, "--push", reference, "--sign", f"file:{farm['key']}")
    assert built.code == 0, built.err
    return reference


def test_a_tag_names_a_package_or_image_only_once_its_provenance_is_attached(
        kiln: Kiln, store: Store, tmp_path: Path, farm: dict[str, Path],
        registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    # Whoever follows a tag as it lands (a consumer verifying, the farm's index syncing
    # every second) must find the bundle already there.
    written: list[tuple[str, Digest, str | None]] = []  # (target, digest, subject)
    put_manifest = RegistryClient.put_manifest

    def recording(client: RegistryClient, repository: str, target: str, data: bytes,
                  media_type: str) -> Any:
        subject = json.loads(data).get("subject", {}).get("digest")
        written.append((target, sha256_digest(data), subject))
        return put_manifest(client, repository, target, data, media_type)

    monkeypatch.setattr(RegistryClient, "put_manifest", recording)
    signed_image(kiln, store, tmp_path, farm, registry, "images/ordered")
    tagged = [(at, target, digest) for at, (target, digest, _) in enumerate(written)
              if not target.startswith(("sha256:", "sha256-"))]
    assert sorted(target for _, target, _ in tagged) == ["1", "1.0-1", "1.0-1"]
    for at, target, digest in tagged:
        attached = [i for i, (_, _, subject) in enumerate(written) if subject == digest]
        assert attached, f"{target} was tagged with nothing attached"
        assert max(attached) < at, f"{target} was tagged before its provenance"


def test_an_image_and_every_package_in_it_verify(
        kiln: Kiln, store: Store, tmp_path: Path, farm: dict[str, Path],
        registry: Registry) -> None:
    reference = signed_image(kiln, store, tmp_path, farm, registry, "images/tool")
    consumer = Kiln(tmp_path / "consumer", kiln._capsys)
    inspected = json.loads(consumer("image", "inspect", reference, "--json").out)
    assert sorted(a["artifactType"] for a in inspected["attached"]) == [
        "application/spdx+json", "application/vnd.dev.sigstore.bundle.v0.3+json"]
    verified = consumer("verify", reference, "--key", farm["pub"], "--json")
    assert verified.code == 0, verified.err
    report = json.loads(verified.out)
    assert {p["name"] for p in report["packages"]} == {"kiln.dev/tool", "kiln.dev/libfoo"}
    assert all(p["signer"].startswith("key ") for p in report["packages"])

    policy = tmp_path / "policy.yaml"
    policy.write_text(json.dumps({"trust": [{"prefix": "kiln.dev/",
                                             "keys": [str(farm["pub"])]}],
                                  "builders": [BUILDER],
                                  "recipe-repositories": ["https://git.example.org/recipes.git"],
                                  "deny": ["kiln.dev/libfoo (<< 1.0-1)"]}))
    admitted = consumer("policy", "check", reference, "--policy", policy)
    assert admitted.code == 0, admitted.err
    policy.write_text(json.dumps({"trust": [{"prefix": "kiln.dev/",
                                             "keys": [str(farm["pub"])]}],
                                  "deny": ["kiln.dev/libfoo (<= 1.0-1)"]}))
    denied = consumer("policy", "check", reference, "--policy", policy)
    assert denied.code == 1
    assert "[version-denied]" in denied.err
    assert "kiln.dev/libfoo@1.0-1" in denied.err


def test_verifying_again_reads_the_bundles_kept_and_still_checks_each(
        kiln: Kiln, store: Store, tmp_path: Path, farm: dict[str, Path],
        registry: Registry) -> None:
    from kiln.image.location import open_location
    from kiln.registry.config import load_config
    from provenance.check import Checker

    reference = signed_image(kiln, store, tmp_path, farm, registry, "images/kept")
    consumer_store = Store.open(tmp_path / "consumer")
    policy = tmp_path / "policy.yaml"
    policy.write_text(json.dumps({"trust": [{"prefix": "", "keys": [str(farm["pub"])]}]}))

    def verify() -> int:
        """Requests one verification of the image made (its packages side by side)."""
        from provenance.policy import load_policy

        checker = Checker(consumer_store, load_config(), load_policy(policy))
        try:
            proof = checker.image(open_location(reference, load_config()))
            assert [p.name for p in proof.packages] == ["kiln.dev/libfoo", "kiln.dev/tool"]
            return sum(client.traffic.total() for client in checker._clients)
        finally:
            checker.close()

    first = verify()
    bundles = tmp_path / "consumer" / "cache" / "bundles"
    kept = sorted(path for path in bundles.iterdir() if path.is_file())
    assert len(kept) >= 2  # every bundle of both packages, kept by its referrer's digest
    again = verify()
    # Each package: its manifest, and no referrers listed, no bundle fetched.
    assert again <= first - 2 * 2
    # What is kept is read, never trusted: changed bundles fail their check, and the
    # registry's are fetched afresh (and kept in their place), which verify.
    original = {path: path.read_bytes() for path in kept}
    for path in kept:
        bundle = json.loads(path.read_bytes())
        bundle["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(b"\0" * 64).decode()
        path.write_text(json.dumps(bundle))
    healed = verify()
    assert healed >= again + 2 * 2  # back to the registry's referrers for both packages
    assert {path: path.read_bytes() for path in kept} == original


def test_an_image_with_an_unproven_package_is_not_composed(
        kiln: Kiln, store: Store, tmp_path: Path, farm: dict[str, Path],
        registry: Registry) -> None:
    make_package(store, tmp_path, "kiln.dev/unsigned", "1-1", {"f": "u\n"})
    assert kiln("push", "kiln.dev/unsigned@1-1").code == 0
    policy = tmp_path / "policy.yaml"
    policy.write_text(json.dumps({"trust": [{"prefix": "", "keys": [str(farm["pub"])]}]}))
    spec = tmp_path / "image.yaml"
    spec.write_text(json.dumps({"name": "kiln.dev/images/u", "version": "1",
                                "packages": ["kiln.dev/unsigned"]}))
    refused = kiln("image", "build", spec, "-o", f"oci:{tmp_path / 'out'}",
                   "--require-provenance", policy)
    assert refused.code == 1
    assert "[no-provenance]" in refused.err
    assert not (tmp_path / "out").exists()


# -- tampering ----------------------------------------------------------------


@pytest.fixture
def signed_tool(kiln: Kiln, store: Store, tmp_path: Path,
                farm: dict[str, Path]) -> tuple[FileSet, bytes]:
    tool = make_package(store, tmp_path, "kiln.dev/tool", "1.0-1",
                        {"usr/bin/tool*": "#!/bin/sh\necho tool\n" * 200})
    assert kiln("attest", record_for(store, tool, tmp_path), "--signer",
                f"file:{farm['key']}", "-o", tmp_path / "tool.json").code == 0
    return tool, (tmp_path / "tool.json").read_bytes()


def verify_file(kiln: Kiln, bundle: bytes, tmp_path: Path, ref: str, *trust: str | Path,
                ) -> tuple[int, str]:
    path = tmp_path / "candidate.json"
    path.write_bytes(bundle)
    result = kiln("verify", ref, "--bundle", path, *trust)
    return result.code, result.err


def rewrite(bundle: bytes, change: Any) -> bytes:
    raw = json.loads(bundle)
    change(raw)
    return canonical_json(raw)


def test_a_changed_byte_in_the_fileset_blob_is_refused(
        kiln: Kiln, store: Store, tmp_path: Path, farm: dict[str, Path],
        registry: Registry) -> None:
    # A package of its own: the registry is shared by the module's tests.
    victim = make_package(store, tmp_path, "kiln.dev/victim", "1-1",
                          {"usr/bin/victim*": "#!/bin/sh\necho victim\n" * 300})
    assert kiln("attest", record_for(store, victim, tmp_path), "--signer",
                f"file:{farm['key']}").code == 0
    layer = ArchiveCache(store).layer(victim)[0].digest
    data = (registry.root / "docker/registry/v2/blobs/sha256" / layer[7:9] / layer[7:]
            / "data")
    content = bytearray(data.read_bytes())
    content[len(content) // 2] ^= 0x01
    data.write_bytes(bytes(content))
    consumer = Kiln(tmp_path / "consumer", kiln._capsys)
    result = consumer("verify", "kiln.dev/victim@1-1", "--key", farm["pub"])
    assert result.code == 1
    assert "[blob-digest-mismatch]" in result.err
    assert list(Store.open(tmp_path / "consumer").named()) == []


def test_a_changed_statement_is_refused(kiln: Kiln, tmp_path: Path, farm: dict[str, Path],
                                        signed_tool: tuple[FileSet, bytes]) -> None:
    _, bundle = signed_tool

    def forge(raw: dict[str, Any]) -> None:
        payload = base64.b64decode(raw["dsseEnvelope"]["payload"])
        forged = payload.replace(BUILDER.encode(), b"https://kiln.dev/builders/evil-farm")
        raw["dsseEnvelope"]["payload"] = base64.b64encode(forged).decode()

    code, err = verify_file(kiln, rewrite(bundle, forge), tmp_path, "kiln.dev/tool@1.0-1",
                            "--key", farm["pub"])
    assert code == 1
    assert "[signature-invalid]" in err


def test_a_changed_signature_is_refused(kiln: Kiln, tmp_path: Path, farm: dict[str, Path],
                                        signed_tool: tuple[FileSet, bytes]) -> None:
    _, bundle = signed_tool

    def flip(raw: dict[str, Any]) -> None:
        signature = bytearray(base64.b64decode(raw["dsseEnvelope"]["signatures"][0]["sig"]))
        signature[-1] ^= 0x01
        raw["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(signature).decode()

    code, err = verify_file(kiln, rewrite(bundle, flip), tmp_path, "kiln.dev/tool@1.0-1",
                            "--key", farm["pub"])
    assert code == 1
    assert "[signature-invalid]" in err


def test_a_bundle_moved_to_another_package_is_refused(
        kiln: Kiln, store: Store, tmp_path: Path, farm: dict[str, Path], registry: Registry,
        signed_tool: tuple[FileSet, bytes]) -> None:
    _, bundle = signed_tool
    other = make_package(store, tmp_path, "kiln.dev/other", "1-1", {"f": "other\n"})
    pushed = json.loads(kiln("push", "kiln.dev/other@1-1", "--json").out)
    client = RegistryClient(registry.host, plain_http=True)
    manifest = fileset_manifest(other, ArchiveCache(store).layer(other)[0])
    attach_bundle(client, "kiln/kiln.dev/other",
                  Descriptor(MANIFEST_TYPE, pushed["reference"].rsplit("@", 1)[1],
                             len(manifest)), bundle)
    consumer = Kiln(tmp_path / "consumer", kiln._capsys)
    result = consumer("verify", "kiln.dev/other@1-1", "--key", farm["pub"])
    assert result.code == 1
    assert "[subject-mismatch]" in result.err


def test_a_wrong_key_is_refused(kiln: Kiln, tmp_path: Path, farm: dict[str, Path],
                                signed_tool: tuple[FileSet, bytes]) -> None:
    consumer = Kiln(tmp_path / "consumer", kiln._capsys)
    result = consumer("verify", "kiln.dev/tool@1.0-1", "--key", farm["other_pub"])
    assert result.code == 1
    assert "[untrusted-signer]" in result.err


def test_another_predicate_type_is_refused(kiln: Kiln, tmp_path: Path,
                                           farm: dict[str, Path],
                                           signed_tool: tuple[FileSet, bytes]) -> None:
    tool, _ = signed_tool
    statement = canonical_json({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": tool.name, "digest": {"sha256": tool.digest[7:]}}],
        "predicateType": "https://example.org/vulnerability-scan/v1",
        "predicate": {"scanner": "x"}})
    bundle = KeySigner.from_file(str(farm["key"])).sign(statement)
    code, err = verify_file(kiln, bundle, tmp_path, "kiln.dev/tool@1.0-1", "--key",
                            farm["pub"])
    assert code == 1
    assert "[wrong-predicate-type]" in err


def test_a_builder_the_policy_does_not_allow_is_refused(
        kiln: Kiln, tmp_path: Path, farm: dict[str, Path],
        signed_tool: tuple[FileSet, bytes]) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(json.dumps({"trust": [{"prefix": "kiln.dev/", "keys": [str(farm["pub"])]}],
                                  "builders": ["https://kiln.dev/builders/the-real-farm"]}))
    consumer = Kiln(tmp_path / "consumer", kiln._capsys)
    result = consumer("verify", "kiln.dev/tool@1.0-1", "--policy", policy)
    assert result.code == 1
    assert "[builder-not-allowed]" in result.err
    assert BUILDER in result.err


def test_a_prefix_the_policy_trusts_to_another_signer_is_refused(
        kiln: Kiln, tmp_path: Path, farm: dict[str, Path],
        signed_tool: tuple[FileSet, bytes]) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(json.dumps({"trust": [
        {"prefix": "", "keys": [str(farm["pub"])]},
        {"prefix": "kiln.dev/", "keys": [str(farm["other_pub"])]}]}))
    consumer = Kiln(tmp_path / "consumer", kiln._capsys)
    result = consumer("verify", "kiln.dev/tool@1.0-1", "--policy", policy)
    assert result.code == 1
    assert "[untrusted-signer]" in result.err


def test_an_image_whose_packages_differ_from_its_statement_is_refused(
        kiln: Kiln, store: Store, tmp_path: Path, farm: dict[str, Path],
        registry: Registry) -> None:
    reference = signed_image(kiln, store, tmp_path, farm, registry, "images/mismatch")
    # Another image, same name, one package more, signed with the first one's statement.
    extra = make_package(store, tmp_path, "kiln.dev/extra", "1-1", {"x": "x\n"})
    assert kiln("attest", record_for(store, extra, tmp_path), "--signer",
                f"file:{farm['key']}").code == 0
    spec = tmp_path / "image2.yaml"
    spec.write_text(json.dumps({"name": "kiln.dev/images/tool", "version": "1",
                                "packages": ["kiln.dev/tool", "kiln.dev/extra"]}))
    second = f"{registry.host}/images/mismatch:2"
    assert kiln("image", "build", spec, "--push", second).code == 0
    client = RegistryClient(registry.host, plain_http=True)
    from kiln.registry.reference import parse_reference
    from provenance.registry import fetch_bundles

    _, _, first_digest = client.get_manifest(parse_reference(reference))
    second_manifest, _, second_digest = client.get_manifest(parse_reference(second))
    (bundle,) = fetch_bundles(client, "images/mismatch", first_digest)
    attach_bundle(client, "images/mismatch",
                  Descriptor(MANIFEST_TYPE, second_digest, len(second_manifest)), bundle)
    result = kiln("verify", second, "--key", farm["pub"])
    assert result.code == 1
    assert "[subject-mismatch]" in result.err


def test_a_message_signature_bundle_is_not_provenance() -> None:
    wheel_bundle = SHARED / "testdata/sigstore/bundle_v3_github.whl.sigstore"
    if not wheel_bundle.exists():
        pytest.skip("../shared/testdata/sigstore is absent")
    with pytest.raises(Exception) as raised:  # noqa: PT011 - the reason is asserted
        parse_bundle(wheel_bundle.read_bytes(), "wheel bundle")
    assert getattr(raised.value, "reason", None) == "bad-bundle"


# -- keyless, offline -----------------------------------------------------------

BEACON = ("https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
          ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main")
ACTIONS = "https://token.actions.githubusercontent.com"


@pytest.fixture
def staging_dsse() -> bytes:
    path = SHARED / "testdata/sigstore/a.dsse.staging-rekor-v2.txt.sigstore.json"
    if not path.exists():
        pytest.skip("../shared/testdata/sigstore is absent: the keyless bundles live there")
    return path.read_bytes()


def statement_subject(bundle: bytes) -> Digest:
    payload = json.loads(base64.b64decode(json.loads(bundle)["dsseEnvelope"]["payload"]))
    return Digest("sha256:" + payload["subject"][0]["digest"]["sha256"])


def test_a_keyless_bundle_verifies_offline_against_its_identity(staging_dsse: bytes) -> None:
    import logging

    trust = Trust(identities=(Identity(BEACON, ACTIONS),), trusted_root="staging")
    subject = statement_subject(staging_dsse)
    logging.getLogger("sigstore").setLevel(logging.DEBUG)  # a caller's own choice
    verified = verify_bundle(parse_bundle(staging_dsse, "a.dsse"), trust, subject, "a.dsse")
    assert logging.getLogger("sigstore").level == logging.DEBUG  # left as it was
    assert verified.subject_name == "a.txt"
    assert verified.statement["predicateType"] == SLSA_PROVENANCE
    with pytest.raises(CheckFailed) as other_subject:
        verify_bundle(parse_bundle(staging_dsse, "a.dsse"), trust,
                      sha256_digest(b"another file"), "a.dsse")
    assert other_subject.value.reason == "subject-mismatch"


def test_a_keyless_bundle_with_a_wrong_identity_is_refused(staging_dsse: bytes) -> None:
    trust = Trust(identities=(Identity("https://github.com/evil/repo/.github/workflows/x.yml"
                                       "@refs/heads/main", ACTIONS),), trusted_root="staging")
    with pytest.raises(CheckFailed) as raised:
        verify_bundle(parse_bundle(staging_dsse, "a.dsse"), trust,
                      statement_subject(staging_dsse), "a.dsse")
    assert raised.value.reason == "untrusted-signer"


def test_a_tampered_keyless_bundle_is_refused(staging_dsse: bytes) -> None:
    raw = json.loads(staging_dsse)
    payload = base64.b64decode(raw["dsseEnvelope"]["payload"]).replace(b"a.txt", b"b.txt")
    raw["dsseEnvelope"]["payload"] = base64.b64encode(payload).decode()
    trust = Trust(identities=(Identity(BEACON, ACTIONS),), trusted_root="staging")
    with pytest.raises(CheckFailed) as raised:
        verify_bundle(parse_bundle(json.dumps(raw).encode(), "a.dsse"), trust,
                      statement_subject(staging_dsse), "a.dsse")
    assert raised.value.reason == "signature-invalid"


def test_a_keyless_bundle_is_not_taken_for_a_key_signature(staging_dsse: bytes,
                                                          tmp_path: Path) -> None:
    _, public = write_key(tmp_path, "farm")
    from provenance.verify import load_public_key

    trust = Trust(keys=(load_public_key(public),))
    with pytest.raises(CheckFailed) as raised:
        verify_bundle(parse_bundle(staging_dsse, "a.dsse"), trust,
                      statement_subject(staging_dsse), "a.dsse")
    assert raised.value.reason == "untrusted-signer"


def test_package_statement_names_every_input(store: Store, tmp_path: Path) -> None:
    tool = make_package(store, tmp_path, "kiln.dev/tool", "1.0-1", {"f": "t\n"})
    path = record_for(store, tool, tmp_path)
    record = json.loads(path.read_text())
    _, predicate = strictly_parsed(package_statement(
        BuildRecord.from_bytes(path.read_bytes(), str(path)), BUILDER))
    names = {d.name or d.uri for d in predicate.build_definition.resolved_dependencies}
    assert {"recipes", "debian.org/bookworm/gcc-12", "kiln.lock", "sandbox",
            "https://example.org/src.tar.gz", "git+https://example.org/lib.git"} <= names
    assert predicate.run_details.metadata.invocation_id == record["build_key"]
    assert predicate.run_details.byproducts[0].digest["sha256"] == record["log"][7:]


# -- keyless, for real, against a private Sigstore instance on loopback ---------

SIGNER_IDENTITY = "https://kiln.dev/farms/test/signer"


@pytest.fixture
def sigstore(tmp_path: Path) -> Iterator[SigstoreInstance]:
    with run_sigstore(tmp_path / "sigstore") as instance:
        yield instance


def test_keyless_signing_through_fulcio_and_rekor_verifies_by_identity(
        kiln: Kiln, store: Store, tmp_path: Path, farm: dict[str, Path],
        sigstore: SigstoreInstance, monkeypatch: pytest.MonkeyPatch) -> None:
    tool = make_package(store, tmp_path, "kiln.dev/keyless-tool", "1.0-1",
                        {"usr/bin/tool*": "keyless\n"})
    monkeypatch.setenv("SIGSTORE_ID_TOKEN", sigstore.token(SIGNER_IDENTITY))
    signed = kiln("attest", record_for(store, tool, tmp_path), "--signer",
                  f"sigstore:{sigstore.trust_config}", "-o", tmp_path / "keyless.json")
    assert signed.code == 0, signed.err
    # Fulcio issued one certificate for the token's identity; Rekor logged one entry.
    (certificate,) = sigstore.certificates
    assert SIGNER_IDENTITY in str(certificate.extensions)
    assert len(sigstore.entries) == 1
    bundle = Bundle.from_json((tmp_path / "keyless.json").read_bytes())
    assert bundle.verification_material.certificate is not None
    assert len(bundle.verification_material.tlog_entries) == 1

    consumer = Kiln(tmp_path / "consumer", kiln._capsys)
    trust = ("--identity", SIGNER_IDENTITY, "--issuer", sigstore.issuer,
             "--trusted-root", str(sigstore.trusted_root))
    verified = consumer("verify", "kiln.dev/keyless-tool@1.0-1", *trust, "--json")
    assert verified.code == 0, verified.err
    assert SIGNER_IDENTITY in json.loads(verified.out)["signer"]

    wrong = consumer("verify", "kiln.dev/keyless-tool@1.0-1", "--identity",
                     "https://kiln.dev/farms/other/signer", "--issuer", sigstore.issuer,
                     "--trusted-root", str(sigstore.trusted_root))
    assert wrong.code == 1
    assert "[untrusted-signer]" in wrong.err
    with_key = consumer("verify", "kiln.dev/keyless-tool@1.0-1", "--key", farm["pub"])
    assert with_key.code == 1
    assert "[untrusted-signer]" in with_key.err
    # Another instance's root does not vouch for this one's certificates.
    other_root = tmp_path / "other-root.json"
    with run_sigstore(tmp_path / "other-sigstore") as other:
        shutil.copy(other.trusted_root, other_root)
    foreign = consumer("verify", "kiln.dev/keyless-tool@1.0-1", "--identity", SIGNER_IDENTITY,
                       "--issuer", sigstore.issuer, "--trusted-root", other_root)
    assert foreign.code == 1
    assert "[signature-invalid]" in foreign.err


def test_a_policy_trusts_a_keyless_identity_for_a_prefix(
        kiln: Kiln, store: Store, tmp_path: Path, farm: dict[str, Path],
        sigstore: SigstoreInstance, monkeypatch: pytest.MonkeyPatch) -> None:
    tool = make_package(store, tmp_path, "kiln.dev/keyless-policy", "1-1", {"f": "p\n"})
    monkeypatch.setenv("SIGSTORE_ID_TOKEN", sigstore.token(SIGNER_IDENTITY))
    assert kiln("attest", record_for(store, tool, tmp_path), "--signer",
                f"sigstore:{sigstore.trust_config}").code == 0
    policy = tmp_path / "policy.yaml"
    policy.write_text(json.dumps({"trust": [{
        "prefix": "kiln.dev/",
        "identities": [{"identity": SIGNER_IDENTITY, "issuer": sigstore.issuer}],
        "trusted-root": str(sigstore.trusted_root)}], "builders": [BUILDER]}))
    consumer = Kiln(tmp_path / "consumer", kiln._capsys)
    verified = consumer("verify", "kiln.dev/keyless-policy@1-1", "--policy", policy)
    assert verified.code == 0, verified.err


def test_keyless_signing_with_a_token_fulcio_refuses_fails_clearly(
        kiln: Kiln, store: Store, tmp_path: Path, farm: dict[str, Path],
        sigstore: SigstoreInstance, monkeypatch: pytest.MonkeyPatch) -> None:
    tool = make_package(store, tmp_path, "kiln.dev/keyless-refused", "1-1", {"f": "r\n"})
    forged = sigstore.token(SIGNER_IDENTITY)[:-4] + "AAAA"  # a signature Fulcio rejects
    monkeypatch.setenv("SIGSTORE_ID_TOKEN", forged)
    result = kiln("attest", record_for(store, tool, tmp_path), "--signer",
                  f"sigstore:{sigstore.trust_config}")
    assert result.code == 2
    assert "[signing-failed]" in result.err
    assert sigstore.entries == []


def test_a_signed_update_names_the_previous_image(
        kiln: Kiln, store: Store, tmp_path: Path, farm: dict[str, Path],
        registry: Registry) -> None:
    reference = signed_image(kiln, store, tmp_path, farm, registry, "images/updated")
    newer = make_package(store, tmp_path, "kiln.dev/libfoo", "1.1-1",
                         {"usr/lib/libfoo.so.1": "foo 1.1\n"})
    assert kiln("attest", record_for(store, newer, tmp_path), "--signer",
                f"file:{farm['key']}").code == 0
    before = json.loads(kiln("image", "inspect", reference, "--json").out)["digest"]
    updated = kiln("image", "update", reference, "--set", "kiln.dev/libfoo=1.1-1", "--sign",
                   f"file:{farm['key']}", "--version", "1.1", "--json")
    assert updated.code == 0, updated.err
    consumer = Kiln(tmp_path / "consumer", kiln._capsys)
    verified = consumer("verify", reference.rsplit(":", 1)[0] + ":1.1", "--key", farm["pub"],
                        "--json")
    assert verified.code == 0, verified.err
    assert {p["name"]: p["version"] for p in json.loads(verified.out)["packages"]}[
        "kiln.dev/libfoo"] == "1.1-1"
    client = RegistryClient(registry.host, plain_http=True)
    from provenance.registry import fetch_bundles

    bundles = fetch_bundles(client, "images/updated", json.loads(updated.out)["digest"])
    (statement,) = [json.loads(base64.b64decode(json.loads(b)["dsseEnvelope"]["payload"]))
                    for b in bundles]
    previous = [d for d in statement["predicate"]["buildDefinition"]["resolvedDependencies"]
                if d.get("name") == "previous"]
    assert previous == [{"uri": "kiln:previous-image", "name": "previous",
                         "digest": {"sha256": before.removeprefix("sha256:")}}]


@pytest.mark.parametrize(("signer", "reason"), [
    ("vault:farm", "bad-signer"),
    ("file", "bad-signer"),
    ("file:/nonexistent/key.pem", "bad-signer"),
])
def test_a_bad_signer_is_named(kiln: Kiln, store: Store, tmp_path: Path,
                               farm: dict[str, Path], signer: str, reason: str) -> None:
    tool = make_package(store, tmp_path, "kiln.dev/unsigned-tool", "1-1", {"f": "u\n"})
    result = kiln("attest", record_for(store, tool, tmp_path), "--signer", signer)
    assert result.code == 2
    assert f"[{reason}]" in result.err


def test_a_key_that_is_not_p256_is_refused(kiln: Kiln, store: Store, tmp_path: Path,
                                           farm: dict[str, Path]) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    path = tmp_path / "p384.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    tool = make_package(store, tmp_path, "kiln.dev/p384-tool", "1-1", {"f": "p\n"})
    result = kiln("attest", record_for(store, tool, tmp_path), "--signer", f"file:{path}")
    assert result.code == 2
    assert "[bad-signer]" in result.err
    assert "P-256" in result.err


def test_an_image_whose_packages_were_never_published_has_no_provenance(
        kiln: Kiln, store: Store, tmp_path: Path, farm: dict[str, Path],
        registry: Registry) -> None:
    make_package(store, tmp_path, "kiln.dev/never-published", "1-1", {"f": "n\n"})
    spec = tmp_path / "image.yaml"
    spec.write_text(json.dumps({"name": "kiln.dev/images/unpublished", "version": "1",
                                "packages": ["kiln.dev/never-published"]}))
    reference = f"{registry.host}/images/unpublished:1"
    assert kiln("image", "build", spec, "--push", reference, "--sign",
                f"file:{farm['key']}").code == 0
    result = Kiln(tmp_path / "consumer", kiln._capsys)("verify", reference, "--key", farm["pub"])
    assert result.code == 1
    assert "[no-provenance]" in result.err
    assert "kiln.dev/never-published" in result.err


def test_a_policy_on_repositories_refuses_a_local_recipe_commit(
        kiln: Kiln, store: Store, tmp_path: Path, farm: dict[str, Path]) -> None:
    # An unpushed commit's record says so (kiln build finds no remote holding it);
    # a policy naming repositories must refuse it even if it lists the path.
    tool = make_package(store, tmp_path, "kiln.dev/tool", "1.0-1", {"usr/bin/tool*": "x\n"})
    record = record_for(store, tool, tmp_path, repo="local:/home/maintainer/recipes")
    assert kiln("attest", record, "--signer", f"file:{farm['key']}").code == 0
    policy = tmp_path / "policy.yaml"
    policy.write_text(json.dumps({
        "trust": [{"prefix": "kiln.dev/", "keys": [str(farm["pub"])]}],
        "recipe-repositories": ["https://git.example.org/recipes.git",
                                "local:/home/maintainer/recipes"]}))
    consumer = Kiln(tmp_path / "consumer", kiln._capsys)
    result = consumer("verify", "kiln.dev/tool@1.0-1", "--policy", policy)
    assert result.code == 1
    assert "[recipe-commit-local]" in result.err


def test_the_master_publishes_what_a_worker_pushed_only_if_it_is_the_record(
        kiln: Kiln, store: Store, tmp_path: Path, farm: dict[str, Path],
        registry: Registry) -> None:
    from kiln.registry.artifact import push_fileset
    from kiln.registry.reference import parse_reference
    from provenance.publish import PublishRefused, publish

    tool = make_package(store, tmp_path, "kiln.dev/pubtool", "2.0-1", {"usr/bin/t*": "t\n"})
    other = make_package(store, tmp_path, "kiln.dev/pubtool", "2.0-1", {"usr/bin/t*": "u\n"})
    client = RegistryClient(registry.host, plain_http=True)
    try:
        # The worker: blobs and manifest by digest, no tag.
        untagged = parse_reference(f"{registry.host}/kiln/pubtool")
        pushed = push_fileset(store, other, client, untagged).reference
        record_path = record_for(store, tool, tmp_path)
        record = BuildRecord.from_bytes(record_path.read_bytes(), str(record_path))
        signer = KeySigner.from_file(str(farm["key"]))
        # What was pushed is not what the record says was built: refused, nothing tagged.
        with pytest.raises(PublishRefused) as refused:
            publish(client, pushed, record, signer, BUILDER)
        assert "the record says" in refused.value.message
        assert refused.value.reason == "pushed-mismatch"
        tags = client.get_json("/v2/kiln/pubtool/tags/list", kind="tags", ok=(200, 404))
        assert b"2.0-1" not in tags.read_all(1 << 20, "tags")
        # The right one: checked, signed, attached, then tagged.
        pushed = push_fileset(store, tool, client, untagged).reference
        published = publish(client, pushed, record, signer, BUILDER)
        assert published.reference.tag == "2.0-1"
    finally:
        client.close()
    consumer = Kiln(tmp_path / "consumer", kiln._capsys)
    verified = consumer("verify", f"{registry.host}/kiln/pubtool:2.0-1", "--key", farm["pub"])
    assert verified.code == 0, verified.err


def test_keyless_signing_with_fulcio_down_is_temporary(
        kiln: Kiln, store: Store, tmp_path: Path, farm: dict[str, Path],
        sigstore: SigstoreInstance, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.fixtures.registry import free_port

    tool = make_package(store, tmp_path, "kiln.dev/keyless-down", "1-1", {"f": "d\n"})
    down = tmp_path / "trust_config.json"
    down.write_text(sigstore.trust_config.read_text().replace(
        sigstore.url, f"http://127.0.0.1:{free_port()}"))
    monkeypatch.setenv("SIGSTORE_ID_TOKEN", sigstore.token(SIGNER_IDENTITY))
    result = kiln("attest", record_for(store, tool, tmp_path), "--signer", f"sigstore:{down}")
    assert result.code == 75  # the farm retries: the service, not the request, failed
    assert "[signing-failed] (temporary: try again later)" in result.err

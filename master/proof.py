"""Does a publication's provenance verify now? The signature over its statement,
against the farm's own key, about its FileSet: what the console shows beside every
package. Reads the manifest and its bundles from the registry; pulls no blobs (a
consumer's `kiln verify` does, and checks every file too)."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kiln.canonical import Digest
from kiln.errors import CheckFailed, InputError, KilnError
from kiln.registry.artifact import parse_fileset_manifest
from kiln.registry.reference import Reference
from master.config import FarmConfig
from master.publishing import client, registry_config
from provenance.bundle import parse_bundle
from provenance.registry import fetch_bundles
from provenance.verify import Trust, verify_bundle


@dataclass(frozen=True)
class ProvenanceState:
    """Whether a publication's provenance verified, and who signed it."""

    verified: bool
    signer: str  # "key <hint>": who signed, never where the key lies
    problem: str = ""


def farm_trust(farm: FarmConfig) -> Trust:
    """The farm's public key, from the key it signs with (a file: signer)."""
    scheme, _, rest = farm.signer.partition(":")
    if scheme != "file":
        raise InputError(f"the console verifies key-signed farms only, not {scheme}:",
                         reason="bad-signer")
    try:
        private = serialization.load_pem_private_key(farm.path(rest).read_bytes(), None)
    except (OSError, ValueError) as exc:
        raise InputError("the farm's signing key cannot be read", reason="bad-key") from exc
    if not isinstance(private, ec.EllipticCurvePrivateKey):
        raise InputError("the farm's signing key is not an ECDSA key", reason="bad-key")
    return Trust(keys=(private.public_key(),))


def check_publication(farm: FarmConfig, trust: Trust, name: str, manifest: str
                      ) -> ProvenanceState:
    """Verify the bundles attached to `manifest` (a package of `name`) now."""
    location = registry_config(farm).locate(name)
    where = f"{location.host}/{location.repository}@{manifest}"
    registry = client(farm)
    try:
        data, _, _ = registry.get_manifest(
            Reference(location.host, location.repository, digest=Digest(manifest)))
        artifact = parse_fileset_manifest(data, where)
        bundles = fetch_bundles(registry, location.repository, Digest(manifest))
        if not bundles:
            return ProvenanceState(False, "", "no provenance is attached")
        problems = []
        for index, raw in enumerate(bundles, start=1):
            try:
                verified = verify_bundle(parse_bundle(raw, f"{where} bundle {index}"), trust,
                                         artifact.config.digest, where)
            except KilnError as exc:
                problems.append(f"{exc.message} [{exc.reason}]")
                continue
            return ProvenanceState(True, verified.signer)
        return ProvenanceState(False, "", problems[0])
    except CheckFailed as exc:
        return ProvenanceState(False, "", f"{exc.message} [{exc.reason}]")
    except KilnError as exc:  # the registry is unreachable: say so, do not guess
        return ProvenanceState(False, "", f"cannot check now: {exc.message} [{exc.reason}]")
    finally:
        registry.close()


def public_key_pem(trust: Trust) -> bytes:
    return trust.keys[0].public_bytes(serialization.Encoding.PEM,
                                      serialization.PublicFormat.SubjectPublicKeyInfo)

"""Verifying a bundle: the signature (a trusted key, or a keyless identity through
sigstore-python), the payload type, the statement's type and predicate type, and
the subject's digest. Each failure is a CheckFailed with its own reason."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kiln.canonical import Digest, loads_strict
from kiln.errors import CheckFailed, InputError
from provenance.bundle import ParsedBundle, key_hint
from provenance.dsse import is_low_s, pae
from provenance.statement import PAYLOAD_TYPE, SLSA_PROVENANCE, STATEMENT_TYPE

if TYPE_CHECKING:
    from provenance.policy import TrustPolicy


@dataclass(frozen=True)
class Identity:
    """A keyless signer: the certificate's identity (SAN) and its OIDC issuer."""

    identity: str
    issuer: str


@dataclass(frozen=True)
class Trust:
    """Who may have signed: keys, keyless identities, and the root keyless ones chain to."""

    keys: tuple[ec.EllipticCurvePublicKey, ...] = ()
    identities: tuple[Identity, ...] = ()
    trusted_root: str = "production"  # production, staging, or a trusted_root.json

    def describe(self) -> str:
        parts = [f"key {key_hint(k)}" for k in self.keys]
        parts += [f"{i.identity} ({i.issuer})" for i in self.identities]
        return ", ".join(parts) or "nobody"


def trusted_for(name: str, trust: Trust | None, policy: TrustPolicy | None) -> Trust:
    """Whom to trust to sign for `name`: the trust the command line gives, else the
    policy's."""
    if trust is not None:
        return trust
    if policy is None:
        raise CheckFailed("say whom to trust: --key, --identity and --issuer, or --policy",
                          reason="no-trust")
    return policy.trust_for(name)


@dataclass(frozen=True)
class Verified:
    """A statement whose signature, type and subject were checked."""

    statement: dict[str, Any]
    payload: bytes
    signer: str
    subject_name: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def predicate(self) -> dict[str, Any]:
        predicate: dict[str, Any] = self.statement["predicate"]
        return predicate

    @property
    def build_type(self) -> str:
        return str(self.predicate["buildDefinition"]["buildType"])

    @property
    def builder(self) -> str:
        return str(self.predicate["runDetails"]["builder"]["id"])

    @property
    def reproduced_by(self) -> tuple[str, ...]:
        """The workers whose builds a farm's reproducibility gate found to agree."""
        from provenance.statement import read_reproduction

        found = read_reproduction(self.predicate)
        return tuple(sorted({b.worker for b in found.agreed})) if found else ()

    @property
    def not_reproducible(self) -> str:
        """The reason a recipe gave for not reproducing, when it gave one."""
        from provenance.statement import read_reproduction

        found = read_reproduction(self.predicate)
        return found.unreproducible if found else ""

    @property
    def build_key(self) -> str | None:
        """The build key a recipe build's statement signs (None for other kinds)."""
        internal = self.predicate["buildDefinition"].get("internalParameters")
        key = internal.get("buildKey") if isinstance(internal, dict) else None
        return key if isinstance(key, str) else None


def load_public_key(path: Path) -> ec.EllipticCurvePublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}", reason="bad-key") from exc
    except ValueError as exc:
        raise InputError(f"{path} is not a PEM public key", reason="bad-key") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise InputError(f"{path} is not an ECDSA public key", reason="bad-key")
    return key


def verify_bundle(bundle: ParsedBundle, trust: Trust, subject: Digest, where: str) -> Verified:
    """Check `bundle` against `trust` and the expected subject digest; raise CheckFailed."""
    if bundle.keyless:
        payload_type, payload, signer = _verify_keyless(bundle, trust, where)
    else:
        payload_type, payload, signer = _verify_key(bundle, trust, where)
    if payload_type != PAYLOAD_TYPE:
        raise CheckFailed(f"{where}: the envelope holds {payload_type!r}, not an in-toto"
                          " statement", reason="wrong-payload-type")
    statement = _parse_statement(payload, where)
    kind, predicate_type = statement["_type"], statement["predicateType"]
    if kind != STATEMENT_TYPE:
        raise CheckFailed(f"{where}: statement type {kind!r}, expected {STATEMENT_TYPE}",
                          reason="bad-statement")
    if predicate_type != SLSA_PROVENANCE:
        raise CheckFailed(f"{where}: predicate type {predicate_type!r}, expected"
                          f" {SLSA_PROVENANCE}", reason="wrong-predicate-type")
    (only,) = statement["subject"]
    if only["digest"].get("sha256") != subject.removeprefix("sha256:"):
        raise CheckFailed(f"{where}: the statement is about something else, not {subject}",
                          reason="subject-mismatch")
    return Verified(statement, payload, signer, only.get("name", ""))


def _parse_statement(payload: bytes, where: str) -> dict[str, Any]:
    """The signed statement, its shape checked: every malformed one is `bad-statement`.

    Exactly one subject: a statement naming several, one of which matched, would
    vouch for whatever else it lists too. Duplicate keys are refused, so no other
    reader of the same bytes can see another statement."""
    def refuse(why: str) -> CheckFailed:
        return CheckFailed(f"{where}: the signed payload is not a statement Kiln accepts:"
                           f" {why}", reason="bad-statement")

    try:
        statement = loads_strict(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise refuse(str(exc)) from exc
    if not isinstance(statement, dict):
        raise refuse("not a JSON object")
    for key, kind in (("_type", str), ("predicateType", str), ("subject", list),
                      ("predicate", dict)):
        if not isinstance(statement.get(key), kind):
            raise refuse(f"{key} is missing or not a {kind.__name__}")
    subjects = statement["subject"]
    if len(subjects) != 1:
        raise refuse(f"it names {len(subjects)} subjects, not one")
    only = subjects[0]
    if not isinstance(only, dict) or not isinstance(only.get("digest"), dict) \
            or not isinstance(only.get("name", ""), str):
        raise refuse("its subject has no digest object")
    if not all(isinstance(value, str) for value in only["digest"].values()):
        raise refuse("its subject's digests are not strings")
    return statement


def _verify_key(bundle: ParsedBundle, trust: Trust, where: str) -> tuple[str, bytes, str]:
    envelope = bundle.envelope
    if len(envelope.signatures) != 1:
        raise CheckFailed(f"{where}: expected one signature, found {len(envelope.signatures)}",
                          reason="signature-invalid")
    signature = envelope.signatures[0][1]
    if not is_low_s(signature):
        raise CheckFailed(f"{where}: the signature is not in low-S form (a malleated copy of"
                          " a signature, or not DER)", reason="signature-invalid")
    message = pae(envelope.payload_type, envelope.payload)
    hinted = [k for k in trust.keys if key_hint(k) == bundle.key_hint]
    for key in hinted or trust.keys:
        try:
            key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            continue
        return envelope.payload_type, envelope.payload, f"key {key_hint(key)}"
    if hinted:
        raise CheckFailed(f"{where}: the signature does not verify with the key it names",
                          reason="signature-invalid")
    raise CheckFailed(f"{where}: signed by key {bundle.key_hint}, which is not trusted here"
                      f" (trusted: {trust.describe()})", reason="untrusted-signer")


@contextmanager
def _offline_quietly() -> Iterator[None]:
    """sigstore-python announces offline TUF use as a warning on every call (it is the
    point here): quiet while the verifier is made, and the caller's level given back."""
    logger = logging.getLogger("sigstore")
    before = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(before)


def _verify_keyless(bundle: ParsedBundle, trust: Trust, where: str) -> tuple[str, bytes, str]:
    from sigstore.errors import Error as SigstoreError
    from sigstore.errors import VerificationError
    from sigstore.models import Bundle, TrustedRoot
    from sigstore.verify import Verifier
    from sigstore.verify.policy import AnyOf
    from sigstore.verify.policy import Identity as IdentityPolicy

    if not trust.identities:
        raise CheckFailed(f"{where}: signed keylessly, but no identity is trusted here"
                          f" (trusted: {trust.describe()})", reason="untrusted-signer")
    try:
        sigstore_bundle = Bundle.from_json(bundle.raw)
    except SigstoreError as exc:
        raise CheckFailed(f"{where}: not a valid Sigstore bundle: {exc}",
                          reason="bad-bundle") from exc
    with _offline_quietly():
        if trust.trusted_root == "production":
            verifier = Verifier.production(offline=True)
        elif trust.trusted_root == "staging":
            verifier = Verifier.staging(offline=True)
        else:
            root = TrustedRoot.from_file(trust.trusted_root)
            verifier = Verifier(trusted_root=root)
    policy = AnyOf([IdentityPolicy(identity=i.identity, issuer=i.issuer)
                    for i in trust.identities])
    try:
        payload_type, payload = verifier.verify_dsse(sigstore_bundle, policy)
    except VerificationError as exc:
        # Tell an untrusted identity from a broken signature: ask the identity policy alone.
        try:
            policy.verify(sigstore_bundle.signing_certificate)
        except VerificationError:
            raise CheckFailed(f"{where}: signed by an identity not trusted here (trusted:"
                              f" {trust.describe()})", reason="untrusted-signer") from exc
        raise CheckFailed(f"{where}: {exc}", reason="signature-invalid") from exc
    signer = sigstore_bundle.signing_certificate
    san = ", ".join(i.identity for i in trust.identities)
    return payload_type, payload, f"sigstore {san} (certificate {signer.serial_number:x})"

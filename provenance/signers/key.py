"""`file:KEY.pem`: an ECDSA P-256 key signs the DSSE envelope; the bundle carries a
public-key hint and no transparency-log entry (what cosign verifies with --key)."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kiln.errors import InputError
from provenance.bundle import key_bundle, key_hint
from provenance.dsse import Envelope, pae, to_low_s
from provenance.statement import PAYLOAD_TYPE


class KeySigner:
    """Signs with a private key of the host's."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, where: str) -> None:
        self._key = key
        self.description = f"key {key_hint(key.public_key())} ({where})"

    @classmethod
    def from_file(cls, path: str) -> KeySigner:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read the signing key {path}: {exc.strerror}",
                             reason="bad-signer") from exc
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise InputError(f"{path} is not an unencrypted PEM private key",
                             reason="bad-signer") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise InputError(f"{path} is not an ECDSA P-256 key", reason="bad-signer")
        return cls(key, path)

    def sign(self, statement: bytes) -> bytes:
        # Verifiers refuse the high-S twin of a signature (kiln verify does): write low-S.
        signature = to_low_s(self._key.sign(pae(PAYLOAD_TYPE, statement),
                                            ec.ECDSA(hashes.SHA256())))
        return key_bundle(Envelope(PAYLOAD_TYPE, statement, (("", signature),)),
                          self._key.public_key())

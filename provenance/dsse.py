"""DSSE envelopes: what is signed is PAE(payloadType, payload), over the exact bytes."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

# The order of the P-256 group: s and n - s both verify.
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


@dataclass(frozen=True)
class Envelope:
    """A DSSE envelope: the signed payload, its type and signatures."""

    payload_type: str
    payload: bytes  # the statement's bytes, as signed
    signatures: tuple[tuple[str, bytes], ...]  # (keyid, signature)

    def to_json(self) -> dict[str, object]:
        return {
            "payload": base64.b64encode(self.payload).decode(),
            "payloadType": self.payload_type,
            "signatures": [{"sig": base64.b64encode(sig).decode(), "keyid": keyid}
                           for keyid, sig in self.signatures],
        }


def is_low_s(signature: bytes) -> bool:
    """Whether a DER ECDSA P-256 signature has s in the lower half of the group order.

    (r, s) and (r, n - s) both verify; accepting only one keeps a signature from
    being turned into another valid one (malleated), as Bitcoin's rules do."""
    try:
        _r, s = decode_dss_signature(signature)
    except ValueError:
        return False
    return 0 < s <= P256_ORDER // 2


def to_low_s(signature: bytes) -> bytes:
    """The low-S form of a DER ECDSA P-256 signature (what Kiln writes and accepts)."""
    r, s = decode_dss_signature(signature)
    return signature if s <= P256_ORDER // 2 else encode_dss_signature(r, P256_ORDER - s)

"""DSSE envelopes: what is signed is PAE(payloadType, payload), over the exact bytes."""

from __future__ import annotations

import base64
from dataclasses import dataclass


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


@dataclass(frozen=True)
class Envelope:
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

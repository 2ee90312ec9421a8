"""Signing key pairs: `kiln key generate DIR`, as `melange keygen` makes one.

An ECDSA P-256 private key (PKCS#8 PEM) and its public key (SubjectPublicKeyInfo
PEM), the kind `file:KEY.pem` signers and `--key PUB.pem` verifiers take. The
private key is created with mode 0600 from its first byte (never readable by
others, not even between a write and a chmod), in a directory made 0700 when it
is new; an existing key is never overwritten.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from kiln.errors import InputError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # a file name's stem, no path


@dataclass(frozen=True)
class KeyPair:
    """A signing key's two files, and the hint verifiers print."""

    private: Path
    public: Path
    hint: str  # what `kiln verify` prints as the signer: "key <hint>"


def generate_key_pair(directory: Path, name: str = "kiln") -> KeyPair:
    """DIR/NAME.pem (0600) and DIR/NAME.pub; refuses to replace either."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from provenance.bundle import key_hint

    if not _NAME.fullmatch(name):
        raise InputError(f"{name!r} is not a key name (letters, digits, '.', '-', '_')",
                         reason="bad-usage")
    private, public = directory / f"{name}.pem", directory / f"{name}.pub"
    for path in (private, public):
        if path.exists() or path.is_symlink():
            raise InputError(f"{path} exists; a key is never overwritten (remove it first,"
                             " or choose another --name)", reason="key-exists")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    _create(private, key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()), 0o600)
    _create(public, key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo), 0o644)
    return KeyPair(private, public, key_hint(key.public_key()))


def _create(path: Path, data: bytes, mode: int) -> None:
    # O_EXCL | O_NOFOLLOW: a file or link planted there since the check is refused.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     mode)
    except FileExistsError:
        raise InputError(f"{path} exists; a key is never overwritten",
                         reason="key-exists") from None
    try:
        os.fchmod(fd, mode)  # whatever the umask
        os.write(fd, data)
    finally:
        os.close(fd)

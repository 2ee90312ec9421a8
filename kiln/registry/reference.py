"""Registry references: `HOST[:PORT]/REPOSITORY[:TAG][@sha256:HEX]`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from kiln.canonical import Digest, parse_digest
from kiln.errors import InputError

_HOST = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\])(?::[0-9]+)?")
_REPOSITORY = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
                         r"(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_LOOPBACK = ("127.", "localhost", "[::1]")


@dataclass(frozen=True)
class Reference:
    """A repository in a registry, and optionally a tag and/or a manifest digest."""

    host: str
    repository: str
    tag: str | None = None
    digest: Digest | None = None

    def __str__(self) -> str:
        text = f"{self.host}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    @property
    def target(self) -> str:
        """What to ask the registry for: the digest if known, else the tag."""
        if self.digest:
            return self.digest
        if self.tag:
            return self.tag
        raise InputError(f"{self} names no tag or digest", reason="bad-reference")

    def with_tag(self, tag: str | None) -> Reference:
        return Reference(self.host, self.repository, tag, None)

    def with_digest(self, digest: Digest) -> Reference:
        return Reference(self.host, self.repository, self.tag, digest)

    @property
    def is_loopback(self) -> bool:
        return self.host.startswith(_LOOPBACK)


def is_registry_reference(text: str) -> bool:
    """True when `text` starts with a registry host: one with a port, or localhost.

    Kiln names also start with a DNS name (`kiln.dev/hello`), so a host without a
    port is only taken as a registry where a command expects one."""
    host = text.partition("/")[0]
    return bool(_HOST.fullmatch(host)) and (":" in host or host == "localhost")


def parse_reference(text: str) -> Reference:
    """Parse `HOST/REPO[:TAG][@DIGEST]`, naming what is wrong."""
    rest, at, digest_text = text.partition("@")
    host, slash, path = rest.partition("/")
    if not slash or not _HOST.fullmatch(host):
        raise InputError(f"{text!r} is not a registry reference HOST[:PORT]/REPOSITORY"
                         "[:TAG][@sha256:...]", reason="bad-reference")
    repository, colon, tag = path.partition(":")
    if not _REPOSITORY.fullmatch(repository):
        raise InputError(f"{text!r}: {repository!r} is not a legal OCI repository name",
                         reason="bad-reference")
    if colon and not _TAG.fullmatch(tag):
        raise InputError(f"{text!r}: {tag!r} is not a legal OCI tag", reason="bad-reference")
    digest = parse_digest(digest_text, what="manifest digest") if at else None
    return Reference(host, repository, tag or None, digest)

"""What Kiln's resolvers share (images over the store, builds over the lock and
the store): the resolvelib verbs that do not depend on where candidates come
from, and how an impossible set is told to the user."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

from resolvelib import AbstractProvider
from resolvelib.resolvers import ResolutionImpossible

from kiln.canonical import Digest
from kiln.naming import version_key
from kiln.relations import Relation
from kiln.store.store import Store


class Candidate(Protocol):
    """What the resolver chooses: anything with a FileSet digest."""

    @property
    def digest(self) -> Digest: ...


class StoreProvider(AbstractProvider):  # type: ignore[type-arg]
    """A provider whose subclasses say what a name's candidates are (preferred first)
    and when a candidate satisfies a requirement."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def candidates(self, name: str) -> Sequence[Candidate]:
        raise NotImplementedError

    def get_preference(self, identifier: str, resolutions: Mapping[str, Any],
                       candidates: Mapping[str, Iterator[Candidate]],
                       information: Mapping[str, Any], backtrack_causes: Sequence[Any]) -> int:
        return sum(1 for _ in candidates[identifier])  # the most constrained first

    def find_matches(self, identifier: str, requirements: Mapping[str, Iterator[Relation]],
                     incompatibilities: Mapping[str, Iterator[Candidate]]) -> list[Candidate]:
        wanted = list(requirements[identifier])
        bad = {c.digest for c in incompatibilities[identifier]}
        return [c for c in self.candidates(identifier)
                if c.digest not in bad and all(self.is_satisfied_by(r, c) for r in wanted)]

    def stored_versions(self, name: str) -> list[tuple[str, Digest]]:
        """The versions of `name` the store has, highest first, with their digests."""
        versions = sorted(self.store.versions(name), key=version_key, reverse=True)
        return [(version, self.store.lookup(name, version)) for version in versions]


def describe_conflict(exc: ResolutionImpossible) -> str:  # type: ignore[type-arg]
    """The chain of requirements resolvelib could not meet, each with who needs it."""
    return "; ".join(
        f"{cause.requirement}" + (f" (needed by {cause.parent.name}@{cause.parent.version})"
                                  if cause.parent else " (asked for)")
        for cause in exc.causes)

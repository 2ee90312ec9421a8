"""Which FileSets a build (or a test) needs: resolvelib over the lock and the store.

The resolver knows nothing of packages; this provider connects it to Kiln:
Debian packages come from the toolchain lock (one locked version each), and
packages built from recipes from the store (every version it names). A
candidate's dependencies are its runtime `requires`, so the result is the
whole closure. Of alternatives (`a | b`) the first with any candidate counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from resolvelib import AbstractProvider, BaseReporter, Resolver
from resolvelib.resolvers import ResolutionImpossible

from kiln.canonical import Digest
from kiln.errors import InputError
from kiln.image.resolve import describe_conflict
from kiln.naming import is_debian, version_key
from kiln.package import PackageMetadata
from kiln.recipes.lock import Lock
from kiln.relations import Alternatives, Relation
from kiln.store.store import Store


@dataclass(frozen=True)
class Candidate:
    name: str
    version: str
    digest: Digest


class _Provider(AbstractProvider):  # type: ignore[type-arg]
    def __init__(self, store: Store, lock: Lock) -> None:
        self.store = store
        self.lock = lock

    def identify(self, requirement_or_candidate: Relation | Candidate) -> str:
        return requirement_or_candidate.name

    def get_preference(self, identifier: str, resolutions: Mapping[str, Any],
                       candidates: Mapping[str, Iterator[Candidate]],
                       information: Mapping[str, Any], backtrack_causes: Sequence[Any]) -> int:
        return sum(1 for _ in candidates[identifier])  # the most constrained first

    def find_matches(self, identifier: str, requirements: Mapping[str, Iterator[Relation]],
                     incompatibilities: Mapping[str, Iterator[Candidate]]) -> list[Candidate]:
        wanted = list(requirements[identifier])
        bad = {c.digest for c in incompatibilities[identifier]}
        return [c for c in self._candidates(identifier)
                if c.digest not in bad and all(r.satisfied_by(c.name, c.version) for r in wanted)]

    def is_satisfied_by(self, requirement: Relation, candidate: Candidate) -> bool:
        return requirement.satisfied_by(candidate.name, candidate.version)

    def get_dependencies(self, candidate: Candidate) -> list[Relation]:
        if is_debian(candidate.name):
            locked = self.lock.get(candidate.name)
            return [Relation(name) for name in locked.requires] if locked else []
        metadata = self.store.get(candidate.digest).metadata
        groups = metadata.requires if isinstance(metadata, PackageMetadata) else ()
        return [self.choose(group) for group in groups]

    def choose(self, group: Alternatives) -> Relation:
        """The first option that has any candidate (else the first, to be reported)."""
        return next((o for o in group.options if self._candidates(o.name)), group.options[0])

    def _candidates(self, name: str) -> list[Candidate]:
        """Preferred first: the highest version."""
        if is_debian(name):
            locked = self.lock.get(name)
            return [Candidate(locked.name, locked.version, locked.digest)] if locked else []
        versions = sorted(self.store.versions(name), key=version_key, reverse=True)
        return [Candidate(name, v, self.store.lookup(name, v)) for v in versions]


def resolve(store: Store, lock: Lock, groups: Iterable[Alternatives]) -> list[Candidate]:
    """Every FileSet the requirements need, dependencies included, sorted by name."""
    provider = _Provider(store, lock)
    requirements = [provider.choose(group) for group in groups]
    try:
        result = Resolver(provider, BaseReporter()).resolve(requirements, max_rounds=1000)
    except ResolutionImpossible as exc:
        raise InputError(f"cannot satisfy: {describe_conflict(exc)}; build or lock what is"
                         " missing", reason="unsatisfiable") from None
    return sorted(result.mapping.values(), key=lambda c: c.name)

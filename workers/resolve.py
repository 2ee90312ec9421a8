"""Which FileSets a build (or a test) needs: resolvelib over the lock and the store.

The resolver knows nothing of packages; this provider connects it to Kiln:
Debian packages come from the toolchain lock (one locked version each), and
packages built from recipes from the store (every version it names). A
candidate's dependencies are its runtime `requires`, so the result is the
whole closure. Of alternatives (`a | b`) the first with any candidate counts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from resolvelib import BaseReporter, Resolver
from resolvelib.resolvers import ResolutionImpossible

from kiln.canonical import Digest
from kiln.errors import InputError
from kiln.naming import is_debian
from kiln.package import PackageMetadata
from kiln.recipes.lock import Lock
from kiln.relations import Alternatives, Relation
from kiln.resolution import StoreProvider, describe_conflict
from kiln.store.store import Store


@dataclass(frozen=True)
class Candidate:
    """A FileSet that may satisfy a build requirement."""

    name: str
    version: str
    digest: Digest


class _Provider(StoreProvider):
    def __init__(self, store: Store, lock: Lock) -> None:
        super().__init__(store)
        self.lock = lock

    def identify(self, requirement_or_candidate: Relation | Candidate) -> str:
        return requirement_or_candidate.name

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
        return next((o for o in group.options if self.candidates(o.name)), group.options[0])

    def candidates(self, name: str) -> list[Candidate]:
        """Preferred first: the highest version."""
        if is_debian(name):
            locked = self.lock.get(name)
            return [Candidate(locked.name, locked.version, locked.digest)] if locked else []
        return [Candidate(name, v, d) for v, d in self.stored_versions(name)]


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

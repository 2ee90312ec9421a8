"""Which packages an image holds: resolvelib over the store's packages.

The provider connects resolvelib to Kiln: a name's candidates are the versions
the store has (highest first), then the packages that `provide` it; a set pins a
name to its one version; an override sends every requirement of X to Y. A
candidate's dependencies are its `requires` (of alternatives, the first with any
candidate), so the result is the runtime closure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from resolvelib import BaseReporter, Resolver
from resolvelib.resolvers import ResolutionImpossible

from kiln.canonical import Digest
from kiln.errors import ConflictError, InputError
from kiln.fileset import FileSet
from kiln.image.spec import LockedPackage
from kiln.package import PackageMetadata
from kiln.relations import Alternatives, Relation
from kiln.resolution import StoreProvider, describe_conflict
from kiln.store.provides import provided
from kiln.store.store import Store


@dataclass(frozen=True)
class Candidate:
    """A stored FileSet that may satisfy a requirement of an image."""

    identifier: str  # the name it was found for (a provided name, for a provider)
    name: str
    version: str
    digest: Digest


class _Provider(StoreProvider):
    def __init__(self, store: Store, pins: Mapping[str, LockedPackage],
                 overrides: Mapping[str, str]) -> None:
        super().__init__(store)
        self.pins = pins
        self.overrides = overrides
        self._providers: dict[str, list[Candidate]] | None = None

    def identify(self, requirement_or_candidate: Relation | Candidate) -> str:
        if isinstance(requirement_or_candidate, Candidate):
            return requirement_or_candidate.identifier
        return requirement_or_candidate.name

    def is_satisfied_by(self, requirement: Relation, candidate: Candidate) -> bool:
        if candidate.name != requirement.name:
            return requirement.operator is None  # a provided name carries no version
        return requirement.satisfied_by(candidate.name, candidate.version)

    def get_dependencies(self, candidate: Candidate) -> list[Relation]:
        metadata = self.store.get(candidate.digest).metadata
        groups = metadata.requires if isinstance(metadata, PackageMetadata) else ()
        return [self.choose(group) for group in groups]

    def choose(self, group: Alternatives) -> Relation:
        """The first option with any candidate, overrides applied (else the first)."""
        options = [self.override(option) for option in group.options]
        return next((o for o in options if self.candidates(o.name)), options[0])

    def override(self, relation: Relation) -> Relation:
        target = self.overrides.get(relation.name)
        return Relation(target) if target else relation

    def candidates(self, name: str) -> list[Candidate]:
        pinned = self.pins.get(name)
        if pinned is not None:
            own = [Candidate(name, name, pinned.version, pinned.digest)]
        else:
            own = [Candidate(name, name, v, d) for v, d in self.stored_versions(name)]
        return own + self.providers().get(name, [])

    def providers(self) -> dict[str, list[Candidate]]:
        if self._providers is None:
            self._providers = {}
            names = list(self.store.named())
            provides = provided(self.store, (named.digest for named in names))
            for named in names:
                pinned = self.pins.get(named.name)
                if pinned is not None and pinned.digest != named.digest:
                    continue
                for name in provides[named.digest]:
                    self._providers.setdefault(name, []).append(
                        Candidate(name, named.name, named.version, named.digest))
        return self._providers


def resolve_packages(store: Store, wanted: Iterable[Relation], *,
                     pins: Mapping[str, LockedPackage] | None = None,
                     overrides: Mapping[str, str] | None = None) -> list[FileSet]:
    """The packages `wanted` needs, their runtime closure included, sorted by name."""
    provider = _Provider(store, pins or {}, overrides or {})
    requirements = [provider.choose(Alternatives((relation,))) for relation in wanted]
    try:
        result = Resolver(provider, BaseReporter()).resolve(requirements, max_rounds=2000)
    except ResolutionImpossible as exc:
        raise InputError(f"cannot satisfy the image: {describe_conflict(exc)}",
                         reason="unsatisfiable") from None
    chosen: dict[str, Candidate] = {}
    for candidate in result.mapping.values():
        other = chosen.setdefault(candidate.name, candidate)
        if other.digest != candidate.digest:
            raise ConflictError(f"{candidate.name} is needed at {other.version} (as"
                                f" {other.identifier}) and {candidate.version} (as"
                                f" {candidate.identifier})", reason="unsatisfiable")
    return [store.get(c.digest) for c in sorted(chosen.values(), key=lambda c: c.name)]


"""Trust policies: who is trusted for which names, and rules on what they built.

    # policy.yaml
    trust:
      - prefix: kiln.dev/                 # longest prefix wins
        keys: [keys/farm.pub]             # relative to this file
      - prefix: debian.org/
        keys: [keys/farm.pub]
      - prefix: example.org/
        identities:
          - identity: https://github.com/example/recipes/.github/workflows/build.yml@refs/heads/main
            issuer: https://token.actions.githubusercontent.com
        trusted-root: production          # or staging, or a trusted_root.json
    builders: [https://kiln.dev/builders/farm]      # allowed builder ids
    recipe-repositories: [https://git.example.org/recipes.git]
    toolchain:                            # build-time FileSets that must be exactly these
      debian.org/bookworm/gcc-12: sha256:...
    deny: ["kiln.dev/openssl (<< 3.0.13)"]
    reproduced: 2                         # packages built from recipes: at least 2 builds,
                                          # on 2 workers, made the same FileSet

Rules are small objects with one `verify` that raises (sigstore-python's policy
module is the model), combined with AllOf / AnyOf.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric import ec

from kiln.errors import CheckFailed, InputError
from kiln.naming import validate_name
from kiln.recipes.yamldoc import Node, Reader, load_yaml_file, pattern_check
from kiln.relations import Relation, parse_alternatives
from provenance.statement import BUILD_TYPE
from provenance.verify import Identity, Trust, Verified, load_public_key


@dataclass(frozen=True)
class Evidence:
    """What a rule looks at: a package (or image) and its verified statement."""

    name: str
    version: str
    verified: Verified | None = None


class Rule(Protocol):
    """A policy rule: passes, or raises CheckFailed saying why not."""

    def verify(self, evidence: Evidence) -> None: ...


@dataclass(frozen=True)
class AllOf:
    """A rule every one of `rules` must pass."""

    rules: tuple[Rule, ...]

    def verify(self, evidence: Evidence) -> None:
        for rule in self.rules:
            rule.verify(evidence)


@dataclass(frozen=True)
class AnyOf:
    """A rule one of `rules` must pass; none listed admits nothing."""

    rules: tuple[Rule, ...]

    def verify(self, evidence: Evidence) -> None:
        if not self.rules:  # as sigstore-python's AnyOf: nothing listed admits nothing
            raise CheckFailed(f"{evidence.name}: the policy's any-of lists no rule, so no"
                              " package can satisfy it", reason="empty-policy")
        failures = []
        for rule in self.rules:
            try:
                rule.verify(evidence)
            except CheckFailed as exc:
                failures.append(exc)
                continue
            return
        if failures:
            raise CheckFailed("; ".join(f.message for f in failures), reason=failures[0].reason)


@dataclass(frozen=True)
class NotDenied:
    """A rule that refuses the versions the policy denies."""

    denied: tuple[Relation, ...]

    def verify(self, evidence: Evidence) -> None:
        for relation in self.denied:
            if relation.satisfied_by(evidence.name, evidence.version):
                raise CheckFailed(f"{evidence.name}@{evidence.version} is denied by the policy"
                                  f" ({relation})", reason="version-denied")


@dataclass(frozen=True)
class BuilderIn:
    """A rule that a package was built by one of `builders`."""

    builders: tuple[str, ...]

    def verify(self, evidence: Evidence) -> None:
        if evidence.verified is None:
            return
        builder = evidence.verified.builder
        if builder not in self.builders:
            raise CheckFailed(f"{evidence.name}@{evidence.version} was built by {builder},"
                              " which the policy does not allow", reason="builder-not-allowed")


@dataclass(frozen=True)
class RecipeRepositoryIn:
    """The recipes came from an allowed repository, which holds the recipe commit."""

    repositories: tuple[str, ...]

    def verify(self, evidence: Evidence) -> None:
        verified = evidence.verified
        if verified is None or verified.build_type != BUILD_TYPE:
            return
        external = verified.predicate["buildDefinition"]["externalParameters"]
        repository = external["recipes"]["repository"]
        from kiln.recipes.repository import LOCAL_REPOSITORY

        if str(repository).startswith(LOCAL_REPOSITORY):
            raise CheckFailed(f"{evidence.name}@{evidence.version} was built from a recipe"
                              f" commit no repository was found to hold ({repository}); a"
                              " policy on repositories accepts only pushed commits",
                              reason="recipe-commit-local")
        if repository not in self.repositories:
            raise CheckFailed(f"{evidence.name}@{evidence.version} was built from recipes in"
                              f" {repository}, which the policy does not allow",
                              reason="recipe-repository-not-allowed")


@dataclass(frozen=True)
class ToolchainPinned:
    """A rule that a build used exactly these toolchain digests."""

    digests: dict[str, str]  # name -> sha256:...

    def verify(self, evidence: Evidence) -> None:
        verified = evidence.verified
        if verified is None or verified.build_type != BUILD_TYPE:
            return
        used = {d.get("name"): f"sha256:{d['digest'].get('sha256')}"
                for d in verified.predicate["buildDefinition"]["resolvedDependencies"]
                if "sha256" in d.get("digest", {})}
        for name, digest in self.digests.items():
            if name in used and used[name] != digest:
                raise CheckFailed(f"{evidence.name}@{evidence.version} was built with {name}"
                                  f" {used[name]}, the policy requires {digest}",
                                  reason="toolchain-not-allowed")


@dataclass(frozen=True)
class ReproducedBy:
    """A package built from a recipe was reproduced: at least `builds` builds, each on a
    worker of its own, made the same FileSet (the farm gate's byproducts say which). A
    package whose recipe declares it does not reproduce never is."""

    builds: int

    def verify(self, evidence: Evidence) -> None:
        verified = evidence.verified
        if verified is None or verified.build_type != BUILD_TYPE:
            return  # Debian's imports and images: their packages are checked one by one
        label = f"{evidence.name}@{evidence.version}"
        if verified.not_reproducible:
            raise CheckFailed(f"{label} is declared not reproducible"
                              f" ({verified.not_reproducible}); the policy asks {self.builds}"
                              " agreeing builds", reason="not-reproduced")
        workers = verified.reproduced_by
        if len(workers) < self.builds:
            found = (f"reproduced by {len(workers)} builder{'s' if len(workers) != 1 else ''}"
                     if workers else "built once, by no reproducibility gate")
            raise CheckFailed(f"{label} was {found}; the policy asks {self.builds}"
                              " independent builds that agree", reason="not-reproduced")


@dataclass(frozen=True)
class TrustPolicy:
    """A policy file: whom to trust for which names, and the rules all must pass."""

    trust: dict[str, Trust] = field(default_factory=dict)  # name prefix -> who
    rules: AllOf = field(default_factory=lambda: AllOf(()))  # every rule, denial included
    denied: NotDenied = field(default_factory=lambda: NotDenied(()))

    def trust_for(self, name: str) -> Trust:
        """Who is trusted to sign for `name` (the longest matching prefix)."""
        for prefix in sorted(self.trust, key=len, reverse=True):
            if name.startswith(prefix):
                return self.trust[prefix]
        raise CheckFailed(f"the policy trusts nobody to sign for {name}",
                          reason="untrusted-signer")


def load_policy(path: Path) -> TrustPolicy:
    """Read a policy file; every problem, with its line, in one error."""
    root = load_yaml_file(path)
    reader = Reader(str(path), "bad-policy")
    top = reader.mapping(root, "the policy", {"trust", "builders", "recipe-repositories",
                                              "toolchain", "deny", "reproduced"}, {"trust"})
    trust: dict[str, Trust] = {}
    for item in _items(reader, top.get("trust"), "trust"):
        fields = reader.mapping(item, "a trust entry",
                                {"prefix", "keys", "identities", "trusted-root"}, {"prefix"})
        prefix = reader.string(fields.get("prefix"), "prefix")
        keys = tuple(_key(reader, path, node) for node in _items(reader, fields.get("keys"),
                                                                  "keys"))
        identities = tuple(_identity(reader, node)
                           for node in _items(reader, fields.get("identities"), "identities"))
        root_name = reader.string(fields.get("trusted-root"), "trusted-root") or "production"
        if root_name not in ("production", "staging"):
            root_name = str((path.parent / root_name).resolve())
        if prefix is not None:
            trust[prefix] = Trust(tuple(k for k in keys if k is not None),
                                  tuple(i for i in identities if i is not None), root_name)
    rules: list[Rule] = []
    if "builders" in top:
        rules.append(BuilderIn(tuple(reader.strings(top["builders"], "builders"))))
    if "recipe-repositories" in top:
        rules.append(RecipeRepositoryIn(tuple(reader.strings(top["recipe-repositories"],
                                                             "recipe-repositories"))))
    if "toolchain" in top:
        pins = {key: text for key, _, value in _pairs(reader, top["toolchain"], "toolchain")
                if (text := reader.string(value, f"toolchain {key}")) is not None}
        for name in pins:
            validate_name(name)
        rules.append(ToolchainPinned(pins))
    reproduced = reader.string(top.get("reproduced"), "reproduced",
                               pattern_check(re.compile(r"[1-9][0-9]?"), "a number of builds"))
    if reproduced is not None:
        rules.append(ReproducedBy(int(reproduced)))
    denied = [option for group in reader.parsed(top.get("deny"), "deny", parse_alternatives)
              for option in group.options]
    deny = NotDenied(tuple(denied))
    rules.append(deny)
    if reader.problems:
        raise InputError("; ".join(str(p) for p in reader.problems),
                         reason=reader.problems[0].reason)
    return TrustPolicy(trust, AllOf(tuple(rules)), deny)


def _items(reader: Reader, node: Node | None, what: str) -> tuple[Node, ...]:
    if node is None or (node.kind == "scalar" and node.text is None):
        return ()
    if node.kind != "seq":
        reader.problem(node.line, f"{what} must be a list")
        return ()
    return node.items


def _pairs(reader: Reader, node: Node, what: str) -> tuple[tuple[str, int, Node], ...]:
    if node.kind != "map":
        reader.problem(node.line, f"{what} must be a mapping")
        return ()
    return node.pairs


def _key(reader: Reader, policy: Path, node: Node) -> ec.EllipticCurvePublicKey | None:
    text = reader.string(node, "a key")
    if text is None:
        return None
    try:
        return load_public_key(policy.parent / text)
    except InputError as exc:
        reader.problem(node.line, exc.message, exc.reason)
        return None


def _identity(reader: Reader, node: Node) -> Identity | None:
    fields = reader.mapping(node, "an identity", {"identity", "issuer"}, {"identity", "issuer"})
    identity = reader.string(fields.get("identity"), "identity")
    issuer = reader.string(fields.get("issuer"), "issuer")
    return Identity(identity, issuer) if identity and issuer else None

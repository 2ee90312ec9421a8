"""in-toto Statement v1 with SLSA Provenance v1 predicates, made from what Kiln knows.

Three kinds, one predicate type (`https://slsa.dev/provenance/v1`), told apart by
`buildType`:

- a package built from a recipe, from its build record (DESIGN.md 2c): the
  subject is the FileSet (name, FileSet digest); the external parameters the
  recipe repository, path and commit; the resolved dependencies the recipe
  repository at its commit, every source, every build-time FileSet (the
  toolchain), the lock and the sandbox; the run details the builder, the build
  key as invocation id, the times, and the log as a byproduct;
- a Debian package imported through apt: the dependency is the .deb with the
  sha256 apt verified;
- an image: the subject is the image manifest; the dependencies its package
  FileSets, its lock, its set and (after an update) the previous image.

Statements are canonical JSON; the bytes signed are kept and never re-serialised.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kiln.canonical import Digest, canonical_json
from kiln.errors import InputError

if TYPE_CHECKING:  # making statements needs them; reading one (a verifier) does not
    from kiln.fileset import FileSet
    from kiln.record import BuildRecord, Output

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
SLSA_PROVENANCE = "https://slsa.dev/provenance/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
BUILD_TYPE = "https://kiln.dev/buildtypes/recipe/v1"
DEBIAN_IMPORT_TYPE = "https://kiln.dev/buildtypes/debian-import/v1"
IMAGE_TYPE = "https://kiln.dev/buildtypes/image-compose/v1"
DEFAULT_BUILDER = "https://kiln.dev/builders/local"


@dataclass(frozen=True)
class ReproducedBuild:
    """One of the builds a farm's reproducibility gate found to agree."""

    worker: str
    record: str  # sha256:... of that build's record
    variation: str  # what its build varied (workers/variation.py)
    started: str
    finished: str


@dataclass(frozen=True)
class Reproduction:
    """What the gate asked (K of N builds) and which builds agreed. A recipe that
    declares itself not reproducible, published under a farm policy that allows it,
    is built once and says why here."""

    builds: int
    agree: int
    agreed: tuple[ReproducedBuild, ...]
    unreproducible: str = ""  # the recipe's reason, when it declares one


REPRODUCED_BUILD = "kiln.dev/reproduced-build"  # the byproducts' name for each agreeing build


def read_reproduction(predicate: dict[str, Any]) -> Reproduction | None:
    """What a package statement's predicate says of the gate; None when no gate saw it."""
    internal = (predicate.get("buildDefinition") or {}).get("internalParameters")
    gate = internal.get("reproducibility") if isinstance(internal, dict) else None
    if not isinstance(gate, dict):
        return None
    agreed = []
    for item in (predicate.get("runDetails") or {}).get("byproducts") or []:
        if not isinstance(item, dict) or item.get("name") != REPRODUCED_BUILD:
            continue
        notes, digest = item.get("annotations") or {}, item.get("digest") or {}
        if not isinstance(notes, dict) or not isinstance(digest, dict):
            continue
        agreed.append(ReproducedBuild(str(notes.get("worker", "")),
                                      f"sha256:{digest.get('sha256', '')}",
                                      str(notes.get("variation", "")),
                                      str(notes.get("startedOn", "")),
                                      str(notes.get("finishedOn", ""))))
    try:
        builds, agree = int(gate.get("builds", 1)), int(gate.get("agree", 1))
    except (TypeError, ValueError):
        return None
    return Reproduction(builds, agree, tuple(agreed), str(gate.get("notReproducible") or ""))


def builder_id() -> str:
    """Who signs as builder: `$KILN_BUILDER_ID`, else a local builder."""
    return os.environ.get("KILN_BUILDER_ID", DEFAULT_BUILDER)


def sha256_of(digest: str) -> dict[str, str]:
    if not digest.startswith("sha256:"):
        raise InputError(f"{digest!r} is not a sha256 digest", reason="bad-record")
    return {"sha256": digest.removeprefix("sha256:")}


def _statement(subject: list[dict[str, Any]], build_type: str, external: dict[str, Any],
               internal: dict[str, Any], dependencies: list[dict[str, Any]],
               run_details: dict[str, Any]) -> bytes:
    return canonical_json({
        "_type": STATEMENT_TYPE,
        "subject": subject,
        "predicateType": SLSA_PROVENANCE,
        "predicate": {
            "buildDefinition": {
                "buildType": build_type,
                "externalParameters": external,
                "internalParameters": internal,
                "resolvedDependencies": dependencies,
            },
            "runDetails": run_details,
        },
    })



def repository_uri(repo: str) -> str:
    """A recipe repository as statements name it."""
    from kiln.recipes.repository import LOCAL_REPOSITORY  # a verifier needs no recipes

    return repo if "://" in repo or repo.startswith(LOCAL_REPOSITORY) else f"git+file://{repo}"


def package_statement(record: BuildRecord, builder: str | None = None,
                      reproduction: Reproduction | None = None,
                      output: Output | None = None) -> bytes:
    """The provenance of a package built by `kiln build`, from its build record; with
    the farm gate's `reproduction`, every agreeing build is a byproduct (its record's
    digest, worker and variation) and internalParameters says what the gate asked.

    A split recipe's build makes several packages: each has a statement of its own
    (`output`, default the recipe's package), one subject each, the same build."""
    recipe = record.recipe
    repo = repository_uri(recipe.repo)
    dependencies: list[dict[str, Any]] = [
        {"uri": f"{repo}@{recipe.commit}", "name": "recipes",
         "digest": {"gitCommit": recipe.commit},
         "annotations": {"path": recipe.path, "tree": recipe.tree}}]
    for source in record.sources:
        dependencies.append({"uri": source.uri,
                             "digest": {"gitCommit": source.commit} if source.commit
                             else {"sha256": source.sha256}})
    for item in record.build_requires:
        dependencies.append({"uri": f"kiln:{item.name}@{item.version}", "name": item.name,
                             "digest": sha256_of(item.digest)})
    dependencies.append({"uri": "kiln:lock", "name": "kiln.lock",
                         "digest": sha256_of(record.lock)})
    sandbox = record.sandbox
    dependencies.append({"uri": f"kiln:sandbox/{sandbox.backend}@{sandbox.version}",
                         "name": "sandbox"})
    output = output or record.output
    internal: dict[str, Any] = {
        "sandbox": {"backend": sandbox.backend, "version": sandbox.version},
        "kiln": record.kiln.to_json(), "buildKey": record.build_key, "dirty": recipe.dirty,
        "archive": output.archive, "version": output.version}
    if record.also:  # which build made it, and what else that build made
        internal["splitFrom"] = record.output.name
        internal["outputs"] = [o.name for o in record.outputs]
    byproducts: list[dict[str, Any]] = [{"name": "log", "digest": sha256_of(record.log)}]
    if reproduction is not None:
        gate: dict[str, Any] = {"builds": reproduction.builds, "agree": reproduction.agree,
                                "agreed": len(reproduction.agreed)}
        if reproduction.unreproducible:
            gate["notReproducible"] = reproduction.unreproducible
        internal["reproducibility"] = gate
        byproducts += [{"name": REPRODUCED_BUILD, "digest": sha256_of(build.record),
                        "annotations": {"worker": build.worker, "variation": build.variation,
                                        "startedOn": build.started,
                                        "finishedOn": build.finished}}
                       for build in reproduction.agreed]
    return _statement(
        [{"name": output.name, "digest": sha256_of(output.digest)}],
        BUILD_TYPE,
        {"recipes": {"repository": repo, "path": recipe.path, "commit": recipe.commit}},
        internal,
        dependencies,
        {"builder": {"id": builder or builder_id()},
         "metadata": {"invocationId": record.build_key, "startedOn": record.started,
                      "finishedOn": record.finished},
         "byproducts": byproducts},
    )


def debian_statement(fileset: FileSet, builder: str | None = None) -> bytes:
    """The provenance of a Debian package imported through apt: the .deb it came from."""
    from kiln.package import PackageMetadata

    metadata = fileset.metadata
    labels = metadata.labels if isinstance(metadata, PackageMetadata) else {}
    deb_sha = labels.get("debian.deb-sha256")
    if not deb_sha:
        raise InputError(f"{fileset.label} was not imported from a .deb", reason="not-debian")
    deb_name = labels.get("debian.filename", "")
    return _statement(
        [{"name": fileset.name, "digest": sha256_of(fileset.digest)}],
        DEBIAN_IMPORT_TYPE,
        {"package": fileset.name.rsplit("/", 1)[-1], "version": fileset.version,
         "suite": fileset.name.split("/")[1]},
        {"architecture": labels.get("debian.architecture", "")},
        [{"uri": f"debian:{deb_name or fileset.name}", "digest": {"sha256": deb_sha}}],
        {"builder": {"id": builder or builder_id()}, "metadata": {}},
    )


def image_statement(name: str, version: str, manifest_digest: Digest,
                    packages: list[dict[str, str]], lock: Digest,
                    set_digest: str | None, previous: str | None,
                    builder: str | None = None) -> bytes:
    """The provenance of a composed image: exactly which packages, lock, set, previous."""
    dependencies = [{"uri": f"kiln:{p['name']}@{p['version']}", "name": p["name"],
                     "digest": sha256_of(p["digest"])} for p in packages]
    dependencies.append({"uri": "kiln:image.lock", "name": "image.lock",
                         "digest": sha256_of(lock)})
    if set_digest:
        dependencies.append({"uri": "kiln:set", "name": "set", "digest": sha256_of(set_digest)})
    if previous:
        dependencies.append({"uri": "kiln:previous-image", "name": "previous",
                             "digest": sha256_of(previous)})
    return _statement(
        [{"name": name, "digest": sha256_of(manifest_digest)}],
        IMAGE_TYPE,
        {"image": {"name": name, "version": version}},
        {},
        dependencies,
        {"builder": {"id": builder or builder_id()}, "metadata": {}},
    )

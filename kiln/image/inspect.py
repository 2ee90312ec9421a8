"""What an image holds, read from the image alone (its manifest's annotations),
and what changed between two images, package by package."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kiln.canonical import Digest
from kiln.errors import InputError
from kiln.image.annotations import (
    BUDGET,
    ENV,
    LAYER_PACKAGES,
    OVERRIDES,
    PACKAGES,
    PREVIOUS,
    REQUIREMENTS,
    SET,
    WANTED,
)
from kiln.image.spec import LockedPackage, RunConfig
from kiln.registry.artifact import Descriptor


@dataclass(frozen=True)
class Layer:
    """An image layer and the packages it holds."""

    descriptor: Descriptor
    packages: tuple[LockedPackage, ...]  # empty for the install-links layer


@dataclass(frozen=True)
class ImageSummary:
    """What an image's manifest and config say: its packages, layers and run settings."""

    digest: Digest
    name: str
    version: str
    config: Descriptor
    layers: tuple[Layer, ...]
    packages: tuple[LockedPackage, ...]
    requirements: dict[str, Any]
    overrides: dict[str, str]
    set: str | None
    previous: str | None
    env: dict[str, str]
    budget: int
    wanted: tuple[str, ...]  # what image.yaml listed (empty for images that predate it)

    def to_json(self) -> dict[str, Any]:
        return {
            "digest": self.digest, "name": self.name, "version": self.version,
            "packages": [p.to_json() for p in self.packages],
            "requirements": self.requirements, "overrides": self.overrides,
            "set": self.set, "previous": self.previous, "env": self.env,
            "wanted": list(self.wanted),
            "layers": [{**layer.descriptor.to_json(),
                        "packages": [p.name for p in layer.packages]} for layer in self.layers],
        }


def run_config_of(summary: ImageSummary, image_config: Mapping[str, Any]) -> RunConfig:
    """How an image runs, read back from its config (and the env its spec declared)."""
    settings = image_config.get("config") or {}
    return RunConfig(tuple(settings.get("Entrypoint") or ()), tuple(settings.get("Cmd") or ()),
                     summary.env, settings.get("User", ""), settings.get("WorkingDir", ""),
                     settings.get("Labels") or {})


def summarize(manifest: bytes, digest: Digest, where: str) -> ImageSummary:
    """Parse a Kiln image manifest; an image Kiln did not compose is refused."""
    try:
        raw = json.loads(manifest)
        annotations = raw.get("annotations") or {}
        if PACKAGES not in annotations:
            raise InputError(f"{where} is not an image Kiln composed (no {PACKAGES})",
                             reason="not-a-kiln-image")
        layers = tuple(
            Layer(_descriptor(item), _packages(item.get("annotations", {}).get(LAYER_PACKAGES)))
            for item in raw["layers"])
        return ImageSummary(
            digest=digest,
            name=annotations.get("org.opencontainers.image.title", ""),
            version=annotations.get("org.opencontainers.image.version", ""),
            config=_descriptor(raw["config"]),
            layers=layers,
            packages=_packages(annotations[PACKAGES]),
            requirements=json.loads(annotations.get(REQUIREMENTS, "{}")),
            overrides=json.loads(annotations.get(OVERRIDES, "{}")),
            set=annotations.get(SET),
            previous=annotations.get(PREVIOUS),
            env=json.loads(annotations.get(ENV, "{}")),
            budget=int(annotations.get(BUDGET, "100")),
            wanted=tuple(json.loads(annotations.get(WANTED, "[]"))),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"{where}: malformed image manifest ({exc})",
                         reason="bad-image") from exc


def _descriptor(raw: dict[str, Any]) -> Descriptor:
    return Descriptor(raw["mediaType"], Digest(raw["digest"]), int(raw["size"]))


def _packages(text: str | None) -> tuple[LockedPackage, ...]:
    if not text:
        return ()
    return tuple(LockedPackage(p["name"], p["version"], Digest(p["digest"]))
                 for p in json.loads(text))


@dataclass(frozen=True)
class Change:
    """A package an update adds, moves or removes (None on the side it is absent)."""

    name: str
    before: LockedPackage | None
    after: LockedPackage | None

    @property
    def kind(self) -> str:
        if self.before is None:
            return "added"
        if self.after is None:
            return "removed"
        return "changed"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "change": self.kind,
                "before": self.before.to_json() if self.before else None,
                "after": self.after.to_json() if self.after else None}


def diff(before: ImageSummary, after: ImageSummary) -> list[Change]:
    """Package-level changes from `before` to `after`, by name."""
    old = {p.name: p for p in before.packages}
    new = {p.name: p for p in after.packages}
    return [Change(name, old.get(name), new.get(name)) for name in sorted(old.keys() | new.keys())
            if old.get(name) != new.get(name)]

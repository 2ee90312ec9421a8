"""Composing an OCI image from a set of packages: by set, not by steps.

Layers, in this order:
- one per package, its stable archive (the very blob of its FileSet artifact),
  packages sorted by name, so the listing order in image.yaml never matters;
- past the layer budget B (default 100), the N - B + 2 smallest packages
  (by archive size, then name) share one layer, the concatenation of their
  archives in name order, placed after the single-package layers; the choice
  depends only on the set, so the same set always groups the same way;
- one small layer of install links (kiln.install), last.

Annotations on the manifest list every package (name, version, FileSet digest),
the aggregated requirements (the highest minimum kernel, the union of
capabilities), overrides, the set and the previous image; each package layer
lists the packages it holds. Nothing depends on the clock, so the same set and
lock give the same image digest.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiln.archive.tarformat import DIRECTORY, END_OF_ARCHIVE, SYMLINK, encode_member
from kiln.canonical import Digest, canonical_json, sha256_digest
from kiln.fileset import FileSet
from kiln.image.annotations import (
    BUDGET,
    CONFIG_TYPE,
    ENV,
    LAYER_PACKAGES,
    LAYER_ROLE,
    MANIFEST_TYPE,
    OVERRIDES,
    PACKAGES,
    PREVIOUS,
    REQUIREMENTS,
    SET,
    WANTED,
)
from kiln.image.requirements import DEFAULT_PATH, aggregate_requirements
from kiln.image.spec import RunConfig
from kiln.install import install_links
from kiln.naming import version_key
from kiln.registry.artifact import LAYER_TYPE, ArchiveCache, Descriptor
from kiln.store.store import Store

_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64"}


@dataclass(frozen=True)
class Blob:
    """A blob of the image: in a file (package archives) or in memory."""

    descriptor: Descriptor
    path: Path | None = None
    data: bytes | None = None
    packages: tuple[FileSet, ...] = ()  # the packages a layer holds

    def open(self) -> io.BufferedReader | io.BytesIO:
        if self.data is not None:
            return io.BytesIO(self.data)
        assert self.path is not None
        return open(self.path, "rb")


@dataclass(frozen=True)
class Image:
    """A composed image: its manifest, config and every blob, by digest."""

    name: str
    version: str
    manifest: bytes
    config: bytes
    layers: tuple[Blob, ...]
    packages: tuple[FileSet, ...]
    set_digest: Digest | None = None
    previous: Digest | None = None

    @property
    def digest(self) -> Digest:
        return sha256_digest(self.manifest)

    @property
    def config_blob(self) -> Blob:
        return Blob(Descriptor(CONFIG_TYPE, sha256_digest(self.config), len(self.config)),
                    data=self.config)

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor(MANIFEST_TYPE, self.digest, len(self.manifest))


def package_entry(fileset: FileSet) -> dict[str, str]:
    return {"name": fileset.name, "version": fileset.version, "digest": fileset.digest}


def compose_image(store: Store, name: str, version: str, packages: list[FileSet],
                  run: RunConfig, *, budget: int = 100, overrides: Mapping[str, str] | None = None,
                  set_digest: Digest | None = None, previous: Digest | None = None,
                  wanted: Sequence[str] = ()) -> Image:
    """The OCI image of `packages` (a resolved closure of `wanted`), with `run`'s settings."""
    packages = sorted(packages, key=lambda f: (f.name, version_key(f.version)))
    cache = ArchiveCache(store)
    archives = {f.digest: cache.layer(f) for f in packages}
    singles, grouped = _group(packages, archives, budget)
    layers = [Blob(archives[f.digest][0], archives[f.digest][1], packages=(f,))
              for f in singles]
    if grouped:
        layers.append(_group_layer(cache, grouped, archives))
    plan = install_links(store, packages)
    install = _install_layer(plan.links)
    layers.append(Blob(Descriptor(LAYER_TYPE, sha256_digest(install), len(install)),
                       data=install))
    env = {"PATH": DEFAULT_PATH, **plan.env, **run.env}
    config = canonical_json({
        "architecture": _ARCHITECTURES.get(os.uname().machine, os.uname().machine),
        "os": "linux",
        "config": _run_config(run, env),
        "rootfs": {"type": "layers", "diff_ids": [blob.descriptor.digest for blob in layers]},
    })
    annotations = {
        "org.opencontainers.image.title": name,
        "org.opencontainers.image.version": version,
        PACKAGES: canonical_json([package_entry(f) for f in packages]).decode(),
        REQUIREMENTS: canonical_json(aggregate_requirements(packages)).decode(),
        BUDGET: str(budget),
    }
    if wanted:
        annotations[WANTED] = canonical_json(sorted(wanted)).decode()
    if run.env:
        annotations[ENV] = canonical_json(dict(sorted(run.env.items()))).decode()
    if overrides:
        annotations[OVERRIDES] = canonical_json(dict(sorted(overrides.items()))).decode()
    if set_digest:
        annotations[SET] = set_digest
    if previous:
        annotations[PREVIOUS] = previous
    layer_json = [_layer_json(blob) for blob in layers]
    manifest = canonical_json({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": sha256_digest(config),
                   "size": len(config)},
        "layers": layer_json,
        "annotations": annotations,
    })
    return Image(name, version, manifest, config, tuple(layers), tuple(packages), set_digest,
                 previous)


def _group(packages: list[FileSet], archives: Mapping[Digest, tuple[Descriptor, Path]],
           budget: int) -> tuple[list[FileSet], list[FileSet]]:
    own = budget - 1  # the install layer takes one
    if len(packages) <= own:
        return packages, []
    by_size = sorted(packages, key=lambda f: (archives[f.digest][0].size, f.name))
    grouped = {f.digest for f in by_size[:len(packages) - own + 1]}
    return ([f for f in packages if f.digest not in grouped],
            [f for f in packages if f.digest in grouped])


def _group_layer(cache: ArchiveCache, grouped: list[FileSet],
                 archives: Mapping[Digest, tuple[Descriptor, Path]]) -> Blob:
    """One layer holding several packages: their archives, each without its end marker."""
    key = hashlib.sha256("".join(f.digest for f in grouped).encode()).hexdigest()
    path = cache.directory / f"group-{key}.tar"
    if not path.exists():
        temp = cache.store.layout.temp_name("group")
        with open(temp, "wb") as out:
            for fileset in grouped:
                descriptor, source = archives[fileset.digest]
                with open(source, "rb") as archive:
                    remaining = descriptor.size - len(END_OF_ARCHIVE)
                    while remaining and (chunk := archive.read(min(remaining, 1 << 20))):
                        out.write(chunk)
                        remaining -= len(chunk)
            out.write(END_OF_ARCHIVE)
        os.replace(temp, path)
    digest = hashlib.sha256()
    with open(path, "rb") as layer:
        while chunk := layer.read(1 << 20):
            digest.update(chunk)
    descriptor = Descriptor(LAYER_TYPE, Digest("sha256:" + digest.hexdigest()),
                            path.stat().st_size)
    return Blob(descriptor, path, packages=tuple(grouped))


def _layer_json(blob: Blob) -> dict[str, Any]:
    out = blob.descriptor.to_json()
    out["annotations"] = ({LAYER_PACKAGES: canonical_json(
        [package_entry(f) for f in blob.packages]).decode()} if blob.packages
        else {LAYER_ROLE: "install-links"})
    return out


def _install_layer(links: Mapping[str, str]) -> bytes:
    """A tar of the install links and the directories above them."""
    directories: set[str] = set()
    for path in links:
        parent = path.strip("/").rpartition("/")[0]
        while parent and parent not in directories:
            directories.add(parent)
            parent = parent.rpartition("/")[0]
    members = [(d, None) for d in directories] + [(p.strip("/"), t) for p, t in links.items()]
    out = io.BytesIO()
    for path, target in sorted(members, key=lambda m: m[0].split("/")):
        if target is None:
            out.write(encode_member(path + "/", DIRECTORY, mode=0o755))
        else:
            out.write(encode_member(path, SYMLINK, mode=0o777, linkname=target))
    out.write(END_OF_ARCHIVE)
    return out.getvalue()


def _run_config(run: RunConfig, env: Mapping[str, str]) -> dict[str, Any]:
    config: dict[str, Any] = {"Env": [f"{k}={v}" for k, v in sorted(env.items())]}
    if run.entrypoint:
        config["Entrypoint"] = list(run.entrypoint)
    if run.cmd:
        config["Cmd"] = list(run.cmd)
    if run.user:
        config["User"] = run.user
    if run.workdir:
        config["WorkingDir"] = run.workdir
    if run.labels:
        config["Labels"] = dict(sorted(run.labels.items()))
    return config

"""Install links: where a set of packages appears in a root (DESIGN.md 2b).

Every package is mounted at `/packages/<name>/<version>`; its `install` patterns
pick the paths it links into the root (an empty list, as for Debian packages and
plain FileSets, links every file and symlink where it stands). Files are linked to
their mount; a package's own symlinks are copied verbatim, so that binutils'
`usr/bin/as -> x86_64-linux-gnu-as` resolves across packages, as after dpkg -i.

Two packages linking one path to different content is refused, naming both,
unless one `replaces` the other: then the replacing package's link wins. Debian's
alternatives (kiln.debian.alternatives) add the links of each group's highest
priority where no package ships the path. The same links make build roots and
`kiln run`'s (workers/rootfs.py), and a layer in images.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from kiln.errors import ConflictError
from kiln.fileset import FileSet
from kiln.package import Alternative, PackageMetadata
from kiln.store.store import Store
from kiln.tree import DirectoryEntry, FileEntry


@dataclass(frozen=True)
class InstallPlan:
    """A root's links to package files, and the environment its packages ask for."""

    links: dict[str, str]  # absolute path in the root -> link target
    env: dict[str, str]  # the packages' `env`, merged in name order


def install_links(store: Store, filesets: list[FileSet]) -> InstallPlan:
    """The links and environment that `filesets` make in a root."""
    links: dict[str, str] = {}
    owners: dict[str, tuple[FileSet, str]] = {}  # link -> (owner, content key)
    env: dict[str, str] = {}
    for fileset in sorted(filesets, key=lambda f: (f.name, f.version)):
        mount_point = f"/{fileset.mount_point}"
        metadata = fileset.metadata
        patterns = metadata.install if isinstance(metadata, PackageMetadata) else ()
        if isinstance(metadata, PackageMetadata):
            env.update(metadata.env)
        for entry in store.tree(fileset).entries:
            if isinstance(entry, DirectoryEntry):
                continue
            if patterns and not any(fnmatch.fnmatch(entry.path, p) for p in patterns):
                continue
            path = f"/{entry.path}"
            key = (f"{entry.sha256}:{entry.executable}" if isinstance(entry, FileEntry)
                   else f"symlink:{entry.target}")
            previous = owners.get(path)
            if previous is not None and previous[1] != key:
                if _replaces(previous[0], fileset):
                    continue
                if not _replaces(fileset, previous[0]):
                    raise ConflictError(f"{path} is installed by both {previous[0].label} and"
                                        f" {fileset.label} (neither replaces the other)",
                                        reason="path-claimed-twice")
            elif previous is not None:
                continue
            owners[path] = (fileset, key)
            links[path] = (f"{mount_point}/{entry.path}" if isinstance(entry, FileEntry)
                           else entry.target)
    _add_alternatives(filesets, links)
    _refuse_links_over_directories(links, owners)
    return InstallPlan(links, env)


def _add_alternatives(filesets: list[FileSet], links: dict[str, str]) -> None:
    """The links Debian's update-alternatives would make among these packages (awk,
    which, cc): for each group, those of the package with the highest priority (then
    the first by name, the same every time), where nothing a package ships stands
    and what the link names is in the root."""
    best: dict[str, tuple[int, str, tuple[Alternative, ...]]] = {}
    for fileset in sorted(filesets, key=lambda f: (f.name, f.version)):
        metadata = fileset.metadata
        if not isinstance(metadata, PackageMetadata):
            continue
        groups: dict[str, list[Alternative]] = {}
        for alternative in metadata.alternatives:
            groups.setdefault(alternative.group, []).append(alternative)
        for group, offered in groups.items():
            priority = offered[0].priority
            if group not in best or priority > best[group][0]:
                best[group] = (priority, fileset.name, tuple(offered))
    for group in sorted(best):
        for alternative in best[group][2]:
            if alternative.link not in links and alternative.path in links \
                    and _linked_parent(alternative.link, links) is None:
                links[alternative.link] = alternative.path


def _linked_parent(path: str, links: dict[str, str]) -> str | None:
    """The nearest directory above `path` that is itself a link, if any."""
    parent = path.rpartition("/")[0]
    while parent:
        if parent in links:
            return parent
        parent = parent.rpartition("/")[0]
    return None


def _replaces(winner: FileSet, loser: FileSet) -> bool:
    metadata = winner.metadata
    return isinstance(metadata, PackageMetadata) and loser.name in metadata.replaces


def _refuse_links_over_directories(links: dict[str, str],
                                   owners: dict[str, tuple[FileSet, str]]) -> None:
    for path in links:
        parent = _linked_parent(path, links)
        if parent is not None:
            raise ConflictError(f"{path} of {owners[path][0].label} lies under {parent},"
                                f" a link of {owners[parent][0].label}",
                                reason="path-claimed-twice")

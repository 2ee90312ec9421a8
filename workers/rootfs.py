"""The root's skeleton on tmpfs: mount points, the symlink farm, /etc basics.

Made once per composition and shared by every run of it, whatever the backend:
making the farm costs more than starting a sandbox (3,600 symlinks for the gcc
root). Sharing is safe: sandboxes mount it read-only, and every mount point a
run needs exists already (they are part of the key).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from workers.sandbox import RunSpec

# Fast, and cleaned up with the machine: the farm holds thousands of symlinks.
SCRATCH = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
ROOT_FORMAT = "kiln.root/v3"  # bump when _make_root changes what it makes
KEPT_ROOTS = 32


def cached_root(spec: RunSpec) -> Path:
    """The root's skeleton for `spec`, made on first use."""
    links = spec.links_key or sorted(spec.links.items())
    key = hashlib.sha256(json.dumps(
        [ROOT_FORMAT, spec.hostname, sorted(m.target for m in spec.mounts),
         links]).encode()).hexdigest()
    roots = SCRATCH / "kiln-roots"
    final = roots / key
    if final.exists():
        os.utime(final)  # recently used: the last to be pruned
        return final
    roots.mkdir(exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".making-", dir=roots))
    scratch.chmod(0o755)  # mkdtemp's 0700 would shut out a run as another user
    _make_root(scratch, spec)
    try:
        os.rename(scratch, final)
    except OSError:
        shutil.rmtree(scratch, ignore_errors=True)  # another run made it first
    _prune(roots)
    return final


def _prune(roots: Path) -> None:
    made = sorted((p for p in roots.iterdir() if not p.name.startswith(".")),
                  key=lambda p: p.stat().st_mtime)
    for old in made[:-KEPT_ROOTS]:
        shutil.rmtree(old, ignore_errors=True)


def _make_root(rootfs: Path, spec: RunSpec) -> None:
    """The root's skeleton: mount points, the symlink farm, and the usual directories."""
    for directory in ("proc", "dev", "tmp", "etc"):
        (rootfs / directory).mkdir(parents=True, exist_ok=True)
    # runc gives the tmpfs it mounts on /tmp the mode of the directory beneath.
    (rootfs / "tmp").chmod(0o1777)
    for mount in spec.mounts:
        (rootfs / mount.target.lstrip("/")).mkdir(parents=True, exist_ok=True)
    for path, target in sorted(spec.links.items()):
        link = rootfs / path.lstrip("/")
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, link)
    # What programs look for and no package provides without maintainer scripts.
    (rootfs / "etc/passwd").write_text("root:x:0:0:root:/tmp:/bin/sh\n"
                                       "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    (rootfs / "etc/group").write_text("root:x:0:\nnogroup:x:65534:\n")
    (rootfs / "etc/hostname").write_text(spec.hostname + "\n")

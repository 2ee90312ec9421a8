"""The run's /out: a size-bound tmpfs on the host, writable by the sandbox's uid only.

The build writes its package there; Kiln reads it afterwards, so it cannot be
the sandbox's own tmpfs. Being a tmpfs of its own, it holds no more than its
size (a build cannot fill the host's disk through it), shows no host path in
the run's mountinfo, and its pages count against the build's memory cgroup.
What a tmpfs cannot bound, the apparent size of sparse files and the number of
entries, `check_output` refuses before anything is ingested.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kiln.errors import CheckFailed, InputError
from kiln.limits import Limits


class OutputTooLarge(CheckFailed):
    """What a build left in /out is past its limits; nothing of it is kept."""

    default_reason = "output-too-large"


@contextmanager
def output_volume(path: Path, size: int, uid: int) -> Iterator[Path]:
    """A tmpfs of `size` bytes at `path`, owned by `uid`, unmounted on the way out."""
    path.mkdir()
    options = f"size={size},uid={uid},gid={uid},mode=0755,nosuid,nodev"
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "kiln-out", str(path)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise InputError(f"cannot mount the build's /out: {result.stderr.strip()}",
                         reason="sandbox-missing")
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], capture_output=True, check=False)


def check_output(out: Path, limits: Limits, label: str) -> None:
    """Refuse an /out with more entries or apparent bytes than the limits allow."""
    entries = size = 0
    for directory, subdirectories, files in os.walk(out):
        entries += len(subdirectories) + len(files)
        for name in files:
            size += os.lstat(os.path.join(directory, name)).st_size
        if entries > limits.out_files:
            raise OutputTooLarge(f"{label}: /out holds more than {limits.out_files} entries"
                                 " (limit out-files)")
        if size > limits.out_size:
            raise OutputTooLarge(f"{label}: /out holds files of more than {limits.out_size}"
                                 " bytes (sparse ones counted whole; limit out-size)")

"""What a process is beyond its arguments: who it runs as, in which namespaces, with
which limits and umask. A forked server runs a client's command only where its
child can be what the client is; it takes the client's umask and limits, and
refuses where the rest differs.
"""

from __future__ import annotations

import os
import resource
from typing import Any

NAMESPACES = ("mnt", "pid", "net", "user", "uts", "ipc", "cgroup")
LIMITS = ("RLIMIT_AS", "RLIMIT_CORE", "RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_FSIZE",
          "RLIMIT_MEMLOCK", "RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_STACK")


def describe() -> dict[str, Any]:
    """This process, as a client sends it."""
    mask = os.umask(0o022)
    os.umask(mask)
    root = os.stat("/")
    return {"uid": os.getuid(), "gid": os.getgid(), "groups": sorted(os.getgroups()),
            "namespaces": _namespaces(), "root": [root.st_dev, root.st_ino],
            "umask": mask,
            "limits": {name: list(resource.getrlimit(getattr(resource, name)))
                       for name in LIMITS}}


def refusal(theirs: dict[str, Any]) -> str | None:
    """Why a child of this process cannot be the client `theirs` (None: it can)."""
    ours = describe()
    for key in ("uid", "gid", "groups", "namespaces", "root"):
        if theirs.get(key) != ours[key]:
            return f"the client's {key} differ from the server's"
    for name, (soft, hard) in theirs.get("limits", {}).items():
        if name not in LIMITS:
            return f"unknown limit {name}"
        _, our_hard = resource.getrlimit(getattr(resource, name))
        # Even root may not raise a hard limit without CAP_SYS_RESOURCE: never tried.
        if _above(hard, our_hard):
            return f"the client's {name} is above what the server may give"
        if _above(soft, hard):
            return f"the client's {name} is malformed"
    return None


def become(theirs: dict[str, Any]) -> None:
    """Take the client's umask and limits (in the child, before the command)."""
    os.umask(int(theirs["umask"]))
    for name, (soft, hard) in theirs["limits"].items():
        resource.setrlimit(getattr(resource, name), (soft, hard))


def _above(value: int, limit: int) -> bool:
    infinity = resource.RLIM_INFINITY
    if limit == infinity:
        return False
    return value == infinity or value > limit


def _namespaces() -> dict[str, int]:
    found = {}
    for kind in NAMESPACES:
        try:
            found[kind] = os.stat(f"/proc/self/ns/{kind}").st_ino
        except OSError:
            found[kind] = 0
    return found

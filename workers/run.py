"""`kiln run`: an image straight from the host store, late-bound.

Each package's materialised tree is bind-mounted read-only at its
`/packages/<name>/<version>` (no extraction, no copy: two containers sharing a
package read the same inodes), the install links are made in the tmpfs root as
the container starts, and the command runs in the same hardened sandbox as
builds, with exactly the capabilities the image's packages require, as the
image's user (numeric: images carry no /etc/passwd).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from kiln.errors import CheckFailed, InputError
from kiln.fileset import FileSet
from kiln.image.requirements import DEFAULT_PATH, aggregate_requirements, kernel_key
from kiln.image.spec import RunConfig
from kiln.store.store import Store
from workers.root import compose_root
from workers.sandbox import RunResult, RunSpec, Sandbox

RUN_TIMEOUT = 24 * 3600.0

# What an image may be granted without asking: Docker's default set, less MKNOD and
# NET_RAW. Anything else (CAP_SYS_ADMIN, CAP_SYS_PTRACE, ...) can reach past the
# sandbox when the run is the host's root, so the user must allow it by name.
GRANTED_BY_DEFAULT = frozenset({
    "CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP",
    "CAP_SETUID", "CAP_SYS_CHROOT"})


def check_kernel(required: str | None, running: str | None = None) -> None:
    """Refuse to start on a kernel older than the image requires, naming both."""
    running = running or os.uname().release
    if required and kernel_key(running) < kernel_key(required):
        raise CheckFailed(f"the image requires kernel {required} or newer; this host runs"
                          f" {running}", reason="kernel-too-old")


def numeric_user(user: str) -> tuple[int, int] | None:
    """`UID` or `UID:GID` as numbers; None for root or no user. Images carry no
    /etc/passwd, so names cannot be looked up and are refused."""
    if not user:
        return None
    uid, _, gid = user.partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        raise InputError(f"the image's user {user!r} is not numeric (UID or UID:GID): kiln run"
                         " has no /etc/passwd to look a name up in", reason="bad-user")
    ids = (int(uid), int(gid or uid))
    return None if ids == (0, 0) else ids


def check_capabilities(required: Sequence[str], allowed: frozenset[str]) -> None:
    """Refuse capabilities beyond the default set that the user did not allow."""
    beyond = sorted(set(required) - GRANTED_BY_DEFAULT - allowed)
    if beyond:
        flags = " ".join(f"--allow-capability {cap}" for cap in beyond)
        raise CheckFailed(f"the image requires {', '.join(beyond)}, which kiln run grants only"
                          f" when asked: {flags}", reason="capability-not-allowed")


def run_image(store: Store, packages: Sequence[FileSet], run: RunConfig,
              command: Sequence[str], sandbox: Sandbox, log: Path,
              output_fd: int | None = None, allowed: frozenset[str] = frozenset(),
              *, kernel: str | None = None, hostname: str = "kiln") -> RunResult:
    """Run `command` (else the image's entrypoint and cmd) in the image's packages."""
    requirements = aggregate_requirements(list(packages))
    check_kernel(requirements["kernel"], kernel)
    check_capabilities(requirements["capabilities"], allowed)
    argv = (*run.entrypoint, *(command or run.cmd))
    if not argv:
        raise CheckFailed("the image has no entrypoint or cmd; give a command after --",
                          reason="nothing-to-run")
    root = compose_root(store, list(packages))
    env: Mapping[str, str] = {"PATH": DEFAULT_PATH, **root.env, **run.env}
    return sandbox.run(RunSpec(
        argv=tuple(argv), env=env, log=log, output_fd=output_fd, mounts=root.mounts,
        links=root.links, links_key=root.key, root_cache=root.cache,
        cwd=run.workdir or "/", hostname=hostname,
        timeout=RUN_TIMEOUT, capabilities=tuple(requirements["capabilities"]),
        user=numeric_user(run.user)))

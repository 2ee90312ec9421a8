"""The default sandbox backend: bubblewrap, unprivileged, with cgroup limits Kiln sets.

bubblewrap starts a run in a few milliseconds where runc takes 50 (a Go runtime
setting up every cgroup controller). Run as root it would keep the host's root
uid, and the host's uid 0 may write global sysctls even without capabilities
(the sandbox review set `kernel.core_pattern` that way). So the run is started
in three steps, each dropping something:

1. as root, in the forked child before it executes anything: join the run's
   memory and pids cgroups (the limits hold from the first instruction), enter
   a mount namespace of its own and bind every input the root does not hold
   (/src, the host-side /out; package trees, unless the root is a store's, which
   holds them hard-linked) onto the mount points of the run's root. Root can
   reach them wherever they lie, a 0700 home included. (System calls through
   ctypes: a `mount` process per input cost 1.3 ms each, 90 ms for the gcc root);
2. `setpriv` to the host's sandbox uid (kiln.hostconfig), no groups;
3. bubblewrap as that uid: a user namespace mapping its root to that uid, the
   staged root whole and read-only, new PID, network, IPC, UTS and cgroup
   namespaces, no capabilities, no further user namespaces, and the seccomp
   filter of workers.seccomp. /tmp and the run's scratch places are size-bound
   tmpfs of its own. A timeout kills every process in the run's cgroups.
"""

from __future__ import annotations

import os
import subprocess
import time
from functools import cached_property
from pathlib import Path

from kiln.hostconfig import host_config
from workers import seccomp
from workers.cgroups import RunCgroups
from workers.rootfs import mounts_to_bind, root_in_use
from workers.sandbox import (
    RunOutput,
    RunResult,
    RunSpec,
    memory_file,
    require_tool,
    wait_with_deadline,
)
from workers.staging import reachable_root, staged

# Parts of procfs that change the host, made read-only over the run's own procfs
# (the rest of it is the run's PID namespace, or read-only to a non-root uid).
_PROC_READ_ONLY = ("sys", "sysrq-trigger", "irq", "bus", "fs")


class BwrapSandbox:
    """Runs each RunSpec under bubblewrap, as the host's unprivileged sandbox uid."""

    name = "bwrap"

    def __init__(self, bwrap: str = "bwrap", host_uid: int | None = None) -> None:
        self._bwrap = require_tool(bwrap, "bubblewrap", "the default sandbox needs it")
        self._setpriv = require_tool("setpriv", "util-linux",
                                     "the sandbox drops to its uid with it")
        self.host_uid = host_uid if host_uid is not None else host_config().sandbox_uid

    @cached_property
    def version(self) -> str:
        output = subprocess.run([self._bwrap, "--version"], capture_output=True, text=True,
                                check=False).stdout
        return output.split()[-1] if output else "unknown"

    def run(self, spec: RunSpec) -> RunResult:
        cgroups = RunCgroups(spec.memory_bytes, spec.pids)
        seccomp_fd = memory_file("kiln-seccomp", seccomp.bpf_program())
        try:
            return self._run(spec, cgroups, seccomp_fd)
        finally:
            os.close(seccomp_fd)
            cgroups.remove()

    def _run(self, spec: RunSpec, cgroups: RunCgroups, seccomp_fd: int) -> RunResult:
        start = time.monotonic()
        with root_in_use(spec) as cached, reachable_root(spec, cached) as (root, staging), \
                RunOutput(spec) as output:
            uid = str(self.host_uid)
            try:
                process = subprocess.Popen(
                    [self._setpriv, "--reuid", uid, "--regid", uid, "--clear-groups", "--",
                     *self._arguments(spec, root, seccomp_fd)],
                    env={}, stdin=spec.stdin, stdout=output.fd,
                    stderr=subprocess.STDOUT, pass_fds=(seccomp_fd,), start_new_session=True,
                    preexec_fn=staged(cgroups.procs_files,  # noqa: PLW1509
                                      [*staging, *_binds(spec, root)]))
            except subprocess.SubprocessError as exc:
                # Fails closed: a run that could not join its cgroups, or stage its
                # root, does not run at all.
                output.started()
                output.note(f"kiln: the run was not started: {exc}\n")
                return RunResult(125, False, time.monotonic() - start, spec.log)
            output.started()
            code, timed_out = wait_with_deadline(process, spec.timeout, cgroups.kill_all)
            cgroups.kill_all()  # what outlived the run holds its log open
            if timed_out:
                output.note(f"\nkiln: killed after {spec.timeout:g} s\n")
            return RunResult(None if timed_out else code, timed_out,
                             time.monotonic() - start, spec.log)

    def _arguments(self, spec: RunSpec, root: Path, seccomp_fd: int) -> list[str]:
        uid, gid = spec.inside_ids
        args = [self._bwrap, "--unshare-user", "--uid", str(uid), "--gid", str(gid),
                "--disable-userns", "--ro-bind", str(root), "/",
                "--proc", "/proc", "--dev", "/dev",
                "--perms", "1777", "--size", str(spec.tmp_size), "--tmpfs", "/tmp",
                "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
                "--unshare-cgroup-try", "--hostname", spec.hostname,
                "--die-with-parent", "--new-session", "--cap-drop", "ALL",
                "--clearenv", "--chdir", spec.cwd, "--seccomp", str(seccomp_fd)]
        for part in _PROC_READ_ONLY:
            args += ["--ro-bind-try", f"/proc/{part}", f"/proc/{part}"]
        # Granted inside the run's own namespaces only (the network's, for a low port).
        for capability in spec.capabilities:
            args += ["--cap-add", capability]
        for mount in spec.mounts:
            if mount.writable:  # staged at its mount point; the root came read-only
                staged = str(root / mount.target.lstrip("/"))
                args += ["--bind", staged, mount.target]
        for scratch in spec.scratch:
            args += ["--perms", "0755", "--size", str(scratch.size), "--tmpfs", scratch.target]
        for key, value in spec.env.items():  # in the given order
            args += ["--setenv", key, value]
        return [*args, "--", *spec.argv]


def _binds(spec: RunSpec, root: Path) -> list[tuple[bytes, bytes]]:
    """(source, mount point in the root) of every input the root does not hold, as the
    kernel takes paths."""
    return [(os.fsencode(mount.source), os.fsencode(root / mount.target.lstrip("/")))
            for mount in mounts_to_bind(spec)]

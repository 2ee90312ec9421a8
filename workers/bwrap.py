"""The default sandbox backend: bubblewrap, with cgroup limits Kiln sets itself.

bubblewrap starts a run in a few milliseconds where runc takes 50 (a Go runtime
setting up every cgroup controller). Run as root it keeps capabilities unless
told otherwise: Kiln drops them all (`--cap-drop ALL`) and bubblewrap always
sets no_new_privs. Each run gets new PID, mount, network (bubblewrap brings its
loopback up), IPC, UTS and cgroup namespaces, the shared read-only root of its
composition, and memory and pids limits in cgroups of its own. A timeout kills
every process in those cgroups, setsid children included.
"""

from __future__ import annotations

import subprocess
import time
from functools import cached_property

from workers.cgroups import RunCgroups
from workers.rootfs import cached_root
from workers.sandbox import RunResult, RunSpec, open_output, require_tool, wait_with_deadline

# Fails closed: a run that could not join its cgroups does not run at all.
_JOIN = ('for procs in $KILN_CGROUP_PROCS; do echo $$ > "$procs" || exit 125; done; '
         'exec "$@"')


class BwrapSandbox:
    """Runs each RunSpec under bubblewrap."""

    name = "bwrap"

    def __init__(self, bwrap: str = "bwrap") -> None:
        self._bwrap = require_tool(bwrap, "bubblewrap", "the default sandbox needs it")

    @cached_property
    def version(self) -> str:
        output = subprocess.run([self._bwrap, "--version"], capture_output=True, text=True,
                                check=False).stdout
        return output.split()[-1] if output else "unknown"

    def run(self, spec: RunSpec) -> RunResult:
        cgroups = RunCgroups(spec.memory_bytes, spec.pids)
        try:
            return self._run(spec, cgroups)
        finally:
            cgroups.remove()

    def _run(self, spec: RunSpec, cgroups: RunCgroups) -> RunResult:
        start = time.monotonic()
        with open_output(spec) as log:
            # A shell joins the cgroups, then becomes bubblewrap: the limits hold from
            # its first instruction. (A preexec_fn would do the same, but forces a
            # full fork of this process where a shell lets Python use vfork.)
            process = subprocess.Popen(
                ["/bin/sh", "-c", _JOIN, "sh", *self._arguments(spec)],
                env={"KILN_CGROUP_PROCS": " ".join(cgroups.procs_files)},
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
            code, timed_out = wait_with_deadline(process, spec.timeout, cgroups.kill_all)
            if timed_out:
                log.write(f"\nkiln: killed after {spec.timeout:g} s\n".encode())
            return RunResult(None if timed_out else code, timed_out,
                             time.monotonic() - start, spec.log)

    def _arguments(self, spec: RunSpec) -> list[str]:
        args = [self._bwrap, "--ro-bind", str(cached_root(spec)), "/",
                "--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp",
                "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
                "--unshare-cgroup-try", "--hostname", spec.hostname,
                "--die-with-parent", "--new-session", "--cap-drop", "ALL",
                "--clearenv", "--chdir", spec.cwd]
        for capability in spec.capabilities:
            args += ["--cap-add", capability]
        if spec.user is not None:
            # Another uid needs its own user namespace (bubblewrap maps it there);
            # capabilities granted then hold only for the run's own namespaces.
            uid, gid = spec.user
            args += ["--unshare-user", "--uid", str(uid), "--gid", str(gid)]
        for mount in spec.mounts:
            args += ["--bind" if mount.writable else "--ro-bind", str(mount.source),
                     mount.target]
        for key, value in spec.env.items():  # in the given order
            args += ["--setenv", key, value]
        return [*args, "--", *spec.argv]

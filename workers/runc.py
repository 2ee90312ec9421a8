"""The other sandbox backend: runc with an OCI runtime bundle made per run.

runc puts the build in cgroups of its own making and declares everything else
in one config: a user namespace mapping the run's uid to the host's
unprivileged sandbox uid (kiln.hostconfig), no capabilities, no_new_privs, the
seccomp filter of workers.seccomp (as libseccomp rules), new PID, mount,
network (nothing but loopback, which a hook brings up with nsenter and ip),
IPC, UTS and cgroup namespaces, a read-only root (its skeleton made once per
composition and shared, workers/rootfs.py), `/proc/sys` and its kin read-only,
size-bound tmpfs for /tmp and the run's scratch places, and the limits of its
RunSpec. A timeout kills the container's whole PID namespace, so a child that
called setsid dies with the rest.

runc has no die-with-parent: a container whose Kiln process was killed outright
(SIGKILL, a test run stopped) runs on. Each run's bundle and container are named
with its process's pid, and the first run of every process removes the containers
of processes that are gone (`reap_orphans`).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
import time
from functools import cache, cached_property
from pathlib import Path
from typing import Any

from kiln.errors import InputError
from kiln.hostconfig import host_config
from kiln.store.layout import unique_part
from workers import seccomp
from workers.rootfs import SCRATCH, mounts_to_bind, root_in_use
from workers.sandbox import RunOutput, RunResult, RunSpec, require_tool, wait_with_deadline
from workers.staging import process_alive, reachable_root, staged

_MASKED = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
           "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
           "/sys/firmware"]
# Brings the container's loopback up, in its new network namespace, before it
# runs: the pid comes in runc's state JSON on stdin. sh, sed, nsenter and ip
# start in a few milliseconds, where a Python hook cost 45 ms a run.
LOOPBACK_HOOK = {
    "path": "/bin/sh",
    "args": ["sh", "-c", 'pid=$(sed -n \'s/.*"pid": *\\([0-9]*\\).*/\\1/p\'); '
                         'exec nsenter --target "$pid" --net ip link set lo up'],
    "timeout": 10,
}
ID_RANGE = 65536  # inside ids 0..65535 are the host's sandbox uid and those above it
_READ_ONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


class RuncSandbox:
    """Runs each RunSpec as a fresh runc container."""

    name = "runc"

    def __init__(self, runc: str = "runc", host_uid: int | None = None) -> None:
        self._runc = require_tool(runc, "runc", "the runc sandbox needs it")
        self.host_uid = host_uid if host_uid is not None else host_config().sandbox_uid
        require_tool("ip", "iproute2", "the runc sandbox's loopback needs it")
        require_tool("nsenter", "util-linux", "the runc sandbox's loopback needs it")

    @cached_property
    def version(self) -> str:
        output = subprocess.run([self._runc, "--version"], capture_output=True, text=True,
                                check=False).stdout
        return output.split()[2] if output.startswith("runc version") else "unknown"

    def run(self, spec: RunSpec) -> RunResult:
        _reap_once(self._runc)
        bundle = Path(tempfile.mkdtemp(prefix=f"{BUNDLE_PREFIX}{os.getpid()}-", dir=SCRATCH))
        container = f"kiln-{os.getpid()}-{unique_part(4)}"
        state = bundle / "state"
        finished = False
        try:
            config = _config(spec, self.host_uid)
            # runc's init walks its root as the run's mapped uid: a store's root is
            # bound where it can reach it, in runc's own mount namespace.
            with root_in_use(spec) as cached, reachable_root(spec, cached) as (root, binds):
                config["root"]["path"] = str(root)
                (bundle / "config.json").write_text(json.dumps(config, indent=1))
                result = self._run(spec, bundle, state, container, binds)
            finished = not result.timed_out
            return result
        finally:
            if not finished:  # `runc run` removes a container that ran to its end
                subprocess.run([self._runc, "--root", str(state), "delete", "--force",
                                container], capture_output=True, check=False)
            shutil.rmtree(bundle, ignore_errors=True)

    def _run(self, spec: RunSpec, bundle: Path, state: Path, container: str,
             binds: list[tuple[bytes, bytes]]) -> RunResult:
        start = time.monotonic()
        with RunOutput(spec) as output:
            process = subprocess.Popen(
                [self._runc, "--root", str(state), "run", "--bundle", str(bundle), container],
                stdin=spec.stdin, stdout=output.fd, stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=staged([], binds) if binds else None)  # noqa: PLW1509
            output.started()

            def kill() -> None:
                # Killing PID 1 of the container's namespace kills everything in it.
                subprocess.run([self._runc, "--root", str(state), "kill", container, "KILL"],
                               capture_output=True, check=False)

            code, timed_out = wait_with_deadline(process, spec.timeout, kill)
            if timed_out:
                output.note(f"\nkiln: killed after {spec.timeout:g} s\n")
            return RunResult(None if timed_out else code, timed_out,
                             time.monotonic() - start, spec.log)


BUNDLE_PREFIX = "kiln-run-"  # then the pid of the Kiln process that made it


@cache
def _reap_once(runc: str) -> None:
    reap_orphans(runc)


def reap_orphans(runc: str) -> list[str]:
    """Kill and delete the containers of Kiln processes that are gone, and remove their
    bundles; the containers' names. Only bundles this user made are read (the
    directory is shared: another user's could name any process as its init)."""
    reaped = []
    for bundle in SCRATCH.glob(f"{BUNDLE_PREFIX}*"):
        pid = bundle.name.removeprefix(BUNDLE_PREFIX).split("-", 1)[0]
        if not pid.isdigit() or process_alive(int(pid)) or not _ours(bundle):
            continue
        state = bundle / "state"
        for container in (state.iterdir() if state.is_dir() else ()):
            subprocess.run([runc, "--root", str(state), "delete", "--force", container.name],
                           capture_output=True, check=False)
            reaped.append(container.name)
        shutil.rmtree(bundle, ignore_errors=True)
    return reaped


def _ours(path: Path) -> bool:
    try:
        info = path.lstat()
    except OSError:
        return False
    return (stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()
            and not info.st_mode & 0o022)


def _config(spec: RunSpec, host_uid: int) -> dict[str, Any]:
    uid, gid = spec.inside_ids
    if max(uid, gid) >= ID_RANGE:
        raise InputError(f"the run's user {uid}:{gid} is beyond the {ID_RANGE} ids the runc"
                         " sandbox maps", reason="bad-user")
    kinds = ("bounding", "effective", "inheritable", "permitted", "ambient")
    capabilities: dict[str, list[str]] = {kind: list(spec.capabilities) for kind in kinds}
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "nodev", "mode=1777", f"size={spec.tmp_size}"]},
    ]
    mounts += [{"destination": scratch.target, "type": "tmpfs", "source": "tmpfs",
                "options": ["nosuid", "nodev", "mode=0755", f"size={scratch.size}"]}
               for scratch in spec.scratch]
    for mount in mounts_to_bind(spec):
        options = ["rbind", "nosuid", "nodev", "rw" if mount.writable else "ro"]
        mounts.append({"destination": mount.target, "type": "bind",
                       "source": str(mount.source), "options": options})
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": uid, "gid": gid},
            "args": list(spec.argv),
            "env": [f"{key}={value}" for key, value in spec.env.items()],  # in the given order
            "cwd": spec.cwd,
            "capabilities": capabilities,
            "noNewPrivileges": True,
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024},
                        {"type": "RLIMIT_CORE", "hard": 0, "soft": 0}],
        },
        "root": {"path": "", "readonly": True},  # the cached root's path, set by run
        "hooks": {"createRuntime": [LOOPBACK_HOOK]},
        "hostname": spec.hostname,
        "mounts": mounts,
        "linux": {
            "namespaces": [{"type": kind} for kind in ("user", "pid", "network", "ipc", "uts",
                                                        "mount", "cgroup")],
            # The run's root is the host's unprivileged sandbox uid; runc wants root
            # mapped even for a run as another uid, which then lies above it.
            "uidMappings": [{"containerID": 0, "hostID": host_uid, "size": ID_RANGE}],
            "gidMappings": [{"containerID": 0, "hostID": host_uid, "size": ID_RANGE}],
            "seccomp": seccomp.oci_profile(),
            "resources": {
                "memory": {"limit": spec.memory_bytes, "swap": spec.memory_bytes},
                "pids": {"limit": spec.pids},
            },
            "maskedPaths": _MASKED,
            "readonlyPaths": _READ_ONLY,
        },
    }


"""Memory and process limits for a sandbox that has none of its own (bubblewrap).

One cgroup per run, in each controller Kiln needs: cgroup v1's `memory` and
`pids` hierarchies, or one cgroup of the v2 unified hierarchy. The run's first
process joins before it executes anything; at the end every process still in
the cgroup is killed (setsid children included) and the cgroup removed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

from kiln.errors import InputError
from kiln.store.layout import unique_part

ROOT = Path("/sys/fs/cgroup")


class RunCgroups:
    """The cgroup(s) of one run, which its first process joins before it executes."""

    def __init__(self, memory_bytes: int, pids: int) -> None:
        name = f"kiln-{os.getpid()}-{unique_part(4)}"
        if (ROOT / "cgroup.controllers").exists():  # v2, unified
            self.directories = [ROOT / name]
            limits = {"memory.max": memory_bytes, "memory.swap.max": 0, "pids.max": pids}
        elif (ROOT / "memory").is_dir() and (ROOT / "pids").is_dir():  # v1
            self.directories = [ROOT / "memory" / name, ROOT / "pids" / name]
            limits = {"memory.limit_in_bytes": memory_bytes,
                      "memory.memsw.limit_in_bytes": memory_bytes, "pids.max": pids}
        else:
            raise InputError("no memory and pids cgroups here; the sandbox needs them",
                             reason="sandbox-missing")
        try:
            for directory in self.directories:
                directory.mkdir()
            for key, value in limits.items():
                target = next((d / key for d in self.directories if (d / key).exists()), None)
                if target is not None:
                    target.write_text(f"{value}\n")
        except OSError as exc:
            self.remove()
            raise InputError(f"cannot set up cgroups for the sandbox: {exc}",
                             reason="sandbox-missing") from exc

    @property
    def procs_files(self) -> list[str]:
        """What the run's first process writes its pid to, to join."""
        return [str(d / "cgroup.procs") for d in self.directories]

    def kill_all(self) -> None:
        """SIGKILL every process in the cgroup until none is left."""
        for pause in _pauses():
            pids = self._pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(pause)

    def remove(self) -> None:
        self.kill_all()
        for directory in self.directories:
            for pause in _pauses():
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(pause)  # the kernel is still reaping

    def _pids(self) -> set[int]:
        pids: set[int] = set()
        for directory in self.directories:
            with contextlib.suppress(OSError):
                pids.update(int(line) for line in (directory / "cgroup.procs").read_text().split())
        return pids


def _pauses() -> Iterator[float]:
    """Waits for the kernel to finish with a run's processes: short at first (it is
    usually done within a millisecond, and a run's end waits on it), then 10 ms
    each, about one second in all."""
    pause = 0.0005
    for _ in range(100):
        yield pause
        pause = min(pause * 2, 0.01)

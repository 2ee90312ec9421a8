"""Both sandboxes against hostile builds: each attempt fails the build, not the host."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from kiln.debian.importer import import_debs
from kiln.store import Store
from tests.integration.test_debian import apt_lists  # noqa: F401 - fixture
from workers.bwrap import BwrapSandbox
from workers.cgroups import RunCgroups
from workers.root import Root, compose_root
from workers.runc import RuncSandbox
from workers.sandbox import Mount, RunResult, RunSpec, Sandbox, Scratch

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("runc") is None or shutil.which("bwrap") is None,
    reason="the sandboxes need root, runc and bubblewrap")

PATH = "/usr/bin:/bin:/usr/sbin:/sbin"
ENV = {"PATH": PATH, "HOME": "/tmp"}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, apt_lists: None) -> Root:  # noqa: F811
    """A root of Debian's dash, bash, coreutils and util-linux, with their closure."""
    store = Store.open(tmp_path_factory.mktemp("sandbox") / "store")
    imported = import_debs(store, ["dash", "bash", "coreutils", "util-linux", "mount",
                                   "netcat-openbsd", "strace", "keyutils"],
                           with_closure=True)
    return compose_root(store, [item.fileset for item in imported])


@pytest.fixture(params=["bwrap", "runc"])
def sandbox(request: pytest.FixtureRequest) -> Sandbox:
    """Every hostile test runs against both backends."""
    return BwrapSandbox() if request.param == "bwrap" else RuncSandbox()


def run(sandbox: Sandbox, root: Root, tmp_path: Path, script: str,
        mounts: tuple[Mount, ...] = (), **limits: object) -> tuple[RunResult, str]:
    log = tmp_path / f"log-{len(list(tmp_path.glob('log-*')))}"
    result = sandbox.run(RunSpec(argv=("/bin/bash", "-c", script), env=ENV,
                                 log=log, mounts=root.mounts + mounts, links=root.links,
                                 links_key=root.key, **limits))  # type: ignore[arg-type]
    return result, log.read_text(errors="replace")


def test_no_capabilities_no_new_privileges_own_pid_and_uts(
        sandbox: Sandbox, root: Root, tmp_path: Path) -> None:
    result, log = run(sandbox, root, tmp_path, """
        while read -r key value rest; do
          case $key in CapEff:|CapPrm:|CapBnd:|NoNewPrivs:) echo "$key $value";; esac
        done < /proc/self/status
        echo "pid $$"; echo "host $(cat /proc/sys/kernel/hostname)"
        echo "procs" /proc/[0-9]*; env | sort""")
    assert result.ok, log
    lines = log.splitlines()
    # No capability now, and none to be had: the permitted set is empty and
    # no_new_privs keeps exec from adding any. runc empties the bounding set too.
    assert "CapEff: 0000000000000000" in lines
    assert "CapPrm: 0000000000000000" in lines
    assert "NoNewPrivs: 1" in lines
    if sandbox.name == "runc":
        assert "CapBnd: 0000000000000000" in lines
    # PID 1 is the shell under runc, bubblewrap's reaper under bwrap.
    assert ("pid 1" if sandbox.name == "runc" else "pid 2") in lines
    assert "host kiln-build" in lines
    procs = next(line for line in lines if line.startswith("procs")).split()[1:]
    pids = [int(path.rsplit("/", 1)[1]) for path in procs]
    # Its own few processes, numbered from 1: no host process to see or ptrace.
    assert 1 in pids
    assert max(pids) < 20
    env = [line for line in lines if "=" in line and not line.startswith("_=")]
    # What was given, and what bash adds itself; nothing of the host's leaks in.
    assert env == ["HOME=/tmp", "PATH=" + PATH, "PWD=/", "SHLVL=1"]


def test_src_and_store_stay_read_only_whatever_is_tried(
        sandbox: Sandbox, root: Root, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "file").write_text("original\n")
    package = root.mounts[0].target
    attempts = {
        "write": "echo pwned > /src/file",
        "store": f"touch {package}/pwned",
        "remount": "mount -o remount,rw /src && echo pwned > /src/file",
        "mknod": "mknod /tmp/disk b 8 0 && mount /tmp/disk /mnt",
        "unshare": "unshare -Urm bash -c 'mount -o remount,rw,bind /src && "
                   "echo pwned > /src/file'",
        "chmod": "chmod u+w /src/file && echo pwned > /src/file",
    }
    script = "\n".join(f"if ( {command} ) 2>/dev/null; then echo 'ESCAPED {name}'; "
                       f"else echo 'refused {name}'; fi" for name, command in attempts.items())
    result, log = run(sandbox, root, tmp_path, script, (Mount("/src", src),))
    assert result.ok, log
    assert "ESCAPED" not in log
    assert sorted(line.split()[1] for line in log.splitlines()
                  if line.startswith("refused")) == sorted(attempts)
    assert (src / "file").read_text() == "original\n"
    assert not any(Path(m.source, "pwned").exists() for m in root.mounts)


def test_ptrace_is_refused_for_every_process(sandbox: Sandbox, root: Root,
                                            tmp_path: Path) -> None:
    # A builder that could trace a process could write through it, and tracing the
    # sandbox's init hung builds until their timeout: the seccomp filter refuses
    # ptrace outright, for a host pid, the run's init and the run's own children.
    host_pid = os.getpid()
    result, log = run(sandbox, root, tmp_path, f"""
        strace -p {host_pid} -o /tmp/trace -e trace=none; echo "host exit $?"
        strace -p 1 -o /tmp/trace -e trace=none; echo "init exit $?"
        strace -f -o /tmp/self true; echo "child exit $?"
        """, timeout=20)
    assert result.ok, log
    assert "host exit 1" in log
    assert "init exit 1" in log
    assert "child exit 1" in log
    assert "Operation not permitted" in log
    assert "attached" not in log.lower()
    assert result.seconds < 15  # refused at once, not hung until the timeout
    assert Path(f"/proc/{host_pid}/status").read_text().count("TracerPid:\t0") == 1


def test_the_hosts_loopback_is_out_of_reach(sandbox: Sandbox, root: Root,
                                            tmp_path: Path) -> None:
    accepted: list[object] = []
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(5)
    port = server.getsockname()[1]

    def accept() -> None:
        with contextlib.suppress(OSError):
            accepted.append(server.accept())

    thread = threading.Thread(target=accept)
    thread.start()
    result, log = run(sandbox, root, tmp_path,
                      f"echo hello > /dev/tcp/127.0.0.1/{port} && echo CONNECTED")
    server.close()
    thread.join()
    assert "CONNECTED" not in log
    assert not result.ok
    assert accepted == []


def test_the_sandbox_has_its_own_working_loopback(sandbox: Sandbox, root: Root,
                                                  tmp_path: Path) -> None:
    # nc is an alternatives link, made by maintainer scripts Kiln does not run.
    result, log = run(sandbox, root, tmp_path, """
        nc.openbsd -l 127.0.0.1 4000 > /tmp/got & sleep 0.5
        echo ping | nc.openbsd -N 127.0.0.1 4000; wait; echo "got $(cat /tmp/got)"
        echo "interfaces: $(tail -n +3 /proc/net/dev | cut -d: -f1)"
        """, timeout=20)
    assert result.ok, log
    assert "got ping" in log
    interfaces = next(line for line in log.splitlines() if line.startswith("interfaces"))
    assert interfaces.split(":", 1)[1].split() == ["lo"]


def test_a_canary_in_the_hosts_home_cannot_be_read(sandbox: Sandbox, root: Root,
                                                   tmp_path: Path) -> None:
    home = Path.home()
    canary = home / f".kiln-canary-{os.getpid()}"
    canary.write_text("secret\n")
    try:
        result, log = run(sandbox, root, tmp_path,
                          f"cat {canary} {home}/.ssh/id_ed25519 2>&1; ls {home}")
    finally:
        canary.unlink()
    assert "secret" not in log
    assert not result.ok


def _host_processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def test_the_timeout_kills_even_a_setsid_child(sandbox: Sandbox, root: Root,
                                               tmp_path: Path) -> None:
    marker = "4242.4242"
    result, log = run(sandbox, root, tmp_path,
                      f"setsid sleep {marker} & sleep {marker}1; echo FINISHED", timeout=2)
    assert result.timed_out
    assert result.exit_code is None
    assert "FINISHED" not in log
    assert "killed after 2 s" in log
    assert _host_processes_with(marker) == []


def test_a_fork_bomb_hits_the_pids_limit_not_the_host(sandbox: Sandbox, root: Root,
                                                      tmp_path: Path) -> None:
    # Each level waits for its pipeline, so the processes pile up until fork fails.
    result, log = run(sandbox, root, tmp_path, "bomb() { bomb | bomb; }; bomb",
                      pids=64, timeout=10)
    assert not result.ok
    assert "Resource temporarily unavailable" in log  # the pids limit, not the host, said no
    after, log = run(sandbox, root, tmp_path, "echo still fine")
    assert after.ok
    assert "still fine" in log


def test_a_memory_hog_is_killed_at_its_limit(sandbox: Sandbox, root: Root,
                                             tmp_path: Path) -> None:
    result, log = run(sandbox, root, tmp_path,
                      "x=$(head -c 300000000 /dev/zero | tr '\\0' a); echo SURVIVED ${#x}",
                      memory_bytes=64 << 20, timeout=60)
    assert not result.ok
    assert "SURVIVED" not in log



def test_a_run_that_cannot_join_its_cgroups_does_not_run(root: Root, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # Without its limits a build must not start at all: it would be unbounded.
    monkeypatch.setattr(RunCgroups, "procs_files",
                        property(lambda self: ["/proc/version"]))  # not writable
    result, log = run(BwrapSandbox(), root, tmp_path, "echo RAN")
    assert result.exit_code == 125
    assert "RAN" not in log


def test_no_global_sysctl_or_sysrq_can_be_written(sandbox: Sandbox, root: Root,
                                                 tmp_path: Path) -> None:
    # The review's escape: uid 0 of the host may write kernel.core_pattern even with
    # no capability, and the kernel then runs the pipe it names as root. Each write
    # puts back the value already there, so a failure of the sandbox harms nothing.
    core_pattern = Path("/proc/sys/kernel/core_pattern").read_text()
    out = tmp_path / "out"
    out.mkdir()
    os.chown(out, sandbox.host_uid, sandbox.host_uid)
    result, log = run(sandbox, root, tmp_path, """
        for knob in kernel/core_pattern kernel/modprobe vm/drop_caches fs/suid_dumpable; do
          value=$(cat /proc/sys/$knob)
          if [ -z "$value" ]; then value=1; fi
          if (echo "$value" > /proc/sys/$knob) 2>/dev/null; then echo "WROTE $knob"
          else echo "refused $knob"; fi
        done
        if (echo h > /proc/sysrq-trigger) 2>/dev/null; then echo "WROTE sysrq"; fi
        echo "inside $(id -u)"; touch /out/made-by-the-run
        """, (Mount("/out", out, writable=True),))
    assert result.ok, log
    assert "WROTE" not in log
    assert log.count("refused") == 4
    assert Path("/proc/sys/kernel/core_pattern").read_text() == core_pattern
    # Root inside, an unprivileged uid outside: what the kernel checks for sysctls.
    assert "inside 0" in log.splitlines()
    owner = (out / "made-by-the-run").stat().st_uid
    assert owner == sandbox.host_uid != 0


def test_the_kernel_keyring_user_namespaces_and_personality_are_refused(
        sandbox: Sandbox, root: Root, tmp_path: Path) -> None:
    attempts = {
        "read-keyring": "keyctl show @u",
        "add-key": "keyctl add user kiln-planted secret @u",
        "session-keyring": "keyctl new_session",
        "user-namespace": "unshare --user --map-root-user true",
        "mount-namespace": "unshare --mount true",
        "no-aslr": "setarch -R true",
    }
    script = "\n".join(f"if ( {command} ) >/dev/null 2>&1; then echo 'ESCAPED {name}'; "
                       f"else echo 'refused {name}'; fi" for name, command in attempts.items())
    result, log = run(sandbox, root, tmp_path, script + "\nsetarch linux32 true && echo ok32")
    assert result.ok, log
    assert "ESCAPED" not in log
    assert log.count("refused") == len(attempts)
    assert "ok32" in log  # a harmless personality stays allowed
    planted = subprocess.run(["sh", "-c", "cat /proc/keys"], capture_output=True, text=True,
                             check=False).stdout
    assert "kiln-planted" not in planted


def test_no_host_path_in_mountinfo_or_environment_and_no_sys(
        sandbox: Sandbox, root: Root, tmp_path: Path) -> None:
    secret_dir = tmp_path / "host-src-dir"
    secret_dir.mkdir()
    (secret_dir / "file").write_text("x\n")
    result, log = run(sandbox, root, tmp_path, """
        cat /proc/self/mountinfo; echo ENV; cat /proc/self/environ | tr '\\0' '\\n'
        echo ENDENV; ls /sys 2>&1 && echo HAS-SYS
        echo data > /build/file && echo wrote-build
        """, (Mount("/src", secret_dir),),
        scratch=(Scratch("/build", 1 << 20),))
    assert result.ok, log
    mountinfo, _, rest = log.partition("ENV")
    environment = rest.partition("ENDENV")[0]
    assert "HAS-SYS" not in log
    assert "wrote-build" in log
    assert str(tmp_path) not in environment
    assert str(Path.home()) not in environment
    writable = [line.split() for line in mountinfo.splitlines()
                if len(line.split()) > 5 and "rw" in line.split()[5].split(",")]
    # Every place a build can write is a fresh tmpfs (its root is "/"): it learns no
    # host path it could name to the host, as core_pattern's pipe did.
    for fields in writable:
        if fields[4].startswith(("/proc", "/dev")):
            continue
        assert fields[3] == "/", fields
    # A read-only input still shows where it lies on its filesystem (a bind mount
    # keeps its root): that is all, and it is read-only.
    for line in mountinfo.splitlines():
        if str(tmp_path) in line:
            assert "ro" in line.split()[5].split(","), line


def test_the_log_is_cut_at_its_limit_with_a_marker(sandbox: Sandbox, root: Root,
                                                   tmp_path: Path) -> None:
    result, log = run(sandbox, root, tmp_path,
                      "head -c 50000000 /dev/zero | tr '\\0' x; echo; echo done",
                      log_size=100_000, timeout=60)
    assert result.ok  # the run went on: the rest of its output was read and dropped
    assert len(log) < 100_000 + 200
    assert "kiln: log cut at 100000 bytes" in log
    assert result.log_tail(1).startswith("kiln: log cut")


def test_scratch_places_are_bounded(sandbox: Sandbox, root: Root, tmp_path: Path) -> None:
    result, log = run(sandbox, root, tmp_path, """
        head -c 3000000 /dev/zero > /build/big || echo "build full"
        head -c 3000000 /dev/zero > /tmp/big || echo "tmp full"
        truncate -s 10G /build/sparse && echo sparse-made
        """, scratch=(Scratch("/build", 1 << 20),), tmp_size=1 << 20)
    assert result.ok, log
    assert "build full" in log
    assert "tmp full" in log
    assert "No space left on device" in log


def test_a_runc_container_whose_kiln_process_was_killed_is_reaped(
        root: Root, tmp_path: Path) -> None:
    import json
    import signal
    import sys
    import time

    from workers import runc
    from workers.rootfs import SCRATCH

    # A Kiln process running a long build in runc, killed outright (as a stopped test
    # run or an OOM kill would): runc has no die-with-parent, the container runs on.
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"mounts": [[m.target, str(m.source)] for m in root.mounts],
                                "links": root.links, "log": str(tmp_path / "log")}))
    child = subprocess.Popen([sys.executable, "-c", f"""
import json, sys
from pathlib import Path
sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
from workers.runc import RuncSandbox
from workers.sandbox import Mount, RunSpec
plan = json.loads(Path({str(plan)!r}).read_text())
RuncSandbox().run(RunSpec(argv=("/bin/sleep", "300"), env={ENV!r}, log=Path(plan["log"]),
                          mounts=tuple(Mount(t, Path(s)) for t, s in plan["mounts"]),
                          links=plan["links"]))
"""])
    deadline = time.monotonic() + 30
    states: list[Path] = []
    while time.monotonic() < deadline and not states:
        states = list(SCRATCH.glob(f"kiln-run-{child.pid}-*/state/*/state.json"))
        time.sleep(0.1)
    assert states, "the container never started"
    time.sleep(0.5)  # its init runs sleep by now
    init = json.loads(states[0].read_text())["init_process_pid"]
    child.send_signal(signal.SIGKILL)
    child.wait()
    os.kill(init, 0)  # the orphan: still running
    assert runc.reap_orphans("runc") == [states[0].parent.name]
    for _ in range(50):
        try:
            os.kill(init, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the orphaned container's init {init} still runs")
    assert not states[0].parents[2].exists()  # its bundle went with it

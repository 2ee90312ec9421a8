"""Images of real Debian packages, run by stock tools (skopeo, podman) and by
`kiln run` straight from the store."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import kiln.resident
from kiln.debian.importer import import_debs, suite_codename
from kiln.store import Store
from kiln.store.materialize import store_tree
from tests.conftest import run_kiln_process
from tests.fixtures.packages import ensure_apt_lists, make_package
from tests.fixtures.registry import Registry, run_registry
from tests.fixtures.resident import KILN, resident_server

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("bwrap") is None,
                                reason="running images needs root and bubblewrap")


@pytest.fixture(scope="module")
def debian_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One store with hello, dash and coreutils from Debian, closures included."""
    ensure_apt_lists()
    directory = tmp_path_factory.mktemp("debian") / "store"
    import_debs(Store.open(directory), ["hello", "dash", "coreutils"], with_closure=True)
    return directory


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with run_registry(tmp_path_factory.mktemp("registry")) as running:
        yield running


def debian(name: str) -> str:
    return f"debian.org/{suite_codename()}/{name}"


def write_spec(path: Path, packages: list[str], **extra: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"name": "kiln.dev/images/test", "version": "1",
                                "packages": packages, **extra}))
    return path


def kiln_ok(store_dir: Path, *args: str | Path) -> str:
    result = run_kiln_process(store_dir, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def podman(storage: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # The flags DESIGN.md found to work on these machines, and a storage of the test's own
    # (podman wants its runroot path under 50 characters).
    with tempfile.TemporaryDirectory(prefix="kiln-podman-") as runroot:
        return subprocess.run(
            ["podman", "--root", str(storage), "--runroot", runroot,
             "--storage-driver", "vfs", "--cgroup-manager=cgroupfs", "--runtime=runc", *args],
            capture_output=True, text=True, check=False, timeout=300)


def test_stock_tools_copy_and_run_the_image(debian_store: Path, tmp_path: Path,
                                            registry: Registry) -> None:
    for tool in ("skopeo", "podman"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: ./dev test installs it")
    spec = write_spec(tmp_path / "image.yaml", [debian("hello")], entrypoint=["/usr/bin/hello"])
    built = kiln_ok(debian_store, "image", "build", spec, "-o", f"oci:{tmp_path / 'out'}:1",
                    "--json")
    target = f"docker://{registry.host}/images/hello:1"
    copied = subprocess.run(["skopeo", "copy", "--preserve-digests",
                             "--dest-tls-verify=false", f"oci:{tmp_path / 'out'}:1", target],
                            capture_output=True, text=True, check=False, timeout=300)
    assert copied.returncode == 0, copied.stderr
    ran = podman(tmp_path / "podman", "run", "--rm", "--network=none", "--tls-verify=false",
                 "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
                 f"{registry.host}/images/hello:1")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "Hello, world!"
    # skopeo kept the manifest byte for byte: Kiln still reads its packages from it.
    inspected = json.loads(kiln_ok(debian_store, "image", "inspect",
                                   f"{registry.host}/images/hello:1", "--json"))
    assert inspected["digest"] == json.loads(built)["digest"]
    assert debian("hello") in {p["name"] for p in inspected["packages"]}


def test_kiln_run_runs_a_spec_and_an_image_from_the_store(debian_store: Path,
                                                          tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "image.yaml", [debian("hello")], entrypoint=["/usr/bin/hello"])
    assert kiln_ok(debian_store, "run", spec).strip() == "Hello, world!"
    assert kiln_ok(debian_store, "run", spec, "--", "-g", "hi there").strip() == "hi there"
    kiln_ok(debian_store, "image", "build", spec, "-o", f"oci:{tmp_path / 'out'}:1")
    # A second host with an empty store runs it from the image's own layers.
    fresh = tmp_path / "fresh-store"
    assert kiln_ok(fresh, "run", f"oci:{tmp_path / 'out'}:1").strip() == "Hello, world!"


def test_two_images_sharing_a_package_read_the_same_inodes(debian_store: Path,
                                                           tmp_path: Path) -> None:
    store = Store.open(debian_store)
    libc = store.get(store.lookup(debian("libc6"), store.versions(debian("libc6"))[-1]))
    path = f"/{libc.mount_point}/lib/x86_64-linux-gnu/libc.so.6"
    first = write_spec(tmp_path / "a" / "image.yaml", [debian("coreutils"), debian("hello")])
    second = write_spec(tmp_path / "b" / "image.yaml", [debian("coreutils"), debian("dash")])
    inodes = [kiln_ok(debian_store, "run", spec, "--", "stat", "-c", "%i", path).strip()
              for spec in (first, second)]
    on_host = (store_tree(store, libc) / "lib/x86_64-linux-gnu/libc.so.6").stat().st_ino
    assert inodes == [str(on_host), str(on_host)]


def test_a_program_sees_itself_where_the_image_puts_it(debian_store: Path,
                                                      tmp_path: Path) -> None:
    # cmake, gcc and python find their own files from /proc/self/exe: in a root of
    # symbolic links that was the package's own tree, where another package's data
    # is not. Kiln's links to package files are hard links in the roots it runs.
    spec = write_spec(tmp_path / "image.yaml", [debian("coreutils")])
    assert kiln_ok(debian_store, "run", spec, "--", "/bin/readlink",
                   "/proc/self/exe").strip() == "/bin/readlink"


def test_kiln_run_refuses_a_kernel_older_than_the_image_requires(debian_store: Path,
                                                                 tmp_path: Path) -> None:
    make_package(Store.open(debian_store), tmp_path, "kiln.dev/needs-future-kernel", "1-1",
                 {"etc/future": "x\n"}, kernel="99.1")
    spec = write_spec(tmp_path / "image.yaml", [debian("dash"), "kiln.dev/needs-future-kernel"])
    result = run_kiln_process(debian_store, "run", spec, "--", "/bin/dash", "-c", "echo ran")
    assert result.returncode == 1
    assert "[kernel-too-old]" in result.stderr
    assert "99.1" in result.stderr
    assert os.uname().release in result.stderr
    assert "ran" not in result.stdout


CAP_EFF = ("while read key value; do [ \"$key\" = CapEff: ] && echo $value; done"
           " < /proc/self/status; exit 0")


def test_kiln_run_grants_exactly_the_capabilities_the_image_requires(debian_store: Path,
                                                                     tmp_path: Path) -> None:
    plain = write_spec(tmp_path / "a" / "image.yaml", [debian("dash")])
    assert kiln_ok(debian_store, "run", plain, "--", "/bin/dash", "-c", CAP_EFF).strip() == (
        "0000000000000000")
    make_package(Store.open(debian_store), tmp_path, "kiln.dev/binds-low-ports", "1-1",
                 {"etc/ports": "80\n"}, capabilities=("CAP_NET_BIND_SERVICE",))
    needing = write_spec(tmp_path / "b" / "image.yaml",
                         [debian("dash"), "kiln.dev/binds-low-ports"])
    assert kiln_ok(debian_store, "run", needing, "--", "/bin/dash", "-c", CAP_EFF).strip() == (
        "0000000000000400")  # bit 10, CAP_NET_BIND_SERVICE, and nothing else


@pytest.mark.parametrize("backend", ["bwrap", "runc"])
def test_kiln_run_runs_as_the_images_user(debian_store: Path, tmp_path: Path,
                                          backend: str) -> None:
    spec = write_spec(tmp_path / "image.yaml", [debian("coreutils"), debian("dash")],
                      user="1000:1001")
    ran = kiln_ok(debian_store, "run", spec, "--sandbox", backend, "--", "/bin/dash", "-c",
                  "id -u; id -g; touch /tmp/mine && echo tmp-writable;"
                  " touch /packages/x 2>/dev/null || echo packages-read-only")
    assert ran.splitlines() == ["1000", "1001", "tmp-writable", "packages-read-only"]


def test_kiln_run_refuses_a_user_name(debian_store: Path, tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "image.yaml", [debian("dash")], user="nobody")
    result = run_kiln_process(debian_store, "run", spec, "--", "/bin/dash", "-c", "echo ran")
    assert result.returncode == 2
    assert "[bad-user]" in result.stderr
    assert "ran" not in result.stdout


def test_kiln_run_grants_a_dangerous_capability_only_when_allowed(debian_store: Path,
                                                                  tmp_path: Path) -> None:
    make_package(Store.open(debian_store), tmp_path, "kiln.dev/wants-sys-admin", "1-1",
                 {"etc/admin": "1\n"}, capabilities=("CAP_SYS_ADMIN",))
    spec = write_spec(tmp_path / "image.yaml", [debian("dash"), "kiln.dev/wants-sys-admin"])
    refused = run_kiln_process(debian_store, "run", spec, "--", "/bin/dash", "-c", "echo ran")
    assert refused.returncode == 1
    assert "[capability-not-allowed]" in refused.stderr
    assert "--allow-capability CAP_SYS_ADMIN" in refused.stderr
    assert "ran" not in refused.stdout
    allowed = kiln_ok(debian_store, "run", spec, "--allow-capability", "CAP_SYS_ADMIN", "--",
                      "/bin/dash", "-c", CAP_EFF)
    assert allowed.strip() == "0000000000200000"  # bit 21, CAP_SYS_ADMIN, and nothing else


# -- the resident server: a served `kiln run` is the command run by itself --------

def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"waited {seconds} s for {what}"
        time.sleep(0.05)


def kiln_run(spec: Path, store: Path, env: dict[str, str], script: str,
             stdin: int = subprocess.DEVNULL, job: bool = False) -> subprocess.Popen[str]:
    """`kiln run` of a dash script in the image, as a process; with `job`, in a process
    group of its own, as a shell starts a job (a group that is not orphaned: Ctrl-Z's
    SIGTSTP stops it, where the kernel discards it for the tests' own group under CI)."""
    return subprocess.Popen(
        [str(KILN), "--store", str(store), "run", spec, "--", "/bin/dash", "-c", script],
        stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        process_group=0 if job else None)


SAYS = 'echo "in $PWD"; echo to-stderr >&2; exit 7'
SLEEPS = "sleep 120; : kiln-served-test"  # the marker names the run's processes


def state(pid: int) -> str:
    """A process's state letter (R, S, T for stopped...), "" once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def sandboxes_left() -> list[int]:
    """Processes of a SLEEPS run (its bwrap and shell carry the marker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"kiln-served-test" in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_a_served_command_is_the_command_run_by_itself(debian_store: Path,
                                                       tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "image.yaml", [debian("dash"), debian("coreutils")])
    with resident_server() as (_, server, env):
        by_itself = kiln_run(spec, debian_store, {**env, "KILN_SERVER": "off"}, SAYS)
        alone = by_itself.communicate(timeout=60)
        served = kiln_run(spec, debian_store, env, SAYS)
        # The same streams and exit status as by itself.
        assert served.communicate(timeout=60) == alone
        assert (served.returncode, by_itself.returncode) == (7, 7)
        assert alone[0] == "in /\nto-stderr\n"  # the run's output is one stream

        # Served: the client starts nothing; the server's child runs the sandbox. A
        # signal to the client reaches the command, which ends as `kiln` does on it
        # (128 + the signal, its sandbox killed and its cgroup removed), as soon as its
        # sandbox starts or later: nothing is left behind.
        for settle in (0.0, 1.0):
            interrupted = kiln_run(spec, debian_store, env, SLEEPS)
            wait_for(lambda: any(children_of(c) for c in children_of(server)), "a sandbox")
            assert children_of(interrupted.pid) == []
            time.sleep(settle)
            interrupted.send_signal(signal.SIGTERM)
            interrupted.communicate(timeout=60)
            assert interrupted.returncode == 128 + signal.SIGTERM
            wait_for(lambda: children_of(server) == [], "the child's end")
            wait_for(lambda: sandboxes_left() == [], "the sandbox's end")

        # Ctrl-Z on a terminal: the command stops with its client, and goes on with it
        # (its sandbox, in a session of its own, runs on, as by itself).
        primary, secondary = os.openpty()
        try:
            suspended = kiln_run(spec, debian_store, env, SLEEPS, stdin=secondary, job=True)
            wait_for(lambda: any(children_of(c) for c in children_of(server)), "a sandbox")
            [child] = children_of(server)
            suspended.send_signal(signal.SIGTSTP)
            wait_for(lambda: state(suspended.pid) == "T" and state(child) == "T", "stops")
            suspended.send_signal(signal.SIGCONT)
            wait_for(lambda: state(child) != "T", "the child to go on")
            suspended.terminate()
            suspended.communicate(timeout=60)
            assert suspended.returncode == 128 + signal.SIGTERM
        finally:
            os.close(primary)
            os.close(secondary)
        wait_for(lambda: sandboxes_left() == [], "the sandbox's end")

        # A client killed outright hangs up its command, as a closed terminal does.
        abandoned = kiln_run(spec, debian_store, env, SLEEPS)
        wait_for(lambda: any(children_of(c) for c in children_of(server)), "a sandbox")
        abandoned.kill()
        abandoned.communicate(timeout=60)
        wait_for(lambda: children_of(server) == [], "the hung-up child's end")
        wait_for(lambda: sandboxes_left() == [], "the hung-up sandbox's end")

        # The environment is the client's, read after the server started: a crash point
        # armed by a test kills the served command, and the client dies the same way.
        tree = tmp_path / "tree"
        tree.mkdir()
        (tree / "file").write_text("content\n")
        crashed = subprocess.run(
            [str(KILN), "--store", str(tmp_path / "fresh"), "fileset", "add", str(tree),
             "--name", "kiln.dev/tree", "--version", "1"],
            env={**env, "KILN_CRASH_AT": "object-write"}, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=60, check=False)
        assert crashed.returncode == -signal.SIGKILL, crashed.stderr

        # The client's limits, not the server's (a lower one is given).
        limited = subprocess.run(
            ["prlimit", "--nofile=123:123", str(KILN), "--store", str(debian_store), "run",
             spec, "--", "/bin/dash", "-c", "ulimit -n"], env=env, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=60, check=False)
        assert limited.stdout.strip() == "123", limited.stderr
        assert Path(f"/proc/{server}").exists()


def test_where_the_server_cannot_be_the_client_the_command_runs_by_itself(
        debian_store: Path, tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "image.yaml", [debian("dash"), debian("coreutils")])

    def runs_by_itself(server: int, env: dict[str, str], *launcher: str,
                       stdin: int = subprocess.DEVNULL) -> None:
        client = subprocess.Popen(
            [*launcher, str(KILN), "--store", str(debian_store), "run", spec, "--",
             "/bin/dash", "-c", SLEEPS], stdin=stdin, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True, env=env)
        try:
            wait_for(lambda: any(children_of(c) for c in children_of(client.pid)),
                     "the client's own sandbox")
            assert children_of(server) == []
        finally:
            client.terminate()
            client.communicate(timeout=60)

    with resident_server("prlimit", "--nofile=200:200") as (_, server, env):
        # A limit above what the server may give.
        runs_by_itself(server, env, "prlimit", "--nofile=1000:1000")
        roomy = subprocess.run(
            ["prlimit", "--nofile=1000:1000", str(KILN), "--store", str(debian_store), "run",
             spec, "--", "/bin/dash", "-c", "ulimit -n"], env=env, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=60, check=False)
        assert roomy.stdout.strip() == "1000", roomy.stderr
        # KILN_SERVER=off.
        runs_by_itself(server, {**env, "KILN_SERVER": "off"})

        # Kiln's code changed since the server started: it stops, the command runs here.
        module = Path(kiln.resident.__file__)
        before = module.stat()
        os.utime(module, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))
        try:
            changed = kiln_run(spec, debian_store, env, SAYS)
            assert changed.communicate(timeout=60)[0] == "in /\nto-stderr\n"
            wait_for(lambda: not Path(f"/proc/{server}").exists(), "the server's end")
        finally:
            os.utime(module, ns=(before.st_atime_ns, before.st_mtime_ns))

"""The server's half: a warm process that forks a child per command.

The server imports what the commands run often need (`kiln run`, `image build`,
`build`, `verify`) once, and never runs a command itself: each child starts from
the same state, as a new process would, and the server holds no store, lock or
cache. A child becomes its client (streams, working directory, environment, umask,
limits, a session of its own so that the client's signals reach its sandbox too),
runs the command, and writes its exit status itself; the server reports only a
child killed by a signal, and hangs up a child whose client went away, as a closed
terminal would.

The server stops itself when Kiln's code changes under it (each request checks),
so that a command never runs older code than a new process would.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import importlib
import marshal
import os
import selectors
import signal
import socket
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiln.resident.client import PROTOCOL, peer_uid
from kiln.resident.context import become, refusal
from kiln.resident.place import LOG, PID, SOCKET, make_private

# What the often-run commands import (found by running each after these: nothing
# else of note was left); loaded once, before the first request.
WARM = ("kiln.cli.main", "kiln.cli.run_commands", "kiln.cli.image_commands",
        "kiln.cli.build_commands", "kiln.cli.provenance_commands",
        "kiln.cli.registry_commands", "kiln.cli.progress", "kiln.image.build",
        "kiln.image.compose", "kiln.image.location", "kiln.image.sbom", "kiln.image.resolve",
        "kiln.image.spec", "kiln.registry.config", "kiln.registry.referrers",
        "kiln.recipes.yamldoc", "kiln.naming", "yaml", "debian.debian_support", "datetime",
        "workers.run", "workers.backends", "workers.bwrap", "workers.runc", "workers.build",
        "workers.build_plan", "workers.resolve", "provenance.verify")
_REQUEST_LIMIT = 4 << 20
_REQUEST_SECONDS = 5.0


@dataclass
class Child:
    """A command the server forked, and its client's connection."""

    pid: int
    pidfd: int
    connection: socket.socket
    client_gone: bool = False


def code_fingerprint() -> str:
    """Kiln's code as it is on disk now (every module's size and time), Python's, and
    the directories packages are installed in (an install or upgrade changes them)."""
    digest = hashlib.sha256(sys.executable.encode())
    for installed in sys.path:
        if os.path.basename(installed) not in ("site-packages", "dist-packages"):
            continue  # (a checkout's root changes with every file made there)
        with contextlib.suppress(OSError):
            digest.update(f"{installed}\0{os.stat(installed).st_mtime_ns}\n".encode())
    modules = []
    directories = [os.path.dirname(importlib.import_module(package).__file__ or "")
                   for package in ("kiln", "workers", "provenance", "master")]
    while directories:  # os.scandir, not Path.rglob: each request pays it (0.6 ms, not 2)
        with os.scandir(directories.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    if entry.name != "__pycache__":
                        directories.append(entry.path)
                elif entry.name.endswith(".py"):
                    found = entry.stat(follow_symlinks=False)
                    modules.append(f"{entry.path}\0{found.st_size}\0{found.st_mtime_ns}\n")
    for module in sorted(modules):
        digest.update(module.encode())
    return digest.hexdigest()


def serve(directory: str) -> None:
    """Listen in `directory` until SIGTERM, SIGINT or a change of Kiln's code."""
    make_private(directory)
    for module in WARM:
        importlib.import_module(module)
    fingerprint = code_fingerprint()
    path = os.path.join(directory, SOCKET)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    pid_file = Path(directory, PID)
    pid_file.write_text(f"{os.getpid()}\n")
    children: dict[int, Child] = {}
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, "listener")
    stopping = [False]

    def stop(_number: int, _frame: Any) -> None:
        stopping[0] = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    _log(directory, f"listening on {path} (pid {os.getpid()})")
    try:
        while not stopping[0]:
            for key, _events in selector.select(timeout=1.0):
                try:
                    if key.data == "listener":
                        if not _accept(listener, selector, children, fingerprint, directory):
                            stopping[0] = True
                        continue
                    kind, child = key.data
                    if child.pid not in children:
                        continue  # reaped earlier in this round: its client's end too
                    if kind == "ended":
                        _reap(child, selector, children)
                    else:
                        _client_readable(child, selector)
                except Exception as exc:  # one request's trouble; the server goes on
                    _log(directory, f"unexpected: {exc!r}")
    finally:
        listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        with contextlib.suppress(FileNotFoundError):
            if pid_file.read_text().strip() == str(os.getpid()):
                pid_file.unlink()
        _log(directory, "stopped")


def _accept(listener: socket.socket, selector: selectors.BaseSelector,
            children: dict[int, Child], fingerprint: str, directory: str) -> bool:
    """Take one request; False when the server must stop (its code changed)."""
    connection: socket.socket | None
    connection, _ = listener.accept()
    fds: list[int] = []
    try:
        connection.settimeout(_REQUEST_SECONDS)
        if peer_uid(connection) != os.getuid():
            _answer(connection, "refused", "another user")
            return True
        if code_fingerprint() != fingerprint:
            _answer(connection, "refused", "Kiln's code changed since the server started")
            _log(directory, "Kiln's code changed: stopping")
            return False
        request, fds = _read_request(connection)
        why = _why_not(request, fds)
        if why is not None:
            _answer(connection, "refused", why)
            return True
        connection.settimeout(None)
        pid = os.fork()
        if pid == 0:
            try:
                _run_child(connection, request, fds, listener, children)
            finally:
                os._exit(1)  # a child never returns to the server's loop
        pidfd = os.pidfd_open(pid)
        child = Child(pid, pidfd, connection)
        children[pid] = child
        selector.register(pidfd, selectors.EVENT_READ, ("ended", child))
        selector.register(connection, selectors.EVENT_READ, ("client", child))
        connection = None  # the child's now: closed when it ends
    except (OSError, ValueError, EOFError, TypeError) as exc:  # marshal's, on a bad request
        _log(directory, f"a request failed: {exc}")
    finally:
        for fd in fds:
            os.close(fd)
        if connection is not None:
            connection.close()
    return True


def _read_request(connection: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """The request and the client's three streams (closed here if the rest is bad)."""
    header, fds, _flags, _address = socket.recv_fds(connection, 4, 3)
    try:
        return _request_after(connection, header), fds
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


def _request_after(connection: socket.socket, header: bytes) -> dict[str, Any]:
    if len(header) != 4:
        raise ValueError("a truncated request")
    size = struct.unpack("!I", header)[0]
    if size > _REQUEST_LIMIT:
        raise ValueError(f"a request of {size} bytes")
    body = b""
    while len(body) < size:
        part = connection.recv(size - len(body))
        if not part:
            raise ValueError("a truncated request")
        body += part
    request = marshal.loads(body)  # from a peer of the server's own user (checked)
    if not isinstance(request, dict):
        raise ValueError("a request that is not an object")
    return request


def _why_not(request: dict[str, Any], fds: list[int]) -> str | None:
    if request.get("protocol") != PROTOCOL:
        return "another protocol"
    if len(fds) != 3:
        return "three streams are needed"
    argv, env = request.get("argv"), request.get("env")
    if not isinstance(argv, list) or not all(isinstance(word, str) for word in argv):
        return "malformed arguments"
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                            for k, v in env.items()):
        return "malformed environment"
    if not isinstance(request.get("cwd"), str) or not isinstance(request.get("context"), dict):
        return "malformed request"
    return refusal(request["context"])


def _run_child(connection: socket.socket, request: dict[str, Any], fds: list[int],
               listener: socket.socket, children: dict[int, Child]) -> None:
    """The command, as its client would have run it; its exit status sent back."""
    code = 1
    try:
        # Said by the child before it does anything: a client that heard it never runs
        # the command itself; one that did not (the child died first) may.
        _answer(connection, "pid", os.getpid())
        listener.close()
        for other in children.values():
            other.connection.close()
            os.close(other.pidfd)
        os.setsid()
        from kiln.cli.main import end_on_termination, main

        signal.signal(signal.SIGINT, signal.default_int_handler)
        end_on_termination()  # SIGTERM and SIGHUP, as the `kiln` program has them
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 (the process's own streams)
        sys.stdout = open(1, "w", closefd=False, buffering=1 if os.isatty(1) else -1)  # noqa: SIM115
        sys.stderr = open(2, "w", closefd=False, buffering=1)  # noqa: SIM115
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        become(request["context"])
        sys.argv = ["kiln", *request["argv"]]
        code = main(request["argv"])
        sys.stdout.flush()
    except SystemExit as exc:  # as Python ends on it: a message is printed, status 1
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except BrokenPipeError:
        code = 1
    except BaseException as exc:  # the child must report, whatever happened
        with contextlib.suppress(Exception):
            print(f"kiln: error: {exc!r} [internal]", file=sys.stderr)
        code = 1
    finally:
        # The command is over: a signal now (the server hangs up a child whose client
        # read its exit status and left) ends the child where it stands, not in a
        # handler that would raise through what is left of this.
        for number in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(number, signal.SIG_DFL)
        with contextlib.suppress(Exception):
            atexit._run_exitfuncs()  # as a process that ends does (multiprocessing's)
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        with contextlib.suppress(Exception):
            _answer(connection, "exit", code)
        os._exit(code & 0xFF)


def _reap(child: Child, selector: selectors.BaseSelector, children: dict[int, Child]) -> None:
    """A child ended: report a death by signal (an exit it reported itself)."""
    _, status = os.waitpid(child.pid, 0)
    if os.WIFSIGNALED(status):
        with contextlib.suppress(OSError):
            _answer(child.connection, "signal", os.WTERMSIG(status))
    selector.unregister(child.pidfd)
    if not child.client_gone:
        selector.unregister(child.connection)
    os.close(child.pidfd)
    child.connection.close()
    del children[child.pid]


def _client_readable(child: Child, selector: selectors.BaseSelector) -> None:
    """The client sends nothing after its request: this is its end. Hang up the
    command, as a terminal that closes does."""
    try:
        data = child.connection.recv(1, socket.MSG_DONTWAIT)
    except BlockingIOError:
        return
    except OSError:
        data = b""
    if data:
        return
    selector.unregister(child.connection)
    child.client_gone = True
    # To the child alone, through its pidfd (never another process that took its pid):
    # it ends as a command whose terminal closed, and its sandbox dies with it. A
    # child that already ended (its client read the exit status and left) is unmoved.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        signal.pidfd_send_signal(child.pidfd, signal.SIGHUP)


def _answer(connection: socket.socket, word: str, value: object) -> None:
    """One line to the client: pid, exit, signal or refused, and its value."""
    text = str(value).replace("\n", " ")
    connection.sendall(f"{word} {text}\n".encode())


def _log(directory: str, line: str) -> None:
    with open(os.path.join(directory, LOG), "a") as log:
        log.write(f"{os.getpid()} {line}\n")

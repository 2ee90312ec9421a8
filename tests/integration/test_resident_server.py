"""A resident server (`kiln server`) under requests that are broken or hostile: each is
refused or dropped, nothing of it is left open in the server, and the server goes on
serving. (Served commands themselves are tested with real sandboxes in
test_image_run.py.)"""

from __future__ import annotations

import marshal
import os
import shutil
import socket
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiln.resident.client import PROTOCOL, served
from kiln.resident.context import describe
from tests.fixtures.resident import KILN, resident_server


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, int]]:
    with resident_server() as (directory, pid, env):
        monkeypatch.setenv("KILN_SERVER_DIR", env["KILN_SERVER_DIR"])
        monkeypatch.delenv("KILN_SERVER", raising=False)
        yield directory, pid


def ask(directory: Path, data: bytes, fds: list[int], header: bytes | None = None) -> str:
    """Send a request as a client would (or a broken one); what the server answers."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(30)
        connection.connect(str(directory / "server.sock"))
        head = struct.pack("!I", len(data)) if header is None else header
        socket.send_fds(connection, [head], fds)
        if data:
            connection.sendall(data)
        connection.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := connection.recv(4096):
            answer += chunk
        return answer.decode()


def request(**changes: object) -> bytes:
    good: dict[str, object] = {"protocol": PROTOCOL, "argv": ["--version"],
                               "cwd": os.getcwd(), "env": dict(os.environ),
                               "context": describe()}
    return marshal.dumps({**good, **changes})


def test_broken_and_hostile_requests_are_refused_and_the_server_goes_on(
        server: tuple[Path, int]) -> None:
    directory, pid = server
    open_before = sorted(os.listdir(f"/proc/{pid}/fd"))
    streams = [0, 1, 2]
    assert ask(directory, b"", [], header=b"") == ""  # connected and left at once
    assert ask(directory, b"", streams, header=struct.pack("!I", 1 << 30)) == ""  # 1 GiB
    assert ask(directory, b"\x00garbage", streams) == ""  # not marshal
    assert ask(directory, marshal.dumps(["a", "list"]), streams) == ""
    refused = {
        "another protocol": (request(protocol=PROTOCOL + 1), streams),
        "three streams are needed": (request(), [1]),
        "malformed arguments": (request(argv=["--version", 7]), streams),
        "malformed environment": (request(env={"PATH": None}), streams),
        "uid differ": (request(context={**describe(), "uid": os.getuid() + 1}), streams),
        "RLIMIT_NOFILE is above": (request(context={**describe(), "limits": {
            "RLIMIT_NOFILE": [1 << 30, 1 << 30]}}), streams),
    }
    for reason, (data, fds) in refused.items():
        answer = ask(directory, data, fds)
        assert answer.startswith("refused "), (reason, answer)
        assert reason in answer
    # Nothing of them is left open in the server, and it serves as before.
    assert sorted(os.listdir(f"/proc/{pid}/fd")) == open_before
    assert served(["--store", str(directory / "store"), "fileset", "ls"]) == 0
    assert Path(f"/proc/{pid}").exists()


def test_neither_side_uses_a_directory_others_may_enter(server: tuple[Path, int]) -> None:
    directory, _ = server
    ls = ["--store", str(directory / "store"), "fileset", "ls"]
    assert served(ls) == 0
    # A client does not connect where others may have put the socket: it runs here.
    directory.chmod(0o755)
    try:
        assert served(ls) is None
    finally:
        directory.chmod(0o700)
    assert served(ls) == 0
    # Nor does a server listen there.
    shared = Path(tempfile.mkdtemp(prefix="kiln-shared-", dir="/tmp"))
    try:
        shared.chmod(0o755)
        refused = subprocess.run([str(KILN), "server", "start"], capture_output=True,
                                 text=True, env={**os.environ, "KILN_SERVER_DIR": str(shared)},
                                 timeout=60, check=False)
        assert refused.returncode != 0
        assert "not this user's alone" in refused.stderr
        assert not (shared / "server.sock").exists()
    finally:
        shutil.rmtree(shared)

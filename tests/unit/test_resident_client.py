"""Which commands a client keeps for itself (kiln.resident.client.runs_here)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from kiln.resident.client import runs_here


@contextmanager
def stdin_a_terminal() -> Iterator[None]:
    primary, secondary = os.openpty()
    saved = os.dup(0)
    os.dup2(secondary, 0)
    try:
        yield
    finally:
        os.dup2(saved, 0)
        for fd in (saved, primary, secondary):
            os.close(fd)


def test_commands_that_take_the_terminal_run_here_only_on_a_terminal() -> None:
    shell = ["build", "hello", "--shell"]
    passwd = ["farm", "passwd", "farm", "alice"]
    with stdin_a_terminal():
        assert runs_here(shell)
        assert runs_here(passwd)
        assert not runs_here([*passwd, "--password-stdin"])
        assert not runs_here(["run", "image.yaml", "--", "sh"])
        assert not runs_here(["--store", "s", "build", "hello"])
    devnull = os.open(os.devnull, os.O_RDONLY)
    saved = os.dup(0)
    os.dup2(devnull, 0)
    try:
        assert not runs_here(shell)
        assert not runs_here(passwd)
    finally:
        os.dup2(saved, 0)
        os.close(saved)
        os.close(devnull)


def test_the_server_commands_are_never_served() -> None:
    assert runs_here(["server", "start"])
    assert runs_here(["--store", "s", "server", "stop"])

"""`kiln server start|stop|status`: the user's resident server (see kiln.resident)."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from kiln.cli.output import print_json
from kiln.errors import KilnError
from kiln.resident.place import LOG, PID, SOCKET, make_private, server_dir

_START_SECONDS = 20.0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    server = commands.add_parser(
        "server", help="a resident Kiln that runs this user's commands in warm forks")
    actions = server.add_subparsers(dest="action", metavar="ACTION", required=True)
    start = actions.add_parser("start", help="start it (in the background)")
    start.add_argument("--foreground", action="store_true",
                       help="serve in this process until SIGTERM (for a service manager)")
    start.set_defaults(handler=cmd_start)
    stop = actions.add_parser("stop", help="stop it (commands it runs go on)")
    stop.set_defaults(handler=cmd_stop)
    status = actions.add_parser("status", help="whether it runs, and where")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(handler=cmd_status)


def cmd_start(args: argparse.Namespace) -> int:
    directory = server_dir()
    if args.foreground:
        from kiln.resident.server import serve

        serve(directory)
        return 0
    running = _running(directory)
    if running is not None:
        print(f"kiln server already runs (pid {running}, {Path(directory, SOCKET)})")
        return 0
    make_private(directory)
    with open(os.path.join(directory, LOG), "a") as log:
        # -P: no module of the directory it was started in may stand in for Kiln's;
        # cwd /: it holds no directory (a mount) busy while it runs.
        child = subprocess.Popen(
            [sys.executable, "-P", "-m", "kiln.cli.main", "server", "start", "--foreground"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            cwd="/", env={**os.environ, "KILN_SERVER": "off"})
    deadline = time.monotonic() + _START_SECONDS
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise KilnError(f"the server stopped at once (exit {child.returncode}); see"
                            f" {Path(directory, LOG)}", reason="server-failed")
        if _running(directory) == child.pid and Path(directory, SOCKET).exists():
            print(f"kiln server started (pid {child.pid}, {Path(directory, SOCKET)})")
            return 0
        time.sleep(0.02)
    child.terminate()
    raise KilnError(f"the server did not start in {_START_SECONDS:.0f} s; see"
                    f" {Path(directory, LOG)}", reason="server-failed")


def cmd_stop(args: argparse.Namespace) -> int:
    directory = server_dir()
    running = _running(directory)
    if running is None:
        print("kiln server is not running")
        return 0
    os.kill(running, signal.SIGTERM)
    deadline = time.monotonic() + _START_SECONDS
    while time.monotonic() < deadline and _alive(running):
        time.sleep(0.02)
    if _alive(running):
        raise KilnError(f"the server (pid {running}) did not stop", reason="server-failed")
    print(f"kiln server stopped (pid {running})")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    directory = server_dir()
    running = _running(directory)
    if args.json:
        print_json({"running": running is not None, "pid": running,
                    "socket": str(Path(directory, SOCKET))})
    elif running is None:
        print("kiln server is not running")
    else:
        print(f"kiln server runs (pid {running}, {Path(directory, SOCKET)})")
    return 0 if running is not None else 3


def _running(directory: str) -> int | None:
    """The server's pid, if the pid file names a live server."""
    try:
        pid = int(Path(directory, PID).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def _alive(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    # A zombie has an empty command line; a recycled pid another program's.
    return b"server" in cmdline and b"kiln" in cmdline

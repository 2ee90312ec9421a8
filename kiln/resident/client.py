"""The client's half: hand a command to the user's resident server and stand in for
the child that runs it (its exit status, the signals sent to this process).

Imported before anything else of Kiln, so it imports what costs least: the socket's
and signal C modules (`socket.py` brings `selectors` and `array`, `signal.py` brings
`enum`), `marshal` for the request (`json` brings `re`), and answers as lines of
text.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # (typeshed has no stub)
import _socket
import marshal
import os
import struct
import sys

from kiln.resident.place import SOCKET, private, server_dir

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (2 ms)
if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from types import FrameType

# Signals a terminal or a supervisor sends to a command: passed to the child's
# process group, as they would have reached the command and its sandbox.
FORWARDED = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT,
             _signal.SIGUSR1, _signal.SIGUSR2)
PROTOCOL = 1
_CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid


def served(argv: Sequence[str]) -> int | None:
    """The exit status of `kiln ARGV` run by the user's resident server; None where no
    server runs or it would not take the command (it is then run in this process)."""
    if os.environ.get("KILN_SERVER") == "off" or runs_here(argv):
        return None
    directory = server_dir()
    if not private(directory):
        return None
    connection = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        connection.connect(os.path.join(directory, SOCKET))
        if peer_uid(connection) != os.getuid():
            return None
        from kiln.resident.context import describe

        # marshal, not JSON: the server reads it only from a peer of its own user.
        request = marshal.dumps({"protocol": PROTOCOL, "argv": list(argv),
                                 "cwd": os.getcwd(), "env": dict(os.environ),
                                 "context": describe()})
        streams = struct.pack("3i", 0, 1, 2)
        connection.sendmsg([struct.pack("!I", len(request))],
                           [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, streams)])
        connection.sendall(request)
        return _stand_in(connection)
    except OSError:
        return None  # no server, or it went away before taking the command
    finally:
        connection.close()


def _stand_in(connection: _socket.socket) -> int | None:
    """Wait for the child's end, passing it the signals this process gets. None only
    while no child has said it runs: once one has, the command is never run again
    here, whatever becomes of the server."""
    child: list[int] = []
    pending: list[int] = []  # signals that came before the child said its pid

    def forward(number: int, _frame: FrameType | None) -> None:
        if not child:
            pending.append(number)
            return
        try:  # noqa: SIM105 (contextlib's import is 3 ms of every command)
            os.killpg(child[0], number)
        except ProcessLookupError:  # it ended: its status is on its way
            pass

    def suspend(_number: int, _frame: FrameType | None) -> None:
        """Ctrl-Z: the child stops with this process, and goes on when it does (`fg`)."""
        if child:  # SIGSTOP: a session of its own is an orphaned group, deaf to SIGTSTP
            forward(_signal.SIGSTOP, None)
        _signal.signal(_signal.SIGTSTP, _signal.SIG_DFL)
        os.kill(os.getpid(), _signal.SIGTSTP)  # stopped here until SIGCONT
        _signal.signal(_signal.SIGTSTP, suspend)
        if child:
            forward(_signal.SIGCONT, None)

    previous = {number: _signal.signal(number, forward) for number in FORWARDED}
    previous[_signal.SIGTSTP] = _signal.signal(_signal.SIGTSTP, suspend)
    try:
        for word, value in _answers(connection):
            if word == "refused" and not child:
                return None  # the server cannot be this process: run it here
            if word == "pid" and not child:
                child.append(int(value))
                for number in pending:
                    forward(number, None)
            elif word == "exit":
                return int(value)
            elif word == "signal":
                return _die_like(int(value))
    except OSError:
        pass
    finally:
        for number, handler in previous.items():
            _signal.signal(number, handler)
    if not child:
        return None
    print("kiln: error: the resident server went away while it ran the command"
          " [server-lost]", file=sys.stderr)
    return 1


def _answers(connection: _socket.socket) -> Iterator[tuple[str, str]]:
    """The server's and the child's answers, a line each ("pid 42", "exit 0"), until
    the connection closes (a signal's arrival does not interrupt the wait: PEP 475)."""
    pending = b""
    while True:
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            word, _, value = line.decode(errors="replace").partition(" ")
            yield word, value
        data = connection.recv(4096)
        if not data:
            return
        pending += data


def _die_like(number: int) -> int:
    """End as the child ended, killed by `number` (a shell then reports it so)."""
    sys.stdout.flush()
    if number not in (_signal.SIGKILL, _signal.SIGSTOP):  # (theirs cannot be changed)
        _signal.signal(number, _signal.SIG_DFL)
    os.kill(os.getpid(), number)
    return 128 + number  # a signal this process ignores or blocks


def peer_uid(connection: _socket.socket) -> int:
    """The user of the process at the other end of a Unix socket, as the kernel says."""
    credentials = connection.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED,
                                        _CREDENTIALS.size)
    return int(_CREDENTIALS.unpack(credentials)[1])


def runs_here(argv: Sequence[str]) -> bool:
    """Commands a server's child cannot run as this process would: `kiln server`
    itself, and, with a terminal on stdin, those that take the terminal as their own
    (a shell in a failed build's sandbox, `build --shell`; a password typed, `farm
    passwd`): a forked child cannot make it its controlling terminal."""
    if "server" in argv[:3]:
        return True
    try:
        terminal = os.isatty(0)
    except OSError:
        terminal = False
    words = set(argv)
    return terminal and ("--shell" in words or
                         ("passwd" in words and "--password-stdin" not in words))

"""Entry point: parse arguments, run one command, turn errors into one line.

Imports stay inside the command handlers: `kiln --help` and small commands
must not pay for modules they do not use (Python alone takes ~0.14 s to start).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from kiln import __version__
from kiln.errors import KilnError

# Which module registers each command, in the order `kiln --help` lists them. A
# command's parser alone is built when the command is named: building all of them
# cost every command 20 ms.
_REGISTRARS = (
    ("fileset_commands", "register", ("fileset",)),
    ("store_commands", "register", ("store",)),
    ("recipe_commands", "register", ("recipe",)),
    ("recipe_commands", "register_lock", ("lock",)),
    ("recipe_commands", "register_source", ("source",)),
    ("deb_commands", "register", ("deb",)),
    ("build_commands", "register", ("build-log", "build")),
    ("registry_commands", "register", ("push", "pull")),
    ("image_commands", "register", ("image", "set")),
    ("run_commands", "register", ("run",)),
    ("provenance_commands", "register", ("key", "attest", "verify", "policy")),
    ("farm_commands", "register", ("farm",)),
    ("index_commands", "register", ("index", "query")),
    ("server_commands", "register", ("server",)),
)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Kiln's parser: of `command` alone when it is one, else of every command."""
    import importlib

    parser = argparse.ArgumentParser(
        prog="kiln",
        description="Kiln: compose containers from verified, content-addressed FileSets.",
    )
    parser.add_argument("--version", action="version", version=f"kiln {__version__}")
    parser.add_argument("--store", type=Path, metavar="DIR",
                        help="the store directory (default: $KILN_STORE, else"
                             " ~/.local/share/kiln/store)")
    parser.add_argument("--debug", action="store_true",
                        help="show a traceback when a command fails")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    known = any(command in names for _module, _function, names in _REGISTRARS)
    for module, function, names in _REGISTRARS:
        if known and command not in names:
            continue
        getattr(importlib.import_module(f"kiln.cli.{module}"), function)(commands)
    _everywhere(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # What follows `--` is a command to run (`kiln run IMAGE --sandbox runc -- ls -l`),
    # taken whole: argparse cannot place it after options that follow a positional.
    words = _spelled_as_users_do(list(sys.argv[1:] if argv is None else argv))
    trailing = words[words.index("--") + 1:] if "--" in words else None
    if trailing is not None:
        words = words[:words.index("--")]
    parser = build_parser(_command_word(words))
    args = parser.parse_args(words)
    if trailing is not None:
        if not hasattr(args, "command_args"):
            parser.error(f"kiln {args.command} takes no command after --")
        args.command_args = trailing
    try:
        code: int = args.handler(args)
    except KilnError as exc:
        if args.debug:
            raise
        later = " (temporary: try again later)" if exc.temporary else ""
        print(f"kiln: error: {exc.message} [{exc.reason}]{later}", file=sys.stderr)
        if getattr(args, "json", False):  # a script reading --json gets the failure too
            print(json.dumps({"error": exc.message, "reason": exc.reason,
                              "temporary": exc.temporary}))
        return exc.exit_status
    except OSError as exc:
        if args.debug:
            raise
        where = f": {exc.filename}" if exc.filename else ""
        print(f"kiln: error: {exc.strerror or exc}{where} [os-error]", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kiln: interrupted", file=sys.stderr)
        return 130
    sys.stdout.flush()
    return code


def _command_word(words: list[str]) -> str | None:
    """The command among the words, past the global options (None: there is none)."""
    index = 0
    while index < len(words) and words[index].startswith("-"):
        index += 2 if words[index] == "--store" else 1  # --store takes a value
    return words[index] if index < len(words) else None


def _spelled_as_users_do(words: list[str]) -> list[str]:
    """`kiln build log NAME` is `kiln build-log NAME` (a recipe named `log` is built by
    its package name: `kiln build kiln.dev/log`)."""
    command = _command_word(words)
    if command == "build":
        index = words.index("build")
        if words[index + 1:index + 2] == ["log"]:
            return [*words[:index], "build-log", *words[index + 2:]]
    return words


def _everywhere(parser: argparse.ArgumentParser) -> None:
    """`--store` and `--debug` after a subcommand too (`kiln fileset ls --store DIR`),
    as users type them; given there, they win over the same before it."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for sub in dict.fromkeys(action.choices.values()):  # aliases share a parser
            sub.add_argument("--store", type=Path, metavar="DIR", default=argparse.SUPPRESS,
                             help="the store directory (as before the command)")
            sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show a traceback when a command fails")
            _everywhere(sub)


def end_on_termination() -> None:
    """SIGTERM and SIGHUP (a supervisor's stop, a closed terminal, a served command's
    client gone) end the command as an exit does, 128 + the signal, through every
    `finally` on the way: a run's cgroup is emptied and removed, its sandbox killed
    with it, its staging undone. Left to the default, the process died where it
    stood, and a sandbox that had not yet armed its parent-death signal ran on. A
    second signal is not waited on."""
    import signal

    def terminated(number: int, _frame: object) -> None:
        for again in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(again, signal.SIG_DFL)
        raise SystemExit(128 + number)

    for number in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, terminated)


def run() -> None:
    end_on_termination()
    # Close stdout ourselves so that a closed pipe (`kiln ... | head`) is not a traceback.
    code = main()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(code)


if __name__ == "__main__":
    run()

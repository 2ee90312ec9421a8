"""The `kiln` program: the user's resident server runs the command where one runs
(kiln.resident), else this process does. Nothing else is imported first: a served
command pays for Python's start-up and this module alone."""

from __future__ import annotations

import sys


def run() -> None:
    from kiln.resident.client import served

    code = served(sys.argv[1:])
    if code is not None:
        sys.exit(code)
    from kiln.cli.main import run as run_here

    run_here()

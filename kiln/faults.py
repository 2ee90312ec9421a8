"""Named crash points, so tests can kill Kiln at the exact moment they mean.

The crash-safety tests set KILN_CRASH_AT=<point> in a child process; at that
point the process SIGKILLs itself, as a power cut or an OOM kill would stop it.
Outside tests the variable is unset and each call is one comparison.
"""

from __future__ import annotations

import os
import signal


def crash_point(name: str) -> None:
    """Die here, without cleanup, if the tests armed this point (read each time: a
    resident server's child takes its client's environment after the import)."""
    if name == os.environ.get("KILN_CRASH_AT"):
        os.kill(os.getpid(), signal.SIGKILL)

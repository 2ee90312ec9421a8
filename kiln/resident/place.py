"""Where a user's resident server listens: a directory only that user can enter.

`$KILN_SERVER_DIR`, else `$XDG_RUNTIME_DIR/kiln`, else `/tmp/kiln-UID`. Both sides
refuse a directory another user owns or may write to: a socket there could be
anyone's, and a client hands its streams and environment to what it connects to.
"""

from __future__ import annotations

import os
import stat

SOCKET = "server.sock"
PID = "server.pid"
LOG = "server.log"


def server_dir() -> str:
    chosen = os.environ.get("KILN_SERVER_DIR")
    if chosen:
        return chosen
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return os.path.join(runtime, "kiln")
    return f"/tmp/kiln-{os.getuid()}"


def private(directory: str) -> bool:
    """Whether `directory` is this user's alone (owned, no access for others)."""
    try:
        found = os.lstat(directory)
    except OSError:
        return False
    return (stat.S_ISDIR(found.st_mode) and found.st_uid == os.getuid()
            and not found.st_mode & 0o077)


def make_private(directory: str) -> None:
    """Create `directory` for this user alone; refuse one that is not."""
    os.makedirs(directory, 0o700, exist_ok=True)
    if not private(directory):
        raise PermissionError(f"{directory} is not this user's alone (owner, mode 0700):"
                              " the server will not listen there")

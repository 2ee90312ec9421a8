"""The recipe repository's post-receive hook: each pushed branch to the master's
change hook, logged in (anonymous change posts are refused).

    git runs: hooks/post-receive  ->  python -m master.hook FARM_DIR  (stdin: old new ref)
"""

from __future__ import annotations

import base64
import sys
import urllib.parse
import urllib.request
from pathlib import Path

from master.config import load_farm

HOOK_USER = "hook"


def notify(farm_dir: Path, lines: list[str]) -> int:
    """POST each updated branch; the number of changes the master accepted."""
    farm = load_farm(farm_dir)
    password = farm.path("users/hook.password").read_text().strip()
    token = base64.b64encode(f"{HOOK_USER}:{password}".encode()).decode()
    accepted = 0
    for line in lines:
        parts = line.split()
        if len(parts) != 3 or not parts[2].startswith("refs/heads/"):
            continue
        _old, new, ref = parts
        if set(new) == {"0"}:
            continue  # a deleted branch builds nothing
        body = urllib.parse.urlencode({
            "revision": new, "branch": ref.removeprefix("refs/heads/"),
            "repository": farm.recipes_url, "project": farm.name,
            "author": "post-receive", "comments": f"push to {ref}"}).encode()
        request = urllib.request.Request(f"{farm.www_url}change_hook/base", data=body,
                                         headers={"Authorization": f"Basic {token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            if response.status == 200:
                accepted += 1
    return accepted


def main() -> None:
    try:
        notify(Path(sys.argv[1]), sys.stdin.read().splitlines())
    except OSError as exc:
        # The push itself stands; the farm will plan it with the next push or poll.
        print(f"kiln: the farm was not told of this push: {exc}", file=sys.stderr)


if __name__ == "__main__":
    main()

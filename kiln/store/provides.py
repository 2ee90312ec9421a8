"""What each named package provides, remembered by FileSet digest.

Resolving an image asks who provides a name, and the answer spans every named
package of the store: read from each FileSet record, it cost a parse per package on
every `kiln run` and `kiln image build` (8 ms for a store of 70, growing with the
store). A FileSet never changes under its digest, so neither does what it provides:
`cache/provides.json` keeps it for the named FileSets, rewritten when names change
(the digests of the store's names, not their number, decide what it holds). It is a
cache: unreadable or partial, it is read from the records again.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable

from kiln.canonical import Digest
from kiln.package import PackageMetadata
from kiln.store.layout import write_atomically
from kiln.store.store import Store

FILE = "provides.json"


def provided(store: Store, digests: Iterable[Digest]) -> dict[Digest, tuple[str, ...]]:
    """What each of `digests` (named FileSets) provides; a FileSet that is not a package
    provides nothing."""
    wanted = list(dict.fromkeys(digests))
    path = store.layout.cache / FILE
    remembered: dict[str, list[str]] = {}
    with contextlib.suppress(OSError, ValueError):
        loaded = json.loads(path.read_bytes())
        if isinstance(loaded, dict):
            remembered = loaded
    found: dict[Digest, tuple[str, ...]] = {}
    missing = False
    for digest in wanted:
        names = remembered.get(digest)
        if isinstance(names, list) and all(isinstance(name, str) for name in names):
            found[digest] = tuple(names)
            continue
        missing = True
        metadata = store.get(digest).metadata
        found[digest] = metadata.provides if isinstance(metadata, PackageMetadata) else ()
    if missing or len(remembered) != len(found):
        data = json.dumps({d: list(names) for d, names in found.items()},
                          sort_keys=True).encode()
        with contextlib.suppress(OSError):  # a read-only store: read the records next time
            write_atomically(path, data, store.layout.tmp, mode=0o644)
    return found

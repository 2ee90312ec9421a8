"""The committed fixture trees whose digests and archive bytes are golden.

Git keeps neither empty directories nor modes beyond the executable bit, so the
trees are described here and written by the tests.
"""

from __future__ import annotations

from tests.treespec import Dir, File, Link, Spec

HELLO: Spec = {
    "usr/bin/hello": File(b"#!/bin/sh\necho 'Hello, world!'\n", executable=True),
    "usr/share/doc/hello/copyright": File(b"GPL-3.0-or-later\n"),
    "usr/share/doc/hello/README": File(b"GPL-3.0-or-later\n"),  # same content: a hard link
    "usr/share/man/man1/hello.1": File(b".TH HELLO 1\n"),
    "usr/lib/libhello.so.1.0": File(bytes(range(256)) * 40),  # binary, several blocks
    "usr/lib/libhello.so.1": Link("libhello.so.1.0"),
    "usr/lib/libhello.so": Link("/packages/kiln.dev/hello/2.10-1/usr/lib/libhello.so.1"),
    "var/empty": Dir(),
    "etc/hello.conf": File(b""),
}

AWKWARD: Spec = {
    "données/résumé.txt": File("café ☕\n".encode()),
    "données/lien": Link("résumé.txt"),
    "deep/" + "/".join(["segment-of-twenty-ch"] * 6) + "/file": File(b"ustar prefix split\n"),
    "long/" + "n" * 200: File(b"needs a pax path record\n"),
    "tab\tand newline\nin name": File(b"odd but valid UTF-8\n", executable=True),
    "a/b": Dir(),
    "a.b": File(b"sorts after a/ component-wise\n"),
    "a-b": File(b"sorts before a\n"),
}

FIXTURES: dict[str, Spec] = {"hello": HELLO, "awkward": AWKWARD}
NAMES = {"hello": ("kiln.dev/hello", "2.10-1"), "awkward": ("kiln.dev/awkward", "1:0.1~rc1-1")}

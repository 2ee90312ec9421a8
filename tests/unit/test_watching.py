"""A build's progress: the log's last line as it grows, never a terminal escape."""

from __future__ import annotations

import time
from pathlib import Path

from workers.watching import following, last_line


class Seen:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def phase(self, name: str) -> None:
        self.lines.append(f"phase {name}")

    def line(self, text: str) -> None:
        self.lines.append(text)


def test_the_last_line_is_printable_text_only(tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    log.write_bytes(b"one\n" + b"x" * 10000 + b"\n\x1b[2Jcompiling \x07main.c\r\n\n")
    assert last_line(log) == "[2Jcompiling main.c"
    assert last_line(tmp_path / "missing.log") == ""


def test_a_watcher_hears_each_new_last_line_until_the_block_ends(tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    log.write_text("")
    seen = Seen()
    with following(log, seen, interval=0.02):
        for text in ("configure", "make", "make"):
            with open(log, "a") as out:
                out.write(f"{text}\n")
            time.sleep(0.2)
    heard = len(seen.lines)
    with open(log, "a") as out:
        out.write("after\n")
    time.sleep(0.1)
    # Each poll tells the last line, again while it stays the last; nothing once the
    # block ended.
    assert [line for index, line in enumerate(seen.lines)
            if index == 0 or seen.lines[index - 1] != line] == ["configure", "make"]
    assert len(seen.lines) > 2
    assert len(seen.lines) == heard

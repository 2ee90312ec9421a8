"""Progress goes to stderr, only for long work, and never into stdout."""

from __future__ import annotations

import pytest

from kiln.cli import progress


def test_lines_every_interval_when_not_a_terminal(capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "LINE_INTERVAL", 0.0)
    lines = progress.progress_for_stderr()  # pytest's stderr is not a terminal
    lines.start("hashing", 3 << 20)
    lines.advance(1 << 20)
    lines.advance(1 << 20)
    lines.finish()
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == ["kiln: hashing: 1.0 MiB of 3.0 MiB",
                                "kiln: hashing: 2.0 MiB of 3.0 MiB"]


def test_quiet_for_short_work(capsys: pytest.CaptureFixture[str]) -> None:
    lines = progress.progress_for_stderr()
    lines.start("hashing", None)
    lines.advance(10 << 20)
    lines.finish()
    assert capsys.readouterr() == ("", "")


def test_bar_on_a_terminal_draws_on_stderr_once_work_is_long(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "MIN_BYTES", 100)
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    bar = progress._RichProgress()
    bar.start("hashing", 1000)
    bar.advance(50)
    assert not drawing(bar)  # not yet: the work may end quickly
    bar.advance(500)
    assert drawing(bar)
    bar.finish()
    out, _err = capsys.readouterr()
    assert out == ""


def drawing(bar: progress._RichProgress) -> bool:
    return bar._bar is not None

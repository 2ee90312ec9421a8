"""Errors keep their class and reason when they cross a process boundary."""

from __future__ import annotations

import pickle

from kiln.errors import TEMPORARY_EXIT, CheckFailed, InputError, KilnError, StoreError


def test_errors_survive_pickling_with_their_reason() -> None:
    for error in (InputError("bad", reason="bad-path"), StoreError("full", reason="store-write"),
                  CheckFailed("no"), KilnError("plain")):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error)
        assert (copy.message, copy.reason, copy.exit_code) == (
            error.message, error.reason, error.exit_code)


def test_a_temporary_error_exits_75_and_crosses_processes_as_such() -> None:
    temporary = InputError("the mirror is down", reason="source-unreachable", temporary=True)
    assert temporary.exit_status == TEMPORARY_EXIT == 75
    assert InputError("no such file", reason="source-unreachable").exit_status == 2
    assert CheckFailed("bad signature").exit_status == 1
    again = pickle.loads(pickle.dumps(temporary))
    assert again.temporary
    assert again.reason == "source-unreachable"

"""Errors keep their class and reason when they cross a process boundary."""

from __future__ import annotations

import pickle

from kiln.errors import CheckFailed, InputError, KilnError, StoreError


def test_errors_survive_pickling_with_their_reason() -> None:
    for error in (InputError("bad", reason="bad-path"), StoreError("full", reason="store-write"),
                  CheckFailed("no"), KilnError("plain")):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error)
        assert (copy.message, copy.reason, copy.exit_code) == (
            error.message, error.reason, error.exit_code)

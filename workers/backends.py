"""Choosing a sandbox backend by name, for the CLI and a farm's workers alike."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kiln.errors import InputError

if TYPE_CHECKING:
    from workers.sandbox import Sandbox

BACKENDS = ("bwrap", "runc")


def open_sandbox(name: str) -> Sandbox:
    """The sandbox backend `name` (bwrap, the default, or runc)."""
    if name == "bwrap":
        from workers.bwrap import BwrapSandbox

        return BwrapSandbox()
    if name == "runc":
        from workers.runc import RuncSandbox

        return RuncSandbox()
    raise InputError(f"no sandbox backend {name!r}; there are {', '.join(BACKENDS)}",
                     reason="bad-usage")

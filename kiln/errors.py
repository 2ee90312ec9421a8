"""The one error root of Kiln, with a stable reason string on every error.

Tests assert the reason, never the wording, so messages can be improved freely.
The CLI maps the class to an exit code: 2 for bad usage or bad input, 1 for a
check that ran and failed, and 75 (EX_TEMPFAIL) for any error marked
`temporary`: a registry, source, apt or signing service that could not be
reached. The same command may succeed later, so a farm retries the build.
"""

from __future__ import annotations

TEMPORARY_EXIT = 75


class KilnError(Exception):
    """Something a user did or met that Kiln reports as one clear line."""

    exit_code = 2
    default_reason = "kiln-error"
    temporary = False  # the same action may work later (a service was unreachable)

    def __init__(self, message: str, *, reason: str | None = None,
                 temporary: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        if temporary is not None:
            self.temporary = temporary

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[object, ...]:
        # Errors cross process boundaries (ingest workers); keep the reason.
        return (_rebuild, (type(self), self.message, self.reason, self.temporary))

    @property
    def exit_status(self) -> int:
        """The exit code the CLI ends with for this error."""
        return TEMPORARY_EXIT if self.temporary else self.exit_code


def _rebuild(cls: type[KilnError], message: str, reason: str, temporary: bool) -> KilnError:
    return cls(message, reason=reason, temporary=temporary)


class InputError(KilnError):
    """Bad input: a malformed name, tree, archive, reference or file."""

    default_reason = "bad-input"


class NotFound(InputError):
    """A reference that names nothing in the store."""

    default_reason = "not-found"


class ConflictError(InputError):
    """Two things claim the same place (a path, a name)."""

    default_reason = "conflict"


class StoreError(KilnError):
    """The store cannot be read or written (permissions, disk, corruption)."""

    default_reason = "store-error"


class CheckFailed(KilnError):
    """A check ran and found a problem (fsck, verification, policy)."""

    exit_code = 1
    default_reason = "check-failed"

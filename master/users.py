"""The console's users: a password file of scrypt hashes, and the Buildbot login that
reads it.

    users/console.passwd     NAME:scrypt$N$r$p$SALT$HASH   (0600, one line a user)

Buildbot's own HTPasswdAuth wants the passwords in clear text, and Apache's
htpasswd hashes need a library Kiln does not carry; scrypt is in the standard
library and slow on purpose. The file is read again when it changes, so adding a
user needs no restart. Roles come from farm.yaml, never from this file.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Any

from buildbot.plugins import util
from twisted.internet import defer, threads

from kiln.errors import InputError

USERS_FILE = "users/console.passwd"
_N, _R, _P = 2**14, 8, 1  # 16 MiB and ~40 ms a check on these machines
# Checked against when the user is unknown, so that an unknown name costs what a
# wrong password does and the answer does not tell which half was wrong.
_DECOY = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA$" + "A" * 43


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def password_matches(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = _unb64(digest)
        actual = hashlib.scrypt(password.encode(), salt=_unb64(salt), n=int(n), r=int(r),
                                p=int(p), dklen=len(expected), maxmem=64 << 20)
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


def read_users(path: Path) -> dict[str, str]:
    """Name -> stored hash; a line that is not NAME:HASH is refused, naming the line."""
    users: dict[str, str] = {}
    if not path.exists():
        return users
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        name, colon, stored = line.partition(":")
        if not colon or not name or not stored.startswith("scrypt$"):
            raise InputError(f"{path}:{number}: not NAME:scrypt$... (kiln farm passwd makes"
                             " these lines)", reason="bad-users-file")
        users[name] = stored
    return users


def set_password(path: Path, name: str, password: str) -> None:
    """Add `name` or change its password; the file stays 0600, written whole."""
    if not password:
        raise InputError("an empty password is refused", reason="bad-usage")
    users = read_users(path)
    users[name] = hash_password(password)
    scratch = path.with_name(path.name + ".new")
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.writelines(f"{user}:{stored}\n" for user, stored in sorted(users.items()))
    os.replace(scratch, path)


class PasswordFileAuth(util.CustomAuth):  # type: ignore[misc]
    """Buildbot's login (HTTP basic at /auth/login) against the users file."""

    def __init__(self, path: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path = path
        self._users: dict[str, str] = {}
        self._read: tuple[int, int, int] | None = None

    def requestAvatarId(self, cred: Any) -> defer.Deferred[Any]:
        # scrypt takes tens of milliseconds: never on the reactor's thread.
        def check() -> Any:
            if self.check_credentials(cred.username, cred.password):
                return cred.username
            from twisted.cred.error import UnauthorizedLogin

            raise UnauthorizedLogin()

        return threads.deferToThread(check)

    def check_credentials(self, username: bytes, password: bytes) -> bool:
        users = self._current_users()
        stored = users.get(username.decode(errors="replace"))
        matches = password_matches(password.decode(errors="replace"), stored or _DECOY)
        return stored is not None and matches

    def _current_users(self) -> dict[str, str]:
        try:
            status = self.path.stat()
        except FileNotFoundError:
            return {}
        # set_password replaces the file: a new inode, even within one clock tick.
        stamp = (status.st_ino, status.st_mtime_ns, status.st_size)
        if stamp != self._read:
            self._users, self._read = read_users(self.path), stamp
        return self._users


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

"""The console's users file: scrypt hashes, refused lines named, one answer for a wrong
name and a wrong password."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from kiln.errors import InputError
from master.users import PasswordFileAuth, hash_password, password_matches, read_users, set_password


def test_a_password_matches_only_its_own_hash() -> None:
    stored = hash_password("correct horse")
    assert stored.startswith("scrypt$16384$8$1$")
    assert password_matches("correct horse", stored)
    assert not password_matches("correct horsE", stored)
    assert hash_password("correct horse") != stored  # salted
    assert not password_matches("correct horse", "scrypt$bad")
    assert not password_matches("x", "md5$1$2$3$4$5")


def test_users_are_added_and_changed_in_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / "console.passwd"
    set_password(path, "alice", "one")
    set_password(path, "bob", "two")
    set_password(path, "alice", "three")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    users = read_users(path)
    assert sorted(users) == ["alice", "bob"]
    assert password_matches("three", users["alice"])
    assert "three" not in path.read_text()  # never the password itself
    with pytest.raises(InputError, match="empty password"):
        set_password(path, "carol", "")


def test_a_line_that_is_not_a_user_is_named(tmp_path: Path) -> None:
    path = tmp_path / "console.passwd"
    path.write_text(f"alice:{hash_password('a')}\nbob:plaintext\n")
    with pytest.raises(InputError) as raised:
        read_users(path)
    assert raised.value.reason == "bad-users-file"
    assert f"{path}:2:" in raised.value.message


def test_the_login_checks_the_file_as_it_is_now(tmp_path: Path) -> None:
    path = tmp_path / "console.passwd"
    auth = PasswordFileAuth(path)
    assert not auth.check_credentials(b"alice", b"one")  # no file yet: nobody
    set_password(path, "alice", "one")
    assert auth.check_credentials(b"alice", b"one")
    assert not auth.check_credentials(b"alice", b"two")
    assert not auth.check_credentials(b"mallory", b"one")
    set_password(path, "alice", "changed")  # no restart needed
    assert not auth.check_credentials(b"alice", b"one")
    assert auth.check_credentials(b"alice", b"changed")


def test_an_operator_adds_a_user_with_a_made_password_kept_private(tmp_path: Path) -> None:
    from master.config import load_farm
    from master.lifecycle import set_user_password
    from master.users import USERS_FILE

    (tmp_path / "users").mkdir()
    (tmp_path / "farm.yaml").write_text("recipes: {repository: r.git}\n"
                                        "registry: {host: 127.0.0.1:5000}\nsigner: file:k\n")
    farm = load_farm(tmp_path)
    said = set_user_password(farm, "carol", None)
    made = tmp_path / "users" / "carol.password"
    assert str(made) in said
    assert stat.S_IMODE(made.stat().st_mode) == 0o600
    assert password_matches(made.read_text().strip(), read_users(tmp_path / USERS_FILE)["carol"])
    with pytest.raises(InputError, match="not a name"):
        set_user_password(farm, "../../etc/x", "pw")

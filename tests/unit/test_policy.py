"""Trust-policy rules: small objects with one verify that raises, combined."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiln.errors import CheckFailed, InputError
from kiln.relations import parse_alternatives
from provenance.policy import AllOf, AnyOf, Evidence, NotDenied, load_policy


def denying(text: str) -> NotDenied:
    return NotDenied(parse_alternatives(text).options)


def test_all_of_needs_every_rule_and_any_of_one() -> None:
    old_libc = Evidence("debian.org/bookworm/libc6", "2.36-9")
    both = AllOf((denying("debian.org/bookworm/libc6 (<< 2.37)"), denying("kiln.dev/x")))
    with pytest.raises(CheckFailed) as raised:
        both.verify(old_libc)
    assert raised.value.reason == "version-denied"
    AnyOf((denying("debian.org/bookworm/libc6 (<< 2.37)"), denying("kiln.dev/x"))).verify(
        old_libc)
    with pytest.raises(CheckFailed):
        AnyOf((denying("debian.org/bookworm/libc6"),
               denying("debian.org/bookworm/libc6 (= 2.36-9)"))).verify(old_libc)
    denying("debian.org/bookworm/libc6 (<< 2.36)").verify(old_libc)
    # An any-of of nothing admits nothing, as sigstore-python's does.
    with pytest.raises(CheckFailed) as empty:
        AnyOf(()).verify(old_libc)
    assert empty.value.reason == "empty-policy"


def test_a_malformed_policy_names_file_and_line(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("trust:\n  - prefix: kiln.dev/\n    keys: [missing.pub]\n"
                      "deny: [NotAName]\nbuilder: [x]\n")
    with pytest.raises(InputError) as raised:
        load_policy(policy)
    message = raised.value.message
    assert f"{policy}:3:" in message  # the key that cannot be read
    assert f"{policy}:4:" in message  # the denial that is not a relation
    assert f"{policy}:5: unknown key 'builder'" in message

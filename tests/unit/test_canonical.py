"""Kiln's fast canonical JSON is RFC 8785 for every value Kiln writes."""

from __future__ import annotations

from typing import Any

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from kiln.canonical import canonical_json, parse_digest, sha256_digest
from kiln.errors import InputError

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.text(alphabet=st.characters(exclude_categories=["Cs"])),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(alphabet=st.characters(max_codepoint=127), max_size=8),
                      children, max_size=5),
    max_leaves=30,
)


@given(json_values)
def test_matches_rfc8785(value: Any) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


def test_control_characters_and_unicode() -> None:
    value = {"b": "tab\there\u0001\u001f\u007f é \u2028 😀", "a": [1, True, None]}
    assert canonical_json(value) == rfc8785.dumps(value)
    assert canonical_json(value).startswith(b'{"a":[1,true,null],"b":"tab\\there\\u0001')


@pytest.mark.parametrize("value", [1.5, {"k": float("nan")}, {1: "x"}, 2**60, {"é": 1}])
def test_values_outside_the_subset_are_refused(value: Any) -> None:
    with pytest.raises(TypeError):
        canonical_json(value)


def test_digests() -> None:
    assert sha256_digest(b"") == (
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    with pytest.raises(InputError) as caught:
        parse_digest("sha256:ABC")
    assert caught.value.reason == "bad-digest"

"""The listing order never changes an image, whatever the set and the layer budget."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiln.image.compose import compose_image
from kiln.image.spec import RunConfig
from kiln.store import Store
from tests.fixtures.packages import make_package


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(min_value=0, max_value=4000), min_size=1, max_size=12),
       budget=st.integers(min_value=2, max_value=14), seed=st.integers())
def test_any_order_of_any_set_gives_the_same_image(
        tmp_path_factory: pytest.TempPathFactory, sizes: list[int], budget: int,
        seed: int) -> None:
    tmp = tmp_path_factory.mktemp("order")
    store = Store.open(tmp / "store")
    packages = [make_package(store, tmp, f"kiln.dev/p{index}", "1-1",
                             {f"usr/share/p{index}/data": "x" * size,
                              f"usr/bin/p{index}*": f"#!/bin/sh\necho {index}\n"})
                for index, size in enumerate(sizes)]
    shuffled = packages[:]
    random.Random(seed).shuffle(shuffled)
    first = compose_image(store, "kiln.dev/images/x", "1", packages, RunConfig(), budget=budget)
    second = compose_image(store, "kiln.dev/images/x", "1", shuffled, RunConfig(),
                           budget=budget)
    assert first.manifest == second.manifest
    assert first.config == second.config
    assert len(first.layers) <= budget
    held = [f.name for layer in first.layers for f in layer.packages]
    assert sorted(held) == sorted(f.name for f in packages), "every package in one layer"

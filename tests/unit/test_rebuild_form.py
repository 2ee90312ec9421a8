"""The rebuild form's package: chosen from the recipes at the branch's head, as the
last plan saw them; anything else is refused before a plan starts."""

from __future__ import annotations

import pytest
from buildbot.schedulers.forcesched import ValidationError

from master.rebuild import PackageNames, PackageParameter


def test_the_package_is_one_of_the_current_recipes() -> None:
    names = PackageNames(["kiln.dev/zlib", "kiln.dev/hello"])
    parameter = PackageParameter(names, name="package", required=True)
    assert parameter.getSpec()["choices"] == ["kiln.dev/hello", "kiln.dev/zlib"]
    assert parameter.getFromKwargs({"package": ["kiln.dev/hello"]}) == "kiln.dev/hello"
    with pytest.raises(ValidationError):
        parameter.getFromKwargs({"package": ["kiln.dev/hello; rm -rf /"]})
    with pytest.raises(ValidationError):
        parameter.getFromKwargs({"package": []})
    # A push adds a recipe: the form offers it without a restart.
    names.update(["kiln.dev/hello", "kiln.dev/lz4", "kiln.dev/zlib"])
    assert "kiln.dev/lz4" in parameter.getSpec()["choices"]
    assert parameter.getFromKwargs({"package": ["kiln.dev/lz4"]}) == "kiln.dev/lz4"

"""registries.yaml: where names go, and its mistakes named with their lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiln.errors import InputError
from kiln.registry.config import load_config


def test_the_longest_prefix_wins_and_loopback_speaks_http(tmp_path: Path) -> None:
    path = tmp_path / "registries.yaml"
    path.write_text("registries:\n"
                    "  - prefix: ''\n    location: 127.0.0.1:5000/mirror\n"
                    "  - prefix: kiln.dev/\n    location: registry.example.org/kiln\n"
                    "secure: ['127.0.0.1:5443']\n")
    config = load_config(path)
    assert str(config.locate("kiln.dev/hello", "2.10-1")) == (
        "registry.example.org/kiln/hello:2.10-1")
    assert str(config.locate("debian.org/bookworm/libstdc++6", "1:12.2.0-14")) == (
        "127.0.0.1:5000/mirror/debian.org/bookworm/libstdc_p_p6:1_c12.2.0-14")
    assert config.uses_http("127.0.0.1:5000")
    assert not config.uses_http("127.0.0.1:5443")
    assert not config.uses_http("registry.example.org")


@pytest.mark.parametrize(("text", "line", "reason"), [
    ("registries:\n  - prefix: kiln.dev/\n", 2, "bad-config"),  # no location
    ("registries:\n  - prefix: x\n    location: 'not a place'\n", 2, "bad-config"),
    ("registries: {}\n", 1, "bad-config"),
    ("mirrors: []\n", 1, "bad-config"),
    ("registries: [\n", 2, "bad-yaml"),
])
def test_mistakes_are_named_with_their_line(tmp_path: Path, text: str, line: int,
                                            reason: str) -> None:
    path = tmp_path / "registries.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as raised:
        load_config(path)
    assert raised.value.reason == reason
    assert f"{path}:{line}:" in raised.value.message


def test_no_file_means_no_registries(tmp_path: Path) -> None:
    assert load_config(tmp_path / "absent.yaml").mappings == ()

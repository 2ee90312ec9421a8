"""farm.yaml: typed, every problem at once with file and line, relative paths resolved."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiln.errors import InputError
from master.config import load_farm

GOOD = """\
name: kiln-farm
recipes: {repository: recipes.git, branch: main, path: recipes, poll: 0}
registry: {host: 127.0.0.1:5000, prefix: kiln, http: true}
signer: file:keys/farm.pem
ports: {www: 8010, pb: 9989}
workers: [w1, w2]
maintainers: [alice, bob]
"""


def test_a_farm_reads_with_its_defaults_and_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "farm.yaml").write_text(GOOD)
    farm = load_farm(tmp_path)
    assert farm.recipes_url == str(tmp_path / "recipes.git")
    assert farm.registry.http
    assert farm.workers == ("w1", "w2")
    assert farm.maintainers == ("alice", "bob")
    assert farm.database == "sqlite:///state.sqlite"
    assert farm.www_url == "http://127.0.0.1:8010/"


def test_every_problem_of_a_farm_is_named_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "farm.yaml").write_text(GOOD.replace("prefix: kiln", "prefix: kiln, tls: x")
                                        .replace("www: 8010", "www: eighty")
                                        .replace("[w1, w2]", "[w1, W2, w1]")
                                        + "colour: blue\n")
    with pytest.raises(InputError) as raised:
        load_farm(tmp_path)
    message = raised.value.message
    assert message.startswith(f"{tmp_path / 'farm.yaml'}:")
    assert "(and 4 more)" in message  # tls, the port, W2, the twin w1, colour


def test_a_farm_without_its_required_parts_is_refused(tmp_path: Path) -> None:
    (tmp_path / "farm.yaml").write_text("name: kiln-farm\n")
    with pytest.raises(InputError) as raised:
        load_farm(tmp_path)
    assert raised.value.reason == "missing-key"
    assert ":1:" in raised.value.message


def test_roles_and_the_console_come_from_the_farm(tmp_path: Path) -> None:
    (tmp_path / "farm.yaml").write_text(
        GOOD + "admins: [carol]\nconsole: {public: false, session: 600}\n"
               "index: postgresql://kiln@db/kiln-index\n")
    farm = load_farm(tmp_path)
    assert farm.admins == ("carol",)
    assert not farm.console.public
    assert farm.console.session == 600
    assert farm.index == "postgresql://kiln@db/kiln-index"
    # Defaults: anyone reads, a login lasts 8 hours, the index beside Buildbot's.
    (tmp_path / "farm.yaml").write_text(GOOD)
    farm = load_farm(tmp_path)
    assert (farm.admins, farm.console.public, farm.console.session) == ((), True, 28800)
    assert farm.index == "sqlite:///index.sqlite"


def test_a_bad_console_setting_is_named_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "farm.yaml").write_text(GOOD + "console: {public: maybe, session: -5}\n")
    with pytest.raises(InputError) as raised:
        load_farm(tmp_path)
    assert "farm.yaml:8: console public: " in raised.value.message
    assert "(and 1 more)" in raised.value.message


def test_a_relative_key_file_is_the_farm_directorys(tmp_path: Path) -> None:
    # The master signs from Buildbot's directory (DIR/master): a key named relative to
    # farm.yaml must still be found, as farm.yaml's other paths are.
    (tmp_path / "farm.yaml").write_text(
        "recipes: {repository: recipes.git}\nregistry: {host: 127.0.0.1:5000}\n"
        "signer: file:keys/farm.pem\nworkers: [w1]\n")
    assert load_farm(tmp_path).signer == f"file:{tmp_path.resolve() / 'keys' / 'farm.pem'}"
    (tmp_path / "farm.yaml").write_text(
        "recipes: {repository: recipes.git}\nregistry: {host: 127.0.0.1:5000}\n"
        "signer: sigstore:staging\nworkers: [w1]\n")
    assert load_farm(tmp_path).signer == "sigstore:staging"

"""The host's configuration and the limits recipes ask for: every problem with its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiln.errors import InputError
from kiln.hostconfig import DEFAULT_SANDBOX_UID, CachePolicy, HostConfig, host_config
from kiln.limits import Limits
from kiln.recipes.model import load_recipe


def test_no_configuration_is_a_locked_down_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KILN_CONFIG", raising=False)
    host = host_config()
    assert host.file_sources is None
    assert host.sandbox_uid == DEFAULT_SANDBOX_UID
    assert host.limits == Limits()


def test_a_configuration_sets_limits_ceilings_and_sources(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "kiln.yaml"
    config.write_text("sandbox-uid: 3000000000\nfile-sources: /srv/kiln/files\n"
                      "limits: {wall-time: 120, memory: 512M, log-size: 1M}\n"
                      "ceilings: {wall-time: 600}\nimport: {archive-ratio: 50}\n")
    monkeypatch.setenv("KILN_CONFIG", str(config))
    host = host_config()
    assert host.sandbox_uid == 3_000_000_000
    assert host.file_sources == Path("/srv/kiln/files")
    assert (host.limits.wall_time, host.limits.memory, host.limits.log_size) == \
        (120.0, 512 << 20, 1 << 20)
    assert host.imports.archive_ratio == 50
    assert host.build_limits({"wall_time": 600}, "r").wall_time == 600
    with pytest.raises(InputError) as raised:
        host.build_limits({"wall_time": 601}, "recipes/x/recipe.yaml")
    assert raised.value.reason == "limit-too-high"
    assert "recipes/x/recipe.yaml" in raised.value.message


@pytest.mark.parametrize(("text", "line", "reason"), [
    ("sandbox-uid: 0\n", 1, "bad-value"),
    ("file-sources: relative/dir\n", 1, "bad-value"),
    ("limits:\n  wall-time: 60\n  memroy: 1G\n", 3, "unknown-key"),
    ("limits:\n  memory: lots\n", 2, "bad-value"),
    ("limits: {wall-time: 99999}\nceilings: {wall-time: 60}\n", 1, "limit-too-high"),
    ("import:\n  bundle-size: -1\n", 2, "bad-value"),
    ("gc:\n  keep-days: soon\n", 2, "bad-value"),
    ("gc:\n  keep-days: 0\n", 2, "bad-value"),
    ("gc:\n  max-size: 20G\n  threshold: lots\n", 3, "bad-value"),
    ("gc:\n  often: 1\n", 2, "unknown-key"),
])
def test_a_bad_configuration_names_its_file_and_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, line: int,
        reason: str) -> None:
    config = tmp_path / f"kiln-{abs(hash(text))}.yaml"
    config.write_text(text)
    monkeypatch.setenv("KILN_CONFIG", str(config))
    with pytest.raises(InputError) as raised:
        host_config()
    assert raised.value.reason == reason
    assert raised.value.message.startswith(f"{config}:{line}: ")


def test_the_caches_bounds_are_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "kiln.yaml"
    config.write_text("gc: {keep-days: 14, max-size: 20G, threshold: 25G}\n")
    monkeypatch.setenv("KILN_CONFIG", str(config))
    assert host_config().gc == CachePolicy(14.0, 20 << 30, 25 << 30)


def test_a_recipes_limits_are_read_with_their_lines(tmp_path: Path) -> None:
    recipe = tmp_path / "tiny" / "recipe.yaml"
    recipe.parent.mkdir()
    recipe.write_text("package: {name: kiln.dev/tiny, version: '1'}\nbuild: make\n"
                      "limits:\n  wall-time: 7200\n  out-size: 8G\n")
    parsed, problems = load_recipe(recipe)
    assert problems == []
    assert parsed is not None
    assert dict(parsed.limits) == {"wall_time": 7200.0, "out_size": 8 << 30}
    recipe.write_text("package: {name: kiln.dev/tiny, version: '1'}\nbuild: make\n"
                      "limits:\n  wall-time: never\n  disk: 1G\n")
    _parsed, problems = load_recipe(recipe)
    assert [(p.line, p.reason) for p in problems] == [(5, "unknown-key"), (4, "bad-value")]


def test_only_allowed_directories_hold_local_sources(tmp_path: Path) -> None:
    allowed = HostConfig(file_sources=tmp_path / "files")
    (tmp_path / "files").mkdir()
    assert allowed.host_path_problem("file:x", tmp_path / "files" / "a.tar") is None
    assert allowed.host_path_problem("file:x", tmp_path / "files" / ".." / "b") is not None
    (tmp_path / "files" / "escape").symlink_to("/etc")
    assert allowed.host_path_problem("file:x",
                                        tmp_path / "files" / "escape" / "passwd") is not None

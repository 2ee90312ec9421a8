"""Every source kind, fetched once into the cache; every digest mismatch refused."""

from __future__ import annotations

import hashlib
from pathlib import Path

import git
import pytest

from kiln.errors import InputError
from kiln.recipes.model import GitSource, PathSource, UrlSource
from tests.fixtures.tls import tls_server
from workers.sources import SourceCache, fetch_git, fetch_path, fetch_url

PAYLOAD = b"hello-2.10.tar.gz stands in here\n" * 1000
SHA = hashlib.sha256(PAYLOAD).hexdigest()
WRONG = "0" * 64


@pytest.fixture
def cache(tmp_path: Path) -> SourceCache:
    return SourceCache(tmp_path / "cache")


def test_https_source_is_fetched_once_and_verified(tmp_path: Path, cache: SourceCache,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    with tls_server(tmp_path / "server") as server:
        monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_file))
        (server.root / "hello.tar.gz").write_bytes(PAYLOAD)
        source = UrlSource(f"{server.url}/hello.tar.gz", SHA, 1)
        fetched = fetch_url(cache, source)
        assert fetched.path.read_bytes() == PAYLOAD
        assert fetch_url(cache, source).path == fetched.path
        assert server.hits == ["/hello.tar.gz"]  # the second came from the cache


def test_https_digest_mismatch_is_refused_and_nothing_kept(
        tmp_path: Path, cache: SourceCache, monkeypatch: pytest.MonkeyPatch) -> None:
    with tls_server(tmp_path / "server") as server:
        monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_file))
        (server.root / "hello.tar.gz").write_bytes(PAYLOAD + b"tampered")
        with pytest.raises(InputError) as caught:
            fetch_url(cache, UrlSource(f"{server.url}/hello.tar.gz", SHA, 1))
    assert caught.value.reason == "source-digest-mismatch"
    assert SHA in caught.value.message
    assert hashlib.sha256(PAYLOAD + b"tampered").hexdigest() in caught.value.message
    assert list((cache.root / "sha256").iterdir()) == []
    assert list((cache.root / "tmp").iterdir()) == []


def test_https_with_an_untrusted_certificate_is_refused(tmp_path: Path,
                                                        cache: SourceCache) -> None:
    with tls_server(tmp_path / "server") as server:
        (server.root / "hello.tar.gz").write_bytes(PAYLOAD)
        with pytest.raises(InputError) as caught:
            fetch_url(cache, UrlSource(f"{server.url}/hello.tar.gz", SHA, 1))
    assert caught.value.reason == "source-unreachable"
    assert "CERTIFICATE_VERIFY_FAILED" in caught.value.message


def test_missing_file_on_the_server(tmp_path: Path, cache: SourceCache,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    with tls_server(tmp_path / "server") as server:
        monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_file))
        with pytest.raises(InputError) as caught:
            fetch_url(cache, UrlSource(f"{server.url}/nope.tar.gz", SHA, 1))
    assert caught.value.reason == "source-unreachable"
    assert "404" in caught.value.message


def test_file_source_and_its_mismatch(tmp_path: Path, cache: SourceCache) -> None:
    (tmp_path / "local.tar").write_bytes(PAYLOAD)
    url = (tmp_path / "local.tar").as_uri()
    assert fetch_url(cache, UrlSource(url, SHA, 1)).path.read_bytes() == PAYLOAD
    with pytest.raises(InputError) as caught:
        fetch_url(cache, UrlSource(url, WRONG, 1))
    assert caught.value.reason == "source-digest-mismatch"


def test_path_source_stays_inside_the_recipe(tmp_path: Path) -> None:
    recipe = tmp_path / "recipes/hello"
    recipe.mkdir(parents=True)
    (recipe / "fix.patch").write_bytes(b"--- a\n+++ b\n")
    (tmp_path / "secret").write_bytes(b"host file")
    (recipe / "escape").symlink_to(tmp_path / "secret")
    fetched = fetch_path(recipe, PathSource("fix.patch", 1))
    assert fetched.sha256 == hashlib.sha256(b"--- a\n+++ b\n").hexdigest()
    with pytest.raises(InputError) as caught:
        fetch_path(recipe, PathSource("escape", 1))
    assert caught.value.reason == "bad-source"
    with pytest.raises(InputError) as caught:
        fetch_path(recipe, PathSource("absent.patch", 1))
    assert caught.value.reason == "missing-source"


def _upstream(tmp_path: Path) -> tuple[git.Repo, str]:
    repo = git.Repo.init(tmp_path / "upstream")
    (tmp_path / "upstream/README").write_text("first\n")
    repo.index.add(["README"])
    first = repo.index.commit("first").hexsha
    return repo, first


def test_git_source_is_mirrored_once_and_fetched_for_new_commits(tmp_path: Path,
                                                                 cache: SourceCache) -> None:
    repo, first = _upstream(tmp_path)
    url = str(tmp_path / "upstream")
    fetched = fetch_git(cache, GitSource(url, first, 1))
    assert git.Repo(fetched.mirror).commit(first).message == "first"
    (tmp_path / "upstream/README").write_text("second\n")
    repo.index.add(["README"])
    second = repo.index.commit("second").hexsha
    again = fetch_git(cache, GitSource(url, second, 1))
    assert again.mirror == fetched.mirror
    assert git.Repo(again.mirror).commit(second).message == "second"


def test_git_source_without_the_pinned_commit_is_refused(tmp_path: Path,
                                                         cache: SourceCache) -> None:
    _upstream(tmp_path)
    with pytest.raises(InputError) as caught:
        fetch_git(cache, GitSource(str(tmp_path / "upstream"), "1" * 40, 1))
    assert caught.value.reason == "source-commit-missing"


def test_unreachable_git_source(tmp_path: Path, cache: SourceCache) -> None:
    with pytest.raises(InputError) as caught:
        fetch_git(cache, GitSource(str(tmp_path / "no-such-repo"), "1" * 40, 1))
    assert caught.value.reason == "source-unreachable"


def test_a_relative_git_source_names_a_repository_beside_the_recipes(
        tmp_path: Path, cache: SourceCache) -> None:
    _repo, first = _upstream(tmp_path)
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    fetched = fetch_git(cache, GitSource("../upstream", first, 1), recipe_repository=recipes)
    assert git.Repo(fetched.mirror).commit(first).message == "first"
    assert fetched.uri == f"git+{tmp_path / 'upstream'}"

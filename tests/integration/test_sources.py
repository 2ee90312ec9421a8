"""Every source kind, fetched once into the cache; every digest mismatch refused."""

from __future__ import annotations

import hashlib
from pathlib import Path

import git
import pytest

from kiln.errors import InputError
from kiln.hostconfig import HostConfig
from kiln.recipes.model import GitSource, PathSource, UrlSource
from tests.fixtures.tls import tls_server
from workers.sources import SourceCache, fetch_git, fetch_path, fetch_url

PAYLOAD = b"hello-2.10.tar.gz stands in here\n" * 1000
SHA = hashlib.sha256(PAYLOAD).hexdigest()
WRONG = "0" * 64


@pytest.fixture
def cache(tmp_path: Path) -> SourceCache:
    return SourceCache(tmp_path / "cache")


@pytest.fixture
def allowed(tmp_path: Path) -> HostConfig:
    """A host whose operator allows local sources beneath the test's directory."""
    return HostConfig(file_sources=tmp_path)


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


def test_file_source_and_its_mismatch(tmp_path: Path, cache: SourceCache,
                                      allowed: HostConfig) -> None:
    (tmp_path / "local.tar").write_bytes(PAYLOAD)
    url = (tmp_path / "local.tar").as_uri()
    assert fetch_url(cache, UrlSource(url, SHA, 1), allowed).path.read_bytes() == PAYLOAD
    with pytest.raises(InputError) as caught:
        fetch_url(cache, UrlSource(url, WRONG, 1), allowed)
    assert caught.value.reason == "source-digest-mismatch"
    # A host file's digest is never told: a second commit could pin it.
    assert SHA not in caught.value.message


def test_host_files_are_no_sources_unless_the_operator_allows_them(
        tmp_path: Path, cache: SourceCache, allowed: HostConfig) -> None:
    secret = tmp_path / "elsewhere" / "secret"
    secret.parent.mkdir()
    secret.write_bytes(b"the builder's credentials\n")
    locked_down = HostConfig()  # the default: no file-sources at all
    narrow = HostConfig(file_sources=tmp_path / "allowed")
    for host in (locked_down, narrow):
        for url in (secret.as_uri(), "file:///proc/self/environ", "file:///dev/zero",
                    (tmp_path / "allowed" / ".." / "elsewhere" / "secret").as_uri()):
            with pytest.raises(InputError) as caught:
                fetch_url(cache, UrlSource(url, WRONG, 1), host)
            assert caught.value.reason == "local-source-not-allowed", url
            assert hashlib.sha256(b"the builder's credentials\n").hexdigest() \
                not in caught.value.message
    assert not any((cache.root / "sha256").iterdir())


def test_a_source_past_its_size_limit_is_cut_off_and_not_kept(
        tmp_path: Path, cache: SourceCache, allowed: HostConfig,
        monkeypatch: pytest.MonkeyPatch) -> None:
    big = tmp_path / "big.img"
    with open(big, "wb") as handle:
        handle.truncate(3 << 20)  # sparse: 3 MB of zeros that cost the disk nothing
    with pytest.raises(InputError) as caught:
        fetch_url(cache, UrlSource(big.as_uri(), WRONG, 1), allowed, max_size=1 << 20)
    assert caught.value.reason == "source-too-large"
    with tls_server(tmp_path / "server") as server:
        monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_file))
        (server.root / "big.tar").write_bytes(b"x" * (2 << 20))
        with pytest.raises(InputError) as caught:
            fetch_url(cache, UrlSource(f"{server.url}/big.tar", WRONG, 1), max_size=1 << 20)
    assert caught.value.reason == "source-too-large"
    assert not any((cache.root / "sha256").iterdir())
    assert not any((cache.root / "tmp").iterdir())


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


def test_git_source_is_mirrored_once_and_fetched_for_new_commits(
        tmp_path: Path, cache: SourceCache, allowed: HostConfig) -> None:
    repo, first = _upstream(tmp_path)
    url = str(tmp_path / "upstream")
    fetched = fetch_git(cache, GitSource(url, first, 1), host=allowed)
    assert git.Repo(fetched.mirror).commit(first).message == "first"
    (tmp_path / "upstream/README").write_text("second\n")
    repo.index.add(["README"])
    second = repo.index.commit("second").hexsha
    again = fetch_git(cache, GitSource(url, second, 1), host=allowed)
    assert again.mirror == fetched.mirror
    assert git.Repo(again.mirror).commit(second).message == "second"


def test_git_source_without_the_pinned_commit_is_refused(
        tmp_path: Path, cache: SourceCache, allowed: HostConfig) -> None:
    _upstream(tmp_path)
    with pytest.raises(InputError) as caught:
        fetch_git(cache, GitSource(str(tmp_path / "upstream"), "1" * 40, 1), host=allowed)
    assert caught.value.reason == "source-commit-missing"


def test_unreachable_git_source(tmp_path: Path, cache: SourceCache,
                                allowed: HostConfig) -> None:
    with pytest.raises(InputError) as caught:
        fetch_git(cache, GitSource(str(tmp_path / "no-such-repo"), "1" * 40, 1), host=allowed)
    assert caught.value.reason == "source-unreachable"


def test_a_relative_git_source_names_a_repository_beside_the_recipes(
        tmp_path: Path, cache: SourceCache) -> None:
    _repo, first = _upstream(tmp_path)
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    fetched = fetch_git(cache, GitSource("../upstream", first, 1), recipe_repository=recipes)
    assert git.Repo(fetched.mirror).commit(first).message == "first"
    assert fetched.uri == f"git+{tmp_path / 'upstream'}"


def test_a_local_git_source_stays_beside_the_recipes_or_under_file_sources(
        tmp_path: Path, cache: SourceCache) -> None:
    _repo, first = _upstream(tmp_path)
    recipes = tmp_path / "farm" / "recipes"
    recipes.mkdir(parents=True)
    locked_down = HostConfig()
    for source, recipe_repository in ((GitSource("../../upstream", first, 1), recipes),
                                      (GitSource(str(tmp_path / "upstream"), first, 1), None),
                                      (GitSource((tmp_path / "upstream").as_uri(), first, 1),
                                       None)):
        with pytest.raises(InputError) as caught:
            fetch_git(cache, source, recipe_repository=recipe_repository, host=locked_down)
        assert caught.value.reason == "local-source-not-allowed", source
    assert not any((cache.root / "git").iterdir())


def test_the_record_names_a_repository_only_if_it_holds_the_commit(
        tmp_path: Path, store_dir: Path) -> None:
    from kiln.store import Store
    from workers.checkout import checkout_recipes

    upstream = git.Repo.init(tmp_path / "upstream.git", bare=True)
    clone = git.Repo.clone_from(upstream.git_dir, tmp_path / "work")
    recipe = tmp_path / "work" / "recipes" / "tool" / "recipe.yaml"
    recipe.parent.mkdir(parents=True)
    recipe.write_text("package: {name: kiln.dev/tool, version: '1'}\nbuild: 'true'\n")
    clone.index.add([str(recipe)])
    first = clone.index.commit("tool").hexsha
    store = Store.open(store_dir)
    recipes = tmp_path / "work" / "recipes"

    unpushed = checkout_recipes(store, recipes, "tool", None, False, tmp_path / "c1")
    assert unpushed.commit == first
    assert unpushed.origin == f"local:{tmp_path / 'work'}"  # not the clone's origin URL

    clone.git.push("origin", "HEAD:refs/heads/main")
    pushed = checkout_recipes(store, recipes, "tool", None, False, tmp_path / "c2")
    assert pushed.origin == upstream.git_dir

    # Offline: the remote-tracking branch the push left says the remote holds it; a
    # build of a pushed commit needs no fetch (it once fetched every remote, each build).
    (tmp_path / "upstream.git").rename(tmp_path / "away.git")
    offline = checkout_recipes(store, recipes, "tool", None, False, tmp_path / "c2-offline")
    assert offline.origin == upstream.git_dir

    recipe.write_text("package: {name: kiln.dev/tool, version: '2'}\nbuild: 'true'\n")
    clone.index.add([str(recipe)])
    clone.index.commit("tool 2")  # committed, not pushed (and unreachable): local again
    assert checkout_recipes(store, recipes, "tool", None, False,
                            tmp_path / "c3").origin.startswith("local:")
    (tmp_path / "away.git").rename(tmp_path / "upstream.git")
    assert checkout_recipes(store, recipes, "tool", None, False,
                            tmp_path / "c4").origin.startswith("local:")  # reachable: still

"""`kiln source pin URI`: the pin a recipe writes, found by fetching the source once
(and kept, so the build fetches nothing), for every kind of source."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from kiln.recipes.model import UrlSource
from tests.conftest import REPO, Kiln
from tests.fixtures.tls import tls_server
from tests.integration.test_debian import apt_lists  # noqa: F401 - fixture
from workers.sources import SourceCache, fetch_url

PAYLOAD = b"upstream-1.0.tar.gz stands in here\n" * 500


def test_an_https_source_is_pinned_and_the_build_fetches_it_no_more(
        tmp_path: Path, kiln: Kiln, monkeypatch: pytest.MonkeyPatch) -> None:
    with tls_server(tmp_path / "server") as server:
        monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_file))
        (server.root / "upstream-1.0.tar.gz").write_bytes(PAYLOAD)
        url = f"{server.url}/upstream-1.0.tar.gz"
        pinned = kiln("source", "pin", url)
        assert pinned.code == 0, pinned.err
        (entry,) = yaml.safe_load(pinned.out)  # the recipe's sources entry, as printed
        assert entry == {"url": url, "sha256": hashlib.sha256(PAYLOAD).hexdigest()}
        cache = SourceCache(kiln.store_dir / "sources")
        assert fetch_url(cache, UrlSource(url, entry["sha256"], 1)).path.read_bytes() == PAYLOAD
        assert server.hits == ["/upstream-1.0.tar.gz"]  # the build's fetch was the cache's
        missing = kiln("source", "pin", f"{server.url}/nothing-here.tar.gz")
        assert missing.code == 2
        assert "[source-unreachable]" in missing.err
        assert "404" in missing.err


def test_a_host_file_is_pinned_only_where_the_operator_allows(
        tmp_path: Path, kiln: Kiln, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "allowed").mkdir()
    source = tmp_path / "allowed" / "data.bin"
    source.write_bytes(b"data\n")
    secret = tmp_path / "secret"
    secret.write_text("a host's secret\n")
    config = tmp_path / "kiln.yaml"
    config.write_text(f"file-sources: {tmp_path / 'allowed'}\n")
    monkeypatch.setenv("KILN_CONFIG", str(config))
    pinned = kiln("source", "pin", source.as_uri(), "--json")
    assert pinned.code == 0, pinned.err
    assert json.loads(pinned.out)["sha256"] == hashlib.sha256(b"data\n").hexdigest()
    if os.geteuid() == 0:  # a device among the allowed files is no source either
        zero = tmp_path / "allowed" / "zero"
        os.mknod(zero, 0o600 | stat.S_IFCHR, os.makedev(1, 5))
        device = kiln("source", "pin", zero.as_uri())
        assert device.code == 2
        assert "[bad-source]" in device.err
    refused = kiln("source", "pin", secret.as_uri())
    assert refused.code == 2
    assert "[local-source-not-allowed]" in refused.err
    assert hashlib.sha256(secret.read_bytes()).hexdigest() not in refused.err + refused.out


def test_a_git_ref_is_pinned_to_its_commit(tmp_path: Path, kiln: Kiln) -> None:
    repository = tmp_path / "upstream"
    git = ["git", "-C", str(repository), "-c", "user.name=u", "-c", "user.email=u@x"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(repository)], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "one"], check=True)
    subprocess.run([*git, "tag", "-a", "v1.0", "-m", "release"], check=True)  # annotated
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "two"], check=True)
    head, tagged = (subprocess.run([*git, "rev-parse", rev], capture_output=True, text=True,
                                   check=True).stdout.strip() for rev in ("HEAD", "v1.0^{}"))
    assert json.loads(kiln("source", "pin", f"git+{repository}@main", "--json").out)[
        "commit"] == head
    # A tag names its commit, not the tag object.
    assert json.loads(kiln("source", "pin", f"git+{repository}@v1.0", "--json").out)[
        "commit"] == tagged
    unknown = kiln("source", "pin", f"git+{repository}@no-such-branch")
    assert unknown.code == 2
    assert "[source-unreachable]" in unknown.err
    assert kiln("source", "pin", f"git+{repository}").code == 2  # no @REF


@pytest.mark.skipif(os.geteuid() != 0, reason="apt-get source with the host's lists")
def test_a_debian_source_is_pinned_by_its_dsc_and_says_patches_are_not_applied(
        kiln: Kiln, apt_lists: None) -> None:  # noqa: F811
    curated = yaml.safe_load((REPO / "recipes" / "hello" / "recipe.yaml").read_text())
    (source,) = curated["sources"]
    pinned = kiln("source", "pin", f"debian:hello={source['version']}")
    assert pinned.code == 0, pinned.err
    (entry,) = yaml.safe_load(pinned.out)
    # What the curated recipe pins, found without a fake hash.
    assert entry == {"debian": "hello", "version": source["version"],
                     "dsc-sha256": source["dsc-sha256"]}
    assert "patches are not applied" in pinned.err
    assert "dpkg-source -x" in pinned.err
    assert kiln("source", "pin", "debian:Not_A_Package").code == 2

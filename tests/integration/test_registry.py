"""FileSets pushed to and pulled from Debian's docker-registry on loopback: open,
behind htpasswd, behind a token server, and behind a proxy that breaks requests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from kiln.archive.export import write_archive
from kiln.errors import KilnError
from kiln.fileset import FileSet
from kiln.registry.artifact import ArchiveCache, pull_fileset, push_fileset
from kiln.registry.client import RegistryClient
from kiln.registry.reference import parse_reference
from kiln.store import Store
from tests.conftest import Kiln
from tests.fixtures.packages import make_package
from tests.fixtures.registry import (
    Registry,
    htpasswd_file,
    registry_config,
    run_fault_proxy,
    run_registry,
    run_token_server,
    token_auth,
    write_auth_file,
)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with run_registry(tmp_path_factory.mktemp("registry")) as running:
        yield running


@pytest.fixture
def configured(tmp_path: Path, registry: Registry,
               monkeypatch: pytest.MonkeyPatch) -> Registry:
    monkeypatch.setenv("KILN_REGISTRIES", str(registry_config(tmp_path / "registries.yaml",
                                                               registry.host)))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "no-auth.json"))
    return registry


def archive_bytes(store: Store, fileset: FileSet, path: Path) -> bytes:
    with open(path, "wb") as out:
        write_archive(store, fileset, out)
    return path.read_bytes()


def test_push_then_pull_into_another_store_gives_the_same_fileset(
        kiln: Kiln, store: Store, tmp_path: Path, configured: Registry) -> None:
    fileset = make_package(store, tmp_path, "kiln.dev/tool", "1.0-1",
                           {"usr/bin/tool": "#!/bin/sh\necho tool\n", "README": "hi\n"})
    pushed = kiln("push", "kiln.dev/tool@1.0-1", "--json")
    assert pushed.code == 0, pushed.err
    report = json.loads(pushed.out)
    assert report["reference"].startswith(f"{configured.host}/kiln/kiln.dev/tool:1.0-1@sha256:")
    assert set(report["blobs"].values()) == {"uploaded"}
    assert {report["fileset"], report["layer"]} <= configured.blobs()

    other = Store.open(tmp_path / "other-store")
    client = RegistryClient(configured.host, plain_http=True)
    pulled = pull_fileset(other, client, parse_reference(report["reference"]))
    assert pulled.digest == fileset.digest
    assert (archive_bytes(other, pulled, tmp_path / "b.tar")
            == archive_bytes(store, fileset, tmp_path / "a.tar"))

    again = kiln("push", "kiln.dev/tool@1.0-1", "--json")
    assert set(json.loads(again.out)["blobs"].values()) == {"present"}
    assert json.loads(again.out)["reference"] == report["reference"], "one artifact digest"


def test_names_and_versions_that_oci_cannot_spell_round_trip(
        kiln: Kiln, store: Store, tmp_path: Path, configured: Registry) -> None:
    make_package(store, tmp_path, "debian.org/bookworm/libstdc++6", "1:12.2.0-14+b1",
                 {"usr/lib/libstdc++.so.6": "not really\n"})
    pushed = kiln("push", "debian.org/bookworm/libstdc++6@1:12.2.0-14+b1", "--json")
    assert pushed.code == 0, pushed.err
    reference = json.loads(pushed.out)["reference"]
    assert reference.startswith(f"{configured.host}/kiln/debian.org/bookworm/libstdc_p_p6:"
                                "1_c12.2.0-14_pb1@")
    other = tmp_path / "other"
    pulled = Kiln(other, kiln._capsys)("pull", "debian.org/bookworm/libstdc++6@1:12.2.0-14+b1",
                                       "--json")
    assert pulled.code == 0, pulled.err
    assert json.loads(pulled.out)["name"] == "debian.org/bookworm/libstdc++6"
    assert json.loads(pulled.out)["version"] == "1:12.2.0-14+b1"


def test_a_blob_present_in_another_repository_is_mounted_not_uploaded(
        store: Store, tmp_path: Path, registry: Registry) -> None:
    fileset = make_package(store, tmp_path, "kiln.dev/shared", "2-1", {"data": "x" * 5000})
    client = RegistryClient(registry.host, plain_http=True)
    push_fileset(store, fileset, client, parse_reference(f"{registry.host}/mount/a:2-1"))
    sent_before = client.traffic.bytes_sent
    second = push_fileset(store, fileset, client, parse_reference(f"{registry.host}/mount/b:2-1"),
                          mount_from="mount/a")
    assert set(second.blobs.values()) == {"mounted"}
    assert client.traffic.bytes_sent - sent_before < 2000, "only the manifest travelled"


def test_a_second_push_of_a_fileset_mounts_what_this_store_pushed_before(
        store: Store, tmp_path: Path, registry: Registry) -> None:
    fileset = make_package(store, tmp_path, "kiln.dev/again", "1-1", {"data": "z" * 5000})
    client = RegistryClient(registry.host, plain_http=True)
    first = push_fileset(store, fileset, client, parse_reference(f"{registry.host}/one/x:1-1"))
    assert set(first.blobs.values()) == {"uploaded"}
    sent_before = client.traffic.bytes_sent
    # Nobody says where the blobs are: the store remembers.
    second = push_fileset(store, fileset, client, parse_reference(f"{registry.host}/two/x:1-1"))
    assert set(second.blobs.values()) == {"mounted"}
    assert client.traffic.bytes_sent - sent_before < 2000, "only the manifest travelled"


def corrupt_blob(registry: Registry, digest: str) -> None:
    data = registry.root / "docker/registry/v2/blobs/sha256" / digest[7:9] / digest[7:] / "data"
    content = bytearray(data.read_bytes())
    content[len(content) // 2] ^= 0x01
    data.write_bytes(bytes(content))


def test_a_corrupt_layer_is_refused_and_nothing_is_kept(
        kiln: Kiln, store: Store, tmp_path: Path, registry: Registry) -> None:
    # A file large enough that the flipped byte lands in its content, not a header.
    fileset = make_package(store, tmp_path, "kiln.dev/victim", "1-1", {"big": "y" * 100_000})
    client = RegistryClient(registry.host, plain_http=True, attempts=2, backoff=0.01)
    pushed = push_fileset(store, fileset, client, parse_reference(f"{registry.host}/corrupt/v:1"))
    corrupt_blob(registry, pushed.layer.digest)

    other_dir = tmp_path / "other"
    result = Kiln(other_dir, kiln._capsys)("pull", str(pushed.reference))
    assert result.code == 2
    assert "[blob-digest-mismatch]" in result.err
    other = Store.open(other_dir)
    assert list(other.named()) == []
    assert not any((other_dir / "objects").rglob("*.*"))
    assert not any(
        p.is_file() for p in (other_dir / "objects").rglob("*"))


def test_a_corrupt_config_is_refused(store: Store, tmp_path: Path, registry: Registry) -> None:
    fileset = make_package(store, tmp_path, "kiln.dev/victim2", "1-1", {"f": "z\n"})
    client = RegistryClient(registry.host, plain_http=True, attempts=2, backoff=0.01)
    pushed = push_fileset(store, fileset, client, parse_reference(f"{registry.host}/corrupt/c:1"))
    corrupt_blob(registry, fileset.digest)
    other = Store.open(tmp_path / "other")
    with pytest.raises(KilnError) as raised:
        pull_fileset(other, client, pushed.reference)
    assert raised.value.reason == "blob-digest-mismatch"
    assert list(other.named()) == []


def test_a_manifest_whose_layer_is_another_filesets_is_refused(
        store: Store, tmp_path: Path, registry: Registry) -> None:
    real = make_package(store, tmp_path, "kiln.dev/real", "1-1", {"f": "real\n"})
    fake = make_package(store, tmp_path, "kiln.dev/real", "1-2", {"f": "trojan\n"})
    client = RegistryClient(registry.host, plain_http=True)
    target = parse_reference(f"{registry.host}/swap/real:1")
    push_fileset(store, real, client, target)
    fake_layer = push_fileset(store, fake, client, target.with_tag("fake")).layer
    manifest, _, _ = client.get_manifest(target)
    raw = json.loads(manifest)
    raw["layers"][0] = fake_layer.to_json()
    client.put_manifest("swap/real", "swapped", json.dumps(raw).encode(), raw["mediaType"])
    other = Store.open(tmp_path / "other")
    with pytest.raises(KilnError) as raised:
        pull_fileset(other, client, target.with_tag("swapped"))
    assert raised.value.reason == "fileset-digest-mismatch"
    assert list(other.named()) == []


def test_htpasswd_registry_needs_the_credentials_of_the_auth_file(
        kiln: Kiln, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_package(store, tmp_path, "kiln.dev/secret", "1-1", {"f": "secret\n"})
    auth = {"htpasswd": {"realm": "kiln", "path": str(htpasswd_file(tmp_path))}}
    with run_registry(tmp_path / "basic", auth) as registry:
        target = f"{registry.host}/private/secret:1"
        monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "none.json"))
        refused = kiln("push", "kiln.dev/secret@1-1", target)
        assert refused.code == 2
        assert "[registry-unauthorized]" in refused.err
        write_auth_file(tmp_path / "wrong.json", registry.host, password="wrong")
        monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "wrong.json"))
        assert "[registry-unauthorized]" in kiln("push", "kiln.dev/secret@1-1", target).err
        monkeypatch.setenv("REGISTRY_AUTH_FILE",
                           str(write_auth_file(tmp_path / "auth.json", registry.host)))
        assert kiln("push", "kiln.dev/secret@1-1", target).code == 0
        pulled = Kiln(tmp_path / "other", kiln._capsys)("pull", target)
        assert pulled.code == 0, pulled.err


def test_token_registry_gets_a_bearer_token_for_each_scope(
        kiln: Kiln, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_package(store, tmp_path, "kiln.dev/tokened", "1-1", {"f": "t\n"})
    with run_token_server(tmp_path) as tokens, \
            run_registry(tmp_path / "token", token_auth(tokens)) as registry:
        target = f"{registry.host}/team/tokened:1"
        monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "none.json"))
        refused = kiln("push", "kiln.dev/tokened@1-1", target)
        assert refused.code == 2
        assert "[registry-unauthorized]" in refused.err
        monkeypatch.setenv("REGISTRY_AUTH_FILE",
                           str(write_auth_file(tmp_path / "auth.json", registry.host)))
        pushed = kiln("push", "kiln.dev/tokened@1-1", target)
        assert pushed.code == 0, pushed.err
        # The token for pushing was asked with the scope the registry named (whose
        # actions come in either order).
        scopes = [parse_qs(urlsplit(r).query).get("scope", [""])[0] for r in tokens.requests]
        assert any(scope.startswith("repository:team/tokened:")
                   and set(scope.rsplit(":", 1)[1].split(",")) == {"pull", "push"}
                   for scope in scopes), scopes
        pulled = Kiln(tmp_path / "other", kiln._capsys)("pull", target, "--json")
        assert pulled.code == 0, pulled.err


def test_dropped_connections_5xx_and_truncated_bodies_are_retried(
        store: Store, tmp_path: Path, registry: Registry) -> None:
    fileset = make_package(store, tmp_path, "kiln.dev/flaky", "1-1", {"f": "q" * 300_000})
    layer, _ = ArchiveCache(store).layer(fileset)
    with run_fault_proxy(registry.host) as proxy:
        client = RegistryClient(proxy.host, plain_http=True, backoff=0.01)
        proxy.inject("HEAD", "/blobs/", "drop")
        proxy.inject("POST", "/blobs/uploads/", "503")
        proxy.inject("PUT", "/blobs/uploads/", "drop")
        proxy.inject("PUT", "/manifests/", "503", times=2)
        pushed = push_fileset(store, fileset, client, parse_reference(f"{proxy.host}/flaky/f:1"))
        assert pushed.blobs[layer.digest] == "uploaded"

        proxy.inject("GET", "/manifests/", "truncate")
        proxy.inject("GET", f"/blobs/{fileset.digest}", "drop")
        proxy.inject("GET", f"/blobs/{layer.digest}", "truncate", times=2)
        other = Store.open(tmp_path / "other")
        pulled = pull_fileset(other, client, pushed.reference)
        assert pulled.digest == fileset.digest
    faults = [line for line in proxy.log if not line.endswith("-> ok")]
    assert len(faults) == 9, faults
    assert all(fault.times == 0 for fault in proxy.faults)
    assert client.traffic.retries == 9


def test_an_unreachable_registry_is_named(kiln: Kiln, store: Store, tmp_path: Path) -> None:
    from tests.fixtures.registry import free_port

    make_package(store, tmp_path, "kiln.dev/lonely", "1-1", {"f": "l\n"})
    port = free_port()
    result = kiln("push", "kiln.dev/lonely@1-1", f"127.0.0.1:{port}/nowhere/x:1")
    # Temporary (EX_TEMPFAIL): the same push may work once the registry is back, so a
    # farm retries the build instead of failing it.
    assert result.code == 75
    assert "[registry-unreachable] (temporary: try again later)" in result.err
    assert "connection refused" in result.err
    assert f"127.0.0.1:{port}" in result.err  # which registry, host and port


def test_a_registry_whose_name_does_not_resolve_is_not_asked_again(
        kiln: Kiln, store: Store, tmp_path: Path) -> None:
    import time

    make_package(store, tmp_path, "kiln.dev/lonely", "1-1", {"f": "l\n"})
    started = time.monotonic()
    result = kiln("push", "kiln.dev/lonely@1-1", "kiln-no-such-host.invalid:5000/x/y:1")
    assert result.code == 2  # no retry, and no "try again later": the name is wrong
    assert "[registry-unknown-host]" in result.err
    assert "kiln-no-such-host.invalid:5000" in result.err
    assert "gave up" not in result.err
    assert time.monotonic() - started < 2  # six attempts with back-off take 3 s


def test_a_name_no_registry_is_configured_for_is_refused(
        kiln: Kiln, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_package(store, tmp_path, "kiln.dev/homeless", "1-1", {"f": "h\n"})
    monkeypatch.setenv("KILN_REGISTRIES", str(tmp_path / "absent.yaml"))
    result = kiln("push", "kiln.dev/homeless@1-1")
    assert result.code == 2
    assert "[no-registry]" in result.err


def test_a_fileset_travels_with_what_it_imports(
        kiln: Kiln, store: Store, tmp_path: Path, configured: Registry) -> None:
    make_package(store, tmp_path, "kiln.dev/lib", "1-1", {"lib.txt": "the library\n"})
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.txt").write_text("the app\n")
    added = kiln("fileset", "add", tmp_path / "app", "--name", "kiln.dev/app", "--version",
                 "1-1", "--import", "lib=kiln.dev/lib@1-1")
    assert added.code == 0, added.err
    assert kiln("push", "kiln.dev/app@1-1").code == 0

    other = Kiln(tmp_path / "other", kiln._capsys)
    pulled = other("pull", "kiln.dev/app@1-1", "--json")
    assert pulled.code == 0, pulled.err
    made = other("fileset", "materialize", "kiln.dev/app@1-1", tmp_path / "tree")
    assert made.code == 0, made.err
    assert (tmp_path / "tree" / "lib" / "lib.txt").read_text() == "the library\n"
    assert (tmp_path / "tree" / "main.txt").read_text() == "the app\n"


def test_a_registry_over_https_is_trusted_through_its_ca_only(
        kiln: Kiln, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.fixtures.tls import make_certificates

    make_package(store, tmp_path, "kiln.dev/tls", "1-1", {"f": "over tls\n"})
    ca_file, cert_file, key_file = make_certificates(tmp_path)
    with run_registry(tmp_path / "tls-registry", tls=(cert_file, key_file)) as registry:
        config = tmp_path / "registries.yaml"
        config.write_text(json.dumps({
            "registries": [{"prefix": "", "location": f"{registry.host}/kiln"}],
            "secure": [registry.host]}))
        monkeypatch.setenv("KILN_REGISTRIES", str(config))
        monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "none.json"))
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        untrusted = kiln("push", "kiln.dev/tls@1-1")
        assert untrusted.code == 2
        assert "[registry-tls]" in untrusted.err
        monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
        pushed = kiln("push", "kiln.dev/tls@1-1")
        assert pushed.code == 0, pushed.err
        pulled = Kiln(tmp_path / "other", kiln._capsys)("pull", "kiln.dev/tls@1-1")
        assert pulled.code == 0, pulled.err


def test_a_reference_the_registry_lacks_is_bad_input_for_every_command(
        kiln: Kiln, tmp_path: Path, configured: Registry) -> None:
    # One 404, one answer: a reference that names nothing exits 2, with the registry's
    # host and port and the same reason, whichever command was given it (verify once
    # said 1, as for a failed check, and pull 2).
    made = kiln("key", "generate", tmp_path / "keys", "--json")
    assert made.code == 0, made.err
    key = json.loads(made.out)["public"]
    policy = tmp_path / "policy.yaml"
    policy.write_text(json.dumps({"trust": [{"prefix": "", "keys": [key]}]}))
    missing = f"{configured.host}/nothing/here:1"
    commands = [("pull", missing), ("verify", missing, "--key", key),
                ("image", "inspect", missing), ("image", "diff", missing, missing),
                ("image", "update", missing, "--set", "kiln.dev/x=1", "-o",
                 f"oci:{tmp_path / 'out'}"),
                ("policy", "check", missing, "--policy", policy), ("run", missing)]
    for command in commands:
        result = kiln(*command)
        assert result.code == 2, (command, result.err)
        assert "[registry-not-found]" in result.err, (command, result.err)
        assert configured.host in result.err, (command, result.err)
    assert not (tmp_path / "out").exists()

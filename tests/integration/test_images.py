"""Images composed by set: resolution, conflicts, locks, layers, SBOM, inspect/diff,
sets, surgical updates counted at the registry, and stock tools running them."""

from __future__ import annotations

import json
import re
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiln.canonical import sha256_digest
from kiln.errors import KilnError
from kiln.fileset import FileSet
from kiln.image.build import build_from_spec
from kiln.image.resolve import resolve_packages
from kiln.image.spec import load_image_spec
from kiln.registry.artifact import ArchiveCache, push_fileset
from kiln.registry.client import RegistryClient
from kiln.registry.reference import parse_reference
from kiln.relations import Relation
from kiln.store import Store
from tests.conftest import Kiln
from tests.fixtures.packages import make_package
from tests.fixtures.registry import Registry, registry_config, run_fault_proxy, run_registry


def write_spec(directory: Path, packages: list[str], **extra: object) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    spec = {"name": "kiln.dev/images/test", "version": "1", "packages": packages, **extra}
    path = directory / "image.yaml"
    path.write_text(json.dumps(spec))  # JSON is YAML
    return path


def layout_manifest(directory: Path, tag: str = "1") -> dict[str, object]:
    index = json.loads((directory / "index.json").read_text())
    (entry,) = [m for m in index["manifests"]
                if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag]
    manifest: dict[str, object] = json.loads(
        (directory / "blobs/sha256" / entry["digest"][7:]).read_text())
    return manifest


@pytest.fixture
def tools(store: Store, tmp_path: Path) -> dict[str, FileSet]:
    """A small world: a tool needing a library, an alternative provider, a conflict."""
    return {
        "lib1": make_package(store, tmp_path, "kiln.dev/libfoo", "1.0-1",
                             {"usr/lib/libfoo.so.1": "foo 1\n"}),
        "lib2": make_package(store, tmp_path, "kiln.dev/libfoo", "2.0-1",
                             {"usr/lib/libfoo.so.1": "foo 2\n"}),
        "tool": make_package(store, tmp_path, "kiln.dev/tool", "1.0-1",
                             {"usr/bin/tool*": "#!/bin/sh\necho tool\n"},
                             requires=("kiln.dev/libfoo (>= 1.0)", "kiln.dev/awk")),
        "mawk": make_package(store, tmp_path, "kiln.dev/mawk", "1.3-1",
                             {"usr/bin/mawk*": "mawk\n"}, provides=("kiln.dev/awk",)),
        "other": make_package(store, tmp_path, "kiln.dev/other-tool", "1-1",
                              {"usr/bin/tool*": "#!/bin/sh\necho other\n"}),
    }


def test_who_provides_a_name_is_remembered_by_digest_and_follows_the_names(
        kiln: Kiln, store: Store, tmp_path: Path, tools: dict[str, FileSet]) -> None:
    def awk_from() -> list[str]:
        fresh = Store.open(store.layout.root)  # as the next command reads it
        return [f.name for f in resolve_packages(fresh, [Relation("kiln.dev/awk")])]

    assert awk_from() == ["kiln.dev/mawk"]
    remembered = store.layout.cache / "provides.json"
    assert json.loads(remembered.read_text())[tools["mawk"].digest] == ["kiln.dev/awk"]
    # Another provider named later is offered; a provider unnamed is not.
    make_package(store, tmp_path, "kiln.dev/gawk", "5.2-1", {"usr/bin/gawk*": "gawk\n"},
                 provides=("kiln.dev/awk",))
    assert kiln("fileset", "rm", "kiln.dev/mawk@1.3-1").code == 0
    assert awk_from() == ["kiln.dev/gawk"]
    assert tools["mawk"].digest not in json.loads(remembered.read_text())
    # A torn file is read from the records again, and written whole.
    remembered.write_text('{"sha256:')
    assert awk_from() == ["kiln.dev/gawk"]
    assert len(json.loads(remembered.read_text())) == len(list(store.named()))


def test_the_listing_order_never_changes_the_image(
        kiln: Kiln, store: Store, tmp_path: Path, tools: dict[str, FileSet]) -> None:
    extra = make_package(store, tmp_path, "kiln.dev/docs", "1-1", {"usr/share/doc/x": "x\n"})
    forward = write_spec(tmp_path / "a", ["kiln.dev/tool", "kiln.dev/docs"])
    backward = write_spec(tmp_path / "b", ["kiln.dev/docs", "kiln.dev/tool"])
    first = kiln("image", "build", forward, "-o", f"oci:{tmp_path / 'out-a'}", "--json")
    assert first.code == 0, first.err
    second = kiln("image", "build", backward, "-o", f"oci:{tmp_path / 'out-b'}", "--json")
    assert json.loads(first.out)["digest"] == json.loads(second.out)["digest"]

    manifest = layout_manifest(tmp_path / "out-a")
    layers = manifest["layers"]
    assert isinstance(layers, list)
    names = [json.loads(layer["annotations"]["dev.kiln.layer.packages"])[0]["name"]
             for layer in layers[:-1]]
    # The closure (libfoo at its highest version, awk through its provider), by name.
    assert names == ["kiln.dev/docs", "kiln.dev/libfoo", "kiln.dev/mawk", "kiln.dev/tool"]
    # Each package's layer is its FileSet artifact's layer, byte for byte.
    cache = ArchiveCache(store)
    for layer, fileset in zip(layers, [extra, tools["lib2"], tools["mawk"], tools["tool"]],
                              strict=False):
        assert layer["digest"] == cache.layer(fileset)[0].digest
    lock = json.loads((tmp_path / "a" / "image.lock").read_text())
    assert [(p["name"], p["version"]) for p in lock["packages"]] == [
        ("kiln.dev/docs", "1-1"), ("kiln.dev/libfoo", "2.0-1"), ("kiln.dev/mawk", "1.3-1"),
        ("kiln.dev/tool", "1.0-1")]


def test_install_links_are_one_small_layer(
        kiln: Kiln, store: Store, tmp_path: Path, tools: dict[str, FileSet]) -> None:
    spec = write_spec(tmp_path / "s", ["kiln.dev/tool"])
    assert kiln("image", "build", spec, "-o", f"oci:{tmp_path / 'out'}").code == 0
    manifest = layout_manifest(tmp_path / "out")
    layers = manifest["layers"]
    assert isinstance(layers, list)
    install = layers[-1]
    assert install["annotations"] == {"dev.kiln.layer.role": "install-links"}
    with tarfile.open(tmp_path / "out/blobs/sha256" / install["digest"][7:]) as archive:
        links = {m.name: m.linkname for m in archive.getmembers() if m.issym()}
    assert links["usr/bin/tool"] == "/packages/kiln.dev/tool/1.0-1/usr/bin/tool"
    assert links["usr/lib/libfoo.so.1"] == "/packages/kiln.dev/libfoo/2.0-1/usr/lib/libfoo.so.1"


def test_two_packages_with_one_path_are_refused_unless_one_replaces_the_other(
        kiln: Kiln, store: Store, tmp_path: Path, tools: dict[str, FileSet]) -> None:
    spec = write_spec(tmp_path / "s", ["kiln.dev/tool", "kiln.dev/other-tool"])
    refused = kiln("image", "build", spec, "-o", f"oci:{tmp_path / 'out'}")
    assert refused.code == 2
    assert "[path-claimed-twice]" in refused.err
    assert "/usr/bin/tool" in refused.err
    assert "kiln.dev/other-tool" in refused.err
    make_package(store, tmp_path, "kiln.dev/other-tool", "2-1",
                 {"usr/bin/tool*": "#!/bin/sh\necho other\n"}, replaces=("kiln.dev/tool",))
    allowed = kiln("image", "build", spec, "-o", f"oci:{tmp_path / 'out'}")
    assert allowed.code == 0, allowed.err


def test_an_unsatisfiable_set_names_the_chain(
        kiln: Kiln, store: Store, tmp_path: Path, tools: dict[str, FileSet]) -> None:
    make_package(store, tmp_path, "kiln.dev/app", "1-1", {"app": "a\n"},
                 requires=("kiln.dev/libfoo (>= 3.0)",))
    result = kiln("image", "build", write_spec(tmp_path / "s", ["kiln.dev/app"]),
                  "-o", f"oci:{tmp_path / 'out'}")
    assert result.code == 2
    assert "[unsatisfiable]" in result.err
    assert "kiln.dev/libfoo (>= 3.0) (needed by kiln.dev/app@1-1)" in result.err


def test_malformed_image_yaml_names_file_and_line(kiln: Kiln, tmp_path: Path) -> None:
    spec = tmp_path / "image.yaml"
    spec.write_text("name: kiln.dev/x\nversion: '1'\npackages:\n  - NotAName\ncolour: red\n")
    result = kiln("image", "build", spec, "-o", f"oci:{tmp_path / 'out'}")
    assert result.code == 2
    assert f"{spec}:4:" in result.err
    assert f"{spec}:5: unknown key 'colour'" in result.err


def test_overrides_replace_a_requirement_and_are_recorded(
        kiln: Kiln, store: Store, tmp_path: Path, tools: dict[str, FileSet]) -> None:
    make_package(store, tmp_path, "kiln.dev/libfoo-patched", "2.0-1+p1",
                 {"usr/lib/libfoo.so.1": "foo patched\n"})
    spec = write_spec(tmp_path / "s", ["kiln.dev/tool"],
                      overrides={"kiln.dev/libfoo": "kiln.dev/libfoo-patched"})
    assert kiln("image", "build", spec, "-o", f"oci:{tmp_path / 'out'}").code == 0
    inspected = json.loads(kiln("image", "inspect", f"oci:{tmp_path / 'out'}", "--json").out)
    names = [p["name"] for p in inspected["packages"]]
    assert "kiln.dev/libfoo-patched" in names
    assert "kiln.dev/libfoo" not in names
    assert inspected["overrides"] == {"kiln.dev/libfoo": "kiln.dev/libfoo-patched"}


def test_locked_builds_exactly_the_lock_and_a_stale_lock_is_refused(
        kiln: Kiln, store: Store, tmp_path: Path, tools: dict[str, FileSet]) -> None:
    spec = write_spec(tmp_path / "s", ["kiln.dev/tool"])
    first = json.loads(kiln("image", "build", spec, "-o", f"oci:{tmp_path / 'o1'}",
                            "--json").out)
    make_package(store, tmp_path, "kiln.dev/libfoo", "2.1-1", {"usr/lib/libfoo.so.1": "2.1\n"})
    locked = kiln("image", "build", spec, "--locked", "-o", f"oci:{tmp_path / 'o2'}", "--json")
    assert locked.code == 0, locked.err
    assert json.loads(locked.out)["digest"] == first["digest"]
    fresh = json.loads(kiln("image", "build", spec, "-o", f"oci:{tmp_path / 'o3'}",
                            "--json").out)
    assert fresh["digest"] != first["digest"], "re-resolving takes libfoo 2.1"

    lock = json.loads((tmp_path / "s" / "image.lock").read_text())
    lock["packages"] = [p for p in lock["packages"] if p["name"] != "kiln.dev/mawk"]
    (tmp_path / "s" / "image.lock").write_text(json.dumps(lock))
    stale = kiln("image", "build", spec, "--locked", "-o", f"oci:{tmp_path / 'o4'}")
    assert stale.code == 2
    assert "[lock-stale]" in stale.err


def test_past_the_layer_budget_the_smallest_packages_share_a_layer(
        kiln: Kiln, store: Store, tmp_path: Path) -> None:
    names = []
    for index in range(6):
        name = f"kiln.dev/p{index}"
        make_package(store, tmp_path, name, "1-1", {f"usr/share/p{index}": "x" * (index * 3000)})
        names.append(name)
    spec = write_spec(tmp_path / "s", names, layers="4")
    reversed_spec = write_spec(tmp_path / "r", names[::-1], layers="4")
    result = json.loads(kiln("image", "build", spec, "-o", f"oci:{tmp_path / 'o'}",
                             "--json").out)
    again = json.loads(kiln("image", "build", reversed_spec, "-o", f"oci:{tmp_path / 'r'}",
                            "--json").out)
    assert result["layers"] == 4
    assert result["digest"] == again["digest"]
    layers = layout_manifest(tmp_path / "o")["layers"]
    assert isinstance(layers, list)
    held = [[p["name"] for p in json.loads(layer["annotations"]["dev.kiln.layer.packages"])]
            for layer in layers[:-1]]
    # Budget 4: the install layer, the two largest alone, the four smallest together.
    assert held == [["kiln.dev/p4"], ["kiln.dev/p5"],
                    ["kiln.dev/p0", "kiln.dev/p1", "kiln.dev/p2", "kiln.dev/p3"]]
    with tarfile.open(tmp_path / "o/blobs/sha256" / layers[2]["digest"][7:]) as archive:
        members = archive.getnames()
    for index in range(4):
        assert f"packages/kiln.dev/p{index}/1-1/usr/share/p{index}" in members


def test_the_sbom_is_valid_spdx_listing_every_package(
        kiln: Kiln, store: Store, tmp_path: Path, tools: dict[str, FileSet]) -> None:
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    assert kiln("image", "build", write_spec(tmp_path / "s", ["kiln.dev/tool"]),
                "-o", f"oci:{tmp_path / 'out'}").code == 0
    index = json.loads((tmp_path / "out/index.json").read_text())
    (referrer,) = [m for m in index["manifests"]
                   if m.get("artifactType") == "application/spdx+json"]
    manifest = json.loads((tmp_path / "out/blobs/sha256" / referrer["digest"][7:]).read_text())
    image = layout_manifest(tmp_path / "out")
    image_bytes = json.dumps(image, separators=(",", ":"), sort_keys=True).encode()
    assert manifest["subject"]["digest"] == sha256_digest(image_bytes)
    sbom_path = tmp_path / "sbom.spdx.json"
    shutil.copy(tmp_path / "out/blobs/sha256" / manifest["layers"][0]["digest"][7:], sbom_path)
    document = parse_file(str(sbom_path))
    assert validate_full_spdx_document(document) == []
    inspected = json.loads(kiln("image", "inspect", f"oci:{tmp_path / 'out'}", "--json").out)
    assert inspected["attached"] == [{"artifactType": "application/spdx+json",
                                      "digest": referrer["digest"]}]
    assert {p.name for p in document.packages} == {
        "kiln.dev/images/test", "kiln.dev/libfoo", "kiln.dev/mawk", "kiln.dev/tool"}


def test_inspect_and_diff_read_the_images_alone(
        kiln: Kiln, store: Store, tmp_path: Path, tools: dict[str, FileSet]) -> None:
    spec = write_spec(tmp_path / "s", ["kiln.dev/tool"])
    assert kiln("image", "build", spec, "-o", f"oci:{tmp_path / 'out'}:1").code == 0
    updated = kiln("image", "update", f"oci:{tmp_path / 'out'}:1", "--set",
                   "kiln.dev/libfoo=1.0-1", "-o", f"oci:{tmp_path / 'out'}:2", "--json",
                   "--lock", tmp_path / "s" / "image.lock")
    assert updated.code == 0, updated.err
    lock = json.loads((tmp_path / "s" / "image.lock").read_text())
    assert {p["name"]: p["digest"] for p in lock["packages"]}["kiln.dev/libfoo"] == (
        tools["lib1"].digest)
    # Another store knows nothing of these packages: inspect needs the image only.
    other = Kiln(tmp_path / "empty-store", kiln._capsys)
    inspected = json.loads(other("image", "inspect", f"oci:{tmp_path / 'out'}:2", "--json").out)
    assert inspected["previous"] == json.loads(updated.out)["previous"]
    versions = {p["name"]: p["version"] for p in inspected["packages"]}
    assert versions["kiln.dev/libfoo"] == "1.0-1"
    changes = json.loads(other("image", "diff", f"oci:{tmp_path / 'out'}:1",
                               f"oci:{tmp_path / 'out'}:2", "--json").out)
    assert [(c["name"], c["change"], c["before"]["version"], c["after"]["version"])
            for c in changes] == [("kiln.dev/libfoo", "changed", "2.0-1", "1.0-1")]


def test_an_update_is_a_new_version_beside_the_old_one(
        kiln: Kiln, store: Store, tmp_path: Path, tools: dict[str, FileSet]) -> None:
    spec = write_spec(tmp_path / "s", ["kiln.dev/tool"])
    out = tmp_path / "out"
    assert kiln("image", "build", spec, "-o", f"oci:{out}:1").code == 0
    before = json.loads(kiln("image", "inspect", f"oci:{out}:1", "--json").out)
    same = kiln("image", "update", f"oci:{out}:1", "--set", "kiln.dev/libfoo=1.0-1",
                "--version", before["version"])
    assert same.code == 2
    assert "[same-version]" in same.err
    updated = kiln("image", "update", f"oci:{out}:1", "--set", "kiln.dev/libfoo=1.0-1",
                   "--json")
    assert updated.code == 0, updated.err
    after = json.loads(kiln("image", "inspect", f"oci:{out}:2", "--json").out)
    assert after["version"] == "2"  # the version after 1, under its own tag
    assert after["digest"] == json.loads(updated.out)["digest"]
    unchanged = json.loads(kiln("image", "inspect", f"oci:{out}:1", "--json").out)
    assert unchanged["digest"] == before["digest"]  # tag 1 still names version 1


def test_an_update_that_breaks_a_requirement_is_refused(
        kiln: Kiln, store: Store, tmp_path: Path, tools: dict[str, FileSet]) -> None:
    make_package(store, tmp_path, "kiln.dev/libfoo", "0.9-1", {"usr/lib/libfoo.so.1": "old\n"})
    assert kiln("image", "build", write_spec(tmp_path / "s", ["kiln.dev/tool"]),
                "-o", f"oci:{tmp_path / 'out'}:1").code == 0
    result = kiln("image", "update", f"oci:{tmp_path / 'out'}:1", "--set",
                  "kiln.dev/libfoo=0.9-1", "-o", f"oci:{tmp_path / 'out'}:2")
    assert result.code == 2
    assert "[unsatisfiable]" in result.err
    assert "kiln.dev/tool" in result.err


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with run_registry(tmp_path_factory.mktemp("registry")) as running:
        yield running


def test_a_surgical_update_sends_only_what_changed(
        kiln: Kiln, store: Store, tmp_path: Path, tools: dict[str, FileSet],
        registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    with run_fault_proxy(registry.host) as proxy:  # no faults: it only logs
        monkeypatch.setenv("KILN_REGISTRIES",
                           str(registry_config(tmp_path / "registries.yaml", proxy.host)))
        spec = write_spec(tmp_path / "s", ["kiln.dev/tool"])
        target = f"{proxy.host}/images/test:1"
        built = kiln("image", "build", spec, "--push", target, "--json")
        assert built.code == 0, built.err
        before = json.loads(built.out)["digest"]
        newer = make_package(store, tmp_path, "kiln.dev/libfoo", "2.1-1",
                             {"usr/lib/libfoo.so.1": "foo 2.1\n" * 1000})
        proxy.log.clear()
        updated = kiln("image", "update", target, "--set", "kiln.dev/libfoo=2.1-1", "--json")
        assert updated.code == 0, updated.err
        report = json.loads(updated.out)

    uploads = [line for line in proxy.log if line.startswith("PUT ") and "/blobs/" in line]
    uploaded = {re.search(r"digest=(sha256(?:%3A|:)[0-9a-f]{64})", line).group(1)  # type: ignore[union-attr]
                .replace("%3A", ":") for line in uploads}
    client = RegistryClient(registry.host, plain_http=True)
    # Version 2 of the image, beside version 1, which still names the image it was.
    manifest, _, digest = client.get_manifest(parse_reference(f"{registry.host}/images/test:2"))
    assert digest == report["digest"]
    assert client.get_manifest(parse_reference(f"{registry.host}/images/test:1"))[2] == before
    assert json.loads(manifest)["annotations"]["org.opencontainers.image.version"] == "2"
    raw = json.loads(manifest)
    assert raw["annotations"]["dev.kiln.image.previous"] == before
    new_layer = ArchiveCache(store).layer(newer)[0].digest
    install_layer = raw["layers"][-1]["digest"]
    # The new package, the install links, the config and the SBOM: nothing else.
    assert new_layer in uploaded
    assert install_layer in uploaded
    assert raw["config"]["digest"] in uploaded
    assert len(uploaded) == 4, uploads
    manifests = [line for line in proxy.log if line.startswith("PUT ") and "/manifests/" in line]
    # The image by digest, the SBOM artifact, its fallback index, then the tag (the
    # manifest again: a tag lands only once what is attached to it is there).
    assert len(manifests) == 4, manifests
    assert manifests[-1].startswith("PUT /v2/images/test/manifests/2 "), manifests
    # Unchanged layers are not even asked about: no request names one.
    unchanged = [layer["digest"] for layer in raw["layers"][:-1] if layer["digest"] != new_layer]
    assert len(unchanged) == 2
    assert not any(digest in line for digest in unchanged for line in proxy.log)


def test_a_set_decides_the_versions_of_an_image(
        kiln: Kiln, store: Store, tmp_path: Path, tools: dict[str, FileSet],
        registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KILN_REGISTRIES",
                       str(registry_config(tmp_path / "registries.yaml", registry.host)))
    set_file = tmp_path / "set.yaml"
    set_file.write_text(json.dumps({"name": "kiln.dev/sets/base", "version": "2026.11",
                                    "packages": ["kiln.dev/tool", "kiln.dev/libfoo (<< 2.0)"]}))
    published = kiln("set", "publish", set_file, "--json")
    assert published.code == 0, published.err
    report = json.loads(published.out)
    assert {(p["name"], p["version"]) for p in report["packages"]} == {
        ("kiln.dev/tool", "1.0-1"), ("kiln.dev/libfoo", "1.0-1"), ("kiln.dev/mawk", "1.3-1")}

    spec = write_spec(tmp_path / "s", ["kiln.dev/tool"], set="kiln.dev/sets/base@2026.11")
    built = kiln("image", "build", spec, "-o", f"oci:{tmp_path / 'out'}", "--json")
    assert built.code == 0, built.err
    inspected = json.loads(kiln("image", "inspect", f"oci:{tmp_path / 'out'}", "--json").out)
    assert {p["name"]: p["version"] for p in inspected["packages"]}["kiln.dev/libfoo"] == "1.0-1"
    assert inspected["set"] == report["digest"]

    # A consumer with an empty store composes the same image from the registry alone.
    other = Kiln(tmp_path / "consumer", kiln._capsys)
    locked = other("image", "build", spec, "--locked", "-o", f"oci:{tmp_path / 'out2'}",
                   "--json")
    assert locked.code == 0, locked.err
    assert json.loads(locked.out)["digest"] == json.loads(built.out)["digest"]


def test_a_package_pushed_alone_and_in_an_image_is_one_blob(
        store: Store, tmp_path: Path, tools: dict[str, FileSet], registry: Registry) -> None:
    client = RegistryClient(registry.host, plain_http=True)
    pushed = push_fileset(store, tools["tool"], client,
                          parse_reference(f"{registry.host}/kiln/kiln.dev/tool:1.0-1"))
    spec = load_image_spec(write_spec(tmp_path / "s", ["kiln.dev/tool"]))
    image = build_from_spec(store, spec).image
    assert pushed.layer.digest in {layer.descriptor.digest for layer in image.layers}


def test_a_missing_package_without_a_registry_is_named(
        store: Store, tmp_path: Path, tools: dict[str, FileSet],
        monkeypatch: pytest.MonkeyPatch) -> None:
    spec = load_image_spec(write_spec(tmp_path / "s", ["kiln.dev/tool"]))
    build_from_spec(store, spec)
    from kiln.image.spec import ImageLock, write_image_lock

    composed = build_from_spec(store, spec)
    write_image_lock(spec.lock_path, ImageLock(composed.lock.packages))
    empty = Store.open(tmp_path / "empty")
    with pytest.raises(KilnError) as raised:
        build_from_spec(empty, spec, locked=True)
    assert raised.value.reason == "package-missing"



def test_images_and_filesets_are_not_taken_for_each_other(
        kiln: Kiln, store: Store, tmp_path: Path, tools: dict[str, FileSet],
        registry: Registry) -> None:
    image_ref = f"{registry.host}/images/kinds:1"
    assert kiln("image", "build", write_spec(tmp_path / "s", ["kiln.dev/tool"]),
                "--push", image_ref).code == 0
    pulled = kiln("pull", image_ref)
    assert pulled.code == 2
    assert "[not-a-fileset]" in pulled.err
    fileset_ref = f"{registry.host}/kiln/kiln.dev/tool:1.0-1"
    assert kiln("push", "kiln.dev/tool@1.0-1", fileset_ref).code == 0
    inspected = kiln("image", "inspect", fileset_ref)
    assert inspected.code == 2
    assert "[not-a-kiln-image]" in inspected.err


def test_gc_drops_the_cached_archives_of_dead_packages_only(
        kiln: Kiln, store: Store, tmp_path: Path, tools: dict[str, FileSet]) -> None:
    spec = write_spec(tmp_path / "s", ["kiln.dev/tool"], layers="3")
    assert kiln("image", "build", spec, "-o", f"oci:{tmp_path / 'out'}").code == 0
    cache = ArchiveCache(store)
    assert cache.path(tools["lib2"]).exists()
    assert list(cache.directory.glob("group-*.tar")), "budget 3 groups two packages"
    assert kiln("fileset", "rm", "kiln.dev/libfoo@2.0-1").code == 0
    collected = json.loads(kiln("store", "gc", "--json").out)
    assert not cache.path(tools["lib2"]).exists()
    assert cache.path(tools["tool"]).exists()
    assert not list(cache.directory.glob("group-*.tar"))
    assert collected["archives_removed"] == 2  # libfoo 2.0's and the group's


def test_a_malformed_image_lock_is_refused(
        kiln: Kiln, store: Store, tmp_path: Path, tools: dict[str, FileSet]) -> None:
    spec = write_spec(tmp_path / "s", ["kiln.dev/tool"])
    (tmp_path / "s" / "image.lock").write_text('{"format": "kiln.image-lock/v1", "packages": 3')
    result = kiln("image", "build", spec, "--locked", "-o", f"oci:{tmp_path / 'out'}")
    assert result.code == 2
    assert "[bad-lock]" in result.err
    assert "image.lock" in result.err


def test_a_malformed_set_names_file_and_line(kiln: Kiln, tmp_path: Path) -> None:
    set_file = tmp_path / "set.yaml"
    set_file.write_text("name: kiln.dev/sets/base\nversion: '1'\npackages:\n  - Bad Name\n")
    result = kiln("set", "publish", set_file)
    assert result.code == 2
    assert f"{set_file}:4:" in result.err


def test_an_update_drops_what_only_the_old_version_needed_and_adds_what_the_new_needs(
        kiln: Kiln, store: Store, tmp_path: Path) -> None:
    make_package(store, tmp_path, "kiln.dev/app", "1-1", {"usr/bin/app*": "app\n"},
                 requires=("kiln.dev/libbar",))
    make_package(store, tmp_path, "kiln.dev/libbar", "1-1", {"usr/lib/libbar.so": "1\n"},
                 requires=("kiln.dev/oldhelper",))
    make_package(store, tmp_path, "kiln.dev/oldhelper", "1-1", {"usr/lib/old": "old\n"})
    spec = write_spec(tmp_path / "s", ["kiln.dev/app"])
    assert kiln("image", "build", spec, "-o", f"oci:{tmp_path / 'out'}:1").code == 0
    make_package(store, tmp_path, "kiln.dev/libbar", "2-1", {"usr/lib/libbar.so": "2\n"},
                 requires=("kiln.dev/newhelper",))
    make_package(store, tmp_path, "kiln.dev/newhelper", "1-1", {"usr/lib/new": "new\n"})
    updated = kiln("image", "update", f"oci:{tmp_path / 'out'}:1", "--set",
                   "kiln.dev/libbar=2-1", "-o", f"oci:{tmp_path / 'out'}:2")
    assert updated.code == 0, updated.err
    changes = json.loads(kiln("image", "diff", f"oci:{tmp_path / 'out'}:1",
                              f"oci:{tmp_path / 'out'}:2", "--json").out)
    assert [(c["name"], c["change"]) for c in changes] == [
        ("kiln.dev/libbar", "changed"), ("kiln.dev/newhelper", "added"),
        ("kiln.dev/oldhelper", "removed")]

"""kiln build with the real sandbox, apt and git: the curated hello, and bad recipes."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import git
import pytest

from kiln.package import PackageMetadata
from kiln.recipes.lock import read_lock
from kiln.registry.client import RegistryClient
from kiln.registry.reference import parse_reference
from kiln.store import Store
from provenance.registry import fetch_bundles
from tests.conftest import REPO, Kiln, run_kiln_process
from tests.fixtures.keys import write_key
from tests.fixtures.registry import registry_config, run_registry
from tests.integration.test_debian import apt_lists  # noqa: F401 - fixture

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("bwrap") is None,
                                reason="builds need root and bubblewrap")


def test_hello_builds_hermetically_runs_and_is_not_built_twice(
        tmp_path: Path, kiln: Kiln, apt_lists: None) -> None:  # noqa: F811
    built = kiln("build", "hello", "--recipes", REPO / "recipes", "--check", "--record",
                 tmp_path / "record.json", "--json")
    assert built.code == 0, built.err
    record = json.loads((tmp_path / "record.json").read_text())
    assert json.loads(built.out)["reused"] is False
    assert record["recipe"]["commit"] == git.Repo(REPO).commit("HEAD").hexsha
    assert record["recipe"]["dirty"] is False
    # The Debian source, then each pipeline the build uses, by the digest of its file.
    pipelines = REPO / "recipes" / "pipelines"
    assert record["sources"] == [{
        "uri": "debian-source:hello=2.10-3",
        "sha256": "75296f5ef618ae2f1849e22b142a2b5ab52c452ebefa4e7b0564c44617db3790"}] + [
        {"uri": f"pipeline:{name}",
         "sha256": hashlib.sha256((pipelines / f"{name}.yaml").read_bytes()).hexdigest()}
        for name in ("autoconf/configure", "make/build", "make/install", "tar/unpack")]
    lock = read_lock(REPO / "recipes/kiln.lock")
    assert lock is not None
    for dependency in record["build_requires"]:
        locked = lock.get(dependency["name"])
        assert locked is not None
        assert dependency["digest"] == locked.digest
    assert record["sandbox"]["backend"] == "bwrap"
    assert record["kiln"]["commit"] == git.Repo(REPO).commit("HEAD").hexsha

    store = Store.open(kiln.store_dir)
    hello = store.get(record["output"]["digest"])
    assert isinstance(hello.metadata, PackageMetadata)
    assert hello.metadata.install == ("usr/bin/hello",)
    exported = json.loads(kiln("fileset", "export", hello.digest, "-o", tmp_path / "h.tar",
                               "--json").out)
    assert record["output"]["archive"] == exported["archive"]
    made = kiln("fileset", "materialize", "kiln.dev/hello@2.10-1", tmp_path / "hello")
    assert made.code == 0
    greeting = subprocess.run([tmp_path / "hello/usr/bin/hello"], capture_output=True,
                              text=True, check=True)
    assert greeting.stdout == "Hello, world!\n"

    again = kiln("build", "hello", "--recipes", REPO / "recipes", "--json")
    assert json.loads(again.out)["reused"] is True
    assert json.loads(again.out)["output"] == record["output"]


def test_a_build_signed_with_the_farm_key_verifies_with_its_recipe_commit(
        tmp_path: Path, kiln: Kiln, apt_lists: None,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    key, public = write_key(tmp_path, "farm")
    with run_registry(tmp_path / "registry") as registry:
        monkeypatch.setenv("KILN_REGISTRIES",
                           str(registry_config(tmp_path / "registries.yaml", registry.host)))
        built = kiln("build", "greet", "--recipes", REPO / "recipes", "--sign", f"file:{key}",
                     "--json")
        assert built.code == 0, built.err
        # It says what it signed, with what, and where the provenance went.
        signed = json.loads(built.out)["signed"]
        assert signed["signer"].startswith("key ")
        assert str(key) in signed["signer"]
        assert signed["artifact"].startswith(f"{registry.host}/")
        assert "signed the provenance of kiln.dev/greet@" in built.err
        consumer = Kiln(tmp_path / "consumer", kiln._capsys)
        verified = consumer("verify", "kiln.dev/greet@" + json.loads(built.out)["output"][
            "version"], "--key", public, "--json")
        assert verified.code == 0, verified.err
        assert json.loads(verified.out)["digest"] == json.loads(built.out)["output"]["digest"]
        client = RegistryClient(registry.host, plain_http=True)
        reference = parse_reference(f"{registry.host}/kiln/kiln.dev/greet:"
                                    + json.loads(built.out)["output"]["version"])
        _, _, digest = client.get_manifest(reference)
        (bundle,) = fetch_bundles(client, reference.repository, digest)
    payload = json.loads(base64.b64decode(json.loads(bundle)["dsseEnvelope"]["payload"]))
    parameters = payload["predicate"]["buildDefinition"]["externalParameters"]["recipes"]
    assert parameters["commit"] == git.Repo(REPO).commit("HEAD").hexsha
    assert parameters["path"] == "greet"


@pytest.mark.parametrize(("recipe", "backend"), [("zlib", "bwrap"), ("greet", "runc")])
def test_the_other_curated_recipes_build_pass_their_tests_and_check(
        kiln: Kiln, recipe: str, backend: str, apt_lists: None) -> None:  # noqa: F811
    # zlib's test compiles a program against the zlib just built; greet comes from a
    # git commit of this repository, and is built with the other backend.
    result = kiln("build", recipe, "--recipes", REPO / "recipes", "--check",
                  "--sandbox", backend)
    assert result.code == 0, result.err
    assert f"kiln.dev/{recipe}@" in result.out
    assert "built twice, identical" in result.out


@pytest.fixture
def recipes(tmp_path: Path) -> Path:
    """A git repository of one recipe that needs only dash, with the curated lock."""
    top = tmp_path / "repo"
    (top / "recipes/tiny").mkdir(parents=True)
    shutil.copy(REPO / "recipes/kiln.lock", top / "recipes/kiln.lock")
    write_tiny(top, "printf 'made\\n' > /out/made")
    repo = git.Repo.init(top)
    repo.index.add(["recipes"])
    repo.index.commit("tiny")
    return top / "recipes"


WITH_COREUTILS = "debian.org/bookworm/dash, debian.org/bookworm/coreutils"


def write_tiny(top: Path, build: str, requires: str = "debian.org/bookworm/dash") -> None:
    (top / "recipes/tiny/recipe.yaml").write_text(textwrap.dedent(f"""\
        package: {{name: kiln.dev/tiny, version: '1'}}
        build-requires: [{requires}]
        build: {json.dumps(build)}
        """))


def test_uncommitted_recipes_are_refused_unless_allowed(
        recipes: Path, kiln: Kiln, apt_lists: None) -> None:  # noqa: F811
    write_tiny(recipes.parent, "printf 'changed\\n' > /out/made")
    refused = kiln("build", "tiny", "--recipes", recipes)
    assert refused.code == 2
    assert "[dirty-recipes]" in refused.err
    allowed = kiln("build", "tiny", "--recipes", recipes, "--allow-dirty", "--json")
    assert allowed.code == 0, allowed.err
    assert json.loads(allowed.out)["recipe"]["dirty"] is True


def test_a_failing_build_ends_with_its_log(recipes: Path, kiln: Kiln,
                                           apt_lists: None) -> None:  # noqa: F811
    write_tiny(recipes.parent, "echo 'configuring the widget'; i=0; while [ $i -lt 200 ];"
                               " do echo \"line $i\"; i=$((i+1)); done;"
                               " echo 'widget.c:3: boom' >&2; exit 3",
               requires=WITH_COREUTILS)
    result = kiln("build", "tiny", "--recipes", recipes, "--allow-dirty")
    assert result.code == 1
    assert "[build-failed]" in result.err
    assert "widget.c:3: boom" in result.err
    assert "configuring the widget" not in result.err  # the error shows the last lines
    assert "kiln build log kiln.dev/tiny@1" in result.err
    # The whole log is kept, failed builds' too, and read back as users type it.
    whole = kiln("build", "log", "kiln.dev/tiny@1")
    assert whole.code == 0, whole.err
    assert whole.out.splitlines()[0] == "configuring the widget"
    assert "line 199" in whole.out
    assert "widget.c:3: boom" in whole.out
    assert "failed (build-failed)" in whole.err
    # A build that succeeds keeps its log as the newest.
    write_tiny(recipes.parent, "echo 'all good'; echo made > /out/made")
    assert kiln("build", "tiny", "--recipes", recipes, "--allow-dirty").code == 0
    assert kiln("build", "log", "kiln.dev/tiny").out.splitlines() == ["all good"]
    listed = json.loads(kiln("build", "log", "kiln.dev/tiny", "--json").out)
    assert [entry["failed"] for entry in listed] == [True, False]
    missing = kiln("build", "log", "kiln.dev/never-built")
    assert missing.code == 2
    assert "[no-build-log]" in missing.err


def test_a_build_requirement_outside_the_lock_is_named(recipes: Path, kiln: Kiln) -> None:
    write_tiny(recipes.parent, "true", requires="debian.org/bookworm/cowsay")
    result = kiln("build", "tiny", "--recipes", recipes, "--allow-dirty")
    assert result.code == 2
    assert "debian.org/bookworm/cowsay" in result.err
    assert "[missing-build-require]" in result.err


def test_check_passes_a_deterministic_build(recipes: Path, kiln: Kiln,
                                            apt_lists: None) -> None:  # noqa: F811
    write_tiny(recipes.parent, "printf 'same every time\\n' > /out/made; "
                               "mkdir /out/doc; echo $SOURCE_DATE_EPOCH > /out/doc/epoch",
               requires=WITH_COREUTILS)
    result = kiln("build", "tiny", "--recipes", recipes, "--allow-dirty", "--check")
    assert result.code == 0, result.err
    assert "built twice, identical" in result.out


def test_a_build_found_built_before_names_its_package_again(
        recipes: Path, kiln: Kiln, apt_lists: None) -> None:  # noqa: F811
    write_tiny(recipes.parent, "echo same > /out/made")
    assert kiln("build", "tiny", "--recipes", recipes, "--allow-dirty").code == 0
    assert kiln("fileset", "rm", "kiln.dev/tiny@1").code == 0
    assert kiln("fileset", "show", "kiln.dev/tiny@1").code != 0
    again = kiln("build", "tiny", "--recipes", recipes, "--allow-dirty")
    assert again.code == 0, again.err
    assert "already built" in again.out
    assert kiln("fileset", "show", "kiln.dev/tiny@1").code == 0  # resolvable again


def test_a_build_pushed_by_digest_exports_its_archive_once(
        recipes: Path, kiln: Kiln, tmp_path: Path, apt_lists: None,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    import kiln.archive.export as export_module

    exported: list[str] = []
    export = export_module.write_archive

    def counted(store: Store, fileset: object, out: object) -> object:
        exported.append(str(getattr(fileset, "digest", "")))
        return export(store, fileset, out)  # type: ignore[arg-type]

    # Every export goes through the exporter's module (its callers import it lazily).
    monkeypatch.setattr(export_module, "write_archive", counted)
    write_tiny(recipes.parent, "echo once > /out/made")
    with run_registry(tmp_path / "registry") as registry:
        monkeypatch.setenv("KILN_REGISTRIES",
                           str(registry_config(tmp_path / "registries.yaml", registry.host)))
        built = kiln("build", "tiny", "--recipes", recipes, "--allow-dirty",
                     "--push-by-digest", tmp_path / "pushed.txt", "--json")
        assert built.code == 0, built.err
        record = json.loads(built.out)
        # One export for the record's archive digest; the push reused it.
        assert exported == [record["output"]["digest"]]
        client = RegistryClient(registry.host, plain_http=True)
        pushed = parse_reference((tmp_path / "pushed.txt").read_text().strip())
        manifest, _, _ = client.get_manifest(pushed)
        assert json.loads(manifest)["layers"][0]["digest"] == record["output"]["archive"]


def test_the_epoch_is_the_recipes_own_commit_by_directory_or_package_name(
        recipes: Path, kiln: Kiln, tmp_path: Path, apt_lists: None) -> None:  # noqa: F811
    repo = git.Repo(recipes.parent)
    (recipes.parent / "README").write_text("a later change elsewhere\n")
    repo.index.add(["README"])
    later = repo.index.commit("later", commit_date="2030-01-01T00:00:00",
                              author_date="2030-01-01T00:00:00")
    recipe_time = repo.commit(later.parents[0]).committed_date
    by_directory = kiln("build", "tiny", "--recipes", recipes, "--json")
    assert by_directory.code == 0, by_directory.err
    assert json.loads(by_directory.out)["source_date_epoch"] == recipe_time
    by_name = kiln("build", "kiln.dev/tiny", "--recipes", recipes, "--json")
    assert by_name.code == 0, by_name.err
    assert json.loads(by_name.out)["reused"] is True  # the same key: not built again
    assert json.loads(by_name.out)["source_date_epoch"] == recipe_time


def test_a_recipe_with_two_git_sources_gets_each_in_its_own_directory(
        recipes: Path, kiln: Kiln, apt_lists: None) -> None:  # noqa: F811
    repo = git.Repo(recipes.parent)
    first = repo.head.commit.hexsha
    (recipes.parent / "NOTES").write_text("the second commit\n")
    repo.index.add(["NOTES"])
    second = repo.index.commit("second").hexsha
    (recipes / "tiny/recipe.yaml").write_text(textwrap.dedent(f"""\
        package: {{name: kiln.dev/tiny, version: '1'}}
        sources:
          - git: ..
            commit: {first}
          - git: ..
            commit: {second}
        build-requires: [{WITH_COREUTILS}]
        build: ls /src/git > /out/first; ls /src/git-2 > /out/second
        """))
    repo.index.add(["recipes"])
    repo.index.commit("two git sources")
    built = kiln("build", "tiny", "--recipes", recipes)
    assert built.code == 0, built.err
    fileset = kiln("fileset", "materialize", "kiln.dev/tiny@1", recipes.parent / "made")
    assert fileset.code == 0, fileset.err
    assert "NOTES" not in (recipes.parent / "made/first").read_text()
    assert "NOTES" in (recipes.parent / "made/second").read_text()


def test_check_names_the_files_of_a_nondeterministic_build(
        recipes: Path, kiln: Kiln, apt_lists: None) -> None:  # noqa: F811
    write_tiny(recipes.parent, "printf 'stable\\n' > /out/stable; "
                               "date +%s%N > /out/stamp; pwd > /out/where; umask > /out/mask",
               requires=WITH_COREUTILS)
    result = kiln("build", "tiny", "--recipes", recipes, "--allow-dirty", "--check")
    assert result.code == 1
    assert "[not-reproducible]" in result.err
    assert "recipes/tiny/recipe.yaml" in result.err
    assert "differ in 3 paths: mask, stamp, where" in result.err


def test_check_varies_what_reprotest_varies_and_names_each_leak(
        recipes: Path, kiln: Kiln, apt_lists: None) -> None:  # noqa: F811
    # Each file leaks one thing a build must not depend on; the second build of
    # --check moves the clock 398 days ahead, runs elsewhere, on another host name,
    # in another time zone and locale.
    write_tiny(recipes.parent, "printf 'stable\\n' > /out/stable; "
                               "date +%F > /out/day; "
                               "head -c 16 /dev/urandom | od -An -tx1 > /out/random; "
                               "pwd > /out/where; uname -n > /out/host; "
                               "date -d @0 +%H > /out/zone; echo $LANG > /out/lang; "
                               "date -u -d @$SOURCE_DATE_EPOCH +%F > /out/epoch-day",
               requires=WITH_COREUTILS)
    result = kiln("build", "tiny", "--recipes", recipes, "--allow-dirty", "--check")
    assert result.code == 1
    assert "[not-reproducible]" in result.err
    assert "differ in 6 paths: day, host, lang, random, where, zone" in result.err


def write_recipe(top: Path, name: str, build: str, requires: list[str]) -> None:
    (top / "recipes" / name).mkdir(parents=True, exist_ok=True)
    (top / "recipes" / name / "recipe.yaml").write_text(textwrap.dedent(f"""\
        package: {{name: kiln.dev/{name}, version: '1'}}
        build-requires: {json.dumps(requires)}
        build: {json.dumps(build)}
        """))


def test_a_recipe_builds_against_another_recipes_package(
        recipes: Path, kiln: Kiln, apt_lists: None) -> None:  # noqa: F811
    top = recipes.parent
    shell = ["debian.org/bookworm/dash", "debian.org/bookworm/coreutils"]
    write_recipe(top, "tiny", "mkdir -p /out/usr/share/tiny; echo 'made by tiny' >"
                              " /out/usr/share/tiny/data", shell)
    write_recipe(top, "app", "cat /usr/share/tiny/data > /out/copied",
                 [*shell, "kiln.dev/tiny (>= 1)"])
    missing = kiln("build", "app", "--recipes", recipes, "--allow-dirty")
    assert missing.code == 2
    assert "[unsatisfiable]" in missing.err
    assert "kiln.dev/tiny" in missing.err

    assert kiln("build", "tiny", "--recipes", recipes, "--allow-dirty").code == 0
    built = kiln("build", "app", "--recipes", recipes, "--allow-dirty", "--json")
    assert built.code == 0, built.err
    record = json.loads(built.out)
    assert "kiln.dev/tiny" in {d["name"] for d in record["build_requires"]}
    out = kiln.store_dir.parent / "app-tree"
    assert kiln("fileset", "materialize", "kiln.dev/app@1", out).code == 0
    assert (out / "copied").read_text() == "made by tiny\n"

    write_recipe(top, "app", "true", [*shell, "kiln.dev/tiny (>= 2)"])
    too_new = kiln("build", "app", "--recipes", recipes, "--allow-dirty")
    assert too_new.code == 2
    assert "[unsatisfiable]" in too_new.err
    assert "kiln.dev/tiny (>= 2)" in too_new.err


def test_recipes_from_a_git_url_at_a_commit(recipes: Path, tmp_path: Path, kiln: Kiln,
                                            apt_lists: None) -> None:  # noqa: F811
    first = git.Repo(recipes.parent).commit("HEAD").hexsha
    write_tiny(recipes.parent, "printf 'second\\n' > /out/made")
    repo = git.Repo(recipes.parent)
    repo.index.add(["recipes"])
    repo.index.commit("second")
    bare = tmp_path / "served.git"
    git.Repo.clone_from(recipes.parent, bare, bare=True)
    url = bare.as_uri()

    latest = kiln("build", "tiny", "--recipes", url, "--json")
    assert latest.code == 0, latest.err
    record = json.loads(latest.out)
    assert record["recipe"]["repo"] == url
    assert record["recipe"]["commit"] == repo.commit("HEAD").hexsha
    older = kiln("build", "tiny", "--recipes", f"{url}#recipes", "--commit", first, "--json")
    assert older.code == 0, older.err
    assert json.loads(older.out)["recipe"]["commit"] == first
    assert json.loads(older.out)["output"]["digest"] != record["output"]["digest"]
    unreachable = kiln("build", "tiny", "--recipes", (tmp_path / "nothing.git").as_uri())
    assert unreachable.code == 2
    assert "[not-a-repository]" in unreachable.err


def write_limited(top: Path, build: str, limits: str = "", sources: str = "") -> None:
    (top / "recipes/tiny/recipe.yaml").write_text(
        "package: {name: kiln.dev/tiny, version: '1'}\n"
        f"build-requires: [{WITH_COREUTILS}]\n"
        f"build: {json.dumps(build)}\n" + limits + sources)


def test_each_limit_stops_its_flood_with_a_clear_reason(
        recipes: Path, kiln: Kiln, tmp_path: Path, apt_lists: None) -> None:  # noqa: F811
    top = recipes.parent
    before = shutil.disk_usage(kiln.store_dir.parent).free

    def build(script: str, limits: str = "", sources: str = "") -> tuple[int, str]:
        write_limited(top, script, limits, sources)
        result = kiln("build", "tiny", "--recipes", recipes, "--allow-dirty")
        assert "Traceback" not in result.err
        return result.code, result.err

    # The recipe's own wall time, not the hour every build had.
    code, err = build("sleep 600", "limits: {wall-time: 2}\n")
    assert code == 1
    assert "[build-failed]" in err
    assert "timed out" in err
    # /out is a tmpfs of out-size: writing past it fails inside the build.
    code, err = build("head -c 3000000 /dev/zero > /out/zeros", "limits: {out-size: 1M}\n")
    assert code == 1
    assert "No space left on device" in err
    # A sparse file costs the tmpfs nothing, but would become a real object: refused.
    code, err = build("truncate -s 5G /out/sparse")
    assert code == 1
    assert "[output-too-large]" in err
    code, err = build("for i in $(seq 50); do : > /out/f$i; done", "limits: {out-files: 10}\n")
    assert code == 1
    assert "[output-too-large]" in err
    # A recipe cannot grant itself more than the host's ceilings.
    code, err = build("true", "limits: {memory: 1T}\n")
    assert code == 2
    assert "[limit-too-high]" in err
    assert "recipes/tiny/recipe.yaml" in err
    # A log flood is kept to log-size, the rest dropped with a marker; the build goes on.
    code, err = build("head -c 50000000 /dev/zero | tr '\\\\0' x; mkdir -p /out/d; : > /out/d/f",
                      "limits: {log-size: 100K}\n")
    assert code == 0, err
    logs = list((kiln.store_dir / "cache" / "builds").glob("*.log"))
    assert logs
    newest = max(logs, key=lambda p: p.stat().st_mtime)
    assert newest.stat().st_size < 102_400 + 200
    assert b"kiln: log cut at 102400 bytes" in newest.read_bytes()
    # Nothing of the floods stayed on the host's disk.
    assert shutil.disk_usage(kiln.store_dir.parent).free > before - (200 << 20)


def test_a_host_file_is_no_source_for_kiln_build_or_recipe_check(
        recipes: Path, kiln: Kiln, tmp_path: Path) -> None:
    secret = tmp_path / "secret-token"
    secret.write_text("the builder's credentials\n")
    for url in (secret.as_uri(), "file:///proc/self/environ"):
        write_limited(recipes.parent, "true",
                      sources=f"sources:\n  - url: {url}\n    sha256: {'0' * 64}\n")
        checked = kiln("recipe", "check", recipes)
        assert checked.code == 1
        problem = next(line for line in checked.out.splitlines()
                       if "[local-source-not-allowed]" in line)
        assert problem.startswith(f"{recipes}/tiny/recipe.yaml:5: ")  # file and line
        built = kiln("build", "tiny", "--recipes", recipes, "--allow-dirty")
        assert built.code == 2
        assert "[local-source-not-allowed]" in built.err
        assert "credentials" not in built.err


def test_the_build_key_counts_only_the_builds_own_closure_of_the_lock(
        recipes: Path, kiln: Kiln, tmp_path: Path, apt_lists: None) -> None:  # noqa: F811
    from workers.build_plan import prepare

    store = Store.open(kiln.store_dir)
    before = prepare(store, recipes, "tiny", tmp_path / "one", sandbox="bwrap")
    # The lock loses a package tiny does not use (as when another recipe stops
    # needing make): tiny's key stays, so nothing of it is rebuilt.
    lock = json.loads((recipes / "kiln.lock").read_text())
    lock["packages"] = [p for p in lock["packages"] if p["name"] != "debian.org/bookworm/make"]
    (recipes / "kiln.lock").write_text(json.dumps(lock, indent=2))
    repo = git.Repo(recipes.parent)
    repo.index.add(["recipes/kiln.lock"])
    repo.index.commit("the lock without make")
    after = prepare(store, recipes, "tiny", tmp_path / "two", sandbox="bwrap")
    assert after.checkout.commit != before.checkout.commit
    assert after.build_key == before.build_key
    names = {d.name for d in after.build_requires}
    assert "debian.org/bookworm/dash" in names
    assert "debian.org/bookworm/make" not in names
    # What tiny does use counts: a newer SOURCE_DATE_EPOCH (a commit touching it).
    write_tiny(recipes.parent, "printf 'made\\n' > /out/made; true")
    repo.index.add(["recipes"])
    repo.index.commit("tiny again")
    assert prepare(store, recipes, "tiny", tmp_path / "three",
                   sandbox="bwrap").build_key != before.build_key


def test_build_deps_builds_the_recipes_it_needs_in_waves_and_plan_shows_them(
        recipes: Path, kiln: Kiln, apt_lists: None) -> None:  # noqa: F811
    top = recipes.parent
    shell = ["debian.org/bookworm/dash", "debian.org/bookworm/coreutils"]
    write_recipe(top, "tiny", "mkdir -p /out/usr/share/tiny; echo tiny > /out/usr/share/tiny/d",
                 shell)
    write_recipe(top, "mid", "mkdir -p /out/usr/share/mid; cat /usr/share/tiny/d >"
                             " /out/usr/share/mid/d", [*shell, "kiln.dev/tiny"])
    write_recipe(top, "app", "cat /usr/share/mid/d > /out/copied", [*shell, "kiln.dev/mid"])
    write_recipe(top, "other", "echo other > /out/other", shell)
    repo = git.Repo(top)
    repo.index.add(["recipes"])
    repo.index.commit("a chain of three, and one beside it")

    planned = kiln("farm", "plan", "--recipes", recipes, "--json")
    assert planned.code == 0, planned.err
    assert json.loads(planned.out)["waves"] == [
        ["kiln.dev/other", "kiln.dev/tiny"], ["kiln.dev/mid"], ["kiln.dev/app"]]

    built = kiln("build", "app", "--recipes", recipes, "--deps")
    assert built.code == 0, built.err
    assert built.err.index("kiln.dev/tiny@1") < built.err.index("kiln.dev/mid@1")
    assert "kiln.dev/other" not in built.err  # not in app's closure
    out = kiln.store_dir.parent / "app-out"
    assert kiln("fileset", "materialize", "kiln.dev/app@1", out).code == 0
    assert (out / "copied").read_text() == "tiny\n"

    # A change to the base replans it and everything above it, nothing beside it.
    first = repo.commit("HEAD").hexsha
    write_recipe(top, "tiny", "mkdir -p /out/usr/share/tiny; echo tiny2 > /out/usr/share/tiny/d",
                 shell)
    repo.index.add(["recipes"])
    repo.index.commit("tiny 2")
    replanned = json.loads(kiln("farm", "plan", "--recipes", recipes, "--from", first,
                                "--json").out)
    assert replanned["waves"] == [["kiln.dev/tiny"], ["kiln.dev/mid"], ["kiln.dev/app"]]
    assert replanned["published"] == ["kiln.dev/other"]


def test_a_failed_build_is_kept_and_a_shell_opens_in_its_state(
        recipes: Path, kiln: Kiln, apt_lists: None) -> None:  # noqa: F811
    (recipes / "tiny/recipe.yaml").write_text(textwrap.dedent("""\
        package: {name: kiln.dev/tiny, version: '1'}
        build-requires: [debian.org/bookworm/dash, debian.org/bookworm/coreutils]
        env: {HALF: way}
        build: |
          mkdir half; echo "half$HALF" > half/state; echo partial > /out/partial
          ln -s /etc/shadow half/link; chmod u+s half/state
          exit 3
        """))
    kept = kiln("build", "tiny", "--recipes", recipes, "--allow-dirty", "--keep-failed")
    assert kept.code == 1, kept.err
    where = Path(kept.err.split("its /build and /out are kept in ")[1].split()[0])
    assert (where / "build/half/state").read_text() == "halfway\n"
    assert (where / "out/partial").read_text() == "partial\n"
    # What the build wrote is copied as it is, never followed, and runs as no one.
    assert os.readlink(where / "build/half/link") == "/etc/shadow"
    assert not (where / "build/half/state").stat().st_mode & 0o6000
    assert (where.parent.stat().st_mode & 0o777) == 0o700

    # The shell: the failed build's /build and /out, its sources and its environment.
    script = "cat half/state; cat /out/partial; echo \"env $HALF\"; echo shell > /out/more\n"
    shell = run_kiln_process(kiln.store_dir, "build", "tiny", "--recipes", recipes,
                             "--allow-dirty", "--shell", stdin=script, timeout=300)
    assert shell.returncode == 1, shell.stderr
    assert "halfway\npartial\nenv way\n" in shell.stdout
    assert "a shell in the failed build's sandbox" in shell.stderr
    assert (where / "out/more").read_text() == "shell\n"  # the kept state, writable
    # gc bounds what was kept, as it bounds the failed builds' logs.
    assert kiln("store", "gc", "--max-size", "0").code == 0
    assert not where.exists()


def test_a_build_tells_its_phases_and_its_logs_last_line(
        recipes: Path, kiln: Kiln, apt_lists: None) -> None:  # noqa: F811
    write_tiny(recipes.parent, "echo configuring; sleep 6; echo made > /out/made",
               WITH_COREUTILS)
    built = run_kiln_process(kiln.store_dir, "build", "tiny", "--recipes", recipes,
                             "--allow-dirty")
    assert built.returncode == 0, built.stderr
    # Not a terminal (a farm's step log): a line at each phase, the log's last line
    # once the build has run for a while.
    said = built.stderr.splitlines()
    assert said[:2] == ["kiln: tiny: fetching sources", "kiln: tiny: building"]
    assert "kiln: tiny: building: configuring" in said
    assert said.index("kiln: tiny: building: configuring") < said.index("kiln: tiny: testing")

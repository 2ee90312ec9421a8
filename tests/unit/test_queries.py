"""The index's questions on a hand-made index whose answers are known: versions ordered
as dpkg orders them (epochs, tildes, revisions), an image that carries a package only
because an override put it there, a compromised compiler's packages."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from kiln.errors import InputError, NotFound
from master.index import queries
from master.index.database import open_index
from master.index.models import (
    Build,
    BuildInput,
    Image,
    ImagePackage,
    Package,
    Provenance,
    Publication,
)
from tests.conftest import Kiln

D = "sha256:" + "d" * 64
WHEN = datetime(2026, 12, 1)


def digest(n: int) -> str:
    return f"sha256:{n:064x}"


def image(session: Session, tag: str, carries: dict[str, str],
          overridden: frozenset[str] = frozenset()) -> None:
    session.add(Image(repository="reg:5000/images/app", tag=tag, digest=digest(hash(tag) % 999),
                      name="app", version=tag, indexed=WHEN,
                      packages=[ImagePackage(name=name, version=version, fileset=D,
                                             overridden=name in overridden)
                                for name, version in carries.items()]))


@pytest.fixture
def index(tmp_path: Path) -> Engine:
    engine = open_index(f"sqlite:///{tmp_path / 'index.sqlite'}")
    with Session(engine) as session, session.begin():
        # openssl in every ordering dpkg knows: a tilde sorts before anything, an epoch
        # beats any upstream, a revision counts after the upstream.
        image(session, "tilde", {"openssl": "3.0.13~rc1-1"})  # below 3.0.13-1
        image(session, "old", {"openssl": "3.0.11-1~deb12u2", "zlib": "1.2.13"})  # below
        image(session, "exact", {"openssl": "3.0.13-1"})  # not below
        image(session, "epoch", {"openssl": "1:1.1.1w-0"})  # an epoch: above 3.0.13-1
        image(session, "newer-revision", {"openssl": "3.0.13-1+deb12u1"})  # above
        # openssl is in this image only because its image.yaml overrode the set's version.
        image(session, "override", {"openssl": "3.0.9-1", "curl": "8.0-1"},
              overridden=frozenset({"openssl"}))
        image(session, "none", {"zlib": "1.2.13"})
        gcc = Package(name="debian.org/bookworm/gcc-12", version="12.2.0-14", fileset=D,
                      archive=D)
        hello = Package(name="kiln.dev/hello", version="2.10-3", fileset=digest(1),
                        archive=digest(2))
        zlib = Package(name="kiln.dev/zlib", version="1.3-1", fileset=digest(3),
                       archive=digest(4))
        session.add_all([gcc, hello, zlib])
        session.flush()
        for package, gcc_version in ((hello, "12.2.0-14"), (zlib, "12.2.0-13")):
            session.add(Build(package_id=package.id, build_key=digest(package.id + 10),
                              builder="https://kiln.dev/builders/farm", worker="w1",
                              recipe_commit="c" * 40, started="2026-12-01T00:00:00Z",
                              inputs=[BuildInput(name="debian.org/bookworm/gcc-12",
                                                 version=gcc_version, digest=D)]))
        session.add(Publication(package_id=hello.id, repository="reg:5000/kiln/hello",
                                tag="2.10-3", manifest=digest(5), published=WHEN))
        session.add(Provenance(subject=digest(5), bundle=digest(6), signer="key K",
                               verified=True, verified_at=WHEN))
    return engine


def test_affected_orders_versions_as_dpkg_does(index: Engine) -> None:
    answer = queries.affected(index, "openssl", "3.0.13-1")
    carriers = {c["image"].rsplit(":", 1)[1]: c for c in answer["images"]}
    assert sorted(carriers) == ["old", "override", "tilde"]
    assert carriers["override"]["overridden"] is True  # carried only through an override
    assert carriers["tilde"]["carries"] == "3.0.13~rc1-1"
    assert queries.affected(index, "openssl", "2:0")["images"].__len__() == 7 - 1  # not "none"
    assert queries.affected(index, "openssl", "0.1")["images"] == []
    with pytest.raises(InputError):
        queries.affected(index, "openssl", "not a version!")


def test_a_compromised_compiler_names_every_package_it_built(index: Engine) -> None:
    answer = queries.built_with(index, "debian.org/bookworm/gcc-12", "12.2.0-14")
    assert [(p["name"], p["worker"]) for p in answer["packages"]] == [("kiln.dev/hello", "w1")]
    below = queries.affected(index, "debian.org/bookworm/gcc-12", "12.2.0-14")
    assert [p["name"] for p in below["packages"]] == ["kiln.dev/zlib"]
    assert below["images"] == []


def test_a_package_and_an_image_as_the_index_knows_them(index: Engine) -> None:
    hello = queries.package(index, "kiln.dev/hello")
    [version] = hello["versions"]
    assert version["publications"][0]["provenance"][0]["signer"] == "key K"
    assert version["builds"][0]["worker"] == "w1"
    with pytest.raises(NotFound):
        queries.package(index, "kiln.dev/none")
    shown = queries.image(index, "reg:5000/images/app:override")
    assert {p["name"]: p["overridden"] for p in shown["packages"]} == {"curl": False,
                                                                       "openssl": True}
    with pytest.raises(NotFound):
        queries.image(index, "reg:5000/images/app:missing")


def test_the_questions_from_the_command_line(index: Engine, kiln: Kiln) -> None:
    url = str(index.url)
    result = kiln("query", "affected", "openssl", "--below", "3.0.13-1", "--index", url,
                  "--json")
    assert result.code == 0, result.err
    assert len(json.loads(result.out)["images"]) == 3
    text = kiln("query", "affected", "openssl", "--below", "3.0.13-1", "--index", url)
    assert "3 images carry openssl below 3.0.13-1" in text.out
    assert "0 packages built with it" in text.out
    assert "(an override)" in text.out
    built = kiln("query", "built-with", "debian.org/bookworm/gcc-12@12.2.0-14", "--index", url)
    assert "kiln.dev/hello@2.10-3" in built.out
    missing = kiln("query", "package", "kiln.dev/none", "--index", url, "--json")
    assert missing.code != 0
    assert json.loads(missing.out)["reason"] == "not-found"
    bad = kiln("query", "built-with", "gcc", "--index", url)
    assert bad.code == 2
    assert "NAME@VERSION" in bad.err

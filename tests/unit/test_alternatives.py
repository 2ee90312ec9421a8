"""Debian's alternatives, read from postinst scripts (kiln.debian.alternatives) and
made into a root's links (kiln.install): the highest priority of each group, where
no package ships the path."""

from __future__ import annotations

from pathlib import Path

from kiln.debian.alternatives import postinst_alternatives
from kiln.fileset import FileSet
from kiln.install import install_links
from kiln.package import Alternative, PackageMetadata
from kiln.store import Store
from kiln.store.ingest import ingest_directory
from tests.treespec import File, write_tree

MAWK = """#!/bin/sh
set -e
# Automatically added by dh_installalternatives/13.7.1
if [ "$1" = "configure" ] || [ "$1" = "abort-upgrade" ]; then
        update-alternatives --install /usr/bin/awk awk /usr/bin/mawk 5 \\
            --slave /usr/share/man/man1/awk.1.gz awk.1.gz /usr/share/man/man1/mawk.1.gz \\
            --slave /usr/bin/nawk nawk /usr/bin/mawk
fi
"""
WHICH = """ua() {
\tupdate-alternatives --install /usr/bin/which which /usr/bin/which.debianutils 0 \\
\t\t--slave /usr/share/man/man1/which.1.gz which.1.gz /usr/share/man/man1/which.d.1.gz
}
case "$1" in configure) ua ;; esac
"""


def test_debians_literal_calls_are_read_with_their_slaves() -> None:
    assert postinst_alternatives(MAWK) == (
        Alternative("awk", "/usr/bin/awk", "/usr/bin/mawk", 5),
        Alternative("awk", "/usr/share/man/man1/awk.1.gz", "/usr/share/man/man1/mawk.1.gz", 5),
        Alternative("awk", "/usr/bin/nawk", "/usr/bin/mawk", 5))
    assert postinst_alternatives(WHICH)[0] == Alternative(
        "which", "/usr/bin/which", "/usr/bin/which.debianutils", 0)


# automake's postinst (Debian 12) sets its version and priority in variables first.
AUTOMAKE = """#!/bin/sh

set -e

ver=1.16
prio=34

update-alternatives --install /usr/bin/automake automake \\
	/usr/bin/automake-$ver $prio \\
	--slave /usr/bin/aclocal aclocal /usr/bin/aclocal-${ver}
"""


def test_variables_set_once_to_a_literal_are_read_as_the_shell_would() -> None:
    assert postinst_alternatives(AUTOMAKE) == (
        Alternative("automake", "/usr/bin/automake", "/usr/bin/automake-1.16", 34),
        Alternative("automake", "/usr/bin/aclocal", "/usr/bin/aclocal-1.16", 34))
    # A variable set again (under a condition), read, looped over, set by a command or
    # to a path that leaves the root; or one in single quotes: the call is skipped.
    for script in (AUTOMAKE.replace("prio=34", "prio=34\nif true; then\n  prio=50\nfi"),
                   AUTOMAKE.replace("set -e", "set -e\nread prio"),
                   AUTOMAKE.replace("set -e", "set -e\nfor ver in 1 2; do :; done"),
                   AUTOMAKE.replace("ver=1.16", "ver=$(uname -r)"),
                   AUTOMAKE.replace("ver=1.16", "ver=/../../etc/passwd"),
                   AUTOMAKE.replace("$prio", "'$prio'")):
        assert postinst_alternatives(script) == (), script


def test_calls_kiln_cannot_read_literally_or_that_leave_the_root_are_skipped() -> None:
    assert postinst_alternatives(
        'update-alternatives --install /usr/bin/cc cc "$path" 20\n'
        "update-alternatives --install /usr/bin/x x /usr/bin/`id` 20\n"
        "update-alternatives --install /usr/bin/../../etc/passwd x /usr/bin/y 20\n"
        "update-alternatives --install usr/bin/rel x /usr/bin/y 20\n"
        "update-alternatives --install /usr/bin/p p /usr/bin/q high\n"
        "update-alternatives --remove awk /usr/bin/mawk\n"
        "echo 'unbalanced\n") == ()
    # A call after another command on the line is still read; what follows it is not.
    assert postinst_alternatives(
        "true && update-alternatives --quiet --install /usr/bin/pager pager /bin/more 50"
        " ; echo /usr/bin/x") == (Alternative("pager", "/usr/bin/pager", "/bin/more", 50),)


def package(store: Store, tmp_path: Path, name: str, files: dict[str, File],
            alternatives: tuple[Alternative, ...] = ()) -> FileSet:
    tree = write_tree(tmp_path / name, files)
    return ingest_directory(store, tree, name=f"debian.org/bookworm/{name}", version="1",
                            metadata=PackageMetadata(install=(),
                                                     alternatives=alternatives)).fileset


def test_each_group_links_its_highest_priority_where_nothing_stands(
        tmp_path: Path, store: Store) -> None:
    mawk = package(store, tmp_path, "mawk", {"usr/bin/mawk": File(b"m", True)},
                   postinst_alternatives(MAWK))
    gawk = package(store, tmp_path, "gawk", {"usr/bin/gawk": File(b"g", True)},
                   (Alternative("awk", "/usr/bin/awk", "/usr/bin/gawk", 10),))
    assert install_links(store, [mawk]).links["/usr/bin/awk"] == "/usr/bin/mawk"
    assert install_links(store, [mawk]).links["/usr/bin/nawk"] == "/usr/bin/mawk"
    # The man page slave names a file mawk does not ship here: no dangling link.
    assert "/usr/share/man/man1/awk.1.gz" not in install_links(store, [mawk]).links
    both = install_links(store, [mawk, gawk]).links
    assert both["/usr/bin/awk"] == "/usr/bin/gawk"  # the higher priority
    assert "/usr/bin/nawk" not in both  # mawk's slaves go with mawk's choice
    # A package that ships the path itself keeps it.
    shipped = package(store, tmp_path, "awk-itself", {"usr/bin/awk": File(b"a", True)})
    assert install_links(store, [mawk, shipped]).links["/usr/bin/awk"] == (
        "/packages/debian.org/bookworm/awk-itself/1/usr/bin/awk")


def test_metadata_keeps_alternatives_and_says_nothing_of_them_where_there_are_none(
) -> None:
    plain = PackageMetadata(install=())
    assert "alternatives" not in plain.to_json()
    with_some = PackageMetadata(install=(), alternatives=postinst_alternatives(MAWK))
    again = PackageMetadata.from_json(with_some.to_json(), where="test")
    assert again.alternatives == with_some.alternatives

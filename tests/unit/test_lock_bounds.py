"""`kiln lock update --only PKG` moves one package: a package kept where it is whose
own relation on PKG the new version breaks is refused, naming both. apt is stood in
for by its records (the real case needs an old .deb apt may no longer list)."""

from __future__ import annotations

import pytest

from kiln.canonical import Digest
from kiln.debian.apt import AptPackage, DebRelation
from kiln.errors import InputError, NotFound
from kiln.recipes.lock import LockedPackage
from kiln.recipes.lock_update import _refuse_broken_kept

DEV = "debian.org/bookworm/zlib1g-dev"
LIB = "debian.org/bookworm/zlib1g"
OLD, NEW = "1:1.2.13.dfsg-1", "1:1.2.13.dfsg-1+deb12u1"


def _record(name: str, version: str, *depends: DebRelation) -> AptPackage:
    return AptPackage(name, version, "amd64", "0" * 64, "", 0,
                      tuple((relation,) for relation in depends), (), "", "")


class Records:
    """apt's records of the locked versions, by name and version."""

    def __init__(self, *records: AptPackage) -> None:
        self.records = {(record.name, record.version): record for record in records}

    def show(self, name: str, version: str | None = None) -> AptPackage:
        found = self.records.get((name, version or ""))
        if found is None:
            raise NotFound(f"apt knows no package {name}={version}")
        return found


def _kept(version: str = OLD) -> dict[str, LockedPackage]:
    return {DEV: LockedPackage(DEV, version, Digest("sha256:" + "1" * 64), "2" * 64, (LIB,))}


def test_a_kept_package_pinning_the_old_version_refuses_the_move() -> None:
    apt = Records(_record("zlib1g-dev", OLD, DebRelation("zlib1g", "=", OLD)))
    chosen = {"zlib1g": _record("zlib1g", NEW), "zlib1g-dev": _record("zlib1g-dev", OLD)}
    with pytest.raises(InputError) as refused:
        _refuse_broken_kept(apt, _kept(), chosen, {LIB})  # type: ignore[arg-type]
    assert refused.value.reason == "lock-would-break"
    assert f"{DEV}@{OLD} needs zlib1g (= {OLD})" in refused.value.message
    assert f"--only {DEV}" in refused.value.message


def test_a_kept_package_the_new_version_still_satisfies_lets_it_move() -> None:
    apt = Records(_record("zlib1g-dev", OLD, DebRelation("zlib1g", ">=", "1:1.2.0")))
    chosen = {"zlib1g": _record("zlib1g", NEW), "zlib1g-dev": _record("zlib1g-dev", OLD)}
    _refuse_broken_kept(apt, _kept(), chosen, {LIB})  # type: ignore[arg-type]


def test_a_kept_version_apt_no_longer_lists_is_not_read() -> None:
    chosen = {"zlib1g": _record("zlib1g", NEW)}
    _refuse_broken_kept(Records(), _kept(), chosen, {LIB})  # type: ignore[arg-type]

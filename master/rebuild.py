"""The maintainers' rebuild: a force scheduler whose package is chosen from the
recipes at the branch's head, never typed free, and with or without dependants.

The names are read once when the master starts and again by every plan of a
push, so a recipe pushed a minute ago can be rebuilt without a restart."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from buildbot.plugins import schedulers, util
from twisted.python import log

from kiln.errors import KilnError
from master.config import FarmConfig

REBUILD_SCHEDULER = "rebuild"


class PackageNames:
    """The package names of the recipes at the branch's head, as last seen."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        self.names: tuple[str, ...] = tuple(sorted(names))

    def update(self, names: Iterable[str]) -> None:
        self.names = tuple(sorted(names))

    @classmethod
    def at_head(cls, farm: FarmConfig) -> PackageNames:
        """Read from the recipe repository now; none (with a log line) if it cannot be."""
        import git

        from master.farmplan import mirror
        from workers.checkout import repository_in

        try:
            repo = git.Repo(mirror(farm))
            commit = repo.commit(farm.recipes.branch).hexsha
            with tempfile.TemporaryDirectory(prefix="kiln-farm-names-") as scratch:
                repository = repository_in(repo, Path(farm.recipes.path), commit, Path(scratch))
                return cls(repository.recipes)
        except (KilnError, git.GitError, git.BadName, ValueError, OSError) as exc:
            # An empty repository (a farm made without recipes) has no branch yet.
            log.msg(f"kiln: no package names for the rebuild form yet ({exc})")
            return cls()


class PackageParameter(util.ChoiceStringParameter):  # type: ignore[misc]
    """A choice among the current package names; anything else is refused."""

    strict = True

    def __init__(self, names: PackageNames, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._names = names

    @property
    def choices(self) -> list[str]:
        return list(self._names.names)


def rebuild_scheduler(farm: FarmConfig, names: PackageNames) -> Any:
    """A maintainer's forced rebuild of one package, and, if asked, its dependants, at
    the branch's head; the plan step reads `package` and `dependents`."""
    fixed = {"branch": farm.recipes.branch, "revision": "", "repository": farm.recipes_url,
             "project": ""}
    return schedulers.ForceScheduler(
        name=REBUILD_SCHEDULER, builderNames=["plan"], buttonName="rebuild package",
        label="Rebuild a package",
        reason=util.FixedParameter("reason", default="a maintainer's rebuild"),
        priority=util.IntParameter(name="priority", default=0, hide=True),
        codebases=[util.CodebaseParameter(
            "", **{key: util.FixedParameter(key, default=value)
                   for key, value in fixed.items()})],
        properties=[PackageParameter(names, name="package", label="package", required=True),
                    util.BooleanParameter(name="dependents", label="with its dependants",
                                          default=False)])

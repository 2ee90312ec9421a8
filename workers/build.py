"""`kiln build`: one recipe, at one commit, built hermetically into a Package FileSet.

The steps (DESIGN.md 2c, section 3): read the recipes at the commit; take the
build root from the lock only; fetch and verify the sources into /src; if the
build key (a digest of every input) was built before, stop there; run the
build in the sandbox; ingest /out as the Package; run its test in a root of
the package, its runtime closure and its test-requires; write the build record.

The plan (workers/build_plan.py) is made first and alone: a build found built
before imports nothing that runs one (workers/execute.py).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kiln.canonical import Digest
from kiln.fileset import FileSet
from kiln.record import BuildRecord
from kiln.registry.fetch import FetchPackage
from kiln.store.store import Store
from workers.build_plan import BuildPlan, prepare
from workers.build_records import previous
from workers.debugging import NO_DEBUGGING, Debugging

if TYPE_CHECKING:
    from workers.execute import BuildFailed
    from workers.sandbox import Sandbox
    from workers.watching import BuildWatcher

# Given a package name and a build key: the published package of that key, or None.
Substitute = Callable[[str, Digest], FileSet | None]


@dataclass(frozen=True)
class BuildOutcome:
    """What a build left: its FileSet, its record, and whether it was built before."""

    record: BuildRecord | None  # None for a substitute: the farm's signed record stands
    fileset: FileSet
    reused: bool  # the build key was built before (here or, substituted, on a farm)
    build_key: Digest
    substituted: bool = False
    split: tuple[FileSet, ...] = ()  # the recipe's split outputs (`outputs:`), in order

    @property
    def filesets(self) -> tuple[FileSet, ...]:
        """Every FileSet the build made: the package, then its split outputs."""
        return (self.fileset, *self.split)


def build(store: Store, sandbox: Sandbox | str, recipes: str | Path, name: str, *,
          commit: str | None = None, allow_dirty: bool = False, jobs: int = 2,
          work: Path | None = None, check: bool = False, fetch: FetchPackage | None = None,
          substitute: Substitute | None = None, attempt: int | None = None,
          debugging: Debugging = NO_DEBUGGING,
          watcher: BuildWatcher | None = None) -> BuildOutcome:
    """Build the recipe `name` (a package name or its directory) of `recipes`.

    A build key built here before is not built again; with `substitute`, one
    published elsewhere is taken instead. With `check`, build twice under
    CHECK_VARIATIONS (even if built before) and refuse, naming the files that
    differ, unless both trees are the same. With `attempt` (a farm's gate), build
    once under that attempt's variation, even if built before: a gate counts builds,
    never reuses. With `debugging`, a failed run's /build and /out are kept (and a shell
    opened on them). `sandbox` is a backend, or its name: then opened only if the build
    runs (a build found built needs the name alone, for its key)."""
    # The store's shared lock from start to end: gc (which bounds the caches this
    # build reads, its materialised inputs among them) waits for the build to end.
    # Not under the store's tmp/: gc takes everything there for a crash's leftovers.
    with store.shared(), tempfile.TemporaryDirectory(prefix="kiln-build-",
                                                     dir=work) as scratch:
        backend = sandbox if isinstance(sandbox, str) else sandbox.name
        plan = prepare(store, recipes, name, Path(scratch), sandbox=backend,
                       commit=commit, allow_dirty=allow_dirty, fetch=fetch)
        if not check and attempt is None:
            built = previous(store, plan.build_key)
            if built is not None:
                record, filesets = built
                # Built before, perhaps since unnamed (`kiln fileset rm`): a build that
                # says it succeeded leaves its names resolvable.
                for fileset in filesets:
                    store.set_ref(fileset.name, fileset.version, fileset.digest)
                return BuildOutcome(record, filesets[0], True, plan.build_key,
                                    split=filesets[1:])
            published = (substitute(plan.recipe.package.name, plan.build_key)
                         if substitute is not None else None)
            if published is not None and substitute is not None:
                # A split build is taken whole, or built here.
                split = [substitute(o.name, plan.build_key) for o in plan.recipe.outputs]
                if all(split):
                    return BuildOutcome(None, published, True, plan.build_key,
                                        substituted=True,
                                        split=tuple(f for f in split if f is not None))
        from workers.execute import BuildFailed, execute
        from workers.variation import CHECK_VARIATIONS, variation

        variations = (CHECK_VARIATIONS if check
                      else (variation(attempt),) if attempt is not None else CHECK_VARIATIONS[:1])
        if isinstance(sandbox, str):
            from workers.backends import open_sandbox

            sandbox = open_sandbox(sandbox)
        try:
            return execute(store, sandbox, plan, jobs=jobs, variations=variations,
                           debugging=debugging, watcher=watcher)
        except BuildFailed as exc:
            raise _with_kept_log(store, plan, exc) from exc


def _with_kept_log(store: Store, plan: BuildPlan, exc: BuildFailed) -> BuildFailed:
    """The failure, its logs kept whole, and where to read them."""
    from workers.build_logs import keep_failed_logs
    from workers.execute import BuildFailed

    package = plan.recipe.package
    runs = [*sorted(plan.scratch.glob("run*/build.log")), plan.scratch / "test.log"]
    kept = keep_failed_logs(store, package.name, package.version, plan.build_key, runs,
                            exc.reason)
    if kept is None:
        return exc
    return BuildFailed(f"{exc.message}\nthe whole log: kiln build log"
                       f" {package.name}@{package.version}", reason=exc.reason)

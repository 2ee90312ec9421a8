"""The farm's own Buildbot steps: each overrides only `run`, thin over a function of
master/ that runs (and is tested) without Buildbot.

- PlanStep (the `plan` builder): plans the pushed commit, writes the plan to the
  index, and appends one WaveTrigger per wave to its own build;
- WaveTrigger: N build requests of the generic `package` builder per package of
  the wave (the reproducibility gate's N builds, attempts 1..N), waiting for all;
- NeedsPublished (first step of a package build): skips the build, naming why,
  when a recipe it builds with failed (or was not reproduced) in an earlier wave,
  or when the package itself was published meanwhile (nothing is published twice);
- GateStep (last step, on the master): records this build's outcome in its gate
  and judges the gate (master/gatekeeper.py); the build that completes agreement
  checks what its worker pushed against its record, signs, attaches, tags, and
  writes the publication to the index, waiting while its database is down; the
  build that makes agreement impossible keeps diffoscope's report. The key never
  leaves the master process.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from buildbot.process.buildstep import BuildStep
from buildbot.process.results import (
    CANCELLED,
    EXCEPTION,
    FAILURE,
    RETRY,
    SKIPPED,
    SUCCESS,
    WARNINGS,
)
from buildbot.steps.trigger import Trigger
from buildbot.util import asyncSleep
from sqlalchemy.exc import SQLAlchemyError
from twisted.internet import threads

from kiln.errors import KilnError
from master.config import FarmConfig
from master.farmplan import FarmPlan, plan_commit
from master.gate import NOT_REPRODUCED, decision, gate_directory, gate_id, prune_gates
from master.gate_config import GateRule
from master.gatekeeper import GateResult, pass_gate
from master.index import writes
from master.index.database import write_index
from master.index.service import build_place
from master.publication import IndexEntry, index_name, write_entry
from master.publishing import published_keys
from master.rebuild import PackageNames

PACKAGE_SCHEDULER = "package"
INDEX_PATIENCE = 600.0  # seconds a publication waits for the index before it gives up


class PlanStep(BuildStep):
    """Plans a push or a rebuild: the recipes to build, then a trigger for each wave."""

    name = "plan"

    def __init__(self, farm: FarmConfig, names: PackageNames | None = None,
                 handed_back: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.farm = farm
        self.names = names or PackageNames()
        self.handed_back = handed_back  # the gates' directory, pruned as plans start

    async def run(self) -> int:
        revision = self.getProperty("revision") or self.farm.recipes.branch
        forced = self.getProperty("package") or None  # a maintainer's rebuild
        log = await self.addLog("plan")
        if self.handed_back:
            pruned = await threads.deferToThread(prune_gates, Path(self.handed_back))
            if pruned:
                await log.addStdout(f"pruned the gate directories of {pruned} old plans\n")
        try:
            planned = await threads.deferToThread(plan_commit, self.farm, revision, forced,
                                                  bool(self.getProperty("dependents")))
        except KilnError as exc:  # a cycle, an unreadable repository
            await log.addStderr(f"{exc.message} [{exc.reason}]\n")
            self.descriptionDone = [f"plan failed: {exc.reason}"]
            return FAILURE
        await log.addStdout(planned.describe() + "\n")
        if forced is None:  # a push: the rebuild form offers what is at the head now
            self.names.update(planned.directories)
        self.setProperty("plan", json.dumps({"commit": planned.commit,
                                             **planned.plan.to_json()}), "plan")
        waves = planned.packages()
        self.descriptionDone = [f"{len(planned.plan.to_build)} packages in {len(waves)} waves"]
        plan_id = await self._index(planned)
        extra = {} if plan_id is None else {"plan_id": plan_id}
        if plan_id is not None:
            self.setProperty("plan_id", plan_id, "plan")
        waves = [[{**request, **extra,
                   "gate": gate_id(self.build.buildid, str(request["package"]))}
                  for request in wave] for wave in waves]
        self.build.addStepsAfterCurrentStep(
            [WaveTrigger(index, requests) for index, requests in enumerate(waves, start=1)])
        return SUCCESS if not planned.plan.broken else FAILURE

    async def _index(self, planned: FarmPlan) -> int | None:
        """The plan in the index, its packages queued; its id (None if not written)."""
        builderid = await self.build.getBuilderId()
        packages = writes.plan_packages(planned.plan.waves, planned.plan.keys, planned.requires,
                                        planned.plan.broken, planned.plan.skipped)
        plan_id: int | None = await threads.deferToThread(
            write_index, self.farm, _record_plan, planned.commit, packages,
            self.getProperty("package") or None, bool(self.getProperty("dependents")),
            build_place(self.farm, builderid, self.build.number, "").build_url,
            " ".join(self.descriptionDone))
        return plan_id


class WaveTrigger(Trigger):
    """The packages of one wave, each built as often as its gate asks (attempt 1..N,
    each a build request of its own); waits for all of them."""

    def __init__(self, wave: int, requests: list[dict[str, Any]], **kwargs: Any) -> None:
        super().__init__(name=f"wave {wave}", schedulerNames=[PACKAGE_SCHEDULER],
                         waitForFinish=True, haltOnFailure=False, flunkOnFailure=True,
                         **kwargs)
        self.requests = requests

    def getSchedulersAndProperties(self) -> list[dict[str, Any]]:
        return [{"sched_name": PACKAGE_SCHEDULER, "unimportant": False,
                 "props_to_set": {**request, "attempt": attempt,
                                  "needs": json.dumps(request["needs"]),
                                  "need_waves": json.dumps(request["need_waves"])}}
                for request in self.requests
                for attempt in range(1, int(request.get("builds", 1)) + 1)]


class NeedsPublished(BuildStep):
    """Skip this package when a recipe it builds with was not published, or when the
    package itself was published since it was planned."""

    name = "needs published"

    def __init__(self, farm: FarmConfig, handed_back: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.farm = farm
        self.handed_back = handed_back

    async def run(self) -> int:
        await self._index_start()
        needs: dict[str, str] = json.loads(self.getProperty("needs") or "{}")
        waves: dict[str, int] = json.loads(self.getProperty("need_waves") or "{}")
        package, key = self.getProperty("package"), self.getProperty("plan_key")
        found = await threads.deferToThread(published_keys, self.farm,
                                            {**needs, package: key})
        missing = sorted(name for name, need_key in needs.items() if need_key not in found)
        if key in found and not self.getProperty("forced"):
            # Published since it was planned (a plan re-run after a master's crash, a
            # request Buildbot resumed): publishing it again would publish it twice.
            why = "already published"
        elif not missing:
            return SUCCESS
        else:
            why = ", ".join(f"{name} {self._failed(name)} in wave {waves.get(name, '?')}"
                            for name in missing)
        self.descriptionDone = [f"skipped: {why}"]
        self.setProperty("skipped", why, "needs published")
        # Buildbot ranks SKIPPED best, so a build of skipped steps would read as a
        # success: the build itself is marked skipped, and no later step lowers it.
        self.build.results = SKIPPED
        log = await self.addLog("skipped")
        await log.addStdout(f"skipped: {why}\n")
        return SKIPPED

    def _failed(self, need: str) -> str:
        """What became of a need in this plan: its gate refused it, or it failed."""
        gate = str(self.getProperty("gate") or "")
        if self.handed_back and "/" in gate:
            plan_build = int(gate.split("/", maxsplit=1)[0])
            directory = gate_directory(Path(self.handed_back), gate_id(plan_build, need))
            refused = decision(directory)
            if refused is not None and refused.get("reason") == NOT_REPRODUCED:
                return "was not reproduced"
        return "failed"

    async def _index_start(self) -> None:
        if self.getProperty("plan_id") is None:
            return
        place = build_place(self.farm, await self.build.getBuilderId(), self.build.number,
                            self.getProperty("workername") or "")
        await threads.deferToThread(write_index, self.farm, writes.package_building,
                                    int(self.getProperty("plan_id")),
                                    self.getProperty("package"), place)


class GateStep(BuildStep):
    """Record this build in its gate; publish, refuse or wait for the others, saying so."""

    name = "gate"

    def __init__(self, farm: FarmConfig, handed_back: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.farm = farm
        self.handed_back = handed_back  # a directory on the master, per gate and attempt

    async def run(self) -> int:
        if self.build.results in (RETRY, EXCEPTION, CANCELLED):
            # Not an outcome: a lost worker's build is built again (its next build
            # counts), and a stopped one says nothing of the recipe.
            self.descriptionDone = ["not counted: the build did not end"]
            return SKIPPED
        log = await self.addLog("gate")
        plan_id = self.getProperty("plan_id")
        package = str(self.getProperty("package"))
        rule = GateRule(int(self.getProperty("builds") or 1), int(self.getProperty("agree") or 1))
        place = build_place(self.farm, await self.build.getBuilderId(), self.build.number,
                            self.getProperty("workername") or "")
        try:
            directory = gate_directory(Path(self.handed_back), str(self.getProperty("gate")))
            result: GateResult = await threads.deferToThread(
                pass_gate, self.farm, directory, package, int(self.getProperty("attempt") or 1),
                place, rule, self.getProperty("plan_key"),
                None if plan_id is None else int(plan_id),
                str(self.getProperty("unreproducible") or ""))
        except (KilnError, OSError) as exc:
            message = exc.message if isinstance(exc, KilnError) else str(exc)
            reason = exc.reason if isinstance(exc, KilnError) else "handed-back-missing"
            await log.addStderr(f"not published: {message} [{reason}]\n")
            self.descriptionDone = [f"not published: {reason}"]
            return FAILURE
        self.setProperty("gate_state", result.state, "gate")
        await log.addStdout(result.summary + "\n")
        if result.state == "refused":
            await self._refused(result, plan_id, package)
            self.descriptionDone = [result.summary[:200]]
            return FAILURE
        if result.state == "failed":
            self.descriptionDone = ["not published: the build failed"]
            return FAILURE
        if result.state != "published":
            self.descriptionDone = [result.summary[:200]]
            return SUCCESS
        assert result.published is not None
        assert result.entry is not None
        published = result.published
        await log.addStdout(f"published {published.reference} ({published.manifest})\n")
        self.descriptionDone = [f"published {published.reference.tag}"]
        return await self._index(result.entry, log)

    async def _refused(self, result: GateResult, plan_id: Any, package: str) -> None:
        """diffoscope's report beside the build, and in the index for the console."""
        report = await self.addLog("diffoscope")
        await report.addStdout(result.report)
        if plan_id is not None:
            # Should the index be down, the build's own log keeps the report.
            with contextlib.suppress(SQLAlchemyError, KilnError):
                await threads.deferToThread(write_index, self.farm, writes.package_gate,
                                            int(plan_id), package, result.summary,
                                            result.report)

    async def _index(self, entry: IndexEntry, log: Any) -> int:
        """Write the publication to the index; while the database is down, wait and try
        again (the registry already holds it: nothing is lost, nothing is doubled)."""
        delay, waited = 1.0, 0.0
        while True:
            try:
                await threads.deferToThread(write_entry, self.farm, entry)
                if waited:
                    await log.addStdout(f"indexed after waiting {waited:.0f} s\n")
                return SUCCESS
            except (SQLAlchemyError, KilnError) as exc:
                if waited >= INDEX_PATIENCE:
                    await log.addStderr(f"not indexed after {waited:.0f} s; the master's"
                                        " registry sync will index it\n")
                    self.descriptionDone = [f"published {entry.published.tag}; not indexed"]
                    return WARNINGS
                await log.addStderr(
                    f"the index at {index_name(self.farm)} is unreachable"
                    f" ({exc.__class__.__name__}): the publication waits; trying again in"
                    f" {delay:.0f} s\n")
            await asyncSleep(delay)
            waited += delay
            delay = min(delay * 2, 15.0)


def _record_plan(engine: Any, commit: str, packages: list[writes.PlannedPackage],
                 forced: str | None, dependents: bool, build_url: str, summary: str) -> int:
    return writes.record_plan(engine, commit, packages, forced=forced, dependents=dependents,
                              build_url=build_url, summary=summary)


def not_skipped(step: BuildStep) -> bool:
    """doStepIf of every step after NeedsPublished."""
    return not step.getProperty("skipped")

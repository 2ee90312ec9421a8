"""The index service: a Buildbot service on the master that follows the end of every
package build (published, failed, skipped, retried after a lost worker, stopped)
into the index, and syncs the index with the farm's registry every few seconds, so
that an image anyone pushes there is in the index (and its blast radius) at once.
A build's start is written by its first step (NeedsPublished).

Its last step could write the end too, but a build whose worker dies runs no
further step; the message bus sees every build end, whatever ended it."""

from __future__ import annotations

from typing import Any

from buildbot.process.results import (
    CANCELLED,
    EXCEPTION,
    FAILURE,
    RETRY,
    SKIPPED,
    SUCCESS,
    WARNINGS,
)
from buildbot.util import service
from twisted.internet import defer, task, threads
from twisted.python import failure, log

from master.config import FarmConfig
from master.index import writes
from master.index.database import farm_index, write_index
from master.index.sync import SyncReport, sync_registry

_STATES = {SUCCESS: writes.PUBLISHED, WARNINGS: writes.PUBLISHED, FAILURE: writes.FAILED,
           SKIPPED: writes.SKIPPED, EXCEPTION: writes.FAILED, RETRY: writes.RETRYING,
           CANCELLED: writes.STOPPED}


class IndexService(service.BuildbotService):  # type: ignore[misc]
    """Keeps the index in step with the registry while the master runs."""

    name = "kiln-index"

    def checkConfig(self, farm: FarmConfig) -> None:
        pass

    def reconfigService(self, farm: FarmConfig) -> None:
        self.farm = farm

    async def startService(self) -> None:
        await super().startService()
        # The bus calls plain functions: a coroutine must be made a Deferred to run.
        def finished(key: tuple[str, ...], build: dict[str, Any]) -> Any:
            return defer.ensureDeferred(self._finished(key, build))

        self._consumers = [
            await self.master.mq.startConsuming(finished, ("builds", None, "finished")),
        ]
        self._syncing = False
        self._sync_problem: str | None = None
        # Foreign manifests and referrers tags whose bundles are indexed, read once.
        self._settled: set[tuple[str, str, str]] = set()
        self._sync = task.LoopingCall(self._sync_registry)
        if self.farm.index_sync > 0:
            self._sync.start(self.farm.index_sync, now=True)

    async def stopService(self) -> None:
        for consumer in getattr(self, "_consumers", []):
            consumer.stopConsuming()
        if getattr(self, "_sync", None) is not None and self._sync.running:
            self._sync.stop()
        await super().stopService()

    async def _finished(self, _key: tuple[str, ...], build: dict[str, Any]) -> None:
        properties = await self._properties(build)
        if properties is None:
            return
        plan_id, package, gate_state = properties
        state = _STATES.get(build["results"], writes.FAILED)
        reason = ""
        if state == writes.PUBLISHED and gate_state == "waiting":
            # Built; the gate waits for its other builds (a later build publishes).
            state, reason = writes.BUILDING, "built; the gate waits for the other builds"
        elif state == writes.SKIPPED:
            skipped = await self.master.data.get(("builds", build["buildid"], "properties"))
            reason = str((skipped or {}).get("skipped", ("",))[0] or "")
        elif state == writes.RETRYING:
            reason = "the worker was lost; Buildbot builds it again"
        elif state == writes.STOPPED:
            reason = "stopped from the console"
        elif state == writes.FAILED:
            reason = await self._failed_step(build["buildid"])
        await self._write(writes.package_finished, plan_id, package, state, reason)

    def _sync_registry(self) -> Any:
        if self._syncing:  # the last sync still runs (a large registry, a slow one)
            return None
        self._syncing = True
        deferred = threads.deferToThread(sync_farm_registry, self.farm, self._settled)
        deferred.addBoth(self._synced)
        return None

    def _synced(self, outcome: Any) -> None:
        self._syncing = False
        problem = outcome.getErrorMessage() if isinstance(outcome, failure.Failure) else None
        if problem != self._sync_problem:  # said once when it fails, once when it mends
            log.msg(f"kiln index: registry sync failed: {problem}" if problem
                    else "kiln index: registry sync works again")
            self._sync_problem = problem

    async def _failed_step(self, buildid: int) -> str:
        """Which step failed, in words a maintainer reads (never the worker's command
        line, which names the worker's own paths)."""
        steps = await self.master.data.get(("builds", buildid, "steps")) or []
        for step in steps:
            if step.get("results") in (FAILURE, EXCEPTION):
                if step["name"] == "build":
                    return "the build failed: see its log"
                return f"{step['name']}: {step.get('state_string') or 'failed'}"
        return "failed"

    async def _properties(self, build: dict[str, Any]) -> tuple[int, str, str] | None:
        """(plan id, package, what its gate said) of a package build; None for others."""
        properties = await self.master.data.get(("builds", build["buildid"], "properties"))
        if not properties or "plan_id" not in properties or "package" not in properties:
            return None
        return (int(properties["plan_id"][0]), str(properties["package"][0]),
                str(properties.get("gate_state", ("",))[0] or ""))

    async def _write(self, write: Any, *args: Any) -> None:
        await threads.deferToThread(write_index, self.farm, write, *args)


def sync_farm_registry(farm: FarmConfig,
                       settled: set[tuple[str, str, str]] | None = None) -> SyncReport:
    """Sync the farm's index with the farm's registry (verified with the farm's key)."""
    from master.proof import farm_trust
    from master.publishing import client

    registry = client(farm)
    try:
        return sync_registry(farm_index(farm.index, farm.path("master")), registry,
                             farm.registry.host, farm_trust(farm), settled)
    finally:
        registry.close()


def build_place(farm: FarmConfig, builderid: int, number: int, worker: str) -> writes.BuildPlace:
    """Links to a build and its build log in the console."""
    build = f"{farm.www_url}#/builders/{builderid}/builds/{number}"
    log_url = (f"{farm.www_url}api/v2/builders/{builderid}/builds/{number}/steps/build/logs/"
               "stdio/raw")
    return writes.BuildPlace(worker, build, log_url)

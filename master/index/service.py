"""The index service: a Buildbot service on the master that follows the end of every
package build (published, failed, skipped, retried after a lost worker, stopped)
into the index. A build's start is written by its first step (NeedsPublished).

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
from twisted.internet import defer, threads

from master.config import FarmConfig
from master.index import writes
from master.index.database import write_index

_STATES = {SUCCESS: writes.PUBLISHED, WARNINGS: writes.PUBLISHED, FAILURE: writes.FAILED,
           SKIPPED: writes.SKIPPED, EXCEPTION: writes.FAILED, RETRY: writes.RETRYING,
           CANCELLED: writes.STOPPED}


class IndexService(service.BuildbotService):  # type: ignore[misc]
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

    async def stopService(self) -> None:
        for consumer in getattr(self, "_consumers", []):
            consumer.stopConsuming()
        await super().stopService()

    async def _finished(self, _key: tuple[str, ...], build: dict[str, Any]) -> None:
        properties = await self._properties(build)
        if properties is None:
            return
        plan_id, package = properties
        state = _STATES.get(build["results"], writes.FAILED)
        reason = ""
        if state == writes.SKIPPED:
            skipped = await self.master.data.get(("builds", build["buildid"], "properties"))
            reason = str((skipped or {}).get("skipped", ("",))[0] or "")
        elif state == writes.RETRYING:
            reason = "the worker was lost; Buildbot builds it again"
        elif state == writes.STOPPED:
            reason = "stopped from the console"
        elif state == writes.FAILED:
            reason = await self._failed_step(build["buildid"])
        await self._write(writes.package_finished, plan_id, package, state, reason)

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

    async def _properties(self, build: dict[str, Any]) -> tuple[int, str] | None:
        """(plan id, package) of a package build; None for other builds."""
        properties = await self.master.data.get(("builds", build["buildid"], "properties"))
        if not properties or "plan_id" not in properties or "package" not in properties:
            return None
        return int(properties["plan_id"][0]), str(properties["package"][0])

    async def _write(self, write: Any, *args: Any) -> None:
        await threads.deferToThread(write_index, self.farm, write, *args)


def build_place(farm: FarmConfig, builderid: int, number: int, worker: str) -> writes.BuildPlace:
    """Links to a build and its build log in the console."""
    build = f"{farm.www_url}#/builders/{builderid}/builds/{number}"
    log_url = (f"{farm.www_url}api/v2/builders/{builderid}/builds/{number}/steps/build/logs/"
               "stdio/raw")
    return writes.BuildPlace(worker, build, log_url)

"""From a FarmConfig to Buildbot's BuildmasterConfig: workers, change sources,
schedulers, the two generic builders (`plan` and `package`), the index service,
and the console (logins, roles, Buildbot's views and the Kiln dashboard).

Builders are never one per recipe: `plan` runs on the master's own local worker
and appends a trigger per wave; `package` runs on the build workers, one build
per worker at a time, and never two builds of one package at once.
"""

from __future__ import annotations

import datetime
import sys
from pathlib import Path
from typing import Any

from buildbot.plugins import changes, schedulers, steps, util, worker
from buildbot.www.authz.roles import RolesFromBase
from twisted.cred.checkers import FilePasswordDB

from master.config import FarmConfig
from master.dashboard.app import Dashboard
from master.index.service import IndexService
from master.rebuild import PackageNames, rebuild_scheduler
from master.steps import (
    PACKAGE_SCHEDULER,
    GateStep,
    NeedsPublished,
    PlanStep,
    not_skipped,
)
from master.users import USERS_FILE, PasswordFileAuth

LOCAL_WORKER = "master-local"
HOOK_USERS = "users/hook.passwd"  # user:password lines for the change hook
DASHBOARD = "kiln"  # its path: /plugins/wsgi_dashboards/kiln/


def build_config(farm: FarmConfig) -> dict[str, Any]:
    """BuildmasterConfig for `farm`."""
    handed_back = str(farm.path("master/handed-back"))
    names = PackageNames.at_head(farm)
    config: dict[str, Any] = {
        "title": farm.name,
        "buildbotURL": farm.www_url,
        "db": {"db_url": _database(farm)},
        "protocols": {"pb": {"port": f"tcp:{farm.pb_port}:interface={farm.listen}"}},
        "workers": [worker.Worker(LOCAL_WORKER, farm.worker_password(LOCAL_WORKER),
                                  max_builds=1)]
        + [worker.Worker(name, farm.worker_password(name), max_builds=1)
           for name in farm.workers],
        "change_source": _change_sources(farm),
        "schedulers": [
            schedulers.AnyBranchScheduler(
                name="push", builderNames=["plan"], treeStableTimer=None,
                change_filter=util.ChangeFilter(branch=farm.recipes.branch)),
            schedulers.Triggerable(name=PACKAGE_SCHEDULER, builderNames=["package"]),
            rebuild_scheduler(farm, names),
        ],
        "builders": [
            util.BuilderConfig(name="plan", workernames=[LOCAL_WORKER],
                               factory=util.BuildFactory([PlanStep(farm, names, handed_back)])),
            util.BuilderConfig(name="package", workernames=list(farm.workers),
                               factory=util.BuildFactory(package_steps(farm, handed_back)),
                               locks=_package_lock, canStartBuild=GATE_WORKERS.can_start),
        ],
        # Triggered package builds differ only in their properties: never merge them.
        "collapseRequests": False,
        "www": _www(farm),
        "services": [IndexService(farm)],
        "buildbotNetUsageData": None,
    }
    return config


def _www(farm: FarmConfig) -> dict[str, Any]:
    """The console: logins from the users file, roles from farm.yaml, the dashboard."""
    readers = [util.AnyEndpointMatcher(role="users")] if not farm.console.public else []
    return {
        "port": f"tcp:{farm.www_port}:interface={farm.listen}",
        "plugins": {"waterfall_view": {}, "console_view": {}, "grid_view": {},
                    "wsgi_dashboards": [{"name": DASHBOARD, "caption": "Packages",
                                         "app": Dashboard(farm), "order": 0,
                                         "icon": "box"}]},
        "auth": PasswordFileAuth(farm.path(USERS_FILE)),
        "authz": util.Authz(
            allowRules=[
                # Maintainers: a package's rebuild (the plan builder's only force),
                # a build's rebuild, stopping a build or a queued request.
                util.ForceBuildEndpointMatcher(builder="plan", role="maintainers"),
                util.RebuildBuildEndpointMatcher(role="maintainers"),
                util.StopBuildEndpointMatcher(role="maintainers"),
                # Admins: every other control; everyone else: none (403).
                util.AnyControlEndpointMatcher(role="admins"),
                *readers,
            ],
            roleMatchers=[
                util.RolesFromUsername(roles=["maintainers"],
                                       usernames=[*farm.maintainers, *farm.admins]),
                util.RolesFromUsername(roles=["admins"], usernames=list(farm.admins)),
                LoggedIn(),
            ]),
        "cookie_expiration_time": datetime.timedelta(seconds=farm.console.session),
        "change_hook_dialects": {"base": True},
        # Anonymous change posts are refused: the post-receive hook logs in.
        "change_hook_auth": [FilePasswordDB(str(farm.path(HOOK_USERS)))],
    }


class LoggedIn(RolesFromBase):
    """Every user who logged in has the role `users` (a private console's readers)."""

    def getRolesFromUser(self, userDetails: dict[str, Any]) -> list[str]:
        return ["users"] if userDetails.get("username") else []


def package_steps(farm: FarmConfig, handed_back: str) -> list[Any]:
    """The package builder's steps: skip if a need failed, build and push by digest on
    the worker under the attempt's variation (its log streaming into the step), hand
    back into the gate's directory, pass the gate on the master."""
    kiln = [sys.executable, "-m", "kiln.cli.main"]
    build = [*kiln, "build", util.Property("recipe"), "--recipes",
             f"{farm.recipes_url}#{farm.recipes.path}", "--commit", util.Property("commit"),
             "--attempt", util.Property("attempt", default=1),
             "--record", "record.json", "--push-by-digest", "pushed.txt"]
    attempt_dir = util.Interpolate(f"{handed_back}/gates/%(prop:gate)s/%(prop:attempt)s")
    return [
        NeedsPublished(farm, handed_back),
        # A build handed back before (a rebuild of this attempt) is not this build's.
        steps.MasterShellCommand(name="clear the hand-back", command=["rm", "-rf", attempt_dir],
                                 doStepIf=not_skipped, hideStepIf=True),
        steps.ShellCommand(name="build", command=build, workdir="build", haltOnFailure=True,
                           doStepIf=not_skipped,
                           # kiln's temporary errors (registry, sources, apt): try again.
                           decodeRC={0: util.SUCCESS, 75: util.RETRY}),
        steps.FileUpload(name="hand back the record", workersrc="record.json",
                         masterdest=util.Interpolate(
                             f"{handed_back}/gates/%(prop:gate)s/%(prop:attempt)s/record.json"),
                         workdir="build", haltOnFailure=True, doStepIf=not_skipped),
        steps.FileUpload(name="hand back the reference", workersrc="pushed.txt",
                         masterdest=util.Interpolate(
                             f"{handed_back}/gates/%(prop:gate)s/%(prop:attempt)s/pushed.txt"),
                         workdir="build", haltOnFailure=True, doStepIf=not_skipped),
        # Always: a failed build is an outcome the gate counts (it may be the variation).
        GateStep(farm, handed_back, doStepIf=not_skipped, alwaysRun=True),
        steps.RemoveDirectory(name="clean", dir="build", doStepIf=not_skipped,
                              alwaysRun=True),
    ]


@util.renderer
def _package_lock(props: Any) -> list[Any]:
    # One build of a package's attempt at a time, whatever worker and plan asked for it;
    # a gate's attempts run side by side, each on a worker of its own.
    lock = util.MasterLock(f"package {props.getProperty('package')}"
                           f" attempt {props.getProperty('attempt')}")
    return [lock.access("exclusive")]


class GateWorkers:
    """Which worker each attempt of a gate claimed: the builder's canStartBuild gives an
    attempt only a worker no other attempt of its gate has, so N builds of a package are
    N builders' word. Claims live in the master's memory; should a master's crash lose
    them, the gate itself counts agreeing workers, not builds."""

    def __init__(self) -> None:
        self.claims: dict[str, dict[int, str]] = {}

    def can_start(self, _builder: Any, worker_for_builder: Any, request: Any) -> bool:
        properties = request.properties
        gate = properties.getProperty("gate")
        if not gate:
            return True
        attempt = int(properties.getProperty("attempt") or 1)
        worker = worker_for_builder.worker.workername
        claimed = self.claims.setdefault(str(gate), {})
        if any(other == worker for number, other in claimed.items() if number != attempt):
            return False
        claimed[attempt] = worker
        if len(self.claims) > 10_000:  # a master runs for months: keep the newest gates
            for old in list(self.claims)[:-1000]:
                del self.claims[old]
        return True


GATE_WORKERS = GateWorkers()


def _change_sources(farm: FarmConfig) -> list[Any]:
    if farm.recipes.poll <= 0:
        return []  # the post-receive hook posts each push to the change hook
    return [changes.GitPoller(repourl=farm.recipes_for_master, branches=[farm.recipes.branch],
                              pollInterval=farm.recipes.poll,
                              workdir=str(farm.path("master/gitpoller")))]


def _database(farm: FarmConfig) -> str:
    if farm.database.startswith("sqlite:///") and not farm.database.startswith("sqlite:////"):
        relative = farm.database.removeprefix("sqlite:///")
        return f"sqlite:///{Path(farm.path('master')) / relative}"
    return farm.database

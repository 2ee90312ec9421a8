"""From a FarmConfig to Buildbot's BuildmasterConfig: workers, change sources,
schedulers, the two generic builders (`plan` and `package`) and the web server.

Builders are never one per recipe: `plan` runs on the master's own local worker
and appends a trigger per wave; `package` runs on the build workers, one build
per worker at a time, and never two builds of one package at once.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from buildbot.plugins import changes, schedulers, steps, util, worker
from twisted.cred.checkers import FilePasswordDB

from master.config import FarmConfig
from master.steps import (
    PACKAGE_SCHEDULER,
    NeedsPublished,
    PlanStep,
    PublishStep,
    not_skipped,
)

LOCAL_WORKER = "master-local"
REBUILD_SCHEDULER = "rebuild"
HOOK_USERS = "users/hook.passwd"  # user:password lines for the change hook


def build_config(farm: FarmConfig) -> dict[str, Any]:
    """BuildmasterConfig for `farm`."""
    handed_back = str(farm.path("master/handed-back"))
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
            _rebuild_scheduler(farm),
        ],
        "builders": [
            util.BuilderConfig(name="plan", workernames=[LOCAL_WORKER],
                               factory=util.BuildFactory([PlanStep(farm)])),
            util.BuilderConfig(name="package", workernames=list(farm.workers),
                               factory=util.BuildFactory(package_steps(farm, handed_back)),
                               locks=_package_lock),
        ],
        # Triggered package builds differ only in their properties: never merge them.
        "collapseRequests": False,
        "www": {
            "port": f"tcp:{farm.www_port}:interface={farm.listen}",
            "plugins": {},
            # Anonymous users read; maintainers force rebuilds; nobody else controls.
            "auth": util.UserPasswordAuth({name: farm.user_password(name)
                                           for name in farm.maintainers}),
            "authz": util.Authz(
                allowRules=[util.ForceBuildEndpointMatcher(builder="plan", role="maintainers"),
                            util.AnyControlEndpointMatcher(role="admins")],
                roleMatchers=[util.RolesFromUsername(roles=["maintainers"],
                                                     usernames=list(farm.maintainers))]),
            "change_hook_dialects": {"base": True},
            # Anonymous change posts are refused: the post-receive hook logs in.
            "change_hook_auth": [FilePasswordDB(str(farm.path(HOOK_USERS)))],
        },
        "buildbotNetUsageData": None,
    }
    return config


def package_steps(farm: FarmConfig, handed_back: str) -> list[Any]:
    """The package builder's steps: skip if a need failed, build and push by digest on
    the worker (its log streaming into the step), hand back, publish on the master."""
    kiln = [sys.executable, "-m", "kiln.cli.main"]
    build = [*kiln, "build", util.Property("recipe"), "--recipes",
             f"{farm.recipes_url}#{farm.recipes.path}", "--commit", util.Property("commit"),
             "--record", "record.json", "--push-by-digest", "pushed.txt"]
    master_dir = util.Interpolate(f"{handed_back}/%(prop:buildnumber)s")
    return [
        NeedsPublished(farm),
        steps.ShellCommand(name="build", command=build, workdir="build", haltOnFailure=True,
                           doStepIf=not_skipped,
                           # kiln's temporary errors (registry, sources, apt): try again.
                           decodeRC={0: util.SUCCESS, 75: util.RETRY}),
        steps.FileUpload(name="hand back the record", workersrc="record.json",
                         masterdest=util.Interpolate(f"{handed_back}/%(prop:buildnumber)s/"
                                                     "record.json"),
                         workdir="build", haltOnFailure=True, doStepIf=not_skipped),
        steps.FileUpload(name="hand back the reference", workersrc="pushed.txt",
                         masterdest=util.Interpolate(f"{handed_back}/%(prop:buildnumber)s/"
                                                     "pushed.txt"),
                         workdir="build", haltOnFailure=True, doStepIf=not_skipped),
        PublishStep(farm, handed_back, doStepIf=not_skipped),
        steps.RemoveDirectory(name="clean", dir="build", doStepIf=not_skipped,
                              alwaysRun=True),
        steps.MasterShellCommand(name="forget the hand-back",
                                 command=["rm", "-rf", master_dir], alwaysRun=True,
                                 doStepIf=not_skipped),
    ]


def _rebuild_scheduler(farm: FarmConfig) -> Any:
    """A maintainer's forced rebuild of one package, and, if asked, its dependants, at the
    branch's head; the plan step reads `package` and `dependents`."""
    fixed = {"branch": farm.recipes.branch, "revision": "", "repository": farm.recipes_url,
             "project": ""}
    return schedulers.ForceScheduler(
        name=REBUILD_SCHEDULER, builderNames=["plan"], buttonName="rebuild",
        codebases=[util.CodebaseParameter(
            "", **{key: util.FixedParameter(key, default=value)
                   for key, value in fixed.items()})],
        properties=[util.StringParameter(name="package", label="package", required=True),
                    util.BooleanParameter(name="dependents", label="with its dependants",
                                          default=False)])


@util.renderer
def _package_lock(props: Any) -> list[Any]:
    # One build of a package at a time, whatever worker and plan asked for it.
    lock = util.MasterLock(f"package {props.getProperty('package')}")
    return [lock.access("exclusive")]


def _change_sources(farm: FarmConfig) -> list[Any]:
    if farm.recipes.poll <= 0:
        return []  # the post-receive hook posts each push to the change hook
    return [changes.GitPoller(repourl=farm.recipes_url, branches=[farm.recipes.branch],
                              pollInterval=farm.recipes.poll,
                              workdir=str(farm.path("master/gitpoller")))]


def _database(farm: FarmConfig) -> str:
    if farm.database.startswith("sqlite:///") and not farm.database.startswith("sqlite:////"):
        relative = farm.database.removeprefix("sqlite:///")
        return f"sqlite:///{Path(farm.path('master')) / relative}"
    return farm.database

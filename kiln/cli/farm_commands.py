"""`kiln farm ...`: plan, make, run and ask a build farm."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kiln.cli.common import add_json_flag
from kiln.cli.output import print_json


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = commands.add_parser("farm", help="plan what the build farm builds")
    sub = group.add_subparsers(dest="farm_command", metavar="COMMAND", required=True)
    plan = sub.add_parser("plan", help="the waves a change of the recipes asks for,"
                                       " building nothing")
    plan.add_argument("--recipes", type=Path, default=Path("recipes"), metavar="REPO",
                      help="a recipe repository in a git working tree (default: recipes)")
    plan.add_argument("--from", dest="from_rev", metavar="REV",
                      help="the commit already built (default: none, so everything)")
    plan.add_argument("--to", dest="to_rev", default="HEAD", metavar="REV",
                      help="the commit to plan (default: HEAD)")
    add_json_flag(plan)
    plan.set_defaults(handler=cmd_plan)

    init = sub.add_parser("init", help="lay out a farm on this host: farm.yaml, a key,"
                                       " a recipe repository, a master and workers")
    init.add_argument("directory", type=Path, metavar="DIR")
    init.add_argument("--workers", type=int, default=2)
    init.add_argument("--registry", default="127.0.0.1:5000", metavar="HOST[:PORT]")
    init.add_argument("--recipes", metavar="URL",
                      help="an existing recipe repository (default: a bare one in DIR,"
                           " seeded from --seed, with its post-receive hook)")
    init.add_argument("--seed", type=Path, default=Path("recipes"), metavar="DIR",
                      help="the recipes a new repository starts with (default: recipes)")
    init.add_argument("--signer", metavar="URI", help="default: a farm key made in DIR/keys")
    init.add_argument("--www-port", type=int, default=8010)
    init.add_argument("--pb-port", type=int, default=9989)
    init.add_argument("--database", default="sqlite:///state.sqlite", metavar="URL",
                      help="Buildbot's database (postgresql+psycopg://USER:PASS@HOST/DB in"
                           " production)")
    init.add_argument("--index", default="sqlite:///index.sqlite", metavar="URL",
                      help="Kiln's index, in a database of its own")
    init.add_argument("--poll", type=int, default=0, metavar="SECONDS",
                      help="poll the recipe repository (GitPoller) instead of its hook")
    init.add_argument("--builds", type=int, metavar="N",
                      help="the reproducibility gate: build every package N times, each on a"
                           " worker of its own (default: 2, or 1 with one worker)")
    init.add_argument("--agree", type=int, metavar="K",
                      help="publish when K of the N builds agree (default: N)")
    init.set_defaults(handler=cmd_init)

    _register_setup(sub)

    for verb, what in (("start", "start the master and workers"),
                       ("stop", "stop every process of the farm"),
                       ("status", "the console URL, workers and the last plan")):
        command = sub.add_parser(verb, help=what)
        command.add_argument("directory", type=Path, metavar="DIR")
        if verb == "start":
            command.add_argument("--remote-workers", action="store_true",
                                 help="the build workers run on hosts of their own: start"
                                      " only the master and its local worker here")
        add_json_flag(command)
        command.set_defaults(handler={"start": cmd_start, "stop": cmd_stop,
                                      "status": cmd_status}[verb])

    rebuild = sub.add_parser("rebuild", help="a maintainer's forced rebuild of a package"
                                             " (and its dependants)")
    rebuild.add_argument("directory", type=Path, metavar="DIR")
    rebuild.add_argument("package", metavar="NAME")
    rebuild.add_argument("--dependents", action="store_true",
                         help="rebuild every recipe that builds with it too")
    rebuild.add_argument("--user", default="maintainer",
                         help="the maintainer logging in (password in DIR/users/USER.password)")
    rebuild.add_argument("--wait", type=float, metavar="SECONDS",
                         help="wait for the rebuild's plan to end; exit 1 if it failed")
    add_json_flag(rebuild)
    rebuild.set_defaults(handler=cmd_rebuild)

    passwd = sub.add_parser("passwd", help="set a console user's password (a new user, or"
                                           " a new password); roles come from farm.yaml")
    passwd.add_argument("directory", type=Path, metavar="DIR")
    passwd.add_argument("user", metavar="NAME")
    passwd.add_argument("--password-stdin", action="store_true",
                        help="read the password from standard input; else one is made and"
                             " written to DIR/users/NAME.password (0600)")
    passwd.set_defaults(handler=cmd_passwd)

    wait = sub.add_parser("wait", help="until a commit's plan ends: exit 0 when all was"
                                       " published, 1 otherwise")
    wait.add_argument("directory", type=Path, metavar="DIR")
    wait.add_argument("--commit", required=True, metavar="REV")
    wait.add_argument("--timeout", type=float, default=600, metavar="SECONDS")
    add_json_flag(wait)
    wait.set_defaults(handler=cmd_wait)


def _register_setup(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    setup = sub.add_parser("setup", help="lay out what a farm directory lacks around its"
                                         " farm.yaml (the deployment's master role): the"
                                         " recipe repository, Buildbot's master, its local"
                                         " worker; nothing on a second run")
    setup.add_argument("directory", type=Path, metavar="DIR")
    setup.add_argument("--seed", type=Path, metavar="DIR",
                       help="the recipes a new recipe repository starts with")
    setup.add_argument("--upgrade", action="store_true",
                       help="bring Buildbot's database to the installed Buildbot (with the"
                            " master stopped, after an upgrade of Kiln)")
    add_json_flag(setup)
    setup.set_defaults(handler=cmd_setup)


def cmd_plan(args: argparse.Namespace) -> int:
    from master.planning import plan_commits

    planned, _inputs, commit = plan_commits(args.recipes, args.to_rev, args.from_rev)
    if args.json:
        print_json({"commit": commit, **planned.to_json()})
        return 0
    print(f"plan of {commit[:12]}: {len(planned.to_build)} to build in"
          f" {len(planned.waves)} waves, {len(planned.published)} already published")
    for index, wave in enumerate(planned.waves, start=1):
        print(f"wave {index}: {' '.join(wave)}")
    for name, problem in sorted(planned.broken.items()):
        print(f"broken: {name}: {problem}")
    for name, below in sorted(planned.skipped.items()):
        print(f"skipped: {name} (needs {below}, which is broken)")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from master.lifecycle import InitOptions, init_farm

    farm = init_farm(args.directory, InitOptions(
        workers=args.workers, registry=args.registry, recipes=args.recipes,
        seed=args.seed if args.recipes is None else None, signer=args.signer,
        www_port=args.www_port, pb_port=args.pb_port, poll=args.poll,
        database=args.database, index=args.index, builds=args.builds, agree=args.agree))
    print(f"farm made in {farm.directory}: recipes at {farm.recipes_url}, workers"
          f" {', '.join(farm.workers)}, console {farm.www_url}; each package published when"
          f" {farm.reproducibility.default.describe()} builds agree")
    return 0


def cmd_setup(args: argparse.Namespace) -> int:
    from master.lifecycle import setup_farm

    made = setup_farm(args.directory, seed=args.seed, upgrade=args.upgrade)
    if args.json:
        print_json({"made": made, "changed": bool(made)})
    else:
        print(f"farm in {args.directory.resolve()}: {', '.join(made) or 'nothing to do'}")
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    from master.lifecycle import start_farm

    farm = start_farm(args.directory, remote_workers=args.remote_workers)
    print(f"farm running: console {farm.www_url}, workers {', '.join(farm.workers)}")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    from master.lifecycle import stop_farm

    stopped = stop_farm(args.directory)
    print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from master.config import load_farm
    from master.lifecycle import connected_workers, plan_builds

    farm = load_farm(args.directory)
    workers = sorted(connected_workers(farm))
    plans = plan_builds(farm)
    last = plans[0] if plans else None
    plan = {}
    if last is not None and "plan" in last.get("properties", {}):
        plan = json.loads(last["properties"]["plan"][0])
    report = {"console": farm.www_url, "dashboard": f"{farm.www_url}#/kiln", "workers": workers,
              "last_plan": None if last is None else {
                  "number": last["number"], "complete": last["complete"],
                  "state": last.get("state_string"),
                  "revision": (last.get("properties", {}).get("revision") or [None])[0],
                  "waves": plan.get("waves", [])}}
    if args.json:
        print_json(report)
    else:
        print(f"console: {farm.www_url} (packages: {farm.www_url}#/kiln)")
        print(f"workers connected: {', '.join(workers) or 'none'}")
        if last is not None:
            print(f"last plan: #{last['number']} {last.get('state_string')}")
            for index, wave in enumerate(plan.get("waves", []), start=1):
                print(f"  wave {index}: {' '.join(wave)}")
    return 0


def cmd_wait(args: argparse.Namespace) -> int:
    from master.config import load_farm
    from master.lifecycle import wait_for_commit

    farm = load_farm(args.directory)
    build = wait_for_commit(farm, args.commit, args.timeout)
    ok = build.get("results") == 0
    if args.json:
        print_json({"number": build["number"], "results": build.get("results"),
                    "state": build.get("state_string"), "published": ok})
    else:
        print(f"plan #{build['number']}: {build.get('state_string')}")
    return 0 if ok else 1


def cmd_passwd(args: argparse.Namespace) -> int:
    from master.config import load_farm
    from master.lifecycle import set_user_password

    farm = load_farm(args.directory)
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else None
    where = set_user_password(farm, args.user, password)
    roles = [role for role, names in (("maintainer", farm.maintainers),
                                      ("admin", farm.admins)) if args.user in names]
    print(f"{args.user} may log in to {farm.www_url} ({', '.join(roles) or 'reads only'};"
          f" roles come from farm.yaml){where}")
    return 0


def cmd_rebuild(args: argparse.Namespace) -> int:
    from master.config import load_farm
    from master.lifecycle import force_rebuild, wait_for_request

    farm = load_farm(args.directory)
    request = force_rebuild(farm, args.package, args.dependents, args.user)
    if args.wait is None:
        if args.json:
            print_json({"buildrequest": request})
        else:
            print(f"rebuild of {args.package} requested (build request {request})")
        return 0
    build = wait_for_request(farm, request, args.wait)
    plan = json.loads(build["properties"]["plan"][0]) if "plan" in build["properties"] else {}
    if args.json:
        print_json({"buildrequest": request, "results": build["results"],
                    "waves": plan.get("waves", [])})
    else:
        print(f"rebuild of {args.package}: {build.get('state_string')}")
    return 0 if build["results"] == 0 else 1

"""`farm.yaml`: everything a farm is, typed, read with the recipes' reader.

```yaml
name: kiln-farm
recipes:                       # the recipe repository the farm builds
  repository: /srv/kiln/recipes.git
  branch: main
  path: recipes                # where the recipes lie in it
  poll: 0                      # seconds between GitPoller polls; 0: the post-receive hook only
  hosted: recipes.git          # the bare repository this master keeps, if `repository` is a
                               # URL serving it to workers on other hosts (git://master/...)
registry: {host: 127.0.0.1:5000, prefix: kiln, http: true}
database: sqlite:///state.sqlite   # Buildbot's; postgresql://... in production
index: sqlite:///index.sqlite      # Kiln's own (master/index), never Buildbot's database
index-sync: 5                      # seconds between the master's syncs of the registry; 0: off
signer: file:keys/farm.pem         # read by the master only
builder-id: https://kiln.dev/builders/farm
ports: {www: 8010, pb: 9989}       # both on 127.0.0.1 unless `listen` says otherwise
listen: 127.0.0.1
workers: [w1, w2]                  # their passwords in workers/<name>.password
maintainers: [maintainer]          # force rebuilds, rebuild and stop builds
admins: []                         # everything else the console controls
console: {public: true, session: 28800}  # anonymous reads; a login lasts 8 hours
reproducibility: {builds: 2, agree: 2}   # the gate (master/gate_config.py)
```

Users log in with the passwords of users/console.passwd (master/users.py);
this file only gives them roles.

Relative paths are relative to the directory of farm.yaml. Every problem is
reported at once, each with its file and line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from kiln.errors import InputError
from kiln.recipes.yamldoc import Node, Reader, load_yaml_file, pattern_check
from master.gate_config import Reproducibility, read_reproducibility

FARM_FILE = "farm.yaml"
_NAME = re.compile(r"[a-z][a-z0-9-]{0,40}")
_HOST = re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?")


@dataclass(frozen=True)
class RecipeSource:
    """Where the farm reads its recipes: repository, branch and directory."""

    repository: str  # a path or URL
    branch: str = "main"
    path: str = "recipes"
    poll: int = 0  # seconds; 0: the post-receive hook only
    hosted: str | None = None  # the bare repository kept here, when `repository` serves it


@dataclass(frozen=True)
class RegistrySettings:
    """The registry the farm publishes to."""

    host: str
    prefix: str = "kiln"  # packages live at HOST/PREFIX/<last part of the name>
    http: bool = False


@dataclass(frozen=True)
class ConsoleSettings:
    """Who may read the console, and how long a login lasts."""

    public: bool = True  # anonymous users read builds and the dashboard
    session: int = 8 * 3600  # seconds a login lasts


@dataclass(frozen=True)
class FarmConfig:
    """farm.yaml as read: recipes, registry, workers, signer, console."""

    directory: Path  # where farm.yaml lies: relative paths start here
    name: str
    recipes: RecipeSource
    registry: RegistrySettings
    database: str
    index: str
    index_sync: int
    signer: str
    builder_id: str
    www_port: int
    pb_port: int
    listen: str
    workers: tuple[str, ...]
    maintainers: tuple[str, ...] = ("maintainer",)
    admins: tuple[str, ...] = ()
    console: ConsoleSettings = ConsoleSettings()
    reproducibility: Reproducibility = field(default_factory=Reproducibility)

    def path(self, relative: str) -> Path:
        return (self.directory / relative).resolve()

    @property
    def recipes_url(self) -> str:
        """The recipe repository as workers and the planner fetch it."""
        repository = self.recipes.repository
        if "://" in repository or repository.startswith("git@"):
            return repository
        return str(self.path(repository))

    @property
    def hosted_recipes(self) -> Path | None:
        """The bare recipe repository this master keeps (and whose hook tells it of
        pushes): `hosted`, else `repository` when that is a path; None for a remote one."""
        if self.recipes.hosted:
            return self.path(self.recipes.hosted)
        url = self.recipes_url
        return None if "://" in url or url.startswith("git@") else Path(url)

    @property
    def recipes_for_master(self) -> str:
        """Where the master itself reads the recipes: the bare repository it keeps, when
        it keeps one (not through the git daemon it serves them with), else the URL."""
        hosted = self.hosted_recipes
        return str(hosted) if hosted is not None else self.recipes_url

    @property
    def www_url(self) -> str:
        return f"http://{self.listen}:{self.www_port}/"

    def worker_password(self, name: str) -> str:
        return self.path(f"workers/{name}.password").read_text().strip()

    def user_password(self, name: str) -> str:
        return self.path(f"users/{name}.password").read_text().strip()


def load_farm(directory: Path) -> FarmConfig:
    """Read `directory/farm.yaml`; every problem at once (InputError, the first named)."""
    file = directory / FARM_FILE
    root = load_yaml_file(file)
    reader = Reader(str(file), "bad-farm-config")
    top = reader.mapping(root, "the farm", {"name", "recipes", "registry", "database", "index",
                                           "index-sync", "signer", "builder-id", "ports",
                                           "listen", "workers", "maintainers", "admins",
                                           "console", "reproducibility"},
                         {"recipes", "registry", "signer"})
    recipes = _recipes(reader, top.get("recipes"))
    registry = _registry(reader, top.get("registry"))
    ports = reader.mapping(top["ports"], "ports", {"www", "pb"}) if "ports" in top else {}
    workers = reader.parsed(top.get("workers"), "workers", check_name)
    maintainers = (reader.parsed(top.get("maintainers"), "maintainers", check_name)
                   if "maintainers" in top else ["maintainer"])
    admins = reader.parsed(top.get("admins"), "admins", check_name) if "admins" in top else []
    if len(set(workers)) != len(workers) and "workers" in top:
        reader.problem(top["workers"].line, "a worker is named twice", "duplicate-worker")
    config = FarmConfig(
        directory=directory.resolve(),
        name=reader.string(top.get("name"), "name", pattern_check(_NAME, "a short lower-case name"))
        or "kiln-farm",
        recipes=recipes or RecipeSource(""),
        registry=registry or RegistrySettings(""),
        database=reader.string(top.get("database"), "database") or "sqlite:///state.sqlite",
        index=reader.string(top.get("index"), "index") or "sqlite:///index.sqlite",
        index_sync=int(reader.string(top.get("index-sync"), "index-sync",
                                     pattern_check(re.compile(r"[0-9]{1,5}"),
                                                   "a number of seconds")) or 5),
        signer=_signer(reader.string(top.get("signer"), "signer") or "", directory),
        builder_id=reader.string(top.get("builder-id"), "builder-id")
        or "https://kiln.dev/builders/farm",
        www_port=_port(reader, ports.get("www"), 8010),
        pb_port=_port(reader, ports.get("pb"), 9989),
        listen=reader.string(top.get("listen"), "listen") or "127.0.0.1",
        workers=tuple(workers),
        maintainers=tuple(maintainers),
        admins=tuple(admins),
        console=_console(reader, top.get("console")),
        reproducibility=read_reproducibility(reader, top.get("reproducibility"),
                                             len(set(workers))),
    )
    if reader.problems:
        first = reader.problems[0]
        more = f" (and {len(reader.problems) - 1} more)" if len(reader.problems) > 1 else ""
        raise InputError(f"{first}{more}", reason=first.reason)
    return config


def _recipes(reader: Reader, node: Node | None) -> RecipeSource | None:
    if node is None:
        return None
    fields = reader.mapping(node, "recipes", {"repository", "branch", "path", "poll", "hosted"},
                            {"repository"})
    repository = reader.string(fields.get("repository"), "recipes repository")
    poll = reader.string(fields.get("poll"), "recipes poll",
                         pattern_check(re.compile(r"[0-9]{1,5}"), "a number of seconds"))
    if repository is None:
        return None
    return RecipeSource(repository, reader.string(fields.get("branch"), "branch") or "main",
                        reader.string(fields.get("path"), "path") or "recipes",
                        int(poll or 0), reader.string(fields.get("hosted"), "recipes hosted"))


def _registry(reader: Reader, node: Node | None) -> RegistrySettings | None:
    if node is None:
        return None
    fields = reader.mapping(node, "registry", {"host", "prefix", "http"}, {"host"})
    host = reader.string(fields.get("host"), "registry host", pattern_check(_HOST, "HOST[:PORT]"))
    http = reader.string(fields.get("http"), "registry http",
                         pattern_check(re.compile(r"true|false"), "true or false"))
    if host is None:
        return None
    return RegistrySettings(host, reader.string(fields.get("prefix"), "prefix") or "kiln",
                            http == "true")


def _console(reader: Reader, node: Node | None) -> ConsoleSettings:
    if node is None:
        return ConsoleSettings()
    fields = reader.mapping(node, "console", {"public", "session"})
    public = reader.string(fields.get("public"), "console public",
                           pattern_check(re.compile(r"true|false"), "true or false"))
    session = reader.string(fields.get("session"), "console session",
                            pattern_check(re.compile(r"[1-9][0-9]{0,6}"), "a number of seconds"))
    return ConsoleSettings(public != "false", int(session) if session else 8 * 3600)


def _signer(uri: str, directory: Path) -> str:
    """A key file's signer URI, relative to farm.yaml's directory as every path here is,
    made absolute: the master signs from Buildbot's own directory, not this one."""
    scheme, _, rest = uri.partition(":")
    if scheme == "file" and rest and not Path(rest).is_absolute():
        return f"file:{(directory / rest).resolve()}"
    return uri


def _port(reader: Reader, node: Node | None, default: int) -> int:
    text = reader.string(node, "port", pattern_check(re.compile(r"[0-9]{1,5}"), "a port number"))
    return int(text) if text else default


def check_name(text: str) -> str:
    """A worker's or a user's name: lower case, digits and -, as file names allow."""
    if not _NAME.fullmatch(text):
        raise InputError(f"{text!r} is not a name of lower case letters, digits and -",
                         reason="bad-value")
    return text


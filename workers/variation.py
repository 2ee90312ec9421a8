"""What two builds of one input vary, as reprotest does: none of it may change the output.

`kiln build --check` builds under the first two variations on one host; a farm's
reproducibility gate builds attempt N under variation N, each on a worker of its
own. The first variation is a plain build's (what `kiln build` always uses), so a
gate's first attempt is the build a maintainer runs at home.

Varied: the build directory, umask, JOBS, the environment's order, the host name,
the time zone and locale (only where the recipe sets none), and the clock, moved
ahead by whole days with Debian's libfaketime (a build that writes today's date
differs, which the seconds between two runs would not show).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kiln.errors import InputError
from kiln.recipes.model import Recipe
from workers.sandbox import Mount

FAKETIME_MOUNT = "/.kiln-check/faketime"  # where the library's directory is mounted


@dataclass(frozen=True)
class Variation:
    """What a check build varies from the first build (the reprotest set)."""

    directory: str = "/build"
    umask: str = "022"
    jobs: int | None = None  # None: the build's own
    reverse_env: bool = False
    hostname: str = "kiln-build"
    timezone: str = "UTC"
    locale: str = "C.UTF-8"
    clock_days: int = 0

    def describe(self) -> str:
        """What this variation changes, for provenance and logs."""
        if self == Variation():
            return "plain"
        return (f"dir {self.directory}, umask {self.umask}, jobs {self.jobs or 'own'},"
                f" env {'reversed' if self.reverse_env else 'in order'}, host {self.hostname},"
                f" TZ {self.timezone}, locale {self.locale}, clock +{self.clock_days}d")


# Zones and locales every root has (tzdata's POSIX form needs no zone files; C and
# the glibc locales the curated toolchain ships) beside the ones tried first.
_ZONES = ("KLN-14", "KLN+12", "KLN-5:30")
_LOCALES = ("fr_FR.UTF-8", "de_DE.UTF-8", "ja_JP.UTF-8")


def variation(attempt: int) -> Variation:
    """The variation of attempt `attempt` (from 1): the first is a plain build; every
    later one differs from it, and from the others, in everything varied."""
    if attempt < 1:
        raise InputError(f"attempt {attempt}: attempts count from 1", reason="bad-usage")
    if attempt == 1:
        return Variation()
    index = attempt - 2
    return Variation(
        directory="/var/elsewhere/build" if index == 0 else f"/var/elsewhere-{attempt}/build",
        umask=("002", "077", "027")[index % 3],
        jobs=1 + index,  # 1, 2, 3 ...: the plain build uses the worker's own count
        reverse_env=index % 2 == 0,
        hostname="kiln-check-elsewhere" if index == 0 else f"kiln-check-{attempt}",
        timezone=_ZONES[index % len(_ZONES)],
        locale=_LOCALES[index % len(_LOCALES)],
        clock_days=398 + 97 * index,
    )


CHECK_VARIATIONS = (variation(1), variation(2))


@dataclass(frozen=True)
class Varied:
    """A run's environment and mounts with a variation applied."""

    env: dict[str, str]
    mounts: tuple[Mount, ...]


def varied_environment(variation: Variation, recipe: Recipe) -> Varied:
    """The variation's environment (and the clock's library, mounted read-only)."""
    env: dict[str, str] = {}
    if "TZ" not in recipe.env:
        env["TZ"] = variation.timezone
    if not {"LANG", "LC_ALL"} & set(recipe.env):
        env["LANG"] = env["LC_ALL"] = variation.locale
    if not variation.clock_days:
        return Varied(env, ())
    library = faketime_library()
    env.update(LD_PRELOAD=f"{FAKETIME_MOUNT}/{library.name}",
               FAKETIME=f"+{variation.clock_days}d", FAKETIME_DONT_FAKE_MONOTONIC="1")
    return Varied(env, (Mount(FAKETIME_MOUNT, library.parent),))


def faketime_library() -> Path:
    """Debian's libfaketime on this host; a varied build refuses to run without it."""
    for found in sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1")):
        return found
    raise InputError("a varied build (kiln build --check, a farm's gate) moves the clock with"
                     " Debian's libfaketime, which is not installed here (apt-get install"
                     " libfaketime)", reason="missing-tool")

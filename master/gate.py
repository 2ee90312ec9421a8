"""The reproducibility gate: N builds of one package from the same planned inputs, each
on a worker of its own and under a variation of its own; published only when K of
them made the same FileSet. No Buildbot here: the gate step calls `pass_gate`.

Every build of a gate hands back into the gate's directory on the master

    master/handed-back/gates/<plan build>/<package>/<attempt>/record.json, pushed.txt

and the gate step of each build writes that attempt's outcome beside them, then
judges all the outcomes there so far. The build that completes the agreement
publishes (once: a decision is a file, written under the gate's lock, and read
first by every later step). The build that makes agreement impossible refuses: it
compares two differing outputs (master/divergence.py) and keeps the report. No
build waits for another: a worker is never held by a gate, so N builds of many
packages never deadlock on few workers.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kiln.canonical import canonical_json, sha256_digest
from kiln.errors import InputError, KilnError
from kiln.record import BuildRecord
from master.gate_config import GateRule
from provenance.statement import ReproducedBuild, Reproduction
from workers.variation import variation

_GATE = re.compile(r"[0-9]{1,12}/[A-Za-z0-9][A-Za-z0-9.+_-]{0,200}")
PUBLISHED, REFUSED = "published.json", "refused.json"
FAILED, NOT_REPRODUCED = "failed", "not-reproduced"  # why a gate refused


def gate_id(plan_build: int, package: str) -> str:
    """The gate of `package` in one plan build: a path below the gates' directory."""
    return f"{plan_build}/{package.replace('/', '+')}"


def gate_directory(handed_back: Path, gate: str) -> Path:
    """Where a gate's builds hand back; refuses anything but a gate id."""
    if not _GATE.fullmatch(gate) or ".." in gate:
        raise InputError(f"{gate!r} is not a gate", reason="bad-gate")
    return handed_back / "gates" / gate


@dataclass(frozen=True)
class Attempt:
    """One build of a gate as it ended on its worker."""

    attempt: int
    worker: str
    built: bool  # False: the build (or its test) failed; its log says why
    output: str = ""  # the FileSet digest it made
    record: str = ""  # the digest of its record's bytes
    build_url: str = ""
    log_url: str = ""

    def to_json(self) -> dict[str, object]:
        return {"attempt": self.attempt, "worker": self.worker, "built": self.built,
                "output": self.output, "record": self.record, "build_url": self.build_url,
                "log_url": self.log_url}


@dataclass(frozen=True)
class Verdict:
    """The gate's decision on a package's builds so far."""

    state: str  # "publish", "wait" or "refuse"
    agreeing: tuple[Attempt, ...] = ()  # publish: the builds that agree, one per worker
    compared: tuple[Attempt, ...] = ()  # refuse: what to compare (or the failed ones)
    summary: str = ""


def judge(attempts: Sequence[Attempt], rule: GateRule) -> Verdict:
    """What the gate says of the attempts so far, N and K given by `rule`.

    Agreement counts workers, not builds: two builds on one worker (a master that
    lost its claims in a crash) are one builder's word."""
    groups: dict[str, dict[str, Attempt]] = {}  # output -> worker -> its first attempt
    for attempt in sorted(attempts, key=lambda a: a.attempt):
        if attempt.built:
            groups.setdefault(attempt.output, {}).setdefault(attempt.worker, attempt)
    ranked = sorted(groups.values(), key=lambda g: (-len(g), min(a.attempt for a in g.values())))
    best = ranked[0] if ranked else {}
    if len(best) >= rule.agree:
        agreeing = tuple(sorted(best.values(), key=lambda a: a.attempt))
        return Verdict("publish", agreeing, summary=_agreed(agreeing, rule))
    pending = rule.builds - len({a.attempt for a in attempts})
    if len(best) + pending >= rule.agree:
        return Verdict("wait", summary=f"{len(best)} of {rule.agree} agreeing builds;"
                                       f" {pending} still to come")
    failed = tuple(a for a in sorted(attempts, key=lambda a: a.attempt) if not a.built)
    compared: tuple[Attempt, ...]
    if len(ranked) >= 2:
        compared = (min(ranked[0].values(), key=lambda a: a.attempt),
                    min(ranked[1].values(), key=lambda a: a.attempt))
        summary = (f"not reproduced: {len(ranked)} different outputs from"
                   f" {sum(len(g) for g in ranked)} builds")
    elif ranked and failed:
        compared = (min(best.values(), key=lambda a: a.attempt), failed[0])
        summary = (f"not reproduced: attempt {failed[0].attempt} on {failed[0].worker} failed"
                   " where another built")
    elif ranked:
        compared = ()
        summary = (f"not reproduced: only {len(best)} worker(s) made this output; the gate"
                   f" asks {rule.agree}")
    else:
        compared = failed[:1]
        summary = "every build failed"
    return Verdict("refuse", compared=compared, summary=summary)


def _agreed(agreeing: Sequence[Attempt], rule: GateRule) -> str:
    workers = ", ".join(a.worker for a in agreeing)
    return f"reproduced {len(agreeing)} of {rule.builds} ({rule.describe()} asked): {workers}"


def reproduction(directory: Path, agreeing: Sequence[Attempt], rule: GateRule,
                 unreproducible: str = "") -> Reproduction:
    """What the provenance says of the agreeing builds (their records read again)."""
    builds = []
    for attempt in agreeing:
        record = read_record(directory, attempt.attempt)
        builds.append(ReproducedBuild(attempt.worker, attempt.record,
                                      variation(attempt.attempt).describe(), record.started,
                                      record.finished))
    return Reproduction(rule.builds, rule.agree, tuple(builds), unreproducible)


def record_outcome(directory: Path, attempt: int, worker: str, build_url: str,
                   log_url: str) -> Attempt:
    """This attempt's outcome, from what it handed back (nothing handed back: failed)."""
    try:
        record = read_record(directory, attempt)
    except (OSError, KilnError):
        outcome = Attempt(attempt, worker, False, build_url=build_url, log_url=log_url)
    else:
        raw = (directory / str(attempt) / "record.json").read_bytes()
        outcome = Attempt(attempt, worker, True, made_digest(record), sha256_digest(raw),
                          build_url, log_url)
    target = directory / str(attempt)
    target.mkdir(parents=True, exist_ok=True)
    _write_json(target / "outcome.json", outcome.to_json())
    return outcome


def made_digest(record: BuildRecord) -> str:
    """What a build made, as two builds must agree on it: the package's FileSet digest,
    or for a split build, one digest over every package's (all of them must agree)."""
    if not record.also:
        return record.output.digest
    return sha256_digest(canonical_json([output.digest for output in record.outputs]))


def read_outcomes(directory: Path) -> list[Attempt]:
    """Every attempt of the gate that has ended so far."""
    found = []
    for path in sorted(directory.glob("*/outcome.json")):
        raw = json.loads(path.read_text())
        found.append(Attempt(int(raw["attempt"]), str(raw["worker"]), bool(raw["built"]),
                             str(raw["output"]), str(raw["record"]), str(raw["build_url"]),
                             str(raw["log_url"])))
    return found


def read_record(directory: Path, attempt: int) -> BuildRecord:
    path = directory / str(attempt) / "record.json"
    return BuildRecord.from_bytes(path.read_bytes(), str(path))


def decision(directory: Path) -> dict[str, object] | None:
    """The gate's decision, once made: {"state": "published"|"refused", ...}."""
    for name in (PUBLISHED, REFUSED):
        path = directory / name
        if path.exists():
            decided: dict[str, object] = json.loads(path.read_text())
            return decided
    return None


def decide(directory: Path, name: str, content: dict[str, object]) -> None:
    _write_json(directory / name, content)


def _write_json(path: Path, content: dict[str, object]) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(content, indent=1, sort_keys=True) + "\n")
    os.replace(temporary, path)


GATES_KEPT_DAYS = 14  # a decided gate's files, kept this long after its last write
UNDECIDED_KEPT_DAYS = 90  # an undecided one's (a plan lost with a master, a worker gone)


def prune_gates(handed_back: Path, now: float | None = None) -> int:
    """Remove the gate directories of plans long done; how many plans went. A master
    runs for months: each plan leaves a directory per package here. What the console
    shows of a gate (its summary, diffoscope's report) is in the index and the build's
    log, not here; a plan whose gates are undecided is kept longer, for whoever looks."""
    now = time.time() if now is None else now
    gates = handed_back / "gates"
    removed = 0
    for plan in sorted(gates.iterdir()) if gates.is_dir() else ():
        if not plan.name.isdigit() or not plan.is_dir():
            continue
        age = (now - _newest_write(plan)) / 86400
        packages = [entry for entry in plan.iterdir() if entry.is_dir()]
        decided = all((p / PUBLISHED).exists() or (p / REFUSED).exists() for p in packages)
        if (decided and age > GATES_KEPT_DAYS) or age > UNDECIDED_KEPT_DAYS:
            shutil.rmtree(plan, ignore_errors=True)
            removed += 1
    return removed


def _newest_write(directory: Path) -> float:
    newest = directory.stat().st_mtime
    for top, _directories, files in os.walk(directory):
        for name in files:
            try:
                newest = max(newest, os.lstat(os.path.join(top, name)).st_mtime)
            except FileNotFoundError:
                continue
    return newest


_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def gate_lock(directory: Path) -> threading.Lock:
    """One judge at a time per gate (the gate steps run in the master's threads)."""
    with _locks_guard:
        return _locks.setdefault(str(directory), threading.Lock())


def forget_lock(directory: Path) -> None:
    """A decided gate needs its lock no more (a master runs for months)."""
    with _locks_guard:
        _locks.pop(str(directory), None)

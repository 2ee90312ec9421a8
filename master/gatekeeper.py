"""The gate step's work, without Buildbot: one build of a gate ended; record it, judge
every build of the gate so far, and publish, refuse or leave it to the builds to come.
A decision is made once, under the gate's lock, and written before anything else
may read it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from master.config import FarmConfig
from master.divergence import explain
from master.gate import (
    FAILED,
    NOT_REPRODUCED,
    PUBLISHED,
    REFUSED,
    decide,
    decision,
    forget_lock,
    gate_lock,
    judge,
    read_outcomes,
    read_record,
    record_outcome,
    reproduction,
)
from master.gate_config import GateRule
from master.index import writes
from master.publication import IndexEntry, publish_for_index
from master.publishing import client, registry_config
from provenance.publish import Published


@dataclass(frozen=True)
class GateResult:
    """What became of a package at the gate, and why."""

    state: str  # "published", "waiting", "refused", "failed" (every build did), or
    # "decided" (by an earlier build)
    summary: str
    published: Published | None = None
    entry: IndexEntry | None = None
    report: str = ""
    paths: tuple[str, ...] = ()


def pass_gate(farm: FarmConfig, directory: Path, package: str, attempt: int,
              place: writes.BuildPlace, rule: GateRule, plan_key: str, plan_id: int | None,
              unreproducible: str = "") -> GateResult:
    """Attempt `attempt` of `package`'s gate in `directory` ended on `place.worker`."""
    with gate_lock(directory):
        record_outcome(directory, attempt, place.worker, place.build_url, place.log_url)
        decided = decision(directory)
        if decided is not None:
            return GateResult("decided", f"decided before: {decided['summary']}")
        verdict = judge(read_outcomes(directory), rule)
        if verdict.state == "wait":
            return GateResult("waiting", verdict.summary)
        if verdict.state == "publish":
            first = verdict.agreeing[0]
            reproduced = reproduction(directory, verdict.agreeing, rule, unreproducible)
            published, entry = publish_for_index(
                farm, read_record(directory, first.attempt),
                directory / str(first.attempt) / "pushed.txt", plan_key, plan_id,
                writes.BuildPlace(first.worker, first.build_url, first.log_url), reproduced)
            summary = (writes.gate_summary(reproduced) if unreproducible
                       else verdict.summary)
            decide(directory, PUBLISHED, {"summary": summary,
                                          "manifest": str(published.manifest),
                                          "agreeing": [a.attempt for a in verdict.agreeing]})
            forget_lock(directory)
            return GateResult("published", summary, published, entry)
        if not any(outcome.built for outcome in read_outcomes(directory)):
            # Nothing was built: a failure, not a question of reproducibility (each
            # build's own log says why).
            decide(directory, REFUSED, {"summary": verdict.summary, "reason": FAILED,
                                        "paths": []})
            forget_lock(directory)
            return GateResult("failed", verdict.summary)
        registry = client(farm)
        try:
            config = registry_config(farm)
            divergence = explain(registry, lambda name: config.locate(name).repository,
                                 directory, verdict.compared, verdict.summary)
        finally:
            registry.close()
        (directory / "report.txt").write_text(divergence.report)
        for archive in directory.glob("*/archive.tar"):  # compared: the report stays
            archive.unlink()
        summary = verdict.summary
        if divergence.paths:
            summary += f"; differs in {', '.join(divergence.paths[:3])}" + (
                " ..." if len(divergence.paths) > 3 else "")
        decide(directory, REFUSED, {"summary": summary, "reason": NOT_REPRODUCED,
                                    "paths": list(divergence.paths)})
        forget_lock(directory)
        return GateResult("refused", summary, report=divergence.report,
                          paths=divergence.paths)

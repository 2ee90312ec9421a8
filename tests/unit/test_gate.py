"""The reproducibility gate without a farm: farm.yaml's rules, the judge over attempts,
the variations, what the provenance says, and the consumer's `reproduced:` rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kiln.canonical import canonical_json
from kiln.errors import CheckFailed, InputError
from kiln.record import BuildRecord
from master.config import load_farm
from master.gate import (
    FAILED,
    Attempt,
    decision,
    gate_directory,
    gate_id,
    judge,
    prune_gates,
)
from master.gate_config import GateRule
from master.gatekeeper import pass_gate
from master.index.writes import BuildPlace
from provenance.policy import Evidence, ReproducedBy, load_policy
from provenance.statement import (
    ReproducedBuild,
    Reproduction,
    package_statement,
    read_reproduction,
)
from provenance.verify import Verified
from tests.unit.test_farm_config import GOOD
from tests.unit.test_record import record_json
from workers.variation import CHECK_VARIATIONS, Variation, variation

ONE = "sha256:" + "1" * 64
TWO = "sha256:" + "2" * 64


def built(attempt: int, worker: str, output: str = ONE) -> Attempt:
    return Attempt(attempt, worker, True, output, f"sha256:{attempt:064d}")


def failed(attempt: int, worker: str) -> Attempt:
    return Attempt(attempt, worker, False)


def test_farm_yaml_sets_the_gate_for_the_farm_and_per_package_or_prefix(tmp_path: Path) -> None:
    (tmp_path / "farm.yaml").write_text(GOOD)
    assert load_farm(tmp_path).reproducibility.default == GateRule(2, 2)  # two workers
    (tmp_path / "farm.yaml").write_text(GOOD.replace("[w1, w2]", "[w1]"))
    assert load_farm(tmp_path).reproducibility.default == GateRule(1, 1)  # one: nothing to compare
    (tmp_path / "farm.yaml").write_text(GOOD.replace("[w1, w2]", "[w1, w2, w3]") + (
        "reproducibility:\n  builds: 3\n  agree: 2\n  allow-unreproducible: true\n"
        "  packages:\n    kiln.dev/chromium: {builds: 1, agree: 1}\n"
        "    'kiln.dev/lib*': {builds: 2, agree: 2}\n"
        "    'kiln.dev/libz*': {builds: 3, agree: 3}\n"))
    gate = load_farm(tmp_path).reproducibility
    assert gate.allow_unreproducible
    assert gate.rule_for("kiln.dev/hello") == GateRule(3, 2)
    assert gate.rule_for("kiln.dev/chromium") == GateRule(1, 1)
    assert gate.rule_for("kiln.dev/libfoo") == GateRule(2, 2)
    assert gate.rule_for("kiln.dev/libzstd") == GateRule(3, 3)  # the longest prefix wins


@pytest.mark.parametrize(("text", "reason", "line"), [
    ("reproducibility: {builds: 2, agree: 3}\n", "bad-reproducibility", 8),
    ("reproducibility: {builds: 3}\n", "bad-reproducibility", 8),  # two workers only
    ("reproducibility: {builds: two}\n", "bad-value", 8),
    ("reproducibility:\n  packages:\n    'Not A Name*': {builds: 1, agree: 1}\n", "bad-value", 10),
    ("reproducibility:\n  packages:\n    kiln.dev/x: {builds: 1}\n", "missing-key", 10),
    ("reproducibility: {builds: 2, often: yes}\n", "unknown-key", 8),
])
def test_a_gate_that_cannot_be_met_is_refused_with_its_line(tmp_path: Path, text: str,
                                                            reason: str, line: int) -> None:
    (tmp_path / "farm.yaml").write_text(GOOD + text)
    with pytest.raises(InputError) as raised:
        load_farm(tmp_path)
    assert raised.value.reason == reason
    assert raised.value.message.startswith(f"{tmp_path / 'farm.yaml'}:{line}:")


def test_the_judge_publishes_when_k_workers_agree_and_waits_while_they_still_can() -> None:
    two_of_two = GateRule(2, 2)
    assert judge([built(1, "w1")], two_of_two).state == "wait"
    agreed = judge([built(1, "w1"), built(2, "w2")], two_of_two)
    assert agreed.state == "publish"
    assert [a.worker for a in agreed.agreeing] == ["w1", "w2"]
    # 2 of 3: one differing build is outvoted, and the agreement is named.
    two_of_three = GateRule(3, 2)
    assert judge([built(1, "w1"), built(2, "w2", TWO)], two_of_three).state == "wait"
    outvoted = judge([built(1, "w1"), built(2, "w2", TWO), built(3, "w3")], two_of_three)
    assert outvoted.state == "publish"
    assert [a.attempt for a in outvoted.agreeing] == [1, 3]
    assert judge([built(1, "w1")], GateRule(1, 1)).state == "publish"


def test_the_judge_refuses_as_soon_as_agreement_is_out_of_reach() -> None:
    differ = judge([built(1, "w1"), built(2, "w2", TWO)], GateRule(2, 2))
    assert differ.state == "refuse"
    assert [a.attempt for a in differ.compared] == [1, 2]  # what diffoscope compares
    assert "2 different outputs" in differ.summary
    # A build that fails under one variation is not reproduced either.
    one_failed = judge([built(1, "w1"), failed(2, "w2")], GateRule(2, 2))
    assert one_failed.state == "refuse"
    assert "attempt 2 on w2 failed" in one_failed.summary
    assert judge([failed(1, "w1"), failed(2, "w2")], GateRule(2, 2)).summary == (
        "every build failed")
    # 2 of 3 and two outputs already differ with one to come: it can still agree.
    assert judge([built(1, "w1"), built(2, "w2", TWO)], GateRule(3, 2)).state == "wait"


def test_two_builds_on_one_worker_are_one_builders_word() -> None:
    # A master that lost its worker claims in a crash could build twice on w1.
    same = judge([built(1, "w1"), built(2, "w1")], GateRule(2, 2))
    assert same.state == "refuse"
    assert "only 1 worker(s)" in same.summary


def test_a_gate_whose_every_build_failed_says_failed_not_unreproduced(tmp_path: Path) -> None:
    # Its dependants read the decision: "mid failed", not "mid was not reproduced".
    (tmp_path / "farm.yaml").write_text(GOOD)
    directory = gate_directory(tmp_path, gate_id(3, "kiln.dev/mid"))
    directory.mkdir(parents=True)  # the failed build handed nothing back
    result = pass_gate(load_farm(tmp_path), directory, "kiln.dev/mid", 1,
                       BuildPlace("w1", "", ""), GateRule(1, 1), "", None)
    assert result.state == "failed"
    assert decision(directory) == {"summary": "every build failed", "reason": FAILED,
                                   "paths": []}
    again = pass_gate(load_farm(tmp_path), directory, "kiln.dev/mid", 1,
                      BuildPlace("w2", "", ""), GateRule(1, 1), "", None)
    assert again.state == "decided"  # once decided, a late build changes nothing


def test_old_plans_gate_directories_are_pruned_and_live_ones_kept(tmp_path: Path) -> None:
    import os
    import time

    now = time.time()

    def plan(number: int, decided: bool, days_old: float) -> Path:
        directory = gate_directory(tmp_path, gate_id(number, "kiln.dev/hello"))
        (directory / "1").mkdir(parents=True)
        (directory / "1" / "outcome.json").write_text("{}")
        if decided:
            (directory / "published.json").write_text("{}")
        then = now - days_old * 86400
        for path in (directory / "1" / "outcome.json", directory / "1", directory,
                     directory.parent, *directory.glob("*.json")):
            os.utime(path, (then, then))
        return directory.parent

    done_long_ago = plan(1, True, 30)
    done_yesterday = plan(2, True, 1)
    waiting = plan(3, False, 30)  # a gate still waiting for a worker that went away
    forgotten = plan(4, False, 120)  # a plan a crashed master never finished
    assert prune_gates(tmp_path, now) == 2
    assert not done_long_ago.exists()
    assert not forgotten.exists()
    assert done_yesterday.is_dir()
    assert waiting.is_dir()


def test_a_gate_id_is_a_path_below_the_gates_and_nothing_else(tmp_path: Path) -> None:
    gate = gate_id(17, "kiln.dev/hello")
    assert gate_directory(tmp_path, gate) == tmp_path / "gates" / "17" / "kiln.dev+hello"
    for hostile in ("17/../../keys", "../x", "17/a/b", "x/kiln.dev+hello", "17/..", "17/"):
        with pytest.raises(InputError) as raised:
            gate_directory(tmp_path, hostile)
        assert raised.value.reason == "bad-gate"


def test_every_attempt_varies_everything_a_build_must_not_depend_on() -> None:
    assert variation(1) == Variation()
    assert (variation(1), variation(2)) == CHECK_VARIATIONS  # kiln build --check's two
    attempts = [variation(n) for n in range(1, 6)]
    for field in ("directory", "umask", "hostname", "timezone", "locale", "clock_days"):
        values = [getattr(v, field) for v in attempts[:4]]
        assert len(set(values)) == 4 or field in ("umask", "timezone", "locale"), field
        assert getattr(attempts[0], field) != getattr(attempts[1], field), field
    assert all(v.clock_days >= 398 for v in attempts[1:])  # days, not seconds
    with pytest.raises(InputError):
        variation(0)


def reproduced_statement(reproduction: Reproduction | None) -> Verified:
    record = BuildRecord.from_bytes(canonical_json(record_json()), "a record")
    payload = package_statement(record, "https://kiln.dev/builders/farm", reproduction)
    statement = json.loads(payload)
    return Verified(statement, payload, "key test", statement["subject"][0]["name"])


def test_the_provenance_names_each_agreeing_build_and_the_policy_counts_workers() -> None:
    agreed = Reproduction(2, 2, (ReproducedBuild("w1", ONE, "plain", "a", "b"),
                                 ReproducedBuild("w2", TWO, "dir ...", "c", "d")))
    verified = reproduced_statement(agreed)
    assert read_reproduction(verified.predicate) == agreed  # what is signed reads back
    assert verified.reproduced_by == ("w1", "w2")
    evidence = Evidence("kiln.dev/hello", "2.10-1", verified)
    ReproducedBy(2).verify(evidence)
    with pytest.raises(CheckFailed) as raised:
        ReproducedBy(3).verify(evidence)
    assert raised.value.reason == "not-reproduced"


def test_a_policy_demanding_two_builders_refuses_a_package_built_once() -> None:
    for once in (None, Reproduction(1, 1, (ReproducedBuild("w1", ONE, "plain", "a", "b"),))):
        with pytest.raises(CheckFailed) as raised:
            ReproducedBy(2).verify(Evidence("kiln.dev/hello", "1", reproduced_statement(once)))
        assert raised.value.reason == "not-reproduced"
    declared = Reproduction(1, 1, (ReproducedBuild("w1", ONE, "plain", "a", "b"),),
                            "embeds the build date")
    with pytest.raises(CheckFailed) as marked:
        ReproducedBy(1).verify(Evidence("kiln.dev/hello", "1", reproduced_statement(declared)))
    assert "declared not reproducible (embeds the build date)" in marked.value.message


def test_a_policy_reads_reproduced_and_refuses_a_bad_count(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("trust: []\nreproduced: 2\n")
    assert ReproducedBy(2) in load_policy(policy).rules.rules
    policy.write_text("trust: []\nreproduced: many\n")
    with pytest.raises(InputError) as raised:
        load_policy(policy)
    assert f"{policy}:2:" in raised.value.message

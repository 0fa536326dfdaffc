"""Policy evaluation without a database: approval counting, documentation and evidence rules."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mlgov.lifecycle.policy import (
    DecisionFact,
    EvidenceFact,
    Facts,
    PolicyDocument,
    SeparationOfDuties,
    StageRules,
    counted_approvals,
    evaluate,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ROLES = ["approver", "validator", "ethics_reviewer"]


def facts(**kw: Any) -> Facts:
    base: dict[str, Any] = {
        "model": {"description": "", "intended_use": "", "out_of_scope_uses": [], "domain": ""},
        "version": {"algorithm": "", "code_ref": {}, "environment": {"python": "", "packages": {}}},
        "version_created_by": "creator",
        "lineage": [],
        "evidence": {},
        "requested_by": "requester",
        "decisions": [],
        "now": NOW,
    }
    base.update(kw)
    return Facts(**base)


def best_possible(rules: StageRules, people: list[frozenset[str]]) -> int:
    """Brute force: the most places distinct people can fill, each filling at most one."""
    slots = [{r.value for r in rule.roles} for rule in rules.approvals for _ in range(rule.count)]
    best = 0
    for order in itertools.permutations(range(len(slots))):
        used: set[int] = set()
        filled = 0
        for s in order:
            for p, roles in enumerate(people):
                if p not in used and roles & slots[s]:
                    used.add(p)
                    filled += 1
                    break
        best = max(best, filled)
    return best


@settings(max_examples=150, deadline=None)
@given(
    rules=st.lists(
        st.tuples(st.integers(1, 2), st.sets(st.sampled_from(ROLES), min_size=1)),
        min_size=1,
        max_size=3,
    ),
    people=st.lists(st.sets(st.sampled_from(ROLES), min_size=1), max_size=5),
)
def test_one_person_fills_one_place_and_the_count_is_the_best_possible(
    rules: list[tuple[int, set[str]]], people: list[set[str]]
) -> None:
    stage = StageRules.model_validate(
        {"approvals": [{"count": c, "roles": sorted(r)} for c, r in rules]}
    )
    decisions = [
        DecisionFact(f"p{i}", "approve", frozenset(roles)) for i, roles in enumerate(people)
    ]
    filled, ignored = counted_approvals(stage, SeparationOfDuties(), facts(decisions=decisions))
    names = [n for group in filled for n in group]
    assert len(names) == len(set(names)), "a person counted twice"
    for group, rule in zip(filled, stage.approvals, strict=True):
        assert len(group) <= rule.count
        allowed = {r.value for r in rule.roles}
        assert all(decisions[int(n[1:])].roles & allowed for n in group)
    assert len(names) == best_possible(stage, [frozenset(p) for p in people])
    # The order of approvals never changes how many places are filled.
    again, _ = counted_approvals(
        stage, SeparationOfDuties(), facts(decisions=list(reversed(decisions)))
    )
    assert sum(map(len, again)) == len(names)
    named = {role for _, roles in rules for role in roles}
    assert [i["actor"] for i in ignored] == [d.actor for d in decisions if not d.roles & named]


def test_requester_and_creator_approvals_do_not_count_unless_switched_off():
    stage = StageRules.model_validate({"approvals": [{"count": 2, "roles": ["approver"]}]})
    decisions = [
        DecisionFact("requester", "approve", frozenset({"approver"})),
        DecisionFact("creator", "approve", frozenset({"approver"})),
        DecisionFact("other", "reject", frozenset({"approver"})),
    ]
    filled, ignored = counted_approvals(stage, SeparationOfDuties(), facts(decisions=decisions))
    assert filled == [[]]
    assert ignored == [
        {"actor": "requester", "why": "requested the transition"},
        {"actor": "creator", "why": "created the version"},
    ]
    relaxed = SeparationOfDuties(no_self_approval=False, no_approving_own_version=False)
    filled, _ = counted_approvals(stage, relaxed, facts(decisions=decisions))
    assert filled == [["requester", "creator"]]


def test_evidence_rules_latest_passed_age_dataset_and_author():
    policy = PolicyDocument.model_validate(
        {
            "policy": "high",
            "stages": {
                "production": {
                    "evidence": ["performance", "fairness", "robustness", "security_scan"],
                    "evidence_max_age_days": 30,
                    "evidence_on_dataset": True,
                }
            },
        }
    )
    evidence = {
        "performance": EvidenceFact(1, "performance", True, NOW, "val", 7),
        "fairness": EvidenceFact(2, "fairness", True, NOW - timedelta(days=31), "val", 7),
        "robustness": EvidenceFact(3, "robustness", True, NOW, "creator", 7),
        "security_scan": EvidenceFact(4, "security_scan", True, NOW, "val", None),
    }
    result = evaluate(
        policy, {"name": "high", "version": 1}, "production", facts(evidence=evidence)
    )
    met = {r["id"]: r["met"] for r in result["requirements"]}
    assert met == {
        "evidence.performance": True,
        "evidence.fairness": False,  # too old
        "evidence.robustness": False,  # recorded by the version's creator
        "evidence.security_scan": True,  # scans need no dataset version
    }
    assert result["met"] is False
    assert "older than 30 days" in result["unmet"][0]
    assert "recorded by the version's creator creator" in result["unmet"][1]


def test_documentation_and_datasheets_name_what_is_missing():
    policy = PolicyDocument.model_validate(
        {
            "policy": "limited",
            "stages": {
                "staging": {
                    "documentation": [
                        "model.intended_use",
                        "version.code_ref",
                        "datasheet.personal_data",
                        "datasheet.uses",
                    ]
                }
            },
        }
    )
    lineage = [
        ("training", "loans@1", {"uses": "scoring", "personal_data": {"present": False}}),
        ("validation", "loans@2", {"uses": ""}),
    ]
    result = evaluate(
        policy,
        {"name": "limited", "version": 1},
        "staging",
        facts(
            model={"intended_use": "Loan decisions"},
            version={"code_ref": {"repository": "", "commit": ""}},
            lineage=lineage,
        ),
    )
    by_id = {r["id"]: r for r in result["requirements"]}
    assert by_id["documentation.model.intended_use"]["met"]
    assert not by_id["documentation.version.code_ref"]["met"]
    assert by_id["documentation.datasheet.personal_data"]["data"]["missing_in"] == ["loans@2"]
    assert by_id["documentation.datasheet.uses"]["message"] == (
        "datasheet answer 'uses' is missing for loans@2"
    )


def test_a_stage_the_policy_does_not_list_has_no_requirements_and_rollback_falls_back():
    policy = PolicyDocument.model_validate(
        {"policy": "minimal", "stages": {"production": {"evidence": ["performance"]}}}
    )
    assert evaluate(policy, {}, "staging", facts())["met"] is True
    rollback = evaluate(policy, {}, "rollback", facts())
    assert [r["id"] for r in rollback["requirements"]] == ["evidence.performance"]


def test_computed_evidence_rule_counts_scans_and_validation_runs_not_api_records():
    policy = PolicyDocument.model_validate(
        {
            "policy": "high",
            "stages": {
                "production": {
                    "evidence": ["performance", "fairness", "security_scan", "ethics_review"],
                    "evidence_computed": True,
                }
            },
        }
    )
    evidence = {
        "performance": EvidenceFact(1, "performance", True, NOW, "val", 7, "validation"),
        "fairness": EvidenceFact(2, "fairness", True, NOW, "val", 7, "api"),
        "security_scan": EvidenceFact(3, "security_scan", True, NOW, "system", None, "scan"),
        "ethics_review": EvidenceFact(4, "ethics_review", True, NOW, "eth", None, "api"),
    }
    result = evaluate(
        policy, {"name": "high", "version": 1}, "production", facts(evidence=evidence)
    )
    met = {r["id"]: r["met"] for r in result["requirements"]}
    assert met == {
        "evidence.performance": True,
        "evidence.fairness": False,  # pasted in through the API
        "evidence.security_scan": True,
        "evidence.ethics_review": True,  # a person's judgement: exempt
    }
    assert "was recorded through the API" in result["unmet"][0]
    # Off (the default), the same records all count.
    relaxed = PolicyDocument.model_validate(
        {"policy": "high", "stages": {"production": {"evidence": ["fairness"]}}}
    )
    result = evaluate(
        relaxed, {"name": "high", "version": 1}, "production", facts(evidence=evidence)
    )
    assert result["met"]

"""The lifecycle's gates, each rule's refusal and success, through the real API on SQLite and
PostgreSQL: stages and transitions, risk-tier policies, separation of duties, evidence and the
stage history."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select, text

from mlgov.audit.models import AuditEvent
from mlgov.context import Context
from mlgov.errors import Conflict, MlgovError
from mlgov.lifecycle.models import Evidence, StageChange, TransitionDecision
from mlgov.lifecycle.schemas import DecisionCreate
from mlgov.lifecycle.service import evidence_document
from mlgov.server import Server

V1 = "/api/v1"
PROBLEM = "application/problem+json"
FULL_DATASHEET = {
    "motivation": "Assess affordability of consumer loans.",
    "composition": "120,000 applications, 2019-2023, one row per application.",
    "collection": "Core banking system exports.",
    "preprocessing": "Deduplicated; incomes winsorised at the 99th percentile.",
    "uses": "Credit scoring models only.",
    "distribution": "Internal only.",
    "maintenance": "Refreshed quarterly by the data platform team.",
    "personal_data": {"present": True, "legal_basis": "GDPR Art. 6(1)(b)"},
}


@dataclass
class World:
    client: Any
    server: Server
    admin: dict[str, str]
    make_user: Callable[..., Any]
    people: dict[str, dict[str, str]] = field(default_factory=dict)

    def person(self, name: str, *roles: str) -> dict[str, str]:
        if name not in self.people:
            self.people[name] = self.make_user(*roles, name=name).headers
        return self.people[name]

    def ok(self, method: str, url: str, who: dict[str, str], status: int = 200, **kw: Any) -> Any:
        r = self.client.request(method, url, headers=who, **kw)
        assert r.status_code == status, f"{method} {url}: {r.status_code} {r.text}"
        return r.json()

    def model(self, name: str, tier: str, **fields: Any) -> None:
        body = {"name": name, "owner_team": "risk", "risk_tier": tier, "reason": "new", **fields}
        self.ok("POST", f"{V1}/models", self.person("ds", "data_scientist"), 201, json=body)

    def version(self, model: str, creator: str = "ds", **meta: Any) -> int:
        body = {
            "format": "other",
            "signature": {"inputs": [{"name": "income", "type": "double"}]},
            "reason": "trained",
            **meta,
        }
        files = {"artifact": ("m.skops", b"weights"), "metadata": (None, json.dumps(body))}
        r = self.client.post(
            f"{V1}/models/{model}/versions", files=files, headers=self.people[creator]
        )
        assert r.status_code == 201, r.text
        return int(r.json()["version"])

    def evidence(
        self, model: str, version: int, kind: str, passed: bool = True, who: str = "val", **kw: Any
    ) -> Any:
        body = {"kind": kind, "passed": passed, "reason": f"{kind} run", **kw}
        url = f"{V1}/models/{model}/versions/{version}/evidence"
        return self.ok("POST", url, self.people[who], 201, json=body)

    def request(self, model: str, version: int, to: str, who: str = "mm") -> Any:
        body = {"model": model, "version": version, "to_stage": to, "reason": f"to {to}"}
        return self.ok("POST", f"{V1}/transitions", self.people[who], 201, json=body)

    def decide(self, tid: int, decision: str, who: str) -> Any:
        body = {"decision": decision, "comment": f"{decision} by {who}"}
        return self.client.post(
            f"{V1}/transitions/{tid}/decisions", json=body, headers=self.people[who]
        )

    def get(self, tid: int) -> Any:
        return self.ok("GET", f"{V1}/transitions/{tid}", self.admin)

    def stage(self, model: str, version: int) -> str:
        return str(self.ok("GET", f"{V1}/models/{model}/versions/{version}", self.admin)["stage"])

    def policy(self, tier: str, yaml_text: str, who: dict[str, str] | None = None) -> Any:
        body = {"document": yaml_text, "reason": "tighter rules"}
        return self.client.post(
            f"{V1}/policies/{tier}/versions", json=body, headers=who or self.admin
        )

    def audit_size(self) -> int:
        with self.server.services.db.read() as session:
            return int(session.execute(select(func.count()).select_from(AuditEvent)).scalar_one())

    def events(self, action: str) -> list[dict[str, Any]]:
        r = self.ok("GET", f"{V1}/audit/events", self.admin, params={"action": action})
        return list(r["items"])

    def count(self, table: type) -> int:
        with self.server.services.db.read() as session:
            return int(session.execute(select(func.count()).select_from(table)).scalar_one())


@pytest.fixture
def world(client, server, admin, make_user) -> World:
    w = World(client, server, admin, make_user)
    w.person("ds", "data_scientist")
    w.person("mm", "model_manager")
    w.person("val", "validator")
    w.person("ap1", "approver")
    w.person("ap2", "approver")
    w.person("eth", "ethics_reviewer")
    return w


def unmet_ids(transition: dict[str, Any]) -> list[str]:
    return [r["id"] for r in transition["evaluation"]["requirements"] if not r["met"]]


def requirement(transition: dict[str, Any], rid: str) -> dict[str, Any]:
    return next(r for r in transition["evaluation"]["requirements"] if r["id"] == rid)


def assert_problem(r: Any, status: int, *words: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    for word in words:
        assert word in body["detail"], body["detail"]
    return dict(body)


STAGING_TWO_APPROVERS = """
policy: limited
stages:
  staging:
    evidence: [performance]
    approvals:
      - {count: 2, roles: [approver]}
"""


# -- evidence and approvals gates ----------------------------------------------------------


def test_promotion_waits_for_evidence_then_passing_evidence_then_two_approvals(world: World):
    assert world.policy("limited", STAGING_TWO_APPROVERS).status_code == 201
    world.model("scoring", "limited")
    v = world.version("scoring")

    # No evidence: pending, and the response names every unmet requirement in words and data.
    t = world.request("scoring", v, "staging", who="ds")
    assert t["status"] == "pending" and t["from_stage"] == "development"
    assert unmet_ids(t) == ["evidence.performance", "approvals.0"]
    assert "no performance evidence recorded" in t["evaluation"]["unmet"]
    assert requirement(t, "evidence.performance")["data"] == {
        "evidence_kind": "performance",
        "evidence_id": None,
    }
    assert requirement(t, "approvals.0")["data"]["required"] == 2
    assert t["evaluation"]["policy"]["name"] == "limited"
    assert t["evaluation"]["policy"]["version"] == 2
    tid = t["id"]

    # Failed evidence does not meet the requirement.
    failed = world.evidence("scoring", v, "performance", passed=False, results={"auc": 0.55})
    t = world.get(tid)
    assert t["status"] == "pending" and "evidence.performance" in unmet_ids(t)
    assert f"the latest performance evidence (#{failed['id']}) failed" in t["evaluation"]["unmet"]

    # Passing evidence does; approvals are still missing.
    world.evidence("scoring", v, "performance", results={"auc": 0.81})
    t = world.get(tid)
    assert unmet_ids(t) == ["approvals.0"]

    # One approval where two are needed: still pending.
    r = world.decide(tid, "approve", "ap1")
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "pending"
    assert requirement(r.json(), "approvals.0")["data"]["counted"] == ["ap1"]
    assert "needs 1 more: 1 of 2 approvals from approver (ap1)" in r.json()["evaluation"]["unmet"]
    assert world.stage("scoring", v) == "development"

    # The second distinct approver meets the last requirement: applied in that same call.
    r = world.decide(tid, "approve", "ap2")
    assert r.status_code == 201
    t = r.json()
    assert t["status"] == "applied" and t["closed_by"] == "ap2" and t["evaluation"]["met"]
    assert [d["actor"] for d in t["decisions"]] == ["ap1", "ap2"]
    assert t["evaluation_at_request"]["met"] is False  # kept as it was at request time
    assert world.stage("scoring", v) == "staging"
    applied = world.events("transition.apply")
    assert [(e["actor"], e["target"]) for e in applied] == [("ap2", f"model/scoring/versions/{v}")]
    assert applied[0]["details"]["transition"] == tid

    # Decisions on a closed request are refused.
    r = world.decide(tid, "approve", "ap1")
    assert_problem(r, 409, f"#{tid} is applied")


def test_a_request_whose_requirements_are_met_is_applied_at_once(world: World):
    world.model("tiny", "minimal")
    v = world.version("tiny")
    world.evidence("tiny", v, "performance")
    before = world.audit_size()
    t = world.request("tiny", v, "staging", who="ds")
    assert t["status"] == "applied" and t["evaluation"]["met"] and t["evaluation"]["unmet"] == []
    assert world.stage("tiny", v) == "staging"
    assert world.audit_size() == before + 2  # the request and its application


def test_the_high_pack_end_to_end(world: World):
    """The built-in EU AI Act high-risk pack can be met, and only when all of it is met."""
    de = world.person("de", "data_engineer")
    for ds in ("loans-train", "loans-valid"):
        world.ok(
            "POST", f"{V1}/datasets", de, 201, json={"name": ds, "owner_team": "d", "reason": "r"}
        )
        body = {
            "content_sha256": "ab" * 32,
            "uri": f"s3://data/{ds}.parquet",
            "schema": [{"name": "income", "type": "double"}],
            "row_count": 1000,
            "datasheet": FULL_DATASHEET,
            "reason": "r",
        }
        world.ok("POST", f"{V1}/datasets/{ds}/versions", de, 201, json=body)
    world.model("credit", "high")
    v = world.version(
        "credit",
        algorithm="GradientBoostingClassifier",
        code_ref={"repository": "git@example.com:risk/credit.git", "commit": "a1b2c3d"},
        environment={"python": "3.11.9", "packages": {"scikit-learn": "1.5.2"}},
        changelog="First model.",
        datasets=[
            {"dataset": "loans-train", "version": 1, "role": "training"},
            {"dataset": "loans-valid", "version": 1, "role": "validation"},
        ],
    )
    on_data = {"dataset": {"dataset": "loans-valid", "version": 1}}
    for kind in ("performance", "reproducibility", "security_scan"):
        world.evidence("credit", v, kind, **on_data)
    t = world.request("credit", v, "staging")
    assert unmet_ids(t) == ["approvals.0"]
    assert world.decide(t["id"], "approve", "val").json()["status"] == "applied"

    t = world.request("credit", v, "production")
    unmet = set(unmet_ids(t))
    assert {
        "evidence.fairness",
        "evidence.explainability",
        "evidence.robustness",
        "evidence.ethics_review",
        "documentation.model.description",
        "documentation.model.intended_use",
        "documentation.model.out_of_scope_uses",
        "documentation.model.domain",
        "approvals.0",
    } == unmet
    for kind in ("fairness", "explainability", "robustness"):
        world.evidence("credit", v, kind, **on_data)
    # An ethics review is recorded by an ethics reviewer, never by a validator.
    r = world.client.post(
        f"{V1}/models/credit/versions/{v}/evidence",
        json={"kind": "ethics_review", "passed": True, "reason": "r"},
        headers=world.people["val"],
    )
    assert_problem(r, 403, "evidence:ethics_review")
    world.evidence("credit", v, "ethics_review", who="eth", summary="Impact assessment done.")
    patch = {
        "description": "Probability of default for consumer loans.",
        "intended_use": "Decision support for loan officers.",
        "out_of_scope_uses": ["Fully automated refusals"],
        "domain": "Annex III 5(b): creditworthiness",
        "reason": "model card",
    }
    world.ok("PATCH", f"{V1}/models/credit", world.people["ds"], json=patch)
    t = world.get(t["id"])
    assert unmet_ids(t) == ["approvals.0"]  # documentation changes re-evaluate at once
    assert world.decide(t["id"], "approve", "ap1").json()["status"] == "pending"
    t = world.decide(t["id"], "approve", "ap2").json()
    assert t["status"] == "applied" and world.stage("credit", v) == "production"
    assert requirement(t, "documentation.datasheet.personal_data")["met"]
    assert requirement(t, "lineage.validation")["data"]["datasets"] == ["loans-valid@1"]


def test_missing_datasheet_answers_are_named(world: World):
    world.model("m", "high")
    v = world.version("m")
    world.evidence("m", v, "performance")
    world.evidence("m", v, "reproducibility")
    world.evidence("m", v, "security_scan")
    t = world.request("m", v, "staging")
    assert requirement(t, "lineage.training") == {
        "id": "lineage.training",
        "kind": "lineage",
        "met": False,
        "message": "no training dataset version is linked to the version",
        "data": {"role": "training", "datasets": []},
    }


# -- separation of duties ------------------------------------------------------------------


def test_nobody_approves_their_own_request(world: World):
    assert world.policy("limited", STAGING_TWO_APPROVERS).status_code == 201
    world.person("ds-ap", "data_scientist", "approver")
    world.model("m", "limited")
    v = world.version("m")
    t = world.request("m", v, "staging", who="ds-ap")
    before = (world.audit_size(), world.count(TransitionDecision))
    r = world.decide(t["id"], "approve", "ds-ap")
    assert_problem(r, 403, "separation of duties", "requested this transition")
    assert (world.audit_size(), world.count(TransitionDecision)) == before
    # Rejecting one's own request is not the way out either: cancel it.
    assert_problem(world.decide(t["id"], "reject", "ds-ap"), 409, "cancel it")
    assert world.decide(t["id"], "approve", "ap1").status_code == 201


def test_nobody_approves_a_version_they_created(world: World):
    assert world.policy("limited", STAGING_TWO_APPROVERS).status_code == 201
    world.person("ds-ap", "data_scientist", "approver")
    world.model("m", "limited")
    v = world.version("m", creator="ds-ap")
    t = world.request("m", v, "staging", who="ds")
    r = world.decide(t["id"], "approve", "ds-ap")
    assert_problem(r, 403, "separation of duties", f"created version {v}")
    assert world.decide(t["id"], "approve", "ap1").status_code == 201


def test_nobody_records_evidence_for_a_version_they_created(world: World):
    world.person("ds-val", "data_scientist", "validator")
    world.model("m", "limited")
    v = world.version("m", creator="ds-val")
    url = f"{V1}/models/m/versions/{v}/evidence"
    body = {"kind": "performance", "passed": True, "reason": "my own numbers"}
    before = (world.audit_size(), world.count(Evidence))
    r = world.client.post(url, json=body, headers=world.people["ds-val"])
    assert_problem(r, 403, "separation of duties", "cannot record evidence")
    assert (world.audit_size(), world.count(Evidence)) == before
    assert world.client.post(url, json=body, headers=world.people["val"]).status_code == 201


def test_a_person_with_two_roles_counts_once(world: World):
    policy = """
policy: limited
stages:
  staging:
    approvals:
      - {count: 1, roles: [approver]}
      - {count: 1, roles: [validator]}
"""
    assert world.policy("limited", policy).status_code == 201
    world.person("both", "approver", "validator")
    world.model("m", "limited")
    v = world.version("m")
    t = world.request("m", v, "staging", who="ds")
    r = world.decide(t["id"], "approve", "both")
    assert r.status_code == 201 and r.json()["status"] == "pending"
    counted = [requirement(r.json(), f"approvals.{i}")["data"]["counted"] for i in (0, 1)]
    assert sorted(counted) == [[], ["both"]]
    # Approving again is refused: one person, one decision.
    assert_problem(world.decide(t["id"], "approve", "both"), 409, "one person counts once")
    # The matching is order-independent: a validator fills the other place.
    t = world.decide(t["id"], "approve", "val").json()
    assert t["status"] == "applied"
    data = [requirement(t, f"approvals.{i}")["data"]["counted"] for i in (0, 1)]
    assert data == [["both"], ["val"]]


def test_switching_a_separation_of_duties_rule_off_is_an_audited_admin_action(world: World):
    relaxed = """
policy: limited
separation_of_duties:
  one_person_counts_once: false
  no_self_approval: false
stages:
  staging:
    approvals:
      - {count: 1, roles: [approver]}
      - {count: 1, roles: [validator]}
"""
    # Not an admin: refused by the permission table.
    r = world.policy("limited", relaxed, who=world.person("mm", "model_manager"))
    assert_problem(r, 403, "policy:manage")
    r = world.policy("limited", relaxed)
    assert r.status_code == 201 and r.json()["version"] == 2
    event = world.events("policy.create")[-1]
    assert event["actor"] == "admin" and event["target"] == "policy/limited/versions/2"
    assert event["details"]["separation_of_duties_switched_off"] == [
        "no_self_approval",
        "one_person_counts_once",
    ]
    world.person("both", "approver", "validator", "data_scientist")
    world.model("m", "limited")
    v = world.version("m")
    t = world.request("m", v, "staging", who="both")
    # Self-approval is allowed now, and one person fills both places.
    t = world.decide(t["id"], "approve", "both").json()
    assert t["status"] == "applied"


def test_approval_by_a_role_the_policy_does_not_name_is_refused(world: World):
    assert world.policy("limited", STAGING_TWO_APPROVERS).status_code == 201
    world.model("m", "limited")
    v = world.version("m")
    t = world.request("m", v, "staging", who="ds")
    before = (world.audit_size(), world.count(TransitionDecision))
    r = world.decide(t["id"], "approve", "val")  # a validator may decide, but not on this
    assert_problem(r, 403, "takes decisions from approver", "val holds validator")
    r = world.client.post(
        f"{V1}/transitions/{t['id']}/decisions",
        json={"decision": "approve", "comment": "I am the admin"},
        headers=world.admin,
    )
    assert_problem(r, 403, "takes decisions from approver")
    assert (world.audit_size(), world.count(TransitionDecision)) == before
    # And without the permission at all: the permission table refuses first.
    r = world.decide(t["id"], "approve", "ds")
    assert_problem(r, 403, "transition:decide")


def test_concurrent_approvals_apply_exactly_once(world: World):
    policy = STAGING_TWO_APPROVERS.replace("count: 2", "count: 1").replace(
        "    evidence: [performance]\n", ""
    )
    assert world.policy("limited", policy).status_code == 201
    world.model("m", "limited")
    v = world.version("m")
    t = world.request("m", v, "staging", who="ds")
    svc = world.server.services
    tokens = [world.make_user("approver", name=f"racer-{i}").token for i in range(4)]
    actors = [svc.identity.authenticate(tok) for tok in tokens]
    barrier = threading.Barrier(len(actors))
    outcomes: list[str] = []

    def approve(actor: Any) -> None:
        barrier.wait()
        try:
            view = svc.lifecycle.decide(
                Context(actor=actor), t["id"], DecisionCreate(decision="approve", comment="go")
            )
            outcomes.append(view.request.status)
        except Conflict as exc:
            outcomes.append(f"conflict: {exc.detail}")
        except MlgovError as exc:  # pragma: no cover - shown in the assertion below
            outcomes.append(f"error: {exc.detail}")

    threads = [threading.Thread(target=approve, args=(a,)) for a in actors]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert outcomes.count("applied") == 1, outcomes
    assert all(o.startswith("conflict: transition request") for o in outcomes if o != "applied")
    assert len(world.events("transition.apply")) == 1
    assert world.count(TransitionDecision) == 1
    with svc.db.read() as session:
        changes = session.execute(
            select(StageChange.to_stage).where(StageChange.transition_id == t["id"])
        ).all()
    assert changes == [("staging",)]


# -- stages, one production version, rollback and history ----------------------------------

MINIMAL_OPEN = """
policy: minimal
stages:
  rollback:
    approvals:
      - {count: 1, roles: [approver]}
"""


def test_one_production_version_rollback_and_history_at_past_instants(world: World):
    assert world.policy("minimal", MINIMAL_OPEN).status_code == 201
    world.model("m", "minimal")
    marks: dict[str, datetime] = {}

    def mark(name: str) -> None:
        time.sleep(0.02)
        marks[name] = datetime.now(UTC)
        time.sleep(0.02)

    mark("before")
    v1 = world.version("m")
    mark("v1 created")
    assert world.request("m", v1, "staging")["status"] == "applied"
    mark("v1 staging")
    assert world.request("m", v1, "production")["status"] == "applied"
    mark("v1 production")
    v2 = world.version("m")
    world.request("m", v2, "staging")
    t = world.request("m", v2, "production")
    assert t["status"] == "applied"
    mark("v2 production")
    # v2 replaced v1, which was archived in the same transaction, audited.
    assert (world.stage("m", v1), world.stage("m", v2)) == ("archived", "production")
    archived = world.events("model_version.archive")
    assert [(e["target"], e["details"]["replaced_by"]) for e in archived] == [
        (f"model/m/versions/{v1}", v2)
    ]
    assert world.events("transition.apply")[-1]["details"]["archived_versions"] == [v1]

    # Rollback: v1 back to production, an ordinary transition with its own rules.
    t = world.request("m", v1, "production")
    assert t["rollback"] is True and t["status"] == "pending"
    assert t["evaluation"]["stage"] == "rollback" and unmet_ids(t) == ["approvals.0"]
    t = world.decide(t["id"], "approve", "ap1").json()
    assert t["status"] == "applied"
    assert (world.stage("m", v1), world.stage("m", v2)) == ("production", "archived")
    mark("rolled back")

    def at(name: str) -> dict[str, Any]:
        params = {"at": marks[name].isoformat()}
        return dict(world.ok("GET", f"{V1}/models/m/stage-history", world.admin, params=params))

    def stages(h: dict[str, Any]) -> dict[int, str]:
        return {s["version"]: s["stage"] for s in h["stages"]}

    assert at("before")["stages"] == [] and at("before")["production"] is None
    assert stages(at("v1 created")) == {v1: "development"}
    assert stages(at("v1 staging")) == {v1: "staging"}
    h = at("v1 production")
    assert stages(h) == {v1: "production"} and h["production"] == v1
    h = at("v2 production")
    assert stages(h) == {v1: "archived", v2: "production"} and h["production"] == v2
    h = at("rolled back")
    assert stages(h) == {v1: "production", v2: "archived"} and h["production"] == v1
    assert [(c["version"], c["from_stage"], c["to_stage"]) for c in h["changes"]] == [
        (v1, None, "development"),
        (v1, "development", "staging"),
        (v1, "staging", "production"),
        (v2, None, "development"),
        (v2, "development", "staging"),
        (v1, "production", "archived"),
        (v2, "staging", "production"),
        (v2, "production", "archived"),
        (v1, "archived", "production"),
    ]
    # Without ?at=: now.
    now = world.ok("GET", f"{V1}/models/m/stage-history", world.admin)
    assert now["production"] == v1 and len(now["changes"]) == 9
    # A bad instant is a 422 naming the parameter.
    r = world.client.get(f"{V1}/models/m/stage-history?at=yesterday", headers=world.admin)
    assert_problem(r, 422)
    assert r.json()["field"] == "query.at"


def test_the_database_keeps_one_production_version_per_model(world: World):
    world.model("m", "minimal")
    v1, v2 = world.version("m"), world.version("m")
    db = world.server.services.db
    with db.write() as session:
        session.execute(
            text("UPDATE model_versions SET stage = 'production' WHERE version = :v"), {"v": v1}
        )
    with pytest.raises(Exception, match=r"(?i)unique"), db.write() as session:
        session.execute(
            text("UPDATE model_versions SET stage = 'production' WHERE version = :v"), {"v": v2}
        )


def test_transition_rules_of_the_stage_graph(world: World):
    world.model("m", "minimal")
    v = world.version("m")
    body = {"model": "m", "version": v, "reason": "skip ahead"}
    r = world.client.post(
        f"{V1}/transitions", json={**body, "to_stage": "production"}, headers=world.people["mm"]
    )
    assert_problem(r, 409, "cannot move to production", "allowed: archived, staging")
    assert r.json()["field"] == "to_stage"
    r = world.client.post(
        f"{V1}/transitions", json={**body, "to_stage": "development"}, headers=world.people["mm"]
    )
    assert_problem(r, 409, "in development already")
    # A data scientist may ask for staging, not for production or archiving.
    r = world.client.post(
        f"{V1}/transitions", json={**body, "to_stage": "archived"}, headers=world.people["ds"]
    )
    assert_problem(r, 403, "transition:request_production")
    # One pending request per version.
    world.request("m", v, "staging", who="ds")
    r = world.client.post(
        f"{V1}/transitions", json={**body, "to_stage": "archived"}, headers=world.people["mm"]
    )
    assert_problem(r, 409, "pending transition request already")
    # An archived version that never was in production does not come back.
    w = world.version("m")
    assert world.request("m", w, "archived")["status"] == "applied"
    r = world.client.post(
        f"{V1}/transitions",
        json={"model": "m", "version": w, "to_stage": "production", "reason": "r"},
        headers=world.people["mm"],
    )
    assert_problem(r, 409, "never in production")
    # Unknown model, version, stage and a missing reason: clear problems, nothing recorded.
    before = world.audit_size()
    for payload, status, where in (
        ({"model": "nope", "version": 1, "to_stage": "staging", "reason": "r"}, 404, None),
        ({"model": "m", "version": 99, "to_stage": "staging", "reason": "r"}, 404, None),
        ({"model": "m", "version": v, "to_stage": "live", "reason": "r"}, 422, "to_stage"),
        ({"model": "m", "version": v, "to_stage": "staging"}, 422, "reason"),
        ({"model": "m", "version": v, "to_stage": "staging", "reason": " "}, 422, "reason"),
    ):
        r = world.client.post(f"{V1}/transitions", json=payload, headers=world.people["mm"])
        assert r.status_code == status, (payload, r.text)
        assert r.headers["content-type"] == PROBLEM
        if where:
            assert r.json()["field"] == where
    assert world.audit_size() == before


def test_an_unacceptable_model_never_leaves_development(world: World):
    world.model("social-score", "unacceptable")
    v = world.version("social-score")
    before = world.audit_size()
    for stage in ("staging",):
        r = world.client.post(
            f"{V1}/transitions",
            json={"model": "social-score", "version": v, "to_stage": stage, "reason": "r"},
            headers=world.people["mm"],
        )
        assert_problem(r, 403, "unacceptable", "Article 5")
    assert world.audit_size() == before
    assert world.stage("social-score", v) == "development"
    # Withdrawing it stays possible.
    assert world.request("social-score", v, "archived")["status"] == "applied"


def test_raising_the_risk_tier_re_evaluates_pending_requests(world: World):
    world.model("m", "minimal")
    v = world.version("m")
    t = world.request("m", v, "staging", who="ds")
    assert unmet_ids(t) == ["evidence.performance"]
    r = world.client.patch(
        f"{V1}/models/m",
        json={"risk_tier": "high", "reason": "Annex III"},
        headers=world.people["ds"],
    )
    assert r.status_code == 200, r.text
    t = world.get(t["id"])
    assert t["evaluation"]["policy"]["name"] == "high"
    assert t["evaluation_at_request"]["policy"]["name"] == "minimal"
    assert {"evidence.reproducibility", "evidence.security_scan", "approvals.0"} <= set(
        unmet_ids(t)
    )
    world.evidence("m", v, "performance")
    assert world.get(t["id"])["status"] == "pending"
    # Lowering it needs an admin (and a reason); it re-evaluates too, and here that applies it.
    r = world.client.patch(
        f"{V1}/models/m", json={"risk_tier": "minimal", "reason": "r"}, headers=world.people["ds"]
    )
    assert_problem(r, 403, "model:risk_tier_lower")
    r = world.client.patch(
        f"{V1}/models/m", json={"risk_tier": "minimal", "reason": "reassessed"}, headers=world.admin
    )
    assert r.status_code == 200
    assert world.get(t["id"])["status"] == "applied"
    assert world.stage("m", v) == "staging"


# -- requests: cancel and reject -----------------------------------------------------------


def test_cancel_by_the_requester_only_and_reject_closes(world: World):
    assert world.policy("limited", STAGING_TWO_APPROVERS).status_code == 201
    world.model("m", "limited")
    v = world.version("m")
    t = world.request("m", v, "staging", who="ds")
    url = f"{V1}/transitions/{t['id']}/cancel"
    r = world.client.post(url, json={"reason": "not mine"}, headers=world.people["mm"])
    assert_problem(r, 403, "only the requester (ds)")
    r = world.client.post(url, json={}, headers=world.people["ds"])
    assert_problem(r, 422)
    r = world.client.post(url, json={"reason": "wrong data"}, headers=world.people["ds"])
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert r.json()["outcome"] == "cancelled: wrong data"
    assert_problem(world.decide(t["id"], "approve", "ap1"), 409, "is cancelled")
    assert_problem(
        world.client.post(url, json={"reason": "again"}, headers=world.people["ds"]), 409
    )

    t = world.request("m", v, "staging", who="ds")
    r = world.decide(t["id"], "reject", "ap1")
    assert r.status_code == 201
    assert r.json()["status"] == "rejected" and r.json()["outcome"].startswith("rejected by ap1")
    assert_problem(world.decide(t["id"], "approve", "ap2"), 409, "is rejected")
    assert world.stage("m", v) == "development"

    inbox = world.ok("GET", f"{V1}/transitions", world.people["ap1"], params={"status": "pending"})
    assert inbox["items"] == []
    everything = world.ok("GET", f"{V1}/transitions", world.people["ap1"], params={"model": "m"})
    assert [i["status"] for i in everything["items"]] == ["rejected", "cancelled"]
    assert_problem(world.client.get(f"{V1}/transitions/999999", headers=world.admin), 404)


# -- evidence ------------------------------------------------------------------------------


def test_evidence_is_immutable_hashed_and_audited(world: World):
    de = world.person("de", "data_engineer")
    world.ok(
        "POST", f"{V1}/datasets", de, 201, json={"name": "d", "owner_team": "x", "reason": "r"}
    )
    world.ok(
        "POST",
        f"{V1}/datasets/d/versions",
        de,
        201,
        json={
            "content_sha256": "cd" * 32,
            "uri": "file:///d.csv",
            "schema": [{"name": "a", "type": "int"}],
            "row_count": 3,
            "reason": "r",
        },
    )
    world.model("m", "limited")
    v = world.version("m")
    report = b"<html><body>AUC 0.81</body></html>"
    ev = world.evidence(
        "m",
        v,
        "performance",
        summary="Holdout performance.",
        suite={"name": "perf-suite", "version": "3", "definition": {"metrics": ["roc_auc"]}},
        dataset={"dataset": "d", "version": 1},
        results={"roc_auc": 0.81, "n": 2000},
        checks=[{"name": "roc_auc >= 0.75", "passed": True, "value": 0.81, "threshold": 0.75}],
        attachments=[
            {
                "name": "report.html",
                "media_type": "text/html",
                "content_base64": base64.b64encode(report).decode(),
            }
        ],
    )
    assert ev["dataset"] == "d@1" and ev["created_by"] == "val"
    assert ev["attachments"] == [
        {
            "name": "report.html",
            "media_type": "text/html",
            "size": len(report),
            "sha256": hashlib.sha256(report).hexdigest(),
        }
    ]
    # The content hash is the SHA-256 of the documented canonical form: anyone can recompute it.
    recomputed = evidence_document(
        model="m",
        version=v,
        kind=ev["kind"],
        passed=ev["passed"],
        summary=ev["summary"],
        suite=ev["suite"],
        dataset=ev["dataset"],
        results=ev["results"],
        checks=ev["checks"],
        attachments=ev["attachments"],
        created_by=ev["created_by"],
        created_at=datetime.fromisoformat(ev["created_at"].replace("Z", "+00:00")),
    )
    assert hashlib.sha256(recomputed).hexdigest() == ev["content_sha256"]
    event = world.events("evidence.create")[-1]
    assert event["target"] == f"model/m/versions/{v}/evidence/{ev['id']}"
    assert event["details"]["content_sha256"] == ev["content_sha256"]
    listed = world.ok(
        "GET", f"{V1}/models/m/versions/{v}/evidence", world.person("viewer", "viewer")
    )
    assert [e["id"] for e in listed if e["source"] == "api"] == [ev["id"]]
    assert [e["kind"] for e in listed if e["source"] == "scan"] == ["security_scan"]
    r = world.client.get(
        f"{V1}/models/m/versions/{v}/evidence/{ev['id']}/attachments/report.html",
        headers=world.people["val"],
    )
    assert r.status_code == 200 and r.content == report
    assert r.headers["x-content-sha256"] == hashlib.sha256(report).hexdigest()
    assert (
        world.client.get(
            f"{V1}/models/m/versions/{v}/evidence/{ev['id']}/attachments/other.html",
            headers=world.people["val"],
        ).status_code
        == 404
    )

    # The database refuses to change or delete evidence, decisions and stage history.
    db = world.server.services.db
    for statement in (
        "UPDATE evidence SET passed = false",
        "DELETE FROM evidence",
        "UPDATE stage_changes SET to_stage = 'production'",
        "DELETE FROM stage_changes",
        "UPDATE policies SET document = ''",
    ):
        with pytest.raises(Exception, match="append-only"), db.write() as session:
            session.execute(text(statement))


def test_bad_evidence_is_refused_naming_the_field_and_storing_nothing(world: World):
    world.model("m", "limited")
    v = world.version("m")
    url = f"{V1}/models/m/versions/{v}/evidence"
    good = {"kind": "performance", "passed": True, "reason": "r"}
    before = (world.audit_size(), world.count(Evidence))
    for body, status, where in (
        ({**good, "kind": "Not A Kind"}, 422, "kind"),
        ({**good, "reason": ""}, 422, "reason"),
        ({**good, "passed": "maybe"}, 422, "passed"),
        ({**good, "checks": [{"name": "auc", "passed": False}]}, 422, None),
        ({**good, "dataset": {"dataset": "nope", "version": 1}}, 422, "dataset"),
        ({**good, "results": {"auc": float("nan")}}, 422, None),
        (
            {**good, "attachments": [{"name": "a.txt", "content_base64": "%%%"}]},
            422,
            "attachments[0].content_base64",
        ),
        (
            {**good, "attachments": [{"name": "../etc/passwd", "content_base64": ""}]},
            422,
            "attachments[0].name",
        ),
        ({**good, "unknown": 1}, 422, "unknown"),
    ):
        try:
            r = world.client.post(url, json=body, headers=world.people["val"])
        except ValueError:  # NaN cannot even be sent as JSON by the client
            continue
        assert r.status_code == status, (body, r.text)
        assert r.headers["content-type"] == PROBLEM
        if where:
            assert r.json()["field"] == where, (body, r.json())
    r = world.client.post(
        f"{V1}/models/m/versions/99/evidence", json=good, headers=world.people["val"]
    )
    assert_problem(r, 404)
    assert (world.audit_size(), world.count(Evidence)) == before


# -- policies ------------------------------------------------------------------------------


def test_built_in_packs_are_installed_versioned_and_validated(world: World):
    policies = world.ok("GET", f"{V1}/policies", world.person("viewer", "viewer"))
    assert [(p["name"], p["version"]) for p in policies] == [
        ("high", 1),
        ("limited", 1),
        ("minimal", 1),
        ("unacceptable", 1),
    ]
    high = next(p for p in policies if p["name"] == "high")
    production = high["rules"]["stages"]["production"]
    assert set(production["evidence"]) == {
        "performance",
        "fairness",
        "explainability",
        "robustness",
        "reproducibility",
        "security_scan",
        "ethics_review",
    }
    assert production["approvals"] == [{"count": 2, "roles": ["approver"]}]
    assert high["created_by"] == "system"
    assert hashlib.sha256(high["document"].encode()).hexdigest() == high["sha256"]

    before = world.audit_size()
    for document, status, where in (
        ("policy: [unclosed", 422, "document"),
        ("- a list", 422, "document"),
        ("policy: high\n", 422, "document.policy"),
        ("policy: limited\nstages: {live: {}}\n", 422, "document.stages.live"),
        (
            "policy: limited\nstages: {staging: {approvals: [{count: 0, roles: [approver]}]}}\n",
            422,
            "document.stages.staging.approvals[0].count",
        ),
        (
            "policy: limited\nstages: {staging: {approvals: [{count: 1, roles: [boss]}]}}\n",
            422,
            "document.stages.staging.approvals[0].roles[0]",
        ),
        (
            "policy: limited\nstages: {staging: {documentation: [model.colour]}}\n",
            422,
            "document.stages.staging.documentation[0]",
        ),
    ):
        r = world.policy("limited", document)
        assert r.status_code == status, (document, r.text)
        assert r.json()["field"] == where, (document, r.json())
    limited = world.ok("GET", f"{V1}/policies/limited", world.admin)
    r = world.policy("limited", limited["document"])
    assert_problem(r, 409, "(version 1) already")
    assert (
        world.client.post(
            f"{V1}/policies/extreme/versions",
            json={"document": "x", "reason": "r"},
            headers=world.admin,
        ).status_code
        == 422
    )
    assert world.audit_size() == before

    assert world.policy("limited", STAGING_TWO_APPROVERS).status_code == 201
    current = world.ok("GET", f"{V1}/policies/limited", world.admin)
    assert current["version"] == 2 and current["versions"] == [1, 2]
    first = world.ok("GET", f"{V1}/policies/limited?version=1", world.admin)
    assert first["document"] == limited["document"]
    assert (
        world.client.get(f"{V1}/policies/limited?version=7", headers=world.admin).status_code == 404
    )


def test_publishing_a_policy_re_evaluates_pending_requests(world: World):
    assert world.policy("limited", STAGING_TWO_APPROVERS).status_code == 201
    world.model("m", "limited")
    v = world.version("m")
    world.evidence("m", v, "performance")
    t = world.request("m", v, "staging", who="ds")
    assert unmet_ids(t) == ["approvals.0"]
    one = STAGING_TWO_APPROVERS.replace("count: 2", "count: 1")
    assert world.policy("limited", one).status_code == 201
    assert world.decide(t["id"], "approve", "ap1").json()["status"] == "applied"


# -- webhooks: the outbox of governance events ---------------------------------------------


def test_governance_events_are_queued_for_subscribers_in_the_same_transaction(world: World):
    body = {
        "name": "gov-feed",
        "url": "http://127.0.0.1:9/nothing-listens-here",
        "events": ["transition.requested", "transition.applied", "evidence.added"],
        "reason": "notify the risk office",
    }
    world.ok("POST", f"{V1}/webhooks", world.admin, 201, json=body)
    world.model("m", "minimal")
    v = world.version("m")
    world.evidence("m", v, "performance")
    t = world.request("m", v, "staging", who="ds")
    assert t["status"] == "applied"  # a receiver that is down blocks nothing
    deliveries = world.ok("GET", f"{V1}/webhooks/gov-feed/deliveries", world.admin)["items"]
    types = sorted(d["event_type"] for d in deliveries)
    # Evidence twice: the scan recorded at registration, and the performance record.
    assert types == [
        "evidence.added",
        "evidence.added",
        "transition.applied",
        "transition.requested",
    ]
    sources = sorted(
        d["payload"]["data"]["source"] for d in deliveries if d["event_type"] == "evidence.added"
    )
    assert sources == ["api", "scan"]
    assert all(d["status"] == "pending" for d in deliveries)
    applied = next(d for d in deliveries if d["event_type"] == "transition.applied")
    assert applied["payload"]["type"] == "transition.applied"
    assert applied["payload"]["data"]["transition_id"] == t["id"]
    assert applied["payload"]["data"]["to_stage"] == "staging"

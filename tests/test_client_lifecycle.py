"""The SDK's lifecycle methods against a real server (uvicorn on 127.0.0.1 in a thread), on
SQLite and, with ``MLGOV_TEST_DATABASE_URL``, PostgreSQL: transition requests gated by the
risk-tier policies, evidence with attachments, decisions under separation of duties, rollback,
the stage history, policies and webhooks.

The helpers (``serve_live``, ``make_team``, ``register_limited``, ``to_staging``, ``receiver``,
…) are shared with test_cli_lifecycle.py."""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mlgov import Client, Conflict, InvalidInput, NotFound, PermissionDenied
from mlgov.config import Settings
from test_client import Live, serve_live

SIGNATURE = {"inputs": [{"name": "age", "type": "integer"}]}
LOANS = {
    "content_sha256": "a" * 64,
    "uri": "s3://lake/loans.parquet",
    "schema": [{"name": "age", "type": "integer"}],
    "row_count": 1000,
}


# ------------------------------------------------------------------------------ helpers


def admin_token(live: Live) -> str:
    token = live.settings.bootstrap_admin_token
    assert token is not None
    return token


def add_person(admin: Client, name: str, *roles: str) -> str:
    """Create ``name`` holding ``roles``; return a token of theirs."""
    admin.create_user(name, list(roles), reason="test user")
    return str(admin.create_token(name, "test", reason="test token")["token"])


def register_limited(admin: Client, ds: Client, name: str, tmp_path: Path, **fields: str) -> None:
    """A limited-risk model, owned by team risk, and version 1 registered by ``ds``."""
    admin.create_model(name, "risk", "limited", reason=f"register {name}", **fields)
    add_version(ds, name, tmp_path)


def add_version(ds: Client, name: str, tmp_path: Path) -> int:
    artifact = tmp_path / f"{name}-{os.urandom(4).hex()}.skops"
    artifact.write_bytes(os.urandom(2000))
    made = ds.create_version(name, artifact, format="other", signature=SIGNATURE, reason="fit")
    return int(made["version"])


@dataclass
class Receiver:
    """Webhook deliveries received: (headers, body) each."""

    url: str
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@contextmanager
def receiver() -> Iterator[Receiver]:
    """An HTTP server on 127.0.0.1 that answers 204 to every POST and keeps what it got."""
    got = Receiver(url="")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            got.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    got.url = f"http://127.0.0.1:{httpd.server_address[1]}/hooks/mlgov"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield got
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def unmet_ids(transition: dict[str, object]) -> list[str]:
    evaluation = transition["evaluation"]
    assert isinstance(evaluation, dict)
    return [r["id"] for r in evaluation["requirements"] if not r["met"]]


# ----------------------------------------------------------------------------- fixtures


@dataclass
class Team:
    """The people of a scenario, each with a client; ``tokens`` by user name."""

    admin: Client
    ds: Client  # dana, data_scientist: registers versions, asks for staging
    validator: Client  # val: records evidence
    manager: Client  # mia, model_manager: asks for production
    approver: Client  # ada
    boss: Client  # bo, model_manager and approver
    tokens: dict[str, str]

    def close(self) -> None:
        people = (self.admin, self.ds, self.validator, self.manager, self.approver, self.boss)
        for client in people:
            client.close()


@contextmanager
def make_team(live: Live) -> Iterator[Team]:
    tokens = {"admin": admin_token(live)}
    admin = Client(live.url, tokens["admin"])

    def person(name: str, *roles: str) -> Client:
        tokens[name] = add_person(admin, name, *roles)
        return Client(live.url, tokens[name])

    crew = Team(
        admin=admin,
        ds=person("dana", "data_scientist"),
        validator=person("val", "validator"),
        manager=person("mia", "model_manager"),
        approver=person("ada", "approver"),
        boss=person("bo", "model_manager", "approver"),
        tokens=tokens,
    )
    try:
        yield crew
    finally:
        crew.close()


@pytest.fixture
def live(settings: Settings) -> Iterator[Live]:
    with serve_live(settings) as server:
        yield server


@pytest.fixture
def team(live: Live) -> Iterator[Team]:
    with make_team(live) as crew:
        yield crew


def evidence(team: Team, model: str, version: int, *kinds: str) -> None:
    for kind in kinds:
        team.validator.add_evidence(model, version, kind, True, reason=f"{kind} checked")


def to_staging(team: Team, model: str, version: int) -> None:
    evidence(team, model, version, "performance", "security_scan")
    applied = team.ds.request_transition(model, version, "staging", "ready for staging")
    assert applied["status"] == "applied"


def to_production(team: Team, model: str, version: int) -> dict[str, object]:
    evidence(team, model, version, "robustness")
    request = team.manager.request_transition(model, version, "production", "go live")
    assert request["status"] == "pending" and unmet_ids(request) == ["approvals.0"]
    return team.approver.approve(request["id"], "signed off")


# -------------------------------------------------------------------------------- tests


def test_staging_waits_for_evidence_and_applies_when_it_is_recorded(team: Team, tmp_path: Path):
    register_limited(team.admin, team.ds, "credit", tmp_path)
    team.admin.create_dataset("loans", "data", reason="holdout data")
    team.admin.create_dataset_version("loans", reason="snapshot", **LOANS)

    request = team.ds.request_transition("credit", 1, "staging", "ready for staging")
    assert request["status"] == "pending" and request["requested_by"] == "dana"
    assert (request["from_stage"], request["to_stage"], request["rollback"]) == (
        "development",
        "staging",
        False,
    )
    assert request["evaluation"]["policy"]["name"] == "limited"
    assert unmet_ids(request) == ["evidence.performance", "evidence.security_scan"]
    # The registration's scan could not examine an artifact of format "other": not passed.
    [registration_scan] = team.approver.list_evidence("credit", 1, kind="security_scan")
    assert registration_scan["source"] == "scan" and not registration_scan["passed"]
    assert request["evaluation"]["unmet"] == [
        "no performance evidence recorded",
        f"the latest security_scan evidence (#{registration_scan['id']}) failed",
    ]

    # Who may not record evidence: a data scientist (permission), the version's creator (SoD).
    with pytest.raises(PermissionDenied):
        team.ds.add_evidence("credit", 1, "performance", True, reason="my own numbers")
    team.admin.create_model("own", "risk", "limited", reason="admin's model")
    add_version(team.admin, "own", tmp_path)
    with pytest.raises(PermissionDenied, match="separation of duties: admin created version 1"):
        team.admin.add_evidence("own", 1, "performance", True, reason="self-certified")

    report = tmp_path / "holdout-report.bin"
    report.write_bytes(os.urandom(5000))
    perf = team.validator.add_evidence(
        "credit",
        1,
        "performance",
        True,
        reason="holdout evaluation",
        results={"auc": 0.83},
        checks=[{"name": "auc", "passed": True, "value": 0.83, "threshold": 0.75}],
        summary="AUC above the bar",
        suite="holdout@2",
        dataset="loans@1",
        attachments=[report],
    )
    assert perf["created_by"] == "val" and perf["dataset"] == "loans@1"
    assert perf["suite"] == {"name": "holdout", "version": "2", "definition": {}}
    assert perf["checks"][0]["threshold"] == 0.75 and perf["results"] == {"auc": 0.83}
    (attached,) = perf["attachments"]
    assert attached["name"] == "holdout-report.bin" and attached["size"] == 5000
    assert attached["sha256"] == hashlib.sha256(report.read_bytes()).hexdigest()
    assert unmet_ids(team.ds.get_transition(request["id"])) == ["evidence.security_scan"]

    scan = team.validator.add_evidence(
        "credit", 1, "security_scan", True, reason="scan clean", dataset=("loans", 1)
    )
    assert scan["dataset"] == "loans@1"
    applied = team.ds.get_transition(request["id"])
    assert applied["status"] == "applied" and applied["closed_by"] == "val"
    assert applied["evaluation"]["met"] and not applied["evaluation_at_request"]["met"]
    assert team.ds.get_version("credit", 1)["stage"] == "staging"

    # the attachment comes back byte for byte, into a file or a directory
    dest = tmp_path / "downloaded.bin"
    got = team.approver.download_evidence_attachment(
        "credit", 1, perf["id"], "holdout-report.bin", dest
    )
    assert dest.read_bytes() == report.read_bytes()
    assert got == {"path": str(dest), "sha256": attached["sha256"], "size": 5000}
    into = tmp_path / "into"
    into.mkdir()
    team.approver.download_evidence_attachment("credit", 1, perf["id"], report.name, into)
    assert (into / report.name).read_bytes() == report.read_bytes()
    with pytest.raises(NotFound, match=r"no attachment named 'other\.bin'"):
        team.approver.download_evidence_attachment("credit", 1, perf["id"], "other.bin", into)
    assert sorted(p.name for p in into.iterdir()) == [report.name]

    kinds = [e["kind"] for e in team.approver.list_evidence("credit", 1)]
    assert kinds == ["security_scan", "performance", "security_scan"]
    assert [e["id"] for e in team.approver.list_evidence("credit", 1, kind="security_scan")] == [
        registration_scan["id"],
        scan["id"],
    ]
    with pytest.raises(ValueError, match="NAME@VERSION"):
        team.validator.add_evidence("credit", 1, "fairness", True, "r", dataset="loans")


def test_production_needs_robustness_documentation_and_an_approver(team: Team, tmp_path: Path):
    register_limited(team.admin, team.ds, "credit", tmp_path)
    to_staging(team, "credit", 1)
    staged_at = datetime.now(UTC)

    with pytest.raises(PermissionDenied):  # production is a model manager's call
        team.ds.request_transition("credit", 1, "production", "ship it")
    request = team.manager.request_transition("credit", 1, "production", "go live")
    assert request["status"] == "pending"
    assert unmet_ids(request) == [
        "evidence.robustness",
        "documentation.model.description",
        "documentation.model.intended_use",
        "approvals.0",
    ]
    with pytest.raises(Conflict, match="pending transition request already"):
        team.boss.request_transition("credit", 1, "production", "again")

    evidence(team, "credit", 1, "robustness")
    team.ds.update_model(
        "credit",
        "model card",
        description="Scores consumer loan applications",
        intended_use="consumer loans up to 50k EUR",
    )
    pending = team.manager.get_transition(request["id"])
    assert pending["status"] == "pending" and unmet_ids(pending) == ["approvals.0"]
    assert pending["evaluation"]["unmet"] == ["needs 1 more: 0 of 1 approval from approver"]

    with pytest.raises(PermissionDenied):  # a model manager decides nothing
        team.manager.approve(request["id"], "my own request")
    with pytest.raises(PermissionDenied):
        team.ds.approve(request["id"], "my own version")
    approved = team.approver.approve(request["id"], "model card and evidence reviewed")
    assert approved["status"] == "applied" and approved["closed_by"] == "ada"
    (decision,) = approved["decisions"]
    assert decision["decision"] == "approve" and decision["actor"] == "ada"
    assert decision["roles"] == ["approver"]
    assert decision["comment"] == "model card and evidence reviewed"
    assert team.ds.get_version("credit", 1)["stage"] == "production"
    with pytest.raises(Conflict, match="is applied"):
        team.boss.approve(request["id"], "late")

    then = team.ds.stage_history("credit", at=staged_at)
    assert then["production"] is None
    assert [(s["version"], s["stage"]) for s in then["stages"]] == [(1, "staging")]
    assert [c["to_stage"] for c in then["changes"]] == ["development", "staging"]
    now = team.ds.stage_history("credit")
    assert now["production"] == 1 and now["at"] is None
    assert [(c["to_stage"], c["actor"], c["transition_id"]) for c in now["changes"]] == [
        ("development", "dana", None),
        ("staging", "dana", 1),  # applied at once: the evidence was there
        ("production", "ada", request["id"]),
    ]
    as_text = team.ds.stage_history("credit", at=staged_at.isoformat())
    assert as_text["stages"] == then["stages"]


def test_self_approval_is_refused_by_separation_of_duties(team: Team, tmp_path: Path):
    register_limited(team.admin, team.ds, "credit", tmp_path, description="d", intended_use="loans")
    to_staging(team, "credit", 1)
    evidence(team, "credit", 1, "robustness")
    request = team.boss.request_transition("credit", 1, "production", "go live")
    with pytest.raises(PermissionDenied) as refused:
        team.boss.approve(request["id"], "looks fine to me")
    assert refused.value.status == 403
    assert refused.value.detail == (
        "separation of duties: bo requested this transition and cannot approve it"
    )
    assert team.boss.get_transition(request["id"])["decisions"] == []
    assert team.approver.approve(request["id"], "reviewed")["status"] == "applied"


def test_reject_and_cancel(team: Team, tmp_path: Path):
    register_limited(team.admin, team.ds, "credit", tmp_path)
    first = team.ds.request_transition("credit", 1, "staging", "try")
    rejected = team.validator.reject(first["id"], "no test report yet")
    assert rejected["status"] == "rejected"
    assert rejected["outcome"] == "rejected by val: no test report yet"
    assert rejected["decisions"][0]["decision"] == "reject"
    with pytest.raises(Conflict, match="is rejected"):
        team.validator.reject(first["id"], "twice")

    second = team.ds.request_transition("credit", 1, "staging", "now with a plan")
    with pytest.raises(PermissionDenied, match=r"only the requester \(dana\)"):
        team.manager.cancel_transition(second["id"], "not yours")
    cancelled = team.ds.cancel_transition(second["id"], "wrong version")
    assert cancelled["status"] == "cancelled" and cancelled["outcome"] == "cancelled: wrong version"
    with pytest.raises(Conflict, match="is cancelled"):
        team.ds.cancel_transition(second["id"], "again")
    assert team.ds.get_version("credit", 1)["stage"] == "development"
    with pytest.raises(NotFound, match="no transition request #999"):
        team.ds.get_transition(999)


def test_reject_by_the_requester_is_a_conflict(team: Team, tmp_path: Path):
    register_limited(team.admin, team.ds, "credit", tmp_path, description="d", intended_use="loans")
    to_staging(team, "credit", 1)
    request = team.boss.request_transition("credit", 1, "production", "go live")
    with pytest.raises(Conflict, match="bo requested this transition: cancel it instead"):
        team.boss.reject(request["id"], "changed my mind")
    assert team.approver.reject(request["id"], "robustness missing")["status"] == "rejected"


def test_rollback_brings_back_the_version_in_production_before(team: Team, tmp_path: Path):
    register_limited(team.admin, team.ds, "credit", tmp_path, description="d", intended_use="loans")
    with pytest.raises(NotFound, match="nothing to roll back to") as nothing:
        team.manager.rollback("credit", "v2 misbehaves")
    assert nothing.value.title == "Nothing to roll back"

    to_staging(team, "credit", 1)
    assert to_production(team, "credit", 1)["status"] == "applied"
    add_version(team.ds, "credit", tmp_path)
    to_staging(team, "credit", 2)
    assert to_production(team, "credit", 2)["status"] == "applied"
    assert team.ds.get_version("credit", 1)["stage"] == "archived"

    back = team.manager.rollback("credit", "v2 misbehaves")
    assert (back["version"], back["rollback"], back["to_stage"]) == (1, True, "production")
    assert back["status"] == "pending" and back["evaluation"]["stage"] == "rollback"
    assert unmet_ids(back) == ["approvals.0"]
    assert team.approver.approve(back["id"], "roll back")["status"] == "applied"
    history = team.ds.stage_history("credit")
    assert history["production"] == 1
    assert {s["version"]: s["stage"] for s in history["stages"]} == {1: "production", 2: "archived"}

    # and back again: now version 2 is the newest archived one that was in production
    again = team.manager.rollback("credit", "v1 was worse")
    assert again["version"] == 2 and again["rollback"]


def test_transitions_list_filters_and_follows_pages(team: Team, tmp_path: Path):
    for name in ("alpha", "beta"):
        register_limited(team.admin, team.ds, name, tmp_path)
        add_version(team.ds, name, tmp_path)
    ids = [
        team.ds.request_transition(name, version, "staging", "try")["id"]
        for name in ("alpha", "beta")
        for version in (1, 2)
    ]
    team.ds.cancel_transition(ids[0], "not this one")
    everything = list(team.admin.list_transitions(limit=1))
    assert [t["id"] for t in everything] == ids[::-1]
    pending = list(team.admin.list_transitions(status="pending", limit=2))
    assert [t["id"] for t in pending] == ids[:0:-1]
    assert [t["id"] for t in team.admin.list_transitions(model="alpha")] == ids[1::-1]
    assert [t["status"] for t in team.admin.list_transitions(status="cancelled")] == ["cancelled"]
    page = team.admin.transitions_page(limit=3)
    assert len(page["items"]) == 3 and page["next_cursor"]
    rest = team.admin.transitions_page(limit=3, cursor=page["next_cursor"])
    assert [t["id"] for t in rest["items"]] == [ids[0]] and rest["next_cursor"] is None
    assert list(team.admin.list_transitions(model="gamma")) == []  # a filter matching nothing
    with pytest.raises(InvalidInput):
        list(team.admin.list_transitions(status="stuck"))


def test_policies_list_show_and_publish(team: Team, tmp_path: Path):
    policies = team.ds.list_policies()
    assert [p["name"] for p in policies] == ["high", "limited", "minimal", "unacceptable"]
    assert all(p["version"] == 1 and p["created_by"] == "system" for p in policies)
    limited = team.ds.get_policy("limited")
    assert limited["rules"]["stages"]["staging"]["evidence"] == ["performance", "security_scan"]
    assert limited["sha256"] == hashlib.sha256(limited["document"].encode()).hexdigest()

    # A pending request with only performance evidence...
    register_limited(team.admin, team.ds, "credit", tmp_path)
    evidence(team, "credit", 1, "performance")
    request = team.ds.request_transition("credit", 1, "staging", "ready")
    assert unmet_ids(request) == ["evidence.security_scan"]

    relaxed = limited["document"].replace(
        "evidence: [performance, security_scan]", "evidence: [performance]"
    )
    assert relaxed != limited["document"]
    with pytest.raises(PermissionDenied):
        team.boss.publish_policy("limited", relaxed, "scans move to production")
    published = team.admin.publish_policy("limited", relaxed, "scans move to production")
    assert published["version"] == 2 and published["versions"] == [1, 2]
    assert published["created_by"] == "admin"
    # ...is evaluated again under the new version, and applied.
    now = team.ds.get_transition(request["id"])
    assert now["status"] == "applied" and now["evaluation"]["policy"]["version"] == 2
    assert team.ds.get_policy("limited", version=1)["document"] == limited["document"]
    assert team.ds.get_policy("limited")["document"] == relaxed

    with pytest.raises(Conflict, match="current 'limited' policy"):
        team.admin.publish_policy("limited", relaxed, "again")
    with pytest.raises(InvalidInput) as bad:
        team.admin.publish_policy("limited", "policy: limited\nstages: [oops\n", "typo")
    assert bad.value.field == "document"
    with pytest.raises(InvalidInput, match="not 'minimal'"):
        team.admin.publish_policy("minimal", relaxed, "wrong tier")
    with pytest.raises(NotFound, match="version 9"):
        team.ds.get_policy("limited", version=9)


def test_webhooks(team: Team, tmp_path: Path):
    # Registered before the subscription: its scan's evidence.added is for nobody.
    register_limited(team.admin, team.ds, "credit", tmp_path)
    with pytest.raises(PermissionDenied):
        team.boss.create_webhook("ci", "https://ci.example/hook", ["evidence.added"], "ci")
    created = team.admin.create_webhook(
        "ci",
        "https://ci.example/hook",
        ["evidence.added", "transition.applied"],
        "notify CI",
        description="the CI system",
    )
    assert created["secret"].startswith("whsec_") and created["active"]
    assert created["events"] == ["evidence.added", "transition.applied"]
    listed = team.admin.list_webhooks()
    assert [w["name"] for w in listed] == ["ci"] and "secret" not in listed[0]
    assert team.admin.get_webhook("ci")["description"] == "the CI system"
    with pytest.raises(InvalidInput) as bad:
        team.admin.create_webhook("bad", "ftp://x.example", ["evidence.added"], "r")
    assert bad.value.field == "url"

    evidence(team, "credit", 1, "performance")
    (delivery,) = team.admin.webhook_deliveries("ci")
    assert delivery["event_type"] == "evidence.added" and delivery["status"] == "pending"
    assert delivery["payload"]["data"]["kind"] == "performance"
    assert list(team.admin.webhook_deliveries("ci", status="delivered")) == []

    removed = team.admin.delete_webhook("ci", "CI retired")
    assert removed["active"] is False and removed["disabled_at"]
    (failed,) = team.admin.webhook_deliveries("ci", status="failed")
    assert failed["last_error"] == "subscription removed"
    with pytest.raises(Conflict, match="removed already"):
        team.admin.delete_webhook("ci", "twice")
    with pytest.raises(NotFound):
        team.admin.get_webhook("nope")

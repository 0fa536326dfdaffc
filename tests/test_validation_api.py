"""Evidence the server computes, end to end through the real API, the real worker and real
sandboxed child processes, on SQLite and PostgreSQL: the scan at registration, suites, runs,
their evidence feeding the gates, and every refusal and failure mode."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
import re
import threading
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sqlalchemy import func, select

from mlgov.audit.models import AuditEvent
from mlgov.config import Settings
from mlgov.errors import Conflict
from mlgov.lifecycle.models import Evidence
from mlgov.lifecycle.service import evidence_document
from mlgov.registry.models import ModelVersion
from mlgov.server import Server, validation_runner
from mlgov.validation.models import ValidationJob
from mlgov.validation.runner import RunnerLimits
from mlgov.validation.service import MAX_ATTEMPTS

V1 = "/api/v1"
PROBLEM = "application/problem+json"
FEATURES = ("income", "debt_ratio", "age")
SIGNATURE = {"inputs": [{"name": f, "type": "double"} for f in FEATURES]}
SUITE = """
label: default
task: classification
checks:
  performance:
    metrics:
      roc_auc: {min: %(min_auc)s}
      accuracy: {}
    bootstrap: {samples: 20, seed: 1}
  fairness:
    sensitive_features: [age_band]
    metrics: [selection_rate]
    thresholds:
      demographic_parity_difference: {max: 1.0}
  reproducibility:
    sample_rows: 100
  explainability:
    permutation: {n_repeats: 2, max_rows: 300, scoring: roc_auc}
    shap: {max_rows: 100, required: true}
"""


# -- a small, real credit dataset and model ------------------------------------------------------


def credit_rows(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    income = rng.lognormal(10.5, 0.4, n)
    debt_ratio = rng.uniform(0, 1, n)
    age = rng.integers(18, 80, n).astype(float)
    logit = -1.0 + 2.5 * debt_ratio - 0.8 * (np.log(income) - 10.5) - 0.01 * (age - 45)
    default = (rng.uniform(0, 1, n) < 1 / (1 + np.exp(-logit))).astype(int)
    band = np.where(age < 40, "18-39", np.where(age < 60, "40-59", "60+"))
    return {
        "income": income,
        "debt_ratio": debt_ratio,
        "age": age,
        "age_band": band,
        "default": default,
    }


def to_csv(rows: dict[str, np.ndarray]) -> bytes:
    names = list(rows)
    lines = [",".join(names)]
    for i in range(len(rows[names[0]])):
        lines.append(",".join(str(rows[n][i]) for n in names))
    return ("\n".join(lines) + "\n").encode()


def matrix(rows: dict[str, np.ndarray]) -> np.ndarray:
    return np.column_stack([rows[f] for f in FEATURES])


def fitted(rows: dict[str, np.ndarray], c: float = 1.0) -> Any:
    import pandas as pd

    X = pd.DataFrame({f: rows[f] for f in FEATURES})
    return make_pipeline(StandardScaler(), LogisticRegression(C=c)).fit(X, rows["default"])


class RunawayModel:
    """Unpickled, it would run ``os.system``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        import os

        return (os.system, (f"touch {self.marker}",))


@dataclasses.dataclass
class Lab:
    client: Any
    server: Server
    admin: dict[str, str]
    people: dict[str, dict[str, str]]
    data_dir: Path

    def ok(self, method: str, url: str, who: str, status: int = 200, **kw: Any) -> Any:
        r = self.client.request(method, url, headers=self.people[who], **kw)
        assert r.status_code == status, f"{method} {url}: {r.status_code} {r.text}"
        return r.json()

    def model(self, name: str, tier: str = "limited") -> None:
        body = {"name": name, "owner_team": "risk", "risk_tier": tier, "reason": "new model"}
        self.ok("POST", f"{V1}/models", "ds", 201, json=body)

    def upload(
        self, model: str, blob: bytes, fmt: str = "skops", who: str = "ds", **meta: Any
    ) -> Any:
        body = {
            "format": fmt,
            "signature": SIGNATURE,
            "reason": "trained",
            "code_ref": {"repository": "https://git.example.com/credit", "commit": "a1b2c3d4e5f6"},
            "environment": {"python": "3.11.7", "packages": {"scikit-learn": "1.7"}},
            **meta,
        }
        files = {"artifact": (f"m.{fmt}", blob), "metadata": (None, json.dumps(body))}
        return self.client.post(
            f"{V1}/models/{model}/versions", files=files, headers=self.people[who]
        )

    def version(self, model: str, estimator: Any, **meta: Any) -> int:
        r = self.upload(model, skops.io.dumps(estimator, compression=zipfile.ZIP_DEFLATED), **meta)
        assert r.status_code == 201, r.text
        return int(r.json()["version"])

    def dataset(self, name: str, rows: dict[str, np.ndarray], *, upload: bool = True) -> bytes:
        data = to_csv(rows)
        path = self.data_dir / f"{name}.csv"
        path.write_bytes(data)
        self.ok(
            "POST",
            f"{V1}/datasets",
            "de",
            201,
            json={"name": name, "owner_team": "data", "reason": "new"},
        )
        body = {
            "content_sha256": hashlib.sha256(data).hexdigest(),
            "uri": path.as_uri(),
            "schema": [{"name": n, "type": "double"} for n in rows],
            "row_count": len(rows["default"]),
            "reason": "extract",
        }
        self.ok("POST", f"{V1}/datasets/{name}/versions", "de", 201, json=body)
        if upload:
            self.ok(
                "PUT",
                f"{V1}/datasets/{name}/versions/1/data",
                "de",
                params={"format": "csv", "reason": "for validation"},
                content=data,
            )
        return data

    def suite(self, name: str, min_auc: float = 0.6, who: str = "val") -> Any:
        body = {"document": SUITE % {"min_auc": min_auc}, "reason": "validation standard"}
        return self.ok("POST", f"{V1}/suites/{name}/versions", who, 201, json=body)

    def validate(self, model: str, version: int, suite: str, dataset: str, who: str = "val") -> Any:
        body = {"suite": suite, "dataset": {"dataset": dataset, "version": 1}, "reason": "check"}
        url = f"{V1}/models/{model}/versions/{version}/validations"
        return self.client.post(url, json=body, headers=self.people[who])

    def run(self, limits: RunnerLimits | None = None) -> int:
        runner = validation_runner(self.server.services, name="test-worker")
        if limits is not None:
            runner.limits = limits
        return runner.run_once()

    def job(self, job_id: int) -> Any:
        return self.ok("GET", f"{V1}/validations/{job_id}", "val")

    def count(self, table: type) -> int:
        with self.server.services.db.read() as session:
            return int(session.execute(select(func.count()).select_from(table)).scalar_one())


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Real models are larger than the registry tests' dummy bytes."""
    return dataclasses.replace(settings, max_artifact_bytes=8 * 1024**2)


@pytest.fixture
def lab(client, server, admin, make_user, settings) -> Lab:
    people = {"admin": admin}
    for name, role in [
        ("ds", "data_scientist"),
        ("de", "data_engineer"),
        ("val", "validator"),
        ("mm", "model_manager"),
        ("ap", "approver"),
    ]:
        people[name] = make_user(role, name=name).headers
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return Lab(client, server, admin, people, settings.data_dir)


def stored_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def problem(r: Any, status: int, *words: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    for word in words:
        assert word in body["detail"], body["detail"]
    return dict(body)


# -- the scan at registration ---------------------------------------------------------------------


def test_a_malicious_pickle_is_refused_at_upload_and_never_executed(lab: Lab, tmp_path: Path):
    lab.model("credit")
    marker = tmp_path / "pwned"
    blob = pickle.dumps(RunawayModel(marker))
    store_root = lab.data_dir / "artifacts"
    before = (lab.count(ModelVersion), lab.count(AuditEvent), stored_files(store_root))

    r = lab.upload("credit", blob, fmt="pickle")
    body = problem(r, 422, "system")
    assert body["field"] == "artifact"
    # Even where an administrator allows pickle, a dangerous import is refused.
    policy = "policy: limited\nartifacts: {allow_pickle: true}\n"
    r2 = lab.client.post(
        f"{V1}/policies/limited/versions",
        headers=lab.admin,
        json={"document": policy, "reason": "legacy models"},
    )
    assert r2.status_code == 201, r2.text
    before = (lab.count(ModelVersion), lab.count(AuditEvent), stored_files(store_root))
    problem(lab.upload("credit", blob, fmt="pickle"), 422, "system")
    # Disguised as another format, it is refused too.
    problem(lab.upload("credit", blob, fmt="other"), 422, "system")

    assert not marker.exists()
    after = (lab.count(ModelVersion), lab.count(AuditEvent), stored_files(store_root))
    assert after == before  # nothing stored, nothing recorded
    assert not list((lab.data_dir / "tmp" / "scan").glob("*"))  # the scan copy is gone


def test_plain_pickle_is_refused_unless_an_admin_policy_allows_it(lab: Lab, tmp_path: Path):
    lab.model("legacy")
    rows = credit_rows(300, 1)
    blob = pickle.dumps(fitted(rows))
    problem(lab.upload("legacy", blob, fmt="pickle"), 422, "allow_pickle")

    # A validator (not an admin) cannot allow it.
    policy = {"document": "policy: limited\nartifacts: {allow_pickle: true}\n", "reason": "x"}
    r = lab.client.post(f"{V1}/policies/limited/versions", headers=lab.people["val"], json=policy)
    problem(r, 403)
    r = lab.client.post(f"{V1}/policies/limited/versions", headers=lab.admin, json=policy)
    assert r.status_code == 201, r.text
    assert lab.upload("legacy", blob, fmt="pickle").status_code == 201


def test_registration_records_the_scan_as_security_scan_evidence_by_the_server(lab: Lab):
    lab.model("credit")
    number = lab.version("credit", fitted(credit_rows(300, 1)))
    [scan] = lab.ok("GET", f"{V1}/models/credit/versions/{number}/evidence", "val")
    assert scan["kind"] == "security_scan" and scan["passed"] is True
    assert scan["created_by"] == "system" and scan["source"] == "scan"
    assert scan["suite"]["name"] == "mlgov-artifact-scan"
    assert scan["checks"] and all(c["passed"] for c in scan["checks"])
    # Its hash covers where it came from: anyone can recompute it.
    recomputed = evidence_document(
        model="credit",
        version=number,
        kind="security_scan",
        passed=True,
        summary=scan["summary"],
        suite=scan["suite"],
        dataset=None,
        results=scan["results"],
        checks=scan["checks"],
        attachments=scan["attachments"],
        created_by="system",
        created_at=datetime.fromisoformat(scan["created_at"].replace("Z", "+00:00")),
        source="scan",
    )
    assert hashlib.sha256(recomputed).hexdigest() == scan["content_sha256"]
    # One event for the registration, which says what its scan found.
    events = lab.ok("GET", f"{V1}/audit/events", "admin", params={"target": "model/credit"})
    actions = [e["action"] for e in events["items"]]
    assert actions.count("model_version.create") == 1 and "evidence.create" not in actions
    [created] = [e for e in events["items"] if e["action"] == "model_version.create"]
    assert created["details"]["security_scan"]["evidence_id"] == scan["id"]
    assert created["details"]["security_scan"]["content_sha256"] == scan["content_sha256"]


def test_a_skops_file_with_an_untrusted_type_is_refused_until_a_policy_trusts_it(lab: Lab):
    from sklearn.ensemble import HistGradientBoostingClassifier

    rows = credit_rows(300, 2)
    model = HistGradientBoostingClassifier(max_iter=3, max_leaf_nodes=4).fit(
        matrix(rows), rows["default"]
    )
    blob = skops.io.dumps(model, compression=zipfile.ZIP_DEFLATED)
    untrusted = skops.io.get_untrusted_types(data=blob)
    assert untrusted  # the tree predictor is not trusted by default
    lab.model("gbm")
    problem(lab.upload("gbm", blob), 422, untrusted[0])
    policy = f"policy: limited\nartifacts:\n  trusted_types: [{', '.join(untrusted)}]\n"
    r = lab.client.post(
        f"{V1}/policies/limited/versions",
        headers=lab.admin,
        json={"document": policy, "reason": "reviewed by validation"},
    )
    assert r.status_code == 201, r.text
    assert lab.upload("gbm", blob).status_code == 201


# -- suites -------------------------------------------------------------------------------------


def test_suites_are_versioned_validated_and_managed_by_validators(lab: Lab):
    bad = {"document": SUITE.replace("roc_auc:", "roc_aucc:") % {"min_auc": 0.7}, "reason": "x"}
    body = problem(
        lab.client.post(f"{V1}/suites/std/versions", json=bad, headers=lab.people["val"]),
        422,
        "roc_aucc",
    )
    assert body["field"] == "document.checks.performance.metrics.roc_aucc"
    problem(
        lab.client.post(
            f"{V1}/suites/std/versions",
            headers=lab.people["ds"],
            json={"document": SUITE % {"min_auc": 0.7}, "reason": "x"},
        ),
        403,
    )
    problem(
        lab.client.post(
            f"{V1}/suites/std/versions",
            headers=lab.people["val"],
            json={"document": SUITE % {"min_auc": 0.7}},
        ),
        422,
        "reason",
    )
    assert lab.suite("std", 0.7)["version"] == 1
    r = lab.client.post(
        f"{V1}/suites/std/versions",
        headers=lab.people["val"],
        json={"document": SUITE % {"min_auc": 0.7}, "reason": "again"},
    )
    problem(r, 409)
    assert lab.suite("std", 0.75)["version"] == 2
    got = lab.ok("GET", f"{V1}/suites/std", "ds", params={"version": 1})
    assert got["versions"] == [1, 2] and "0.7" in got["document"]


# -- runs ---------------------------------------------------------------------------------------


@pytest.mark.slow  # runs validation jobs: a child process each
def test_a_run_computes_evidence_that_matches_scikit_learn(lab: Lab):
    train, valid = credit_rows(1500, 3), credit_rows(800, 4)
    lab.model("credit")
    estimator = fitted(train)
    lab.dataset("training", train, upload=False)
    number = lab.version("credit", estimator, datasets=[{"dataset": "training", "version": 1}])
    lab.dataset("applications", valid)
    lab.suite("std", 0.6)

    r = lab.validate("credit", number, "std", "applications")
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] == "queued" and job["requested_by"] == "val"
    assert lab.run() == 1
    job = lab.job(job["id"])
    assert job["status"] == "succeeded", job["error"]
    assert job["passed"] is True and job["progress"] == 1.0, job["outcome"]
    assert [o["kind"] for o in job["outcome"]] == [
        "performance",
        "fairness",
        "explainability",
        "reproducibility",
    ]

    evidence = lab.ok("GET", f"{V1}/models/credit/versions/{number}/evidence", "val")
    computed = {e["kind"]: e for e in evidence if e["source"] == "validation"}
    perf = computed["performance"]
    assert perf["created_by"] == "val" and perf["dataset"] == "applications@1"
    assert perf["suite"]["name"] == "std" and perf["suite"]["version"] == 1
    assert perf["suite"]["job"] == job["id"]
    import pandas as pd

    X = pd.DataFrame({f: valid[f] for f in FEATURES})
    expected_auc = roc_auc_score(valid["default"], estimator.predict_proba(X)[:, 1])
    expected_acc = accuracy_score(valid["default"], estimator.predict(X))
    assert json.dumps(perf["results"]).count("roc_auc") >= 1
    assert _find_number(perf["results"], "roc_auc") == pytest.approx(expected_auc, abs=1e-12)
    assert _find_number(perf["results"], "accuracy") == pytest.approx(expected_acc, abs=1e-12)
    assert any(a["name"] == "report.html" for a in perf["attachments"])
    # SHAP through the worker's real loader: exact linear SHAP of the pipeline's last step.
    shap = computed["explainability"]["results"]["shap"]
    assert shap["available"] is True and "linear" in shap["method"].lower()

    report = lab.client.get(f"{V1}/validations/{job['id']}/report", headers=lab.people["val"])
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert hashlib.sha256(report.content).hexdigest() == job["report"]["sha256"]
    # Offline: nothing it loads comes from elsewhere (the only URL is the version's code_ref).
    assert not re.search(rb"(src|href)\s*=\s*[\"']?\s*(https?:)?//", report.content)
    assert b"url(" not in report.content and b"@import" not in report.content

    actions = [
        e["action"]
        for e in lab.ok("GET", f"{V1}/audit/events", "admin", params={"limit": 200})["items"]
    ]
    assert "validation.request" in actions and "validation.complete" in actions


def _find_number(results: Any, key: str) -> float:
    """The value of ``key`` in a check's results (an estimate, wherever the suite put it)."""
    if isinstance(results, dict):
        if key in results:
            value = results[key]
            if isinstance(value, int | float):
                return float(value)
            if isinstance(value, dict):
                for inner in ("value", "estimate"):
                    if isinstance(value.get(inner), int | float):
                        return float(value[inner])
        for value in results.values():
            try:
                return _find_number(value, key)
            except KeyError:
                pass
    raise KeyError(key)


STAGING = """
policy: high
stages:
  staging:
    evidence: [performance, reproducibility, security_scan]
    evidence_computed: true
    approvals:
      - {count: 1, roles: [approver]}
"""


@pytest.mark.slow  # runs validation jobs: a child process each
def test_a_failing_threshold_blocks_promotion_and_a_passing_run_unblocks_it(lab: Lab):
    r = lab.client.post(
        f"{V1}/policies/high/versions",
        headers=lab.admin,
        json={"document": STAGING, "reason": "staging gate"},
    )
    assert r.status_code == 201, r.text
    lab.model("credit", "high")
    train = credit_rows(1500, 5)
    lab.dataset("training", train, upload=False)
    number = lab.version("credit", fitted(train), datasets=[{"dataset": "training", "version": 1}])
    lab.dataset("applications", credit_rows(800, 6))
    lab.suite("strict", 0.99)  # no model of this data reaches 0.99
    t = lab.ok(
        "POST",
        f"{V1}/transitions",
        "ds",
        201,
        json={"model": "credit", "version": number, "to_stage": "staging", "reason": "go"},
    )
    r = lab.client.post(
        f"{V1}/transitions/{t['id']}/decisions",
        headers=lab.people["ap"],
        json={"decision": "approve", "comment": "fine by me"},
    )
    assert r.status_code == 201 and r.json()["status"] == "pending", r.text

    # Numbers pasted in through the API do not count where the policy wants computed evidence.
    pasted = lab.ok(
        "POST",
        f"{V1}/models/credit/versions/{number}/evidence",
        "val",
        201,
        json={"kind": "performance", "passed": True, "reason": "my notebook"},
    )
    t = lab.ok("GET", f"{V1}/transitions/{t['id']}", "ds")
    assert t["status"] == "pending"
    assert (
        f"the latest performance evidence (#{pasted['id']}) was recorded through the API; the "
        "policy requires evidence computed by the server (a validation run)"
    ) in t["evaluation"]["unmet"]

    job = lab.validate("credit", number, "strict", "applications").json()
    assert lab.run() == 1
    job = lab.job(job["id"])
    assert job["status"] == "succeeded" and job["passed"] is False
    t = lab.ok("GET", f"{V1}/transitions/{t['id']}", "ds")
    assert t["status"] == "pending"
    assert any("performance" in u and "failed" in u for u in t["evaluation"]["unmet"])

    lab.suite("strict", 0.6)  # version 2 of the suite, a realistic threshold
    job = lab.validate("credit", number, "strict", "applications").json()
    assert lab.run() == 1
    assert lab.job(job["id"])["passed"] is True
    t = lab.ok("GET", f"{V1}/transitions/{t['id']}", "ds")
    assert t["status"] == "applied"
    version = lab.ok("GET", f"{V1}/models/credit/versions/{number}", "ds")
    assert version["stage"] == "staging"


def test_requests_that_cannot_run_are_refused_with_the_field(lab: Lab):
    lab.model("credit")
    number = lab.version("credit", fitted(credit_rows(300, 7)))
    lab.dataset("applications", credit_rows(200, 8))
    lab.suite("std")
    jobs = lab.count(ValidationJob)

    problem(lab.validate("credit", number, "std", "applications", who="ds"), 403)
    problem(lab.validate("credit", number, "std", "applications", who="mm"), 403)
    assert problem(lab.validate("credit", number, "nope", "applications"), 422)["field"] == "suite"
    body = {"suite": "std", "dataset": {"dataset": "nope", "version": 1}, "reason": "x"}
    r = lab.client.post(
        f"{V1}/models/credit/versions/{number}/validations", json=body, headers=lab.people["val"]
    )
    assert problem(r, 422)["field"] == "dataset"
    r = lab.client.post(
        f"{V1}/models/credit/versions/{number}/validations",
        json={"suite": "std", "dataset": {"dataset": "applications", "version": 1}},
        headers=lab.people["val"],
    )
    assert problem(r, 422)["field"] == "reason"
    # A suite that names a column the dataset does not have.
    other = SUITE.replace("age_band", "postcode") % {"min_auc": 0.6}
    lab.ok(
        "POST",
        f"{V1}/suites/zip/versions",
        "val",
        201,
        json={"document": other, "reason": "postcode fairness"},
    )
    assert (
        problem(lab.validate("credit", number, "zip", "applications"), 422, "postcode")["field"]
        == "suite"
    )
    # Separation of duties: the creator of a version may not validate it.
    lab.server.services.identity.grant_role(
        _system(), name="ds", role="validator", reason="also validates"
    )
    problem(lab.validate("credit", number, "std", "applications", who="ds"), 403, "separation")
    assert lab.count(ValidationJob) == jobs


def _system() -> Any:
    from mlgov.context import system_context

    return system_context("test")


@pytest.mark.slow  # runs validation jobs: a child process each
def test_bad_inputs_fail_the_job_with_a_message_and_the_worker_goes_on(lab: Lab):
    lab.model("credit")
    number = lab.version("credit", fitted(credit_rows(400, 9)))
    rows = credit_rows(300, 10)
    lab.suite("std")

    # The data lacks a column its registered schema (and the model) promised.
    broken = {k: v for k, v in rows.items() if k != "income"}
    data = to_csv(broken)
    lab.ok(
        "POST",
        f"{V1}/datasets",
        "de",
        201,
        json={"name": "broken", "owner_team": "data", "reason": "new"},
    )
    lab.ok(
        "POST",
        f"{V1}/datasets/broken/versions",
        "de",
        201,
        json={
            "content_sha256": hashlib.sha256(data).hexdigest(),
            "uri": "s3://nowhere/broken.csv",
            "schema": [{"name": n, "type": "double"} for n in rows],
            "row_count": 300,
            "reason": "extract",
        },
    )
    lab.ok(
        "PUT",
        f"{V1}/datasets/broken/versions/1/data",
        "de",
        params={"format": "csv", "reason": "upload"},
        content=data,
    )
    # The data changed on disk after it was registered.
    lab.dataset("drifting", rows, upload=False)
    (lab.data_dir / "drifting.csv").write_bytes(to_csv(credit_rows(300, 11)))

    evidence = lab.count(Evidence)
    first = lab.validate("credit", number, "std", "broken").json()
    second = lab.validate("credit", number, "std", "drifting").json()
    assert lab.run() == 1 and lab.run() == 1
    failed = lab.job(first["id"])
    assert failed["status"] == "failed" and "income" in failed["error"], failed
    changed = lab.job(second["id"])
    assert changed["status"] == "failed" and "sha256" in changed["error"], changed

    # A run over its time limit is stopped and failed; the next job runs normally.
    lab.dataset("applications", rows)
    slow = lab.validate("credit", number, "std", "applications").json()
    assert lab.run(RunnerLimits(memory_mb=4096, timeout_seconds=0.05)) == 1
    timed_out = lab.job(slow["id"])
    assert timed_out["status"] == "failed" and "time limit" in timed_out["error"], timed_out
    assert lab.count(Evidence) == evidence  # nothing else changed
    events = lab.ok("GET", f"{V1}/audit/events", "admin", params={"action": "validation.fail"})
    assert len(events["items"]) == 3

    good = lab.validate("credit", number, "std", "applications").json()
    assert lab.run() == 1
    assert lab.job(good["id"])["status"] == "succeeded"


# -- the queue ------------------------------------------------------------------------------------


def test_two_workers_never_take_the_same_job(lab: Lab):
    lab.model("credit")
    number = lab.version("credit", fitted(credit_rows(300, 12)))
    lab.dataset("applications", credit_rows(100, 13))
    lab.suite("std")
    queued = {lab.validate("credit", number, "std", "applications").json()["id"] for _ in range(8)}
    svc = lab.server.services.validation
    taken: list[tuple[str, int]] = []
    lock = threading.Lock()

    def work(name: str) -> None:
        while (claim := svc.claim(name)) is not None:
            with lock:
                taken.append((name, claim.job_id))

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [job for _, job in taken]
    assert sorted(ids) == sorted(queued)  # every job taken exactly once


def test_a_dead_workers_job_is_taken_again_after_its_lease_then_abandoned(lab: Lab):
    from datetime import timedelta

    from mlgov.db import utcnow

    lab.model("credit")
    number = lab.version("credit", fitted(credit_rows(300, 14)))
    lab.dataset("applications", credit_rows(100, 15))
    lab.suite("std")
    job = lab.validate("credit", number, "std", "applications").json()
    svc = lab.server.services.validation
    now = utcnow()
    first = svc.claim("dies", now=now)
    assert first is not None and first.attempt == 1
    assert svc.claim("other", now=now) is None  # leased
    later = now + timedelta(minutes=5)
    second = svc.claim("other", now=later)
    assert second is not None and second.job_id == job["id"] and second.attempt == 2
    with pytest.raises(Conflict):
        svc.fail(first, "too late")  # the first worker lost its lease
    third = svc.claim("third", now=later + timedelta(minutes=5))
    assert third is not None and third.attempt == MAX_ATTEMPTS
    assert svc.claim("fourth", now=later + timedelta(minutes=10)) is None
    state = lab.job(job["id"])
    assert state["status"] == "failed" and "abandoned" in state["error"]


# -- dataset data --------------------------------------------------------------------------------


def test_dataset_data_must_match_its_registered_hash(lab: Lab):
    rows = credit_rows(50, 16)
    data = lab.dataset("applications", rows, upload=False)
    url = f"{V1}/datasets/applications/versions/1/data"
    params = {"format": "csv", "reason": "for validation"}
    store_root = lab.data_dir / "artifacts"
    before = stored_files(store_root)
    r = lab.client.put(url, params=params, content=data + b"0,0,0,x,1\n", headers=lab.people["de"])
    assert problem(r, 422, "sha256")["field"] == "body"
    problem(lab.client.put(url, params=params, content=data, headers=lab.people["val"]), 403)
    r = lab.client.put(
        url, params={"format": "xlsx", "reason": "x"}, content=data, headers=lab.people["de"]
    )
    problem(r, 422)
    assert stored_files(store_root) == before
    dv = lab.ok("PUT", url, "de", params=params, content=data)
    assert dv["data"] == {"format": "csv", "size": len(data)}
    problem(lab.client.put(url, params=params, content=data, headers=lab.people["de"]), 409)


@pytest.mark.slow  # runs validation jobs: a child process each
def test_datasets_outside_the_readable_roots_are_not_read(lab: Lab, tmp_path: Path):
    lab.model("credit")
    number = lab.version("credit", fitted(credit_rows(300, 17)))
    rows = credit_rows(100, 18)
    data = to_csv(rows)
    outside = tmp_path / "elsewhere.csv"
    outside.write_bytes(data)
    lab.ok(
        "POST",
        f"{V1}/datasets",
        "de",
        201,
        json={"name": "outside", "owner_team": "data", "reason": "new"},
    )
    lab.ok(
        "POST",
        f"{V1}/datasets/outside/versions",
        "de",
        201,
        json={
            "content_sha256": hashlib.sha256(data).hexdigest(),
            "uri": outside.as_uri(),
            "schema": [{"name": n, "type": "double"} for n in rows],
            "row_count": 100,
            "reason": "extract",
        },
    )
    lab.suite("std")
    job = lab.validate("credit", number, "std", "outside").json()
    assert lab.run() == 1
    state = lab.job(job["id"])
    assert state["status"] == "failed" and "MLGOV_DATASET_ROOTS" in state["error"]


# -- every format, through the registry -----------------------------------------------------------


@pytest.mark.slow  # runs validation jobs: a child process each
def test_every_format_round_trips_register_scan_load_in_the_worker_predict(
    lab: Lab, tmp_path: Path
) -> None:
    """Each loadable case of the loaders' tests: uploaded through the API (scanned there), read
    back from the artifact store by the worker's own fetch (hash-checked), loaded in one sandboxed
    child and used to predict: the predictions are the original model's."""
    from mlgov.artifacts.sandbox import run_in_sandbox
    from test_artifacts_load import CASES, MEMORY_MB, _data, _same

    data = _data()
    cases = {name: build(tmp_path, data) for name, build in CASES.items()}
    cases = {name: c for name, c in cases.items() if c.error is None}
    trusted = sorted({t for c in cases.values() for t in c.payload.get("trusted_types", ())})
    policy = {
        "document": "policy: limited\nartifacts:\n  allow_pickle: true\n"
        f"  trusted_types: [{', '.join(trusted)}]\n",
        "reason": "legacy pickles and reviewed types",
    }
    assert (
        lab.client.post(
            f"{V1}/policies/limited/versions", headers=lab.admin, json=policy
        ).status_code
        == 201
    )
    runner = validation_runner(lab.server.services)
    jobs = []
    for index, (name, case) in enumerate(cases.items()):
        model = f"fmt-{index}"
        lab.model(model)
        signature = case.payload.get("signature") or {
            "inputs": [{"name": k, "type": "double"} for k in case.rows[0]]
        }
        if isinstance(signature.get("inputs"), str):  # MLflow's JSON-string form
            signature = {"inputs": [{"name": k, "type": "double"} for k in case.rows[0]]}
        r = lab.upload(model, case.path.read_bytes(), fmt=case.format, signature=signature)
        assert r.status_code == 201, (name, r.text)
        version = lab.server.services.registry.get_version(model, 1)
        fetched = runner._fetch_artifact(version.artifact_sha256, tmp_path / f"fetched-{index}")
        jobs.append(
            {"path": str(fetched), "format": version.format, "rows": case.rows, **case.payload}
        )
    out = run_in_sandbox(
        "mlgov.artifacts.sandbox:_selftest_predict_many",
        {"jobs": jobs},
        memory_mb=MEMORY_MB,
        timeout_s=300,
        workdir=tmp_path / "work",
    )
    formats = set()
    for (name, case), got in zip(cases.items(), out["results"], strict=True):
        assert "error" not in got, (name, got)
        _same(got, case)
        formats.add(case.format)
    assert formats == {"skops", "pickle", "onnx", "xgboost", "lightgbm", "mlflow"}

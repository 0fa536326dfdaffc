"""The demo seed tells its story through the services, and the API shows all of it: users and
roles, datasets with datasheets and real hashes, a real model whose artifact loads safely and
reproduces its recorded metrics, lineage, the lifecycle (evidence the server computed: its scan
of every artifact at registration and validation runs of published suites, an ethics review by
a person; approvals by distinct people, stages under each tier's policy, a request waiting in
the approvals inbox), and an audit trail naming who did what and why."""

from __future__ import annotations

import csv
import functools
import hashlib
import importlib.metadata
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
import skops.io
from fastapi.testclient import TestClient
from sklearn.metrics import roc_auc_score
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

import mlgov.server
from mlgov import demo
from mlgov.artifacts.scan import ScanPolicy, scan_artifact
from mlgov.config import Settings
from mlgov.db import normalise_url
from mlgov.server import Server, build_server

TRAIN_ROWS = 1_500
VALIDATION_ROWS = 500
API = "/api/v1"
ADMIN_TOKEN = "mlgov_demo-test-admin-token-0123456789abcdef"
PG_URL = os.environ.get("MLGOV_TEST_DATABASE_URL", "")


@dataclass(frozen=True)
class Seeded:
    server: Server
    client: TestClient
    summary: demo.DemoSummary


@contextmanager
def fresh_database(backend: str, data_dir: Path) -> Iterator[str]:
    """A SQLite file, or a PostgreSQL database of this module's own (dropped afterwards): the
    seeded server is shared by the module's read-only tests, so the suite's shared PostgreSQL
    database, truncated before every test, cannot hold it."""
    if backend == "sqlite":
        yield f"sqlite:///{data_dir / 'mlgov.db'}"
        return
    if not PG_URL:
        pytest.skip("MLGOV_TEST_DATABASE_URL is not set: PostgreSQL runs are skipped")
    server_url = make_url(normalise_url(PG_URL))
    name = f"mlgov_test_demo_{os.getpid()}_{secrets.token_hex(3)}"
    engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def seeded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Seeded]:
    """One seeded server per backend for the tests that only read (seeding takes half a
    minute, mostly the validation runs' child processes; doing it once keeps this module
    fast)."""
    data_dir = tmp_path_factory.mktemp(f"demo-{request.param}")
    with fresh_database(str(request.param), data_dir) as url:
        settings = Settings(
            data_dir=data_dir / "data",
            database_url=url,
            bootstrap_admin_token=ADMIN_TOKEN,
            max_artifact_bytes=8 * 1024 * 1024,
        )
        server = build_server(settings)
        try:
            summary = demo.seed(server, train_rows=TRAIN_ROWS, validation_rows=VALIDATION_ROWS)
            with TestClient(server.app) as client:
                yield Seeded(server, client, summary)
        finally:
            server.services.db.dispose()


@pytest.fixture
def summary(seeded: Seeded) -> demo.DemoSummary:
    return seeded.summary


@pytest.fixture
def api(seeded: Seeded) -> TestClient:
    return seeded.client


@pytest.fixture
def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def bearer(token: str | None) -> dict[str, str]:
    assert token
    return {"Authorization": f"Bearer {token}"}


def tokens_of(summary: demo.DemoSummary) -> dict[str, str]:
    return {u.name: u.token for u in summary.users if u.token}


def path_of(uri: str) -> Path:
    parts = urlsplit(uri)
    assert parts.scheme == "file", uri
    return Path(unquote(parts.path))


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_seed_creates_every_user_with_its_role_and_a_working_token(summary, api, admin):
    assert summary.seeded
    assert [(u.name, u.roles, u.kind) for u in summary.users] == list(demo.DEMO_USERS)
    users = {u["name"]: u for u in api.get(f"{API}/users", headers=admin).json()}
    for name, roles, kind in demo.DEMO_USERS:
        assert users[name]["roles"] == list(roles)
        assert users[name]["kind"] == kind
        assert users[name]["created_by"] == "admin"
    assert users["ci-pipeline"]["kind"] == "service_account"
    for name, token in tokens_of(summary).items():
        me = api.get(f"{API}/me", headers=bearer(token))
        assert me.status_code == 200, me.text
        assert me.json()["name"] == name
    assert len(tokens_of(summary)) == len(demo.DEMO_USERS)


def test_datasets_have_real_files_hashes_and_datasheets(summary, api):
    headers = bearer(tokens_of(summary)["vic"])  # a viewer reads the catalog
    dataset = api.get(f"{API}/datasets/{demo.CREDIT_DATASET}", headers=headers).json()
    assert dataset["owner_team"] == "retail-credit" and dataset["created_by"] == "dana"
    versions = api.get(f"{API}/datasets/{demo.CREDIT_DATASET}/versions", headers=headers)
    assert versions.status_code == 200, versions.text
    train, valid = versions.json()
    assert (train["version"], valid["version"]) == (1, 2)
    for dv, rows in ((train, TRAIN_ROWS), (valid, VALIDATION_ROWS)):
        assert dv["created_by"] == "dana"
        path = path_of(dv["uri"])
        assert path.parent == summary.data_files[0].parent
        assert path.is_file() and dv["content_sha256"] == sha256_of(path)
        with path.open(newline="") as f:
            header, *body = list(csv.reader(f))
        assert dv["row_count"] == rows == len(body)
        assert header == [c["name"] for c in dv["schema"]]
        types = {c["name"]: c["type"] for c in dv["schema"]}
        assert types["income"] == "integer" and types["purpose"] == "string"
        # The fairness tests' sensitive column: in the data, not among the model's inputs.
        assert types["age_band"] == "string"
        assert "age_band" not in {f[0] for f in demo.CREDIT_FEATURES}
        bands = {row[header.index("age_band")] for row in body}
        assert bands == {band for band, _, _ in demo.AGE_BANDS}
        for row in body[:50]:
            age, band = int(row[header.index("age")]), row[header.index("age_band")]
            assert any(b == band and lo <= age <= hi for b, lo, hi in demo.AGE_BANDS)
        sheet = dv["datasheet"]
        for section in (
            "motivation",
            "composition",
            "collection",
            "preprocessing",
            "uses",
            "distribution",
            "maintenance",
        ):
            assert len(sheet[section]) > 40, section
        assert sheet["personal_data"]["present"] is True
        assert sheet["personal_data"]["legal_basis"] == "GDPR Art. 6(1)(b) — contract"
    usage = api.get(f"{API}/datasets/{demo.CREDIT_DATASET}/versions/2", headers=headers).json()
    assert usage["used_by"] == [
        {"model": demo.CREDIT_MODEL, "version": n, "role": "validation"} for n in (1, 2)
    ]


def test_model_and_version_carry_their_governance_metadata(summary, api):
    headers = bearer(tokens_of(summary)["vic"])
    model = api.get(f"{API}/models/{demo.CREDIT_MODEL}", headers=headers).json()
    assert model["risk_tier"] == "high" and model["owner_team"] == "retail-credit"
    assert model["domain"] == "Credit scoring (EU AI Act Annex III 5(b))"
    assert model["intended_use"] and model["out_of_scope_uses"] and model["tags"]
    assert model["created_by"] == "sam"
    assert model["latest_version"]["version"] == summary.pending_version == 2
    catalog = api.get(f"{API}/models", headers=headers).json()["items"]
    assert {m["name"] for m in catalog} == {demo.CREDIT_MODEL, "fraud-alerts"}

    v = api.get(f"{API}/models/{demo.CREDIT_MODEL}/versions/1", headers=headers).json()
    assert v["created_by"] == "sam" and v["format"] == "skops" and v["stage"] == "production"
    files = {f"{demo.CREDIT_DATASET}@{i}": p for i, p in enumerate(summary.data_files[:2], 1)}
    assert [(ln["dataset"], ln["version"], ln["role"]) for ln in v["lineage"]] == [
        (demo.CREDIT_DATASET, 1, "training"),
        (demo.CREDIT_DATASET, 2, "validation"),
    ]
    for link in v["lineage"]:
        assert link["content_sha256"] == sha256_of(files[f"{link['dataset']}@{link['version']}"])
    assert set(v["metrics"]) == {"roc_auc", "accuracy", "f1", "log_loss", "brier"}
    assert 0.6 < v["metrics"]["roc_auc"] <= 1.0
    inputs = {f["name"]: f for f in v["signature"]["inputs"]}
    assert [f[0] for f in demo.CREDIT_FEATURES] == list(inputs)
    assert inputs["age"]["type"] == "integer" and inputs["age"]["min"] >= 18
    assert "retired" in inputs["employment_type"]["categories"]
    assert v["signature"]["outputs"][0]["name"] == "default_probability"
    assert v["code_ref"]["repository"] == demo.CODE_REPOSITORY
    assert len(v["code_ref"]["commit"]) == 40
    packages = v["environment"]["packages"]
    assert packages["scikit-learn"] == importlib.metadata.version("scikit-learn")
    assert packages["skops"] == importlib.metadata.version("skops")
    assert v["environment"]["python"]
    assert v["algorithm"].startswith("LogisticRegression") and v["hyperparameters"]["max_iter"]


def test_audit_trail_names_the_actors_and_their_reasons(summary, api):
    auditor = bearer(tokens_of(summary)["audrey"])
    r = api.get(f"{API}/audit/events", params={"limit": 1000}, headers=auditor)
    assert r.status_code == 200, r.text
    events = r.json()["items"]
    demo_events = [e for e in events if e["request_id"].startswith("demo-")]
    assert demo_events, "the seed's events carry demo request ids"
    for e in demo_events:
        assert e["reason"].strip(), e
        assert e["client_addr"] == "127.0.0.1"
    by = {(e["action"], e["target"]): e for e in events}

    def actor(action: str, target: str) -> tuple[str, str]:
        event = by[(action, target)]
        return event["actor"], event["actor_kind"]

    issued = [e for e in demo_events if e["action"] == "token.create"]
    for name, _roles, _kind in demo.DEMO_USERS:
        assert actor("user.create", f"user/{name}") == ("admin", "user")
        assert any(e["target"].startswith(f"user/{name}/tokens/") for e in issued), name
    assert {e["actor"] for e in issued} == {"admin"}
    assert actor("dataset.create", f"dataset/{demo.CREDIT_DATASET}") == ("dana", "user")
    for n in (1, 2):
        assert actor("dataset_version.create", f"dataset/{demo.CREDIT_DATASET}/versions/{n}") == (
            "dana",
            "user",
        )
    assert actor("model.create", f"model/{demo.CREDIT_MODEL}") == ("sam", "user")
    created = by[("model_version.create", f"model/{demo.CREDIT_MODEL}/versions/1")]
    assert (created["actor"], created["actor_kind"]) == ("sam", "user")
    assert "training" in created["reason"] or demo.CREDIT_DATASET in created["reason"]
    assert created["details"]["datasets"] == [
        f"{demo.CREDIT_DATASET}@1:training",
        f"{demo.CREDIT_DATASET}@2:validation",
    ]
    registered = by[("model_version.create", f"model/{demo.FRAUD_MODEL}/versions/1")]
    assert (registered["actor"], registered["actor_kind"]) == ("ci-pipeline", "service_account")
    # The admin trusted the reviewed types in the limited policy before the pipeline's upload.
    published = by[("policy.create", "policy/limited/versions/2")]
    assert (published["actor"], published["actor_kind"]) == ("admin", "user")
    assert "validation team reviewed" in published["reason"]
    assert published["seq"] < registered["seq"]
    for suite in (demo.CREDIT_SUITE, demo.FRAUD_SUITE):
        assert actor("suite.create", f"suite/{suite}/versions/1") == ("val", "user")


def test_artifact_matches_its_hash_loads_safely_and_reproduces_its_metrics(summary, api):
    headers = bearer(tokens_of(summary)["val"])  # the validator downloads what they validate
    v = api.get(f"{API}/models/{demo.CREDIT_MODEL}/versions/1", headers=headers).json()
    r = api.get(f"{API}/models/{demo.CREDIT_MODEL}/versions/1/artifact", headers=headers)
    assert r.status_code == 200, r.text
    blob = r.content
    assert (
        hashlib.sha256(blob).hexdigest() == v["artifact_sha256"] == r.headers["x-artifact-sha256"]
    )
    assert len(blob) == v["artifact_size"]

    untrusted = skops.io.get_untrusted_types(data=blob)
    assert all(t.startswith(("sklearn.", "numpy.")) for t in untrusted), untrusted
    model = skops.io.loads(blob, trusted=untrusted)

    validation = next(ln for ln in v["lineage"] if ln["role"] == "validation")
    dv = api.get(
        f"{API}/datasets/{validation['dataset']}/versions/{validation['version']}", headers=headers
    ).json()
    convert = {"integer": int, "double": float, "string": str}
    features = [(f["name"], convert[f["type"]]) for f in v["signature"]["inputs"]]
    with path_of(dv["uri"]).open(newline="") as f:
        rows = list(csv.DictReader(f))
    X = np.array([[cast(row[name]) for name, cast in features] for row in rows], dtype=object)
    y = np.array([int(row["default"]) for row in rows])

    proba = model.predict_proba(X)[:, 1]
    assert proba.shape == (VALIDATION_ROWS,)
    assert np.all((proba >= 0.0) & (proba <= 1.0))
    assert roc_auc_score(y, proba) == pytest.approx(v["metrics"]["roc_auc"], abs=1e-6)


def test_second_model_needs_trusting_sklearn_types_only_and_scores(summary, api):
    headers = bearer(tokens_of(summary)["val"])
    v = api.get(f"{API}/models/{demo.FRAUD_MODEL}/versions/1", headers=headers).json()
    assert v["created_by"] == "ci-pipeline"
    blob = api.get(f"{API}/models/{demo.FRAUD_MODEL}/versions/1/artifact", headers=headers).content
    assert hashlib.sha256(blob).hexdigest() == v["artifact_sha256"]
    untrusted = skops.io.get_untrusted_types(data=blob)
    assert untrusted, "a boosted model needs its tree types trusted explicitly"
    assert set(untrusted) == demo.REVIEWED_TYPES
    model = skops.io.loads(blob, trusted=sorted(demo.REVIEWED_TYPES))
    convert = {"integer": int, "double": float, "string": str}
    features = [(f["name"], convert[f["type"]]) for f in v["signature"]["inputs"]]
    assert [(ln["dataset"], ln["version"], ln["role"]) for ln in v["lineage"]] == [
        (demo.FRAUD_DATASET, 1, "training"),
        (demo.FRAUD_DATASET, 2, "validation"),
    ]
    holdout = v["lineage"][1]
    dv = api.get(
        f"{API}/datasets/{holdout['dataset']}/versions/{holdout['version']}", headers=headers
    ).json()
    assert dv["datasheet"]["composition"].startswith(f"{dv['row_count']} card transactions")
    with path_of(dv["uri"]).open(newline="") as f:
        rows = list(csv.DictReader(f))
    X = np.array([[cast(row[name]) for name, cast in features] for row in rows], dtype=object)
    y = np.array([int(row["is_fraud"]) for row in rows])
    proba = model.predict_proba(X)[:, 1]
    assert proba.shape == (len(rows),) and np.all((proba >= 0.0) & (proba <= 1.0))
    # The pipeline's metrics were measured on the hold-out version, not on training rows.
    assert roc_auc_score(y, proba) == pytest.approx(v["metrics"]["roc_auc"], abs=1e-6)


def test_the_scan_refuses_the_fraud_model_without_the_reviewed_types(summary, api, tmp_path):
    """The built-in limited pack trusts no extra type: the fraud artifact passes the scan only
    under the policy version the admin published."""
    headers = bearer(tokens_of(summary)["audrey"])
    blob = api.get(f"{API}/models/{demo.FRAUD_MODEL}/versions/1/artifact", headers=headers)
    path = tmp_path / "fraud-alerts-v1.skops"
    path.write_bytes(blob.content)
    refused = scan_artifact(path, "skops", ScanPolicy())
    assert not refused.passed
    assert "TreePredictor" in refused.message() and "trusted_types" in refused.message()
    accepted = scan_artifact(path, "skops", ScanPolicy(trusted_types=tuple(demo.REVIEWED_TYPES)))
    assert accepted.passed and accepted.findings == ()

    policy = api.get(f"{API}/policies/limited", headers=headers)
    assert policy.status_code == 200, policy.text
    published = policy.json()
    assert published["version"] == 2 and published["created_by"] == "admin"
    assert published["rules"]["artifacts"]["trusted_types"] == sorted(demo.REVIEWED_TYPES)
    builtin = api.get(f"{API}/policies/limited", params={"version": 1}, headers=headers).json()
    # The rest of the pack is kept: only the artifacts section was added.
    assert published["document"].startswith(builtin["document"].rstrip("\n"))


HIGH_RISK_PRODUCTION_EVIDENCE = {
    "performance",
    "fairness",
    "explainability",
    "robustness",
    "reproducibility",
    "security_scan",
    "ethics_review",
}
#: The kinds a credit-high-risk validation run records (champion_challenger is not required
#: by the high pack, but the suite computes it).
CREDIT_SUITE_KINDS = [
    "performance",
    "fairness",
    "explainability",
    "robustness",
    "reproducibility",
    "champion_challenger",
]
#: Who computed each kind of evidence: the server's scan, a validation run, or a person.
SOURCES = {
    "security_scan": ("scan", "system"),
    **{kind: ("validation", "val") for kind in CREDIT_SUITE_KINDS},
    "ethics_review": ("api", "erin"),
}


def transitions_of(api: TestClient, headers: dict[str, str], model: str) -> list[dict[str, Any]]:
    r = api.get(f"{API}/transitions", params={"model": model, "limit": 200}, headers=headers)
    assert r.status_code == 200, r.text
    return list(reversed(r.json()["items"]))  # oldest first


def evidence_of(
    api: TestClient, headers: dict[str, str], model: str, version: int
) -> dict[str, dict[str, Any]]:
    r = api.get(f"{API}/models/{model}/versions/{version}/evidence", headers=headers)
    assert r.status_code == 200, r.text
    records = r.json()
    by_kind = {e["kind"]: e for e in records}
    assert len(by_kind) == len(records), "one record of each kind"
    return by_kind


def jobs_of(api: TestClient, headers: dict[str, str]) -> dict[tuple[str, int], dict[str, Any]]:
    r = api.get(f"{API}/validations", headers=headers)
    assert r.status_code == 200, r.text
    return {(j["model"], j["version"]): j for j in r.json()["items"]}


def test_every_validation_run_succeeded_with_a_report(summary, api):
    headers = bearer(tokens_of(summary)["audrey"])
    jobs = jobs_of(api, headers)
    assert sorted(jobs) == [(demo.CREDIT_MODEL, 1), (demo.CREDIT_MODEL, 2), (demo.FRAUD_MODEL, 1)]
    expected = {
        (demo.CREDIT_MODEL, 1): (demo.CREDIT_SUITE, f"{demo.CREDIT_DATASET}@2", None),
        (demo.CREDIT_MODEL, 2): (demo.CREDIT_SUITE, f"{demo.CREDIT_DATASET}@2", 1),
        (demo.FRAUD_MODEL, 1): (demo.FRAUD_SUITE, f"{demo.FRAUD_DATASET}@2", None),
    }
    for key, job in jobs.items():
        suite, dataset, champion = expected[key]
        assert (job["suite"], job["suite_version"], job["dataset"]) == (suite, 1, dataset)
        assert (job["status"], job["passed"], job["error"]) == ("succeeded", True, "")
        assert (job["requested_by"], job["worker"], job["attempts"]) == ("val", "demo-worker", 1)
        assert job["progress"] == 1.0 and job["runtime_seconds"] > 0
        # v2 was validated once v1 was in production: the champion it was compared with.
        assert job["champion_version"] == champion
        kinds = [o["kind"] for o in job["outcome"]]
        if suite == demo.CREDIT_SUITE:
            assert kinds == CREDIT_SUITE_KINDS
        else:
            assert kinds == ["performance", "robustness"]
        assert all(o["passed"] for o in job["outcome"])

        report = api.get(f"{API}/validations/{job['id']}/report", headers=headers)
        assert report.status_code == 200, report.text
        assert hashlib.sha256(report.content).hexdigest() == job["report"]["sha256"]
        assert len(report.content) == job["report"]["size"]
        assert report.content.lstrip().lower().startswith(b"<!doctype html>")
        assert f"{key[0]}".encode() in report.content and dataset.encode() in report.content

        # Each outcome is an evidence record of the version, attached to the same report.
        evidence = evidence_of(api, headers, *key)
        for outcome in job["outcome"]:
            record = evidence[outcome["kind"]]
            assert record["id"] == outcome["evidence_id"]
            assert record["validation_job"] == job["id"]
            assert record["content_sha256"] == outcome["content_sha256"]
            report_item = next(a for a in record["attachments"] if a["name"] == "report.html")
            assert report_item["sha256"] == job["report"]["sha256"]


def test_credit_v1_reached_production_on_evidence_the_server_computed(summary, api):
    headers = bearer(tokens_of(summary)["audrey"])  # the auditor checks the whole trail
    assert summary.production == {demo.CREDIT_MODEL: 1, demo.FRAUD_MODEL: 1}
    v = api.get(f"{API}/models/{demo.CREDIT_MODEL}/versions/1", headers=headers).json()
    assert v["stage"] == "production"

    by_kind = evidence_of(api, headers, demo.CREDIT_MODEL, 1)
    assert set(by_kind) == HIGH_RISK_PRODUCTION_EVIDENCE | {"champion_challenger"}
    for kind, e in by_kind.items():
        assert e["passed"], e
        assert all(check["passed"] for check in e["checks"]), e
        # Every kind checked something, but a comparison without a production version.
        assert bool(e["checks"]) is (kind != "champion_challenger"), e
        assert (e["source"], e["created_by"]) == SOURCES[kind], kind
        assert e["created_by"] != v["created_by"]  # separation of duties
        assert len(e["content_sha256"]) == 64
        if e["source"] == "validation":
            assert e["dataset"] == f"{demo.CREDIT_DATASET}@2"  # the held-out extract
            assert e["suite"]["name"] == demo.CREDIT_SUITE and e["suite"]["version"] == 1
        else:
            assert e["dataset"] is None and e["validation_job"] is None

    # The scan at registration: the artifact the registry holds, clean, nothing to trust.
    scan = by_kind["security_scan"]
    assert scan["suite"]["name"] == "mlgov-artifact-scan"
    assert scan["results"]["sha256"] == v["artifact_sha256"]
    assert scan["results"]["format"] == "skops" and scan["results"]["findings"] == []
    assert scan["suite"]["definition"]["trusted_types"] == []  # the high pack trusts nothing

    # Honest figures: the server's AUC on the held-out extract is the one sam recorded there.
    metrics = by_kind["performance"]["results"]["metrics"]
    assert metrics["roc_auc"]["value"] == pytest.approx(v["metrics"]["roc_auc"], abs=1e-6)
    assert (
        metrics["roc_auc"]["ci_low"] < metrics["roc_auc"]["value"] < metrics["roc_auc"]["ci_high"]
    )
    assert metrics["roc_auc"]["bootstrap_used"] > 0
    assert metrics["brier"]["value"] == pytest.approx(v["metrics"]["brier"], abs=1e-6)
    assert by_kind["performance"]["results"]["rows"] == VALIDATION_ROWS

    (by_band,) = by_kind["fairness"]["results"]["features"]
    assert by_band["feature"] == "age_band"
    groups = {g["group"]: g for g in by_band["groups"]}
    assert set(groups) == {band for band, _, _ in demo.AGE_BANDS}
    assert sum(g["count"] for g in groups.values()) == VALIDATION_ROWS
    assert by_band["disparities"]["demographic_parity_difference"] <= 0.2
    assert by_band["ratio"]["true_negative_rate"] >= 0.8  # four-fifths rule for repayers
    assert {c["name"] for c in by_kind["fairness"]["checks"]} == {
        "demographic_parity_difference[age_band] <= 0.2",
        "true_negative_rate_ratio[age_band] >= 0.8",
        "roc_auc_ratio[age_band] >= 0.7",
    }
    table = next(a for a in by_kind["fairness"]["attachments"] if a["name"].endswith(".csv"))
    download = api.get(
        f"{API}/models/{demo.CREDIT_MODEL}/versions/1/evidence/{by_kind['fairness']['id']}"
        f"/attachments/{table['name']}",
        headers=headers,
    )
    assert download.status_code == 200, download.text
    assert hashlib.sha256(download.content).hexdigest() == table["sha256"]
    assert b"age_band" in download.content and b"60+" in download.content

    permutation = by_kind["explainability"]["results"]["permutation"]
    assert {f["feature"] for f in permutation["features"]} == {f[0] for f in demo.CREDIT_FEATURES}
    assert permutation["scoring"] == "roc_auc" and permutation["rows"] == VALIDATION_ROWS
    robustness = by_kind["robustness"]["results"]["perturbations"]
    assert [p["name"] for p in robustness] == ["noise_1pct", "unseen_category_2pct"]
    assert all(p["error_rate"] == 0.0 for p in robustness)
    reproducibility = by_kind["reproducibility"]["results"]
    train = api.get(f"{API}/datasets/{demo.CREDIT_DATASET}/versions/1", headers=headers).json()
    assert reproducibility["recorded"]["data_hash"] == train["content_sha256"]
    assert reproducibility["determinism"]["predictions_identical"] is True
    champion = by_kind["champion_challenger"]
    assert champion["results"]["champion"] is None  # nothing was in production yet
    assert champion["summary"] == "no production version to compare against"

    # The ethics review is a person's record, quoting the run's fairness results.
    ethics = by_kind["ethics_review"]
    assert ethics["results"]["fairness_evidence"] == by_kind["fairness"]["id"]
    assert ethics["results"]["validation_run"] == by_kind["fairness"]["validation_job"]
    ratio = f"{by_band['ratio']['true_negative_rate']:.2f}"
    assert ratio in ethics["summary"]


def test_credit_v1_production_was_approved_by_two_distinct_approvers(summary, api):
    headers = bearer(tokens_of(summary)["audrey"])
    transitions = [t for t in transitions_of(api, headers, demo.CREDIT_MODEL) if t["version"] == 1]
    assert [(t["to_stage"], t["status"]) for t in transitions] == [
        ("staging", "applied"),
        ("production", "applied"),
    ]
    staging, production = transitions
    assert staging["requested_by"] == "sam"
    assert [(d["actor"], d["decision"]) for d in staging["decisions"]] == [("val", "approve")]
    assert production["requested_by"] == "morgan"
    assert production["evaluation"]["met"] and production["evaluation"]["unmet"] == []
    approvals = [d for d in production["decisions"] if d["decision"] == "approve"]
    assert len(approvals) == 2 == len(production["decisions"])
    approvers = {d["actor"] for d in approvals}
    assert approvers == {"avery", "noor"}
    assert all("approver" in d["roles"] for d in approvals)
    assert not approvers & {"sam", "morgan"}  # neither the version's creator nor the requester
    met = {r["id"] for r in production["evaluation"]["requirements"] if r["met"]}
    assert {f"evidence.{kind}" for kind in HIGH_RISK_PRODUCTION_EVIDENCE} <= met
    assert {"lineage.training", "lineage.validation", "approvals.0"} <= met

    history = api.get(f"{API}/models/{demo.CREDIT_MODEL}/stage-history", headers=headers).json()
    assert history["production"] == 1
    v1 = [
        (c["from_stage"], c["to_stage"], c["actor"])
        for c in history["changes"]
        if c["version"] == 1
    ]
    assert v1 == [
        (None, "development", "sam"),
        ("development", "staging", "val"),
        ("staging", "production", "noor"),
    ]
    stages = {s["version"]: s["stage"] for s in history["stages"]}
    assert stages == {1: "production", 2: "staging"}


def test_the_approvals_inbox_holds_the_challenger_waiting_for_a_second_approver(summary, api):
    headers = bearer(tokens_of(summary)["noor"])  # the approver whose signature is missing
    r = api.get(f"{API}/transitions", params={"status": "pending"}, headers=headers)
    assert r.status_code == 200, r.text
    (pending,) = r.json()["items"]
    assert pending["id"] == summary.pending_transition
    assert (pending["model"], pending["version"]) == (demo.CREDIT_MODEL, summary.pending_version)
    assert (pending["from_stage"], pending["to_stage"]) == ("staging", "production")
    assert pending["requested_by"] == "morgan"
    unmet = [r for r in pending["evaluation"]["requirements"] if not r["met"]]
    assert [r["id"] for r in unmet] == ["approvals.0"]
    assert unmet[0]["data"]["counted"] == ["avery"] and unmet[0]["data"]["required"] == 2
    assert [(d["actor"], d["decision"]) for d in pending["decisions"]] == [("avery", "approve")]
    by_kind = evidence_of(api, headers, demo.CREDIT_MODEL, summary.pending_version)
    assert set(by_kind) == HIGH_RISK_PRODUCTION_EVIDENCE | {"champion_challenger"}
    for kind, e in by_kind.items():
        assert e["passed"] and (e["source"], e["created_by"]) == SOURCES[kind], e
    # The challenger was compared with v1 in production, on the same held-out rows.
    champion = by_kind["champion_challenger"]["results"]
    assert champion["champion"]["version"] == 1
    assert champion["challenger"]["version"] == summary.pending_version
    assert champion["rows"] == VALIDATION_ROWS
    assert champion["margin"] == pytest.approx(
        champion["challenger"]["value"] - champion["champion"]["value"]
    )
    assert champion["margin"] >= champion["min_margin"] == -0.01
    v1 = evidence_of(api, headers, demo.CREDIT_MODEL, 1)["performance"]["results"]["metrics"]
    assert champion["champion"]["value"] == pytest.approx(v1["roc_auc"]["value"])


def test_the_fraud_model_went_to_production_under_its_own_tier(summary, api):
    headers = bearer(tokens_of(summary)["audrey"])
    v = api.get(f"{API}/models/{demo.FRAUD_MODEL}/versions/1", headers=headers).json()
    assert v["stage"] == "production"
    by_kind = evidence_of(api, headers, demo.FRAUD_MODEL, 1)
    assert set(by_kind) == {"security_scan", "performance", "robustness"}
    assert all(e["passed"] for e in by_kind.values())
    scan = by_kind["security_scan"]
    assert (scan["source"], scan["created_by"]) == ("scan", "system")
    # Scanned under the limited policy's second version, which trusts the reviewed type.
    assert scan["suite"]["definition"]["trusted_types"] == sorted(demo.REVIEWED_TYPES)
    assert scan["results"]["sha256"] == v["artifact_sha256"]
    assert scan["results"]["findings"] == []
    for kind in ("performance", "robustness"):
        e = by_kind[kind]
        assert (e["source"], e["created_by"]) == ("validation", "val")
        assert e["suite"]["name"] == demo.FRAUD_SUITE
        assert e["dataset"] == f"{demo.FRAUD_DATASET}@2"  # the hold-out month
    performance = by_kind["performance"]["results"]
    assert performance["threshold"] == demo.FRAUD_THRESHOLD  # the alert threshold
    assert performance["metrics"]["roc_auc"]["value"] == pytest.approx(v["metrics"]["roc_auc"])
    assert performance["metrics"]["roc_auc"]["value"] >= 0.65

    staging, production = transitions_of(api, headers, demo.FRAUD_MODEL)
    # sam asked before any evidence existed; the validation run's evidence applied it.
    assert (staging["to_stage"], staging["status"], staging["requested_by"]) == (
        "staging",
        "applied",
        "sam",
    )
    assert staging["decisions"] == [] and staging["closed_by"] == "system"
    assert staging["evaluation_at_request"]["unmet"] == ["no performance evidence recorded"]
    met = {r["id"]: r["data"].get("evidence_id") for r in staging["evaluation"]["requirements"]}
    assert met == {
        "evidence.performance": by_kind["performance"]["id"],
        "evidence.security_scan": scan["id"],
    }
    for transition in (staging, production):
        assert transition["evaluation"]["policy"]["name"] == "limited"
        assert transition["evaluation"]["policy"]["version"] == 2
    assert [(d["actor"], d["decision"]) for d in production["decisions"]] == [("avery", "approve")]
    history = api.get(f"{API}/models/{demo.FRAUD_MODEL}/stage-history", headers=headers).json()
    assert [(c["to_stage"], c["actor"]) for c in history["changes"]] == [
        ("development", "ci-pipeline"),
        ("staging", "system"),
        ("production", "avery"),
    ]


def test_lifecycle_changes_are_audited_under_their_actors(summary, api):
    auditor = bearer(tokens_of(summary)["audrey"])
    events = api.get(f"{API}/audit/events", params={"limit": 1000}, headers=auditor).json()
    items = events["items"]
    seen = {(e["action"], e["actor"]) for e in items}
    assert {
        ("policy.create", "admin"),
        ("suite.create", "val"),
        ("validation.request", "val"),
        ("validation.complete", "system"),
        ("evidence.create", "system"),  # recorded by the server, on val's request
        ("evidence.create", "erin"),
        ("transition.request", "sam"),
        ("transition.request", "morgan"),
        ("transition.approve", "val"),
        ("transition.approve", "avery"),
        ("transition.approve", "noor"),
        ("transition.apply", "noor"),
        ("transition.apply", "system"),  # the fraud model's staging, when its evidence came
    } <= seen
    assert ("evidence.create", "val") not in seen  # val computes nothing by hand any more
    requested = [e for e in items if e["action"] == "validation.request"]
    assert sorted(e["target"] for e in requested) == [f"validation/{n}" for n in (1, 2, 3)]
    assert all(e["reason"].strip() and e["request_id"].startswith("demo-") for e in requested)
    computed = [e for e in items if e["action"] == "evidence.create" and e["actor"] == "system"]
    assert len(computed) == 2 * len(CREDIT_SUITE_KINDS) + 2
    assert {e["details"]["recorded_by"] for e in computed} == {"val"}
    assert {e["details"]["source"] for e in computed} == {"validation"}


def test_a_second_seed_changes_nothing(seeded, api, admin):
    before = api.get(f"{API}/audit/events", params={"limit": 1000}, headers=admin).json()
    again = demo.seed(seeded.server, train_rows=TRAIN_ROWS, validation_rows=VALIDATION_ROWS)
    assert not again.seeded
    assert all(u.token is None for u in again.users)
    assert "delete the data directory" in again.message
    after = api.get(f"{API}/audit/events", params={"limit": 1000}, headers=admin).json()
    assert after == before


def test_seed_refuses_a_directory_holding_other_users(server, make_user):
    make_user("data_scientist", name="sam")
    with pytest.raises(demo.DemoError, match="sam"):
        demo.seed(server, train_rows=TRAIN_ROWS, validation_rows=VALIDATION_ROWS)
    assert not demo.is_seeded(server)


def test_generated_data_is_deterministic(tmp_path):
    first = demo.generate_credit_applications(300, stream=1)
    again = demo.generate_credit_applications(300, stream=1)
    other = demo.generate_credit_applications(300, stream=2)
    assert demo.write_csv(tmp_path / "a.csv", first) == demo.write_csv(tmp_path / "b.csv", again)
    assert demo.write_csv(tmp_path / "c.csv", other) != demo.write_csv(tmp_path / "a.csv", first)
    assert 0.05 < first["default"].mean() < 0.4  # a plausible default rate
    assert set(first["employment_type"]) <= set(demo.EMPLOYMENT)


def test_main_seeds_prints_tokens_once_and_serves(tmp_path, monkeypatch, capsys):
    import uvicorn

    # The story at the size of this module's (the full size only takes longer).
    seed = functools.partial(demo.seed, train_rows=TRAIN_ROWS, validation_rows=VALIDATION_ROWS)
    monkeypatch.setattr(demo, "seed", seed)
    for name in ("MLGOV_DATABASE_URL", "MLGOV_ARTIFACTS_URL", "MLGOV_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    admin_token = "mlgov_demo-test-admin-token-0123456789abcdef"
    monkeypatch.setenv("MLGOV_BOOTSTRAP_ADMIN_TOKEN", admin_token)
    served: list[tuple[Any, str, int]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port: served.append((app, host, port)))
    frozen: list[bool] = []  # gc.freeze() is for a serving process, not for the test session
    monkeypatch.setattr(mlgov.server.gc, "freeze", lambda: frozen.append(True))

    demo.main(tmp_path / "data", "127.0.0.1", 8765)
    out = capsys.readouterr().out
    assert "http://127.0.0.1:8765" in out and "/docs" in out
    assert admin_token in out
    for name, roles, _kind in demo.DEMO_USERS:
        assert name in out and roles[0] in out
    assert out.count("mlgov_") >= 1 + len(demo.DEMO_USERS)
    assert 'curl -H "Authorization: Bearer mlgov_' in out
    assert "mlgov login --url http://127.0.0.1:8765 --token mlgov_" in out
    assert "mlgov models list" in out
    assert "mlgov transitions --status pending" in out
    assert f"mlgov history {demo.CREDIT_MODEL}" in out
    assert f"mlgov evidence list {demo.CREDIT_MODEL} 1" in out
    assert "mlgov validations" in out
    assert "Seeded the demo in " in out
    assert [(host, port) for _app, host, port in served] == [("127.0.0.1", 8765)]
    assert frozen == [True]

    demo.main(tmp_path / "data", "127.0.0.1", 8765)
    out = capsys.readouterr().out
    assert "seeded already" in out and admin_token not in out and "mlgov_" not in out
    assert len(served) == 2

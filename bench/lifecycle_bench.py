"""Lifecycle benchmark: policy evaluation and transition application latency.

The data set is what a busy governance team accumulates: N models of the ``high`` risk tier (the
strictest built-in pack: seven evidence kinds on a named dataset version, two distinct
approvers, complete model documentation, training and validation lineage, complete datasheets),
each with one version linked to a training and a validation dataset version (full datasheets),
and 50 evidence records per version of several kinds, some failed and passed later, recorded
by validators (the ethics reviews by an ethics reviewer), never by the version's creator.

Set-up, all through the real services with real actor contexts unless said otherwise: users
created by the bootstrap admin (``IdentityService.create_user``), datasets and their versions,
models and versions (random ~1 KiB artifacts through the real store). **Seeding only:** 48 of
each version's 50 evidence records are inserted in bulk into the ``evidence`` table, in one
transaction, with their ``content_sha256`` computed exactly as the service computes it
(:func:`mlgov.lifecycle.service.evidence_document`); they have no audit events. The change path
records about 80 evidence records per second on the benchmark machine (12-13 ms each, with the
audit append and the re-evaluation of the version's pending request), so 50,000 would take
~11 minutes of seeding that measures nothing the 2,000 timed ones below do not.

Then, for every model in a shuffled order, phase by phase, timed one call at a time (the first
10 calls of each phase are warm-up and not counted):

1. **request to staging** (``LifecycleService.request_transition`` by the data scientist): a
   change with its audit event; evaluates the staging rules once; stays pending (it needs a
   validator's approval).
2. **evidence through the service** (``add_evidence``, twice per version, by a validator): the
   last two of the 50 records, each a change that re-evaluates the pending staging request.
3. **staging approval** (``decide`` by a validator): meets the last staging requirement and
   applies the move.
4. **(c) request to production** (``request_transition`` by the model manager), end to end:
   permission checks, the model's row locked, the request row, **one evaluation** of the
   production rules over the version's 50 evidence records, lineage, datasheets and
   documentation, the audit append and the commit. Stays pending: it needs two approvers.
5. **(a) policy evaluation**: the pending production request evaluated again on a read-only
   path: a read session opened, the request, model and version rows loaded, and the service's
   evaluation (``LifecycleService._evaluate``: the current policy row, the newest evidence of
   each required kind, the decisions, lineage with datasheets, and the pure rule evaluation);
   nothing is written. The evaluation alone (without the session and the three row loads) is
   printed beside it.
6. **first approval** (``decide`` by one approver): recorded, re-evaluated, still pending.
7. **(b) transition application**: the second approver's ``decide``, end to end: the request's
   lock, separation-of-duties checks, the decision row, the re-evaluation that finds every
   requirement met, the version moved to production with its stage change, the request closed,
   the audit events (decision and application) appended and the commit.

Target (product requirement): p95 < 20 ms on SQLite for (a) and (b), with 1,000 models and 50
evidence records each. (c) and the other phases are reported for information.

Runs on SQLite in a temporary data directory by default. With ``--database-url
postgresql://user@host:port/db`` it creates a database of its own on that server
(``mlgov_bench_<random>``), runs there and drops it at the end.

    .venv/bin/python bench/lifecycle_bench.py            # 1,000 models, 50,000 evidence records
    .venv/bin/python bench/lifecycle_bench.py --quick    # 510 models, 25,500 evidence records
    .venv/bin/python bench/lifecycle_bench.py --quick --profile /tmp/lifecycle-prof
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import os
import platform
import pstats
import random
import secrets
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from registry_bench import bench_database  # the sibling script: SQLite or a fresh PG database
from sqlalchemy import event, func, insert, select, text

from mlgov.config import Settings
from mlgov.context import Context
from mlgov.db import utcnow
from mlgov.identity.service import actor_of
from mlgov.lifecycle.models import Evidence, TransitionRequest
from mlgov.lifecycle.schemas import (
    Check,
    DatasetRef,
    DecisionCreate,
    EvidenceCreate,
    SuiteRef,
    TransitionCreate,
)
from mlgov.lifecycle.service import evidence_document
from mlgov.registry.models import Model, ModelVersion
from mlgov.registry.schemas import (
    ArtifactFormat,
    CodeRef,
    ColumnSpec,
    DatasetCreate,
    DatasetVersionCreate,
    Datasheet,
    Environment,
    FeatureSpec,
    LineageRef,
    ModelCreate,
    PersonalData,
    RiskTier,
    Signature,
    Stage,
    VersionMetadata,
)
from mlgov.server import Server, build_server, freeze_startup_objects

TARGET_P95_MS = 20.0
ADMIN_TOKEN = "mlgov_bench-admin-" + "0" * 32
EVIDENCE_PER_VERSION = 50
SERVICE_EVIDENCE_PER_VERSION = 2  # the last ones, through add_evidence (timed)
DATASETS = 10  # each with a training (v1) and a validation (v2) extract
WARMUP = 10  # calls per phase not counted
QUICK_MODELS = 500 + WARMUP  # 500 timed samples per measurement
ARTIFACT_BYTES = 1024
INSERT_BATCH = 2_000

#: Bulk-seeded records per version by kind (48): the production rules' seven kinds, and data
#: quality reports, which no rule names (the evaluation must skip them).
BULK_PLAN: tuple[tuple[str, int], ...] = (
    ("performance", 9),
    ("fairness", 8),
    ("explainability", 5),
    ("robustness", 7),
    ("reproducibility", 6),
    ("security_scan", 6),
    ("ethics_review", 2),
    ("data_quality", 5),
)
assert sum(n for _, n in BULK_PLAN) == EVIDENCE_PER_VERSION - SERVICE_EVIDENCE_PER_VERSION
NO_DATASET_KINDS = {"ethics_review", "security_scan"}
VALIDATORS = ("bench-validator-1", "bench-validator-2", "bench-validator-3")
APPROVERS = ("bench-approver-1", "bench-approver-2", "bench-approver-3", "bench-approver-4")
PEOPLE: dict[str, str] = {
    "bench-scientist": "data_scientist",
    "bench-engineer": "data_engineer",
    "bench-manager": "model_manager",
    "bench-ethics": "ethics_reviewer",
    **dict.fromkeys(VALIDATORS, "validator"),
    **dict.fromkeys(APPROVERS, "approver"),
}
WORDS = (
    "credit",
    "underwriting",
    "collections",
    "mortgage",
    "claims",
    "triage",
    "hiring",
    "admissions",
    "benefits",
    "kyc",
    "readmission",
    "imaging",
)
TEAMS = ("retail-credit", "insurance-uw", "hr-analytics", "clinical-ai", "public-sector")


# -- output --------------------------------------------------------------------------------------


def say(message: str = "") -> None:
    print(message, flush=True)


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def latency(values: Sequence[float]) -> str:
    return (
        f"p50 {pct(values, 50):6.2f}  p95 {pct(values, 95):6.2f}  p99 {pct(values, 99):6.2f}  "
        f"max {max(values):7.2f} ms  (n={len(values):,})"
    )


# -- set-up --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cast:
    ctx: dict[str, Context]

    def __getitem__(self, name: str) -> Context:
        return self.ctx[name]


def make_cast(server: Server) -> Cast:
    """The bench's people, created by the bootstrap admin like any other users."""
    identity = server.services.identity
    admin = Context(actor_of(identity.get_user("admin")), "bench-setup", "127.0.0.1")
    contexts = {}
    for name, role in PEOPLE.items():
        user = identity.create_user(admin, name=name, roles=[role], reason=f"benchmark {role}")
        contexts[name] = Context(actor_of(user), "bench", "127.0.0.1")
    return Cast(contexts)


def datasheet(name: str, extract: str) -> Datasheet:
    return Datasheet(
        motivation=f"Created to develop and validate the {name} models ({extract}).",
        composition=f"One row per case of the {name} portfolio ({extract}); no direct "
        "identifiers, pseudonymous keys only.",
        collection="Extracted from the system of record with outcomes observed 12 months later.",
        preprocessing="Amounts rounded, categories normalised, no imputation.",
        uses="Training and validation of the owning team's models only.",
        distribution="Internal only; stored in the EU.",
        maintenance="Owned by the team's data engineering; a new version every quarter.",
        personal_data=PersonalData(
            present=True,
            legal_basis="GDPR Art. 6(1)(b) - contract",
            categories=["financial situation"],
        ),
    )


def seed_datasets(server: Server, cast: Cast) -> dict[str, dict[int, int]]:
    """``DATASETS`` datasets with a training (v1) and a validation (v2) version; returns the
    dataset version ids by name and number."""
    registry = server.services.registry
    ids: dict[str, dict[int, int]] = {}
    for d in range(DATASETS):
        name = f"bench-data-{d:02d}"
        registry.create_dataset(
            cast["bench-engineer"],
            DatasetCreate(name=name, owner_team=TEAMS[d % len(TEAMS)], reason="benchmark data"),
        )
        ids[name] = {}
        for extract in ("training extract", "out-of-time validation extract"):
            dv = registry.create_dataset_version(
                cast["bench-engineer"],
                name,
                DatasetVersionCreate(
                    content_sha256=secrets.token_hex(32),
                    uri=f"s3://bench/{name}/{extract.split()[0]}.parquet",
                    schema=[ColumnSpec(name="amount", type="double")],
                    row_count=50_000,
                    datasheet=datasheet(name, extract),
                    reason=f"benchmark {extract}",
                ),
            )
            ids[name][dv.version] = dv.id
    return ids


SIGNATURE = Signature(
    inputs=[
        FeatureSpec(name="amount", type="double", min=0.0, max=1e6),
        FeatureSpec(name="term", type="integer", min=1, max=120),
        FeatureSpec(name="segment", type="string", categories=["a", "b", "c"]),
    ],
    outputs=[FeatureSpec(name="score", type="double", min=0.0, max=1.0)],
)


@dataclass
class Subject:
    """One benchmark model and what the phases need to know about it."""

    name: str
    dataset: str
    version_id: int = 0
    staging_request: int = 0
    production_request: int = 0


def seed_models(server: Server, cast: Cast, count: int, rng: random.Random) -> list[Subject]:
    services = server.services
    registry, store = services.registry, services.store
    limit = services.settings.max_artifact_bytes
    subjects = []
    started = time.perf_counter()
    for i in range(count):
        word = WORDS[i % len(WORDS)]
        team = TEAMS[i % len(TEAMS)]
        subject = Subject(f"{word}-model-{i:05d}", f"bench-data-{rng.randrange(DATASETS):02d}")
        registry.create_model(
            cast["bench-scientist"],
            ModelCreate(
                name=subject.name,
                description=f"{word.capitalize()} decision support model number {i}.",
                owner_team=team,
                risk_tier=RiskTier.HIGH,
                domain=f"{word} (EU AI Act Annex III)",
                intended_use=f"Decision support for {team} caseworkers; a person decides.",
                out_of_scope_uses=["Fully automated decisions without human review"],
                tags=["annex-iii", word],
                reason=f"register {subject.name} (benchmark)",
            ),
        )
        with store.writer(limit) as writer:
            writer.write(rng.randbytes(ARTIFACT_BYTES))
            artifact = writer.commit()
        version = registry.create_version(
            cast["bench-scientist"],
            subject.name,
            VersionMetadata(
                format=ArtifactFormat.OTHER,
                signature=SIGNATURE,
                algorithm="gradient boosted trees (benchmark artifact)",
                hyperparameters={"n_estimators": 300, "max_depth": 4},
                metrics={"roc_auc": round(rng.uniform(0.7, 0.9), 4)},
                code_ref=CodeRef(
                    repository=f"https://git.example.com/{team}/{subject.name}",
                    commit=secrets.token_hex(20),
                ),
                environment=Environment(
                    python=platform.python_version(), packages={"scikit-learn": "1.5.2"}
                ),
                changelog="First candidate for validation.",
                datasets=[
                    LineageRef(dataset=subject.dataset, version=1, role="training"),
                    LineageRef(dataset=subject.dataset, version=2, role="validation"),
                ],
                reason="first candidate (benchmark)",
            ),
            artifact,
            f"{subject.name}.bin",
        )
        subject.version_id = version.id
        subjects.append(subject)
        if (i + 1) % max(1, count // 5) == 0:
            elapsed = time.perf_counter() - started
            say(f"    models with their version {i + 1:>6,}/{count:,}  {elapsed:6.1f} s")
    return subjects


def evidence_content(
    kind: str, passed: bool, rng: random.Random
) -> tuple[str, dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """Summary, suite, results and checks of a plausible record of ``kind``."""
    if kind == "performance":
        auc = round(rng.uniform(0.76, 0.86) if passed else rng.uniform(0.62, 0.69), 4)
        checks = [Check(name="roc_auc", passed=passed, value=auc, threshold=0.7)]
        results: dict[str, Any] = {"roc_auc": auc, "brier": round(rng.uniform(0.08, 0.14), 4)}
    elif kind == "fairness":
        ratio = round(rng.uniform(0.84, 0.97) if passed else rng.uniform(0.6, 0.78), 4)
        checks = [Check(name="disparate_impact_ratio", passed=passed, value=ratio, threshold=0.8)]
        results = {"groups": {"<30": 0.81, "30-60": 0.86, "60+": 0.84}, "ratio": ratio}
    elif kind == "robustness":
        flips = round(rng.uniform(0.001, 0.015) if passed else rng.uniform(0.03, 0.08), 4)
        checks = [Check(name="decision_flip_rate", passed=passed, value=flips, threshold=0.02)]
        results = {"noise": "1% of each numeric feature's std", "flip_rate": flips}
    elif kind == "explainability":
        checks = [Check(name="importances_computed", passed=passed, value=passed)]
        results = {"permutation_importance": {"amount": 0.12, "term": 0.05, "segment": 0.01}}
    elif kind == "reproducibility":
        checks = [
            Check(name="data_hash_matches", passed=True, value=True),
            Check(name="predictions_identical", passed=passed, value=passed),
        ]
        results = {"max_abs_difference": 0.0 if passed else 1e-3}
    elif kind == "security_scan":
        untrusted = [] if passed else ["builtins.eval"]
        checks = [Check(name="no_untrusted_types", passed=passed, value=len(untrusted))]
        results = {"untrusted_types": untrusted}
    elif kind == "ethics_review":
        checks = [Check(name="human_oversight", passed=passed, value=passed)]
        results = {"outcome": "approved" if passed else "changes requested"}
    else:
        missing = 0 if passed else rng.randint(1, 40)
        checks = [Check(name="missing_values", passed=passed, value=missing, threshold=0)]
        results = {"rows": 50_000, "missing": missing}
    summary = f"{kind.replace('_', ' ')}: {'passed' if passed else 'failed'}"
    suite = {"name": f"bench-{kind}", "version": "1.0", "definition": {}}
    return summary, suite, results, [c.model_dump() for c in checks]


def bulk_evidence(
    server: Server, subjects: Sequence[Subject], dv_ids: dict[str, dict[int, int]], seed: int
) -> float:
    """SEEDING ONLY: 48 records per version inserted in one transaction (no audit events),
    hashed as the service hashes them. Returns the seconds it took."""
    rng = random.Random(seed)
    table = Evidence.__table__
    now = utcnow()
    started = time.perf_counter()
    with server.services.db.write() as session:
        rows: list[dict[str, Any]] = []
        for subject in subjects:
            plan = [kind for kind, n in BULK_PLAN for _ in range(n)]
            rng.shuffle(plan)
            last = {kind: i for i, kind in enumerate(plan)}  # the newest of each kind passes
            when = now - timedelta(days=120)
            step = timedelta(days=110) / len(plan)
            for i, kind in enumerate(plan):
                when += step * rng.uniform(0.5, 1.5)
                passed = i == last[kind] or rng.random() > 0.3
                if kind == "ethics_review":
                    passed = i == last[kind]  # changes requested, then approved
                by = "bench-ethics" if kind == "ethics_review" else rng.choice(VALIDATORS)
                dataset: tuple[str, int] | None = None
                if kind not in NO_DATASET_KINDS:
                    dataset = (subject.dataset, 2)
                summary, suite, results, checks = evidence_content(kind, passed, rng)
                created_at = when.replace(microsecond=rng.randrange(1_000_000))
                content = evidence_document(
                    model=subject.name,
                    version=1,
                    kind=kind,
                    passed=passed,
                    summary=summary,
                    suite=suite,
                    dataset=f"{dataset[0]}@{dataset[1]}" if dataset else None,
                    results=results,
                    checks=checks,
                    attachments=[],
                    created_by=by,
                    created_at=created_at,
                )
                rows.append(
                    {
                        "model_version_id": subject.version_id,
                        "kind": kind,
                        "passed": passed,
                        "summary": summary,
                        "suite": suite,
                        "dataset_version_id": dv_ids[dataset[0]][dataset[1]] if dataset else None,
                        "results": results,
                        "checks": checks,
                        "attachments": [],
                        "created_at": created_at,
                        "created_by": by,
                        "content_sha256": hashlib.sha256(content).hexdigest(),
                    }
                )
            if len(rows) >= INSERT_BATCH:
                session.execute(insert(table), rows)
                rows = []
        if rows:
            session.execute(insert(table), rows)
    return time.perf_counter() - started


# -- phases --------------------------------------------------------------------------------------


@dataclass
class Phase:
    label: str
    values: list[float] = field(default_factory=list)  # ms, warm-up excluded
    inner: list[float] = field(default_factory=list)  # (a): the evaluation alone


def run_phase(
    label: str,
    subjects: Sequence[Subject],
    call: Callable[[Subject], float | None],
    rng: random.Random,
    profiler: cProfile.Profile | None = None,
    *,
    quiet: bool = False,
) -> Phase:
    """``call`` once per subject, in a shuffled order, timed; a float it returns is an inner
    time (ms) kept beside the whole call's."""
    order = list(subjects)
    rng.shuffle(order)
    phase = Phase(label)
    clock = time.perf_counter
    started = clock()
    for i, subject in enumerate(order):
        if profiler is not None:
            profiler.enable()
        t0 = clock()
        inner = call(subject)
        elapsed = (clock() - t0) * 1e3
        if profiler is not None:
            profiler.disable()
        if i >= WARMUP:
            phase.values.append(elapsed)
            if inner is not None:
                phase.inner.append(inner)
    if profiler is None and not quiet:
        say(f"  {label:<34} {latency(phase.values)}  [{clock() - started:.0f} s]")
    return phase


#: The phases, in order: (method of :class:`Steps`, label).
STEPS = (
    ("staging_request", "request to staging"),
    ("evidence", "add_evidence x2 (pending request)"),
    ("staging_apply", "staging approval (applies)"),
    ("production_request", "(c) request to production"),
    ("evaluate", "(a) policy evaluation (read path)"),
    ("first_approval", "first production approval"),
    ("final_approval", "(b) final approval (applies)"),
)


class Steps:
    """One call per lifecycle step of a subject, through the service API."""

    def __init__(self, server: Server, cast: Cast, rng: random.Random) -> None:
        self.server = server
        self.services = server.services
        self.lifecycle = server.services.lifecycle
        self.cast = cast
        self.rng = rng
        self.max_bytes = server.services.settings.max_request_bytes

    def staging_request(self, s: Subject) -> None:
        view = self.lifecycle.request_transition(
            self.cast["bench-scientist"],
            TransitionCreate(
                model=s.name,
                version=1,
                to_stage=Stage.STAGING,
                reason="ready for independent validation",
            ),
        )
        assert view.request.status == "pending", view.request.evaluation["unmet"]
        s.staging_request = view.request.id

    def evidence(self, s: Subject) -> None:
        for kind in ("performance", "security_scan"):
            summary, suite, results, checks = evidence_content(kind, True, self.rng)
            self.lifecycle.add_evidence(
                self.cast[self.rng.choice(VALIDATORS)],
                s.name,
                1,
                EvidenceCreate(
                    kind=kind,
                    passed=True,
                    summary=summary,
                    suite=SuiteRef(**suite),
                    dataset=None
                    if kind in NO_DATASET_KINDS
                    else DatasetRef(dataset=s.dataset, version=2),
                    results=results,
                    checks=[Check(**c) for c in checks],
                    reason=f"re-run of the {kind} suite on the final candidate",
                ),
                self.max_bytes,
            )

    def staging_apply(self, s: Subject) -> None:
        view = self.lifecycle.decide(
            self.cast[self.rng.choice(VALIDATORS)],
            s.staging_request,
            DecisionCreate(decision="approve", comment="validation report VR-1 attached"),
        )
        assert view.request.status == "applied", view.request.evaluation["unmet"]

    def production_request(self, s: Subject) -> None:
        view = self.lifecycle.request_transition(
            self.cast["bench-manager"],
            TransitionCreate(
                model=s.name,
                version=1,
                to_stage=Stage.PRODUCTION,
                reason="validated; release to production",
            ),
        )
        evaluation = view.request.evaluation
        unmet = [r["id"] for r in evaluation["requirements"] if not r["met"]]
        assert view.request.status == "pending" and unmet == ["approvals.0"], unmet
        s.production_request = view.request.id

    def evaluate(self, s: Subject) -> float:
        """The read-only re-evaluation; returns the time of ``_evaluate`` alone (ms)."""
        with self.services.db.read() as session:
            request = session.get(TransitionRequest, s.production_request)
            assert request is not None
            model = session.get(Model, request.model_id)
            version = session.get(ModelVersion, request.model_version_id)
            assert model is not None and version is not None
            t0 = time.perf_counter()
            evaluation = self.lifecycle._evaluate(session, model, version, request)
            inner = (time.perf_counter() - t0) * 1e3
        assert len(evaluation["requirements"]) == 7 + 14 + 2 + 1, evaluation["requirements"]
        return inner

    def first_approval(self, s: Subject) -> None:
        first, _ = self.approvers(s)
        view = self.lifecycle.decide(
            self.cast[first],
            s.production_request,
            DecisionCreate(decision="approve", comment="model risk sign-off 1 of 2"),
        )
        assert view.request.status == "pending"

    def final_approval(self, s: Subject) -> None:
        _, second = self.approvers(s)
        view = self.lifecycle.decide(
            self.cast[second],
            s.production_request,
            DecisionCreate(decision="approve", comment="model risk sign-off 2 of 2"),
        )
        assert view.request.status == "applied", view.request.evaluation["unmet"]

    @staticmethod
    def approvers(s: Subject) -> tuple[str, str]:
        i = int(s.name.rsplit("-", 1)[1])
        return APPROVERS[i % len(APPROVERS)], APPROVERS[(i + 1) % len(APPROVERS)]


def run_all(steps: Steps, subjects: Sequence[Subject], rng: random.Random) -> dict[str, Phase]:
    phases = {}
    for key, label in STEPS:
        phases[key] = run_phase(label, subjects, getattr(steps, key), rng)
        if key == "evaluate":
            say(f"  {'    of which _evaluate alone':<34} {latency(phases[key].inner)}")
    return phases


class SqlMeter:
    """Counts the SQL statements sent and the time spent in the driver's ``execute`` (the
    commit's fsync is not in it: cProfile shows it as the driver's ``commit``)."""

    def __init__(self, server: Server) -> None:
        db = server.services.db
        self.engines = {id(e): e for e in (db.engine, db._write_engine)}.values()
        self.statements = 0
        self.seconds = 0.0
        self._started: list[float] = []

    def _before(self, *_args: Any) -> None:
        self._started.append(time.perf_counter())

    def _after(self, *_args: Any) -> None:
        self.seconds += time.perf_counter() - self._started.pop()
        self.statements += 1

    def __enter__(self) -> SqlMeter:
        for engine in self.engines:
            event.listen(engine, "before_cursor_execute", self._before)
            event.listen(engine, "after_cursor_execute", self._after)
        return self

    def __exit__(self, *_exc: object) -> None:
        for engine in self.engines:
            event.remove(engine, "before_cursor_execute", self._before)
            event.remove(engine, "after_cursor_execute", self._after)


def profile_all(steps: Steps, subjects: Sequence[Subject], rng: random.Random, out: Path) -> None:
    """The phases once more over extra models, untimed: the first half with the SQL
    statements counted and timed, the second half under cProfile (top costs of (a), (b) and
    (c) printed; every phase's statistics written to ``out``)."""
    out.mkdir(parents=True, exist_ok=True)
    half = len(subjects) // 2
    metered, profiled = subjects[:half], subjects[half:]
    say(
        f"\nSQL per call over {len(metered)} extra models (the time per call: p50 after "
        f"{WARMUP} warm-up calls):"
    )
    for key, label in STEPS:
        with SqlMeter(steps.server) as meter:
            phase = run_phase(key, metered, getattr(steps, key), rng, quiet=True)
        n = len(metered)
        say(
            f"  {label:<30} {meter.statements / n:5.1f} statements, "
            f"{meter.seconds * 1e3 / n:5.2f} ms in the driver's execute, "
            f"{pct(phase.values, 50):6.2f} ms per call (p50)"
        )
    for key, _label in STEPS:
        profiler = cProfile.Profile()
        run_phase(key, profiled, getattr(steps, key), rng, profiler)
        path = out / f"{key}.prof"
        profiler.dump_stats(path)
        if key in {"production_request", "evaluate", "final_approval"}:
            say(f"\nprofile of {key} over {len(profiled)} extra models: {path}")
            print_profile(path)


def print_profile(path: Path, limit: int = 18) -> None:
    buffer = io.StringIO()
    stats = pstats.Stats(str(path), stream=buffer)
    stats.sort_stats("cumulative").print_stats(
        "mlgov|sqlalchemy/orm/session|sqlite3|psycopg", limit
    )
    lines = buffer.getvalue().splitlines()
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    for line in lines[max(0, start - 3) :]:
        if line.strip():
            say("    " + line.rstrip())


# -- report --------------------------------------------------------------------------------------


def counts(server: Server) -> dict[str, int]:
    from mlgov.audit.models import AuditEvent
    from mlgov.lifecycle.models import StageChange, TransitionDecision

    out = {}
    with server.services.db.read() as session:
        for label, column in (
            ("models", Model.id),
            ("versions", ModelVersion.id),
            ("evidence", Evidence.id),
            ("requests", TransitionRequest.id),
            ("decisions", TransitionDecision.id),
            ("stage changes", StageChange.id),
            ("audit events", AuditEvent.seq),
        ):
            out[label] = int(session.execute(select(func.count(column))).scalar_one())
        out["in production"] = int(
            session.execute(
                select(func.count(ModelVersion.id)).where(ModelVersion.stage == "production")
            ).scalar_one()
        )
    return out


def report(
    backend: str,
    machine: str,
    load: tuple[float, float],
    rows: dict[str, int],
    seeding: dict[str, float],
    phases: dict[str, Phase],
) -> bool:
    a, b, c = phases["evaluate"], phases["final_approval"], phases["production_request"]
    pass_a = pct(a.values, 95) < TARGET_P95_MS
    pass_b = pct(b.values, 95) < TARGET_P95_MS

    def row(phase: Phase) -> str:
        v = phase.values
        return f"p50 {pct(v, 50):.2f}  p95 {pct(v, 95):.2f}  p99 {pct(v, 99):.2f} ms"

    verdict = {True: "PASS", False: "FAIL"}
    lines = [
        f"backend                    {backend}",
        f"machine                    {machine}",
        f"load average               {load[0]:.2f} at start, {load[1]:.2f} at end",
        f"data                       {rows['models']:,} high-risk models, {rows['versions']:,} "
        f"versions, {rows['evidence']:,} evidence records, {rows['requests']:,} requests, "
        f"{rows['decisions']:,} decisions, {rows['audit events']:,} audit events",
        f"seeding                    models+versions {seeding['models']:.0f} s, bulk evidence "
        f"{seeding['bulk']:.1f} s",
        f"(a) policy evaluation      {row(a)}   target p95 < {TARGET_P95_MS:.0f} ms: "
        f"{verdict[pass_a]}",
        f"    _evaluate alone        p50 {pct(a.inner, 50):.2f}  p95 {pct(a.inner, 95):.2f}  "
        f"p99 {pct(a.inner, 99):.2f} ms",
        f"(b) transition applied     {row(b)}   target p95 < {TARGET_P95_MS:.0f} ms: "
        f"{verdict[pass_b]}",
        f"(c) request to production  {row(c)}",
        f"    request to staging     {row(phases['staging_request'])}",
        f"    staging approval       {row(phases['staging_apply'])}",
        f"    first prod. approval   {row(phases['first_approval'])}",
        f"    add_evidence x2        {row(phases['evidence'])}",
        f"samples                    {len(a.values):,} per measurement ({WARMUP} warm-up calls "
        "per phase not counted)",
    ]
    width = max(len(line) for line in lines)
    say("\n" + "=" * width)
    say("\n".join(lines))
    say("=" * width)
    return pass_a and pass_b


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--models", type=int, default=1_000, help="high-risk models (default 1,000)"
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="postgresql://user@host:port/db: run in a fresh database created on that server "
        "(dropped at the end); default: SQLite in a temporary directory",
    )
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_MODELS} models (a fast run)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument(
        "--profile",
        metavar="DIR",
        type=Path,
        help="after the timed phases, run them over 100 extra models under cProfile, write "
        "the statistics to DIR and print the top costs",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.models = QUICK_MODELS
    if args.models < WARMUP + 1:
        parser.error(f"--models must be more than {WARMUP}")
    return args


def run(args: argparse.Namespace, data_dir: Path, url: str) -> bool:
    rng = random.Random(args.seed)
    load_start = os.getloadavg()[0]
    settings = Settings(data_dir=data_dir, database_url=url, bootstrap_admin_token=ADMIN_TOKEN)
    server = build_server(settings)
    backend = server.services.db.dialect
    machine = (
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.system()} "
        f"{platform.machine()}, SQLite {sqlite3.sqlite_version}"
    )
    if backend == "postgresql":
        with server.services.db.read() as session:
            version = session.execute(text("SHOW server_version")).scalar_one()
            sync = session.execute(text("SHOW synchronous_commit")).scalar_one()
        machine += f", PostgreSQL {version} (synchronous_commit={sync})"
    extra = 100 if args.profile else 0
    say(f"mlgov lifecycle benchmark on {backend}, data in {data_dir}")
    try:
        cast = make_cast(server)
        dv_ids = seed_datasets(server, cast)
        say(f"seeding {args.models + extra:,} high-risk models, one version each ...")
        t0 = time.perf_counter()
        subjects = seed_models(server, cast, args.models + extra, rng)
        seeding = {"models": time.perf_counter() - t0}
        bulk = EVIDENCE_PER_VERSION - SERVICE_EVIDENCE_PER_VERSION
        say(f"seeding {len(subjects) * bulk:,} evidence records in bulk (seeding only) ...")
        seeding["bulk"] = bulk_evidence(server, subjects, dv_ids, args.seed)
        say(f"    {seeding['bulk']:.1f} s")
        timed, profiled = subjects[: args.models], subjects[args.models :]
        freeze_startup_objects()  # as `mlgov serve` does before it serves
        say(f"timing the lifecycle of {len(timed):,} models, step by step (ms per call):")
        steps = Steps(server, cast, rng)
        phases = run_all(steps, timed, rng)
        rows = counts(server)
        assert rows["evidence"] == len(subjects) * bulk + len(timed) * 2, rows
        assert rows["in production"] == len(timed), rows
        load = (load_start, os.getloadavg()[0])
        passed = report(backend, machine, load, rows, seeding, phases)
        if args.profile:
            profile_all(steps, profiled, rng, args.profile)
        return passed
    finally:
        server.services.db.dispose()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="mlgov-lifecycle-bench-"))
    data_dir = tmp / "data"
    data_dir.mkdir()
    try:
        with bench_database(args.database_url, data_dir) as url:
            passed = run(args, data_dir, url)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())

"""Registry benchmark: registration throughput and catalog search latency.

Registers N models and N x K versions (random ~1 KiB artifacts) through the real services --
:class:`~mlgov.registry.service.RegistryService` with real actor contexts, artifacts through the
real content-addressed store, every change with its audit event in the same transaction -- then
runs catalog searches (``GET /api/v1/models`` with free text, owner team, risk tier, tag and
stage filters, and cursor pages) through the HTTP app in process (FastAPI's TestClient, so
authentication, validation and serialisation are included; no network).

It prints the version registration rate, the audit events written per second over the whole
registration phase, and search latency p50/p95/p99 overall and per kind of query, then states
pass/fail against the target (p95 < 50 ms).

Runs on SQLite in a temporary data directory by default. With ``--database-url
postgresql://user@host:port/db`` it connects to that server, creates a database of its own
(``mlgov_bench_<random>``), runs there and drops it at the end.

    .venv/bin/python bench/registry_bench.py            # 10,000 models, 100,000 versions
    .venv/bin/python bench/registry_bench.py --quick    # 1,000 models, 10,000 versions
"""

from __future__ import annotations

import argparse
import cProfile
import os
import platform
import random
import secrets
import shutil
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from mlgov.api import registry as registry_api
from mlgov.audit.models import AuditEvent
from mlgov.config import Settings
from mlgov.context import Context
from mlgov.db import normalise_url
from mlgov.identity.service import actor_of
from mlgov.registry.models import Model, ModelVersion
from mlgov.registry.schemas import (
    ArtifactFormat,
    CodeRef,
    ColumnSpec,
    DatasetCreate,
    DatasetVersionCreate,
    Environment,
    FeatureSpec,
    LineageRef,
    ModelCreate,
    RiskTier,
    Signature,
    Stage,
    VersionMetadata,
)
from mlgov.server import Server, build_server, freeze_startup_objects

TARGET_P95_MS = 50.0
ARTIFACT_BYTES = 1024
ADMIN_TOKEN = "mlgov_bench-admin-" + "0" * 32
DATASETS = 100
WARMUP_QUERIES = 50

WORDS = (
    "credit",
    "fraud",
    "churn",
    "pricing",
    "demand",
    "forecast",
    "recommendation",
    "claims",
    "underwriting",
    "triage",
    "anomaly",
    "sentiment",
    "routing",
    "inventory",
    "marketing",
    "collections",
    "kyc",
    "aml",
    "readmission",
    "imaging",
    "propensity",
    "retention",
    "default",
    "ranking",
)
NOUNS = ("scorer", "classifier", "ranker", "regressor", "detector", "model", "estimator")
TEAMS = (
    "retail-credit",
    "payments",
    "marketing-analytics",
    "supply-chain",
    "claims-ops",
    "clinical-ai",
    "risk-analytics",
    "customer-care",
    "pricing",
    "growth",
    "search",
    "ads",
    "logistics",
    "hr-analytics",
    "treasury",
    "compliance",
    "wealth",
    "insurance-uw",
    "telco-ops",
    "energy-trading",
    "radiology",
    "pharmacy",
    "security",
    "platform",
)
TAGS = (
    "gdpr",
    "pii",
    "batch",
    "realtime",
    "tabular",
    "nlp",
    "vision",
    "timeseries",
    "champion",
    "challenger",
    "experimental",
    "regulated",
    "annex-iii",
    "sr-11-7",
    "customer-facing",
    "internal",
    "eu",
    "us",
    "apac",
    "gbm",
    "linear",
    "deep-learning",
    "ensemble",
    "cost-sensitive",
    "fairness-reviewed",
    "explainable",
    "retrain-weekly",
    "retrain-monthly",
    "shadow",
    "legacy",
)
TIERS = (RiskTier.MINIMAL, RiskTier.LIMITED, RiskTier.HIGH, RiskTier.UNACCEPTABLE)
TIER_WEIGHTS = (40, 35, 22, 3)


# -- set-up --------------------------------------------------------------------------------------


@contextmanager
def bench_database(url: str | None, data_dir: Path) -> Iterator[str]:
    """SQLite in ``data_dir``, or a fresh PostgreSQL database on the server ``url`` names
    (created here, dropped on the way out)."""
    if not url:
        yield f"sqlite:///{data_dir / 'mlgov.db'}"
        return
    server_url = make_url(normalise_url(url))
    if server_url.get_backend_name() != "postgresql":
        yield url  # e.g. another SQLite file the caller chose
        return
    name = f"mlgov_bench_{secrets.token_hex(4)}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    print(f"created PostgreSQL database {name} on {server_url.host}:{server_url.port}")
    try:
        yield server_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        print(f"dropped PostgreSQL database {name}")


@dataclass(frozen=True)
class Cast:
    scientist: Context
    engineer: Context
    viewer_token: str


def make_cast(server: Server, *, create: bool = True) -> Cast:
    """The people of the benchmark, created by the bootstrap admin like any other users (or
    found again in a reused catalog, with a fresh token for the catalog reader)."""
    identity = server.services.identity
    admin = Context(actor_of(identity.get_user("admin")), "bench-setup", "127.0.0.1")
    people = {
        "bench-scientist": "data_scientist",
        "bench-engineer": "data_engineer",
        "bench-viewer": "viewer",
    }
    if create:
        for name, role in people.items():
            identity.create_user(admin, name=name, roles=[role], reason=f"benchmark {role}")
    token = identity.issue_token(
        admin, user_name="bench-viewer", name="bench", reason="benchmark catalog reader"
    ).secret

    def ctx(name: str) -> Context:
        return Context(actor_of(identity.get_user(name)), "bench", "127.0.0.1")

    return Cast(ctx("bench-scientist"), ctx("bench-engineer"), token)


def model_specs(count: int, rng: random.Random) -> list[ModelCreate]:
    specs = []
    for i in range(count):
        word, other = rng.sample(WORDS, 2)
        noun = rng.choice(NOUNS)
        team = rng.choice(TEAMS)
        specs.append(
            ModelCreate(
                name=f"{word}-{noun}-{i:05d}",
                description=(
                    f"{word.capitalize()} {noun} for the {team} team, using {other} signals. "
                    f"Benchmark model number {i}."
                ),
                owner_team=team,
                risk_tier=rng.choices(TIERS, TIER_WEIGHTS)[0],
                domain=f"{word} / {other}",
                intended_use=f"Decision support for {team} on {word} cases.",
                out_of_scope_uses=["Fully automated decisions without review"],
                tags=rng.sample(TAGS, rng.randint(1, 4)),
                reason=f"register {word} {noun} for {team} (benchmark)",
            )
        )
    return specs


SIGNATURE = Signature(
    inputs=[
        FeatureSpec(name="f_amount", type="double", min=0.0, max=1e6),
        FeatureSpec(name="f_count", type="integer", min=0, max=1000),
        FeatureSpec(name="f_segment", type="string", categories=["a", "b", "c"]),
    ],
    outputs=[FeatureSpec(name="score", type="double", min=0.0, max=1.0)],
)


def base_metadata() -> VersionMetadata:
    return VersionMetadata(
        format=ArtifactFormat.OTHER,
        signature=SIGNATURE,
        algorithm="benchmark artifact (random bytes)",
        hyperparameters={"n_estimators": 100, "max_depth": 6},
        metrics={"roc_auc": 0.8},
        code_ref=CodeRef(repository="https://git.example.com/bench/models", commit="a" * 40),
        environment=Environment(python=platform.python_version(), packages={"mlgov": "bench"}),
        changelog="benchmark version",
        datasets=[LineageRef(dataset="bench-data-000", version=1, role="training")],
        reason="benchmark",
    )


# -- measurement helpers -------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def fmt_rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}/s" if seconds > 0 else "n/a"


def progress(label: str, done: int, total: int, started: float) -> None:
    elapsed = time.perf_counter() - started
    print(
        f"  {label}: {done:>9,}/{total:,}  {elapsed:7.1f} s  {fmt_rate(done, elapsed):>10}",
        flush=True,
    )


def count_rows(server: Server, column: Any) -> int:
    with server.services.db.read() as session:
        return int(session.execute(select(func.count(column))).scalar_one())


# -- phases --------------------------------------------------------------------------------------


def register(
    server: Server, cast: Cast, models: int, per_model: int, rng: random.Random
) -> dict[str, float]:
    services = server.services
    registry, store = services.registry, services.store
    limit = services.settings.max_artifact_bytes
    events_before = count_rows(server, AuditEvent.seq)

    for d in range(DATASETS):
        name = f"bench-data-{d:03d}"
        registry.create_dataset(
            cast.engineer,
            DatasetCreate(name=name, owner_team=rng.choice(TEAMS), reason="benchmark dataset"),
        )
        registry.create_dataset_version(
            cast.engineer,
            name,
            DatasetVersionCreate(
                content_sha256=secrets.token_hex(32),
                uri=f"s3://bench/{name}/v1.parquet",
                schema=[ColumnSpec(name="f_amount", type="double")],
                row_count=100_000,
                reason="benchmark dataset version",
            ),
        )
    specs = model_specs(models, rng)

    print(f"registering {models:,} models ...", flush=True)
    step = max(1, models // 5)
    started = time.perf_counter()
    for i, spec in enumerate(specs, 1):
        registry.create_model(cast.scientist, spec)
        if i % step == 0:
            progress("models", i, models, started)
    model_seconds = time.perf_counter() - started

    total = models * per_model
    print(f"registering {total:,} versions ({per_model} per model, ~1 KiB artifacts) ...")
    base = base_metadata()
    names = [s.name for s in specs]
    step = max(1, total // 10)
    done = 0
    started = time.perf_counter()
    for round_ in range(1, per_model + 1):
        rng.shuffle(names)  # versions arrive interleaved across models, as in real life
        for name in names:
            with store.writer(limit) as writer:
                writer.write(rng.randbytes(ARTIFACT_BYTES))
                artifact = writer.commit()
            meta = base.model_copy(
                update={
                    "reason": f"retrained {name}, round {round_}",
                    "metrics": {"roc_auc": round(rng.uniform(0.6, 0.95), 4)},
                    "datasets": [
                        LineageRef(dataset=f"bench-data-{rng.randrange(DATASETS):03d}", version=1)
                    ],
                }
            )
            registry.create_version(cast.scientist, name, meta, artifact, f"{name}.bin")
            done += 1
            if done % step == 0:
                progress("versions", done, total, started)
    version_seconds = time.perf_counter() - started
    events = count_rows(server, AuditEvent.seq) - events_before - 2 * DATASETS
    return {
        "models": models,
        "versions": total,
        "model_seconds": model_seconds,
        "version_seconds": version_seconds,
        "events": events,
    }


@dataclass
class Query:
    kind: str
    params: dict[str, Any]
    pages: int = 1  # follow next_cursor this many times in total


def query_mix(rng: random.Random, total_models: int) -> Callable[[], Query]:
    def number() -> str:
        return f"{rng.randrange(total_models):05d}"

    makers: list[tuple[str, int, Callable[[], Query]]] = [
        ("text", 20, lambda: Query("text", {"q": rng.choice(WORDS)}, rng.choice((1, 1, 2, 3)))),
        ("text-rare", 8, lambda: Query("text-rare", {"q": number()})),
        ("text-none", 4, lambda: Query("text-none", {"q": "no-such-model-zzz"})),
        ("owner_team", 12, lambda: Query("owner_team", {"owner_team": rng.choice(TEAMS)}, 2)),
        (
            "risk_tier",
            10,
            lambda: Query("risk_tier", {"risk_tier": rng.choice(TIERS).value}, rng.randint(1, 3)),
        ),
        ("tag", 10, lambda: Query("tag", {"tag": rng.choice(TAGS)}, rng.randint(1, 3))),
        ("stage", 6, lambda: Query("stage", {"stage": "development"}, 2)),
        ("stage-none", 4, lambda: Query("stage-none", {"stage": "production"})),
        (
            "combined",
            14,
            lambda: Query(
                "combined",
                rng.choice(
                    (
                        {"q": rng.choice(WORDS), "risk_tier": rng.choice(TIERS).value},
                        {"owner_team": rng.choice(TEAMS), "tag": rng.choice(TAGS)},
                        {
                            "risk_tier": rng.choice(TIERS).value,
                            "tag": rng.choice(TAGS),
                            "stage": "development",
                        },
                        {"q": rng.choice(NOUNS), "owner_team": rng.choice(TEAMS)},
                    )
                ),
            ),
        ),
        ("browse", 12, lambda: Query("browse", {}, rng.randint(1, 5))),
    ]
    weights = [w for _k, w, _m in makers]

    def make() -> Query:
        query = rng.choices(makers, weights)[0][2]()
        query.params.setdefault("limit", rng.choice((20, 50, 50, 100)))
        return query

    return make


def search(
    server: Server,
    cast: Cast,
    queries: int,
    rng: random.Random,
    total_models: int,
    issued: list[dict[str, Any]] | None = None,
) -> dict[str, list[float]]:
    """Run at least ``queries`` catalog requests; latency (ms) per request, by kind. The
    parameters of every timed request are appended to ``issued`` when given."""
    latencies: dict[str, list[float]] = defaultdict(list)
    with warnings.catch_warnings():
        # starlette nudges TestClient users towards httpx2; irrelevant to these figures.
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    make = query_mix(rng, total_models)
    headers = {"Authorization": f"Bearer {cast.viewer_token}"}
    with TestClient(server.app) as client:
        done = -WARMUP_QUERIES
        while done < queries:
            query = make()
            params = dict(query.params)
            for page in range(query.pages):
                started = time.perf_counter()
                r = client.get("/api/v1/models", params=params, headers=headers)
                elapsed = (time.perf_counter() - started) * 1000
                if r.status_code != 200:
                    raise RuntimeError(f"search {params} failed: {r.status_code} {r.text}")
                if done >= 0:
                    latencies[query.kind if page == 0 else "cursor-page"].append(elapsed)
                    if issued is not None:
                        issued.append(dict(params))
                done += 1
                cursor = r.json()["next_cursor"]
                if cursor is None:
                    break
                params["cursor"] = cursor
    return latencies


def profile_search(server: Server, issued: list[dict[str, Any]], path: str) -> None:
    """Replay the timed searches under cProfile, calling the endpoint function in this thread
    (TestClient runs handlers in worker threads, which cProfile does not see): the profile
    covers the services, the ORM and the response model, not the HTTP stack."""
    svc = server.services
    profiler = cProfile.Profile()
    profiler.enable()
    for params in issued:
        page = registry_api.search_models(
            svc,
            q=params.get("q"),
            owner_team=params.get("owner_team"),
            risk_tier=RiskTier(params["risk_tier"]) if "risk_tier" in params else None,
            stage=Stage(params["stage"]) if "stage" in params else None,
            tag=params.get("tag"),
            limit=params["limit"],
            cursor=params.get("cursor"),
        )
        page.model_dump_json()
    profiler.disable()
    profiler.dump_stats(path)
    print(f"profile of {len(issued):,} replayed searches written to {path}")


# -- report --------------------------------------------------------------------------------------


def storage_size(data_dir: Path) -> tuple[int, int]:
    db = sum(p.stat().st_size for p in data_dir.glob("mlgov.db*"))
    artifacts = sum(p.stat().st_size for p in (data_dir / "artifacts").rglob("*") if p.is_file())
    return db, artifacts


def report(
    backend: str,
    catalog: tuple[int, int],
    reg: dict[str, float] | None,
    latencies: dict[str, list[float]],
    data_dir: Path,
    load: tuple[float, float],
) -> bool:
    everything = [x for values in latencies.values() for x in values]
    p50, p95, p99 = (pct(everything, q) for q in (50, 95, 99))
    passed = p95 < TARGET_P95_MS

    print("\nsearch latency by kind of query (ms)")
    print(f"  {'kind':<12} {'n':>6} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8}")
    for kind in sorted(latencies):
        values = latencies[kind]
        print(
            f"  {kind:<12} {len(values):>6} {pct(values, 50):8.1f} {pct(values, 95):8.1f} "
            f"{pct(values, 99):8.1f} {max(values):8.1f}"
        )
    lines = [
        f"backend                 {backend}",
        f"machine                 {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}; load average {load[0]:.2f} at start, "
        f"{load[1]:.2f} at end",
        f"catalog                 {catalog[0]:,} models, {catalog[1]:,} versions",
    ]
    if reg is not None:
        registration_seconds = reg["model_seconds"] + reg["version_seconds"]
        lines += [
            f"model registration      {fmt_rate(int(reg['models']), reg['model_seconds'])} "
            f"({reg['model_seconds']:.1f} s)",
            f"version registration    {fmt_rate(int(reg['versions']), reg['version_seconds'])} "
            f"({reg['version_seconds']:.1f} s; each: artifact stored, version, lineage, "
            "audit event)",
            f"audit events            {int(reg['events']):,} in {registration_seconds:.1f} s = "
            f"{fmt_rate(int(reg['events']), registration_seconds)}",
        ]
    if backend == "sqlite":
        db_bytes, artifact_bytes = storage_size(data_dir)
        lines.append(
            f"on disk                 database {db_bytes / 2**20:,.0f} MiB, "
            f"artifacts {artifact_bytes / 2**20:,.0f} MiB"
        )
    lines += [
        f"search queries          {len(everything):,} (GET /api/v1/models, in process)",
        f"search latency          p50 {p50:.1f} ms   p95 {p95:.1f} ms   p99 {p99:.1f} ms",
        f"target                  p95 < {TARGET_P95_MS:.0f} ms: {'PASS' if passed else 'FAIL'}",
    ]
    width = max(len(line) for line in lines)
    print("\n" + "=" * width)
    print("\n".join(lines))
    print("=" * width)
    return passed


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--models", type=int, default=10_000, help="models to register (default 10,000)"
    )
    parser.add_argument(
        "--versions-per-model",
        type=int,
        default=10,
        help="versions registered per model (default 10)",
    )
    parser.add_argument(
        "--queries", type=int, default=2_000, help="catalog searches to time (default 2,000)"
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="postgresql://user@host:port/db: run in a fresh database created on that server "
        "(dropped at the end); default: SQLite in a temporary directory",
    )
    parser.add_argument(
        "--quick", action="store_true", help="1,000 models and 10,000 versions (a fast run)"
    )
    parser.add_argument(
        "--seed", type=int, default=1, help="random seed of the catalog and queries (default 1)"
    )
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="after the timed searches, replay them under cProfile and write the statistics "
        "to FILE (read with: python -m pstats FILE)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the SQLite data directory for --reuse"
    )
    parser.add_argument(
        "--reuse",
        metavar="DIR",
        type=Path,
        help="skip registration: search the SQLite catalog an earlier --keep run left in DIR",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.versions_per_model = 1_000, 10
    if args.models < 1 or args.versions_per_model < 0 or args.queries < 1:
        parser.error("--models and --queries must be positive, --versions-per-model >= 0")
    if args.reuse and args.database_url:
        parser.error("--reuse works with a kept SQLite data directory, not --database-url")
    if args.keep and args.database_url:
        parser.error("--keep keeps SQLite data; PostgreSQL benchmark databases are dropped")
    return args


def run(args: argparse.Namespace, data_dir: Path, url: str) -> bool:
    rng = random.Random(args.seed)
    load_start = os.getloadavg()[0]
    settings = Settings(
        data_dir=data_dir,
        database_url=url,
        bootstrap_admin_token=ADMIN_TOKEN,
        max_artifact_bytes=64 * 1024,
    )
    server = build_server(settings)
    backend = server.services.db.dialect
    print(f"mlgov registry benchmark on {backend}, data in {data_dir}", flush=True)
    try:
        reg = None
        if args.reuse:
            cast = make_cast(server, create=False)
        else:
            cast = make_cast(server)
            reg = register(server, cast, args.models, args.versions_per_model, rng)
        catalog = (count_rows(server, Model.id), count_rows(server, ModelVersion.id))
        if reg is not None:
            assert catalog == (reg["models"], reg["versions"]), catalog
        freeze_startup_objects()  # as `mlgov serve` does before it serves
        print(f"searching the catalog ({args.queries:,} queries) ...", flush=True)
        issued: list[dict[str, Any]] = []
        latencies = search(server, cast, args.queries, rng, catalog[0], issued)
        load = (load_start, os.getloadavg()[0])
        passed = report(backend, catalog, reg, latencies, data_dir, load)
        if args.profile:
            profile_search(server, issued, args.profile)
        return passed
    finally:
        server.services.db.dispose()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.reuse:
        data_dir = args.reuse.resolve()
        return 0 if run(args, data_dir, f"sqlite:///{data_dir / 'mlgov.db'}") else 1
    tmp = Path(tempfile.mkdtemp(prefix="mlgov-bench-"))
    data_dir = tmp / "data"
    data_dir.mkdir()
    try:
        with bench_database(args.database_url, data_dir) as url:
            passed = run(args, data_dir, url)
    finally:
        if args.keep:
            print(f"kept the data directory for --reuse: {data_dir}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())

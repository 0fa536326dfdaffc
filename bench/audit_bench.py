"""Audit log benchmark: append throughput, append overhead, proof latency, offline verification.

Four measurements of the verifiable audit log (docs/audit.md), each against its target:

1. **Appends per second** through the real change path (``AuditTrail.change`` with one event
   per change: head row locked, event numbered and hashed, tree nodes stored, a checkpoint
   signed every 1,000 events, one commit per change), with 1 and with 8 concurrent writers.
   A writer is a separate process (spawned) with its own services on the shared database; the
   rate is the events of the timed phase over its wall time (first writer's start to last
   writer's end, all released together). Next to it, the same machine's plain-commit ceiling:
   writers doing ``INSERT`` of one small row + ``COMMIT`` in a loop (raw psycopg / sqlite3, no
   lock), the fsync-bound limit of any one-commit-per-change design. Each audited writer also
   times how long every append holds the log's head lock (from getting it to its commit being
   done): appends are serialised on that lock, so 1 / hold time bounds the rate whatever the
   number of writers. Target: >= 3,000/s with 8 writers on PostgreSQL. Afterwards the log is
   checked: gap-free, and its export verifies.
2. **Append overhead**: ``RegistryService.create_model`` (a realistic audited change) with the
   Merkle append against a baseline trail whose append does only the pre-Merkle work (lock the
   head, number the events, insert them with a dummy leaf hash, bump the head's size). Fresh
   databases, one writer, the two alternating in rounds to cancel drift. Target: < 20 %.
3. **Proof latency at 1,000,000 entries**: the log is built fast, not through the change path:
   synthetic, varied events (300-500 byte entries) are hashed exactly as the server hashes them
   (``canonical.dumps(entry_object(...))``), fed to a ``merkle.Frontier`` and bulk-inserted
   (events, tree nodes, and a checkpoint signed every 1,000 entries as the server would) with
   SQLAlchemy Core; then the head is moved to the new size and a checkpoint is signed through
   ``AuditTrail.checkpoint``. On PostgreSQL the tables are ANALYZEd after the load (autovacuum
   would do it shortly after). Then ``AuditTrail.inclusion`` for random entries in process, the
   same through HTTP (``GET /api/v1/audit/proofs/inclusion``, FastAPI's TestClient: auth,
   validation, serialisation included, no network), and consistency proofs, each kind within a
   time budget (``--proof-budget``). Target: inclusion p95 < 5 ms (in process).
4. **Offline verification**: the log's export is written to a file (``AuditTrail.export``) and
   verified by ``verify_export`` in a separate Python process (``python -c``, importing only the
   verifier), three times (the median counts), which reports its wall time and its peak RSS.
   The peak is ``VmHWM`` from /proc/self/status: ``ru_maxrss`` in a child process on Linux
   starts from the parent's high-water mark (carried over fork and exec), so it would report
   this benchmark's own size; both are printed. The same at a tenth of the entries shows
   whether memory stays flat. Targets at 1,000,000 entries: < 10 s for the whole verifier
   process, < 200 MB (10^6 bytes).

SQLite runs in a temporary directory; PostgreSQL runs in databases of its own
(``mlgov_bench_audit_<random>``) created on the server ``--database-url`` names and dropped
at the end. The exit status is 0 whatever the verdicts: this is a report.

    .venv/bin/python bench/audit_bench.py            # full run (~18 min on 2 slow cores)
    .venv/bin/python bench/audit_bench.py --quick    # ~4 min: fewer changes, 100,000 entries,
                                                     # SQLite only for parts 2-4
    .venv/bin/python bench/audit_bench.py --only proofs,verify --entries 100000 \
        --profile /tmp/audit-prof                    # where the time of proofs and
                                                     # verification goes (cProfile)
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import io
import json
import multiprocessing as mp
import os
import platform
import pstats
import random
import resource
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from sqlalchemy import create_engine, func, insert, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from mlgov import migrate
from mlgov.audit.entry import entry_object
from mlgov.audit.events import Action
from mlgov.audit.models import AuditEvent
from mlgov.audit.trail import AuditTrail, ChangeSet
from mlgov.audit.verify import verify_export
from mlgov.config import Settings
from mlgov.context import Actor, Context, system_context
from mlgov.db import Database, normalise_url, utcnow
from mlgov.identity.permissions import Permission
from mlgov.registry.schemas import ModelCreate, RiskTier
from mlgov.registry.service import RegistryService
from mlgov.server import Server, build_server, build_services, freeze_startup_objects
from mlgov.tlog import canonical, merkle
from mlgov.tlog.models import AUDIT_LOG, LogCheckpoint, LogHead, LogNode
from mlgov.tlog.note import Checkpoint, Signer, sign_note
from mlgov.tlog.store import MerkleLog

TARGET_APPENDS_PER_S = 3_000.0  # 8 writers, PostgreSQL
TARGET_OVERHEAD_PCT = 20.0
TARGET_INCLUSION_P95_MS = 5.0
TARGET_VERIFY_S = 10.0
TARGET_VERIFY_RSS_BYTES = 200 * 10**6
TARGET_ENTRIES = 1_000_000  # the size the proof and verification targets are set at

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
ADMIN_TOKEN = "mlgov_bench-admin-" + "0" * 32
KEY_NAME = "bench.example"
WRITERS = 8
WARMUP_CHANGES = 20
BUILD_BATCH = 20_000
TESSERA_NOTE = (
    "Tessera (transparency-dev) publishes ~2,900 writes/s on a 12-core machine; that is their "
    "published figure, not measured here"
)

# -- output --------------------------------------------------------------------------------------


def say(message: str = "") -> None:
    print(message, flush=True)


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def latency_line(values: Sequence[float]) -> str:
    return (
        f"p50 {pct(values, 50):.2f} ms  p95 {pct(values, 95):.2f} ms  "
        f"p99 {pct(values, 99):.2f} ms  max {max(values):.2f} ms  (n={len(values):,})"
    )


def mib(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:,.1f} MiB"


@dataclass
class Row:
    metric: str
    measured: str
    target: str = "-"
    verdict: str = "info"


@dataclass
class Summary:
    rows: list[Row] = field(default_factory=list)

    def add(
        self, metric: str, measured: str, target: str = "-", passed: bool | None = None
    ) -> None:
        verdict = "info" if passed is None else ("PASS" if passed else "FAIL")
        self.rows.append(Row(metric, measured, target, verdict))

    def print(self, header: list[str]) -> None:
        cols = ("metric", "measured", "target", "verdict")
        cells = [(r.metric, r.measured, r.target, r.verdict) for r in self.rows]
        widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
        line = "  ".join(f"{{:<{w}}}" for w in widths)
        width = sum(widths) + 2 * (len(widths) - 1)
        say("\n" + "=" * width)
        for h in header:
            say(h)
        say("-" * width)
        say(line.format(*cols))
        say("-" * width)
        for row in cells:
            say(line.format(*row))
        say("=" * width)
        failed = [r.metric for r in self.rows if r.verdict == "FAIL"]
        verdicts = [r for r in self.rows if r.verdict != "info"]
        if failed:
            say(f"{len(failed)} of {len(verdicts)} targets MISSED: " + "; ".join(failed))
        else:
            say(f"all {len(verdicts)} targets met")


# -- databases -----------------------------------------------------------------------------------


def plain_pg_url(url: str) -> str:
    """A libpq URL (``postgresql://``) for psycopg and for Settings (which normalises it)."""
    return make_url(normalise_url(url)).set(drivername="postgresql").render_as_string(False)


class Scratch:
    """Databases for one run: SQLite files in the temporary directory, PostgreSQL databases
    created on the server and dropped when done (or at the end, whatever happens)."""

    def __init__(self, server_url: str | None, tmp: Path) -> None:
        self.tmp = tmp
        self.server_url = plain_pg_url(server_url) if server_url else None
        self.created: list[str] = []
        self._admin = (
            create_engine(normalise_url(server_url), isolation_level="AUTOCOMMIT")
            if server_url
            else None
        )

    def data_dir(self, label: str) -> Path:
        path = self.tmp / label
        path.mkdir(parents=True, exist_ok=True)
        return path

    def database(self, backend: str, label: str) -> str:
        if backend == "sqlite":
            return f"sqlite:///{self.data_dir(f'sqlite-{label}') / 'mlgov.db'}"
        assert self._admin is not None and self.server_url is not None
        name = f"mlgov_bench_audit_{label.replace('-', '_')}_{secrets.token_hex(3)}"
        with self._admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        self.created.append(name)
        return make_url(self.server_url).set(database=name).render_as_string(False)

    def drop(self, url: str) -> None:
        if not url.startswith("postgresql") or self._admin is None:
            return
        name = make_url(url).database
        if name in self.created:
            with self._admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            self.created.remove(name)

    def close(self) -> None:
        if self._admin is None:
            return
        with self._admin.connect() as conn:
            for name in self.created:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if self.created:
            say(f"dropped PostgreSQL databases {', '.join(self.created)}")
        self.created.clear()
        self._admin.dispose()


def bench_settings(data_dir: Path, url: str, key_file: Path) -> Settings:
    return Settings(
        data_dir=data_dir,
        database_url=url,
        bootstrap_admin_token=ADMIN_TOKEN,
        signing_key_file=key_file,
        checkpoint_interval=3600,  # the server's background signer does not run here anyway
    )


def migrated(settings: Settings) -> None:
    services = build_services(settings)
    try:
        migrate.upgrade(services.db)
    finally:
        services.db.dispose()


def log_size(db: Database, trail: AuditTrail) -> tuple[int, int, int]:
    """(head size, number of events, highest seq + 1)."""
    with db.read() as session:
        head = trail.log.head(session)
        count, top = session.execute(
            select(func.count(AuditEvent.seq), func.max(AuditEvent.seq))
        ).one()
        return head.size, int(count), (-1 if top is None else int(top)) + 1


# -- 1. appends per second -----------------------------------------------------------------------


#: (asked, got) monotonic times of each head-lock acquisition in this process (writers only).
LOCK_MARKS: list[tuple[float, float]] = []


class TimedLog(MerkleLog):
    """The log as the trail uses it, noting when an append asks for the head lock and when it
    gets it (the writer notes when its commit is done): how long the lock is held per append
    bounds the appends per second of any number of writers."""

    def head(self, session: Session, *, lock: bool = False) -> LogHead:
        if not lock:
            return super().head(session)
        asked = time.monotonic()
        head = super().head(session, lock=True)
        LOCK_MARKS.append((asked, time.monotonic()))
        return head


def _audited_writer(
    settings: Settings,
    changes: int,
    wid: int,
    barrier: Any,
    results: Any,
) -> None:
    """One writer process: its own services, minimal audited changes through the real path."""
    try:
        services = build_services(settings)
        trail = services.audit
        trail.log = TimedLog(trail.log.log_id, trail.log.read_leaves)
        ctx = system_context(f"bench-writer-{wid}")

        def change(i: int) -> None:
            with trail.change(ctx, Permission.MODEL_UPDATE, "benchmark append") as cs:
                cs.record(Action.MODEL_UPDATE, f"bench/{wid}/{i}", {"i": i})

        for i in range(WARMUP_CHANGES):  # connections, statement caches, imports
            change(-1 - i)
        barrier.wait()
        waits, holds = [], []
        started = time.monotonic()
        for i in range(changes):
            change(i)
            done = time.monotonic()
            asked, got = LOCK_MARKS[-1]
            waits.append((got - asked) * 1e3)
            holds.append((done - got) * 1e3)
        ended = time.monotonic()
        services.db.dispose()
        results.put((wid, started, ended, changes, None, waits, holds))
    except BaseException:
        results.put((wid, 0.0, 0.0, 0, traceback.format_exc(), [], []))
        barrier.abort()
        raise


def _raw_writer(
    backend: str,
    url: str,
    commits: int,
    wid: int,
    barrier: Any,
    results: Any,
) -> None:
    """One writer process: INSERT one small row + COMMIT in a loop, no lock, no ORM."""
    try:
        payload = f"writer {wid} " + "x" * 40
        if backend == "postgresql":
            pg = psycopg.connect(url)

            def commit(i: int) -> None:
                pg.execute(
                    "INSERT INTO bench_raw (writer, i, payload) VALUES (%s, %s, %s)",
                    (wid, i, payload),
                )
                pg.commit()

            close: Callable[[], None] = pg.close
        else:
            lite = sqlite3.connect(make_url(url).database or "", isolation_level=None, timeout=30)
            for pragma in ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=30000"):
                lite.execute(f"PRAGMA {pragma}")

            def commit(i: int) -> None:
                lite.execute("BEGIN IMMEDIATE")
                lite.execute(
                    "INSERT INTO bench_raw (writer, i, payload) VALUES (?, ?, ?)",
                    (wid, i, payload),
                )
                lite.execute("COMMIT")

            close = lite.close
        for i in range(WARMUP_CHANGES):
            commit(-1 - i)
        barrier.wait()
        started = time.monotonic()
        for i in range(commits):
            commit(i)
        ended = time.monotonic()
        close()
        results.put((wid, started, ended, commits, None, [], []))
    except BaseException:
        results.put((wid, 0.0, 0.0, 0, traceback.format_exc(), [], []))
        barrier.abort()
        raise


@dataclass(frozen=True)
class Phase:
    writers: int
    events: int
    seconds: float
    lock_waits: list[float]  # ms per append waiting for the head lock (audited writers)
    lock_holds: list[float]  # ms per append from getting the head lock to its commit done

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("nan")


def run_writers(target: Callable[..., None], args: tuple[Any, ...], writers: int) -> Phase:
    """Start ``writers`` processes, release them together once all are warm, and time the
    phase from the first start to the last end (CLOCK_MONOTONIC is system-wide)."""
    spawn = mp.get_context("spawn")
    barrier = spawn.Barrier(writers + 1)
    results = spawn.Queue()
    procs = [
        spawn.Process(target=target, args=(*args, w, barrier, results), daemon=True)
        for w in range(writers)
    ]
    for proc in procs:
        proc.start()
    with contextlib.suppress(threading.BrokenBarrierError):  # a writer failed: see results
        barrier.wait(timeout=900)
    outcomes = [results.get(timeout=3600) for _ in procs]
    for proc in procs:
        proc.join(60)
    errors = [o[4] for o in outcomes if o[4]]
    if errors:
        raise RuntimeError("a writer process failed:\n" + errors[0])
    started = min(o[1] for o in outcomes)
    ended = max(o[2] for o in outcomes)
    return Phase(
        writers,
        sum(o[3] for o in outcomes),
        ended - started,
        [x for o in outcomes for x in o[5]],
        [x for o in outcomes for x in o[6]],
    )


def create_raw_table(backend: str, url: str) -> None:
    if backend == "postgresql":
        with psycopg.connect(url) as pg:
            pg.execute(
                "CREATE TABLE bench_raw (id bigserial PRIMARY KEY, writer int, i int, payload text)"
            )
    else:
        with sqlite3.connect(make_url(url).database or "") as lite:
            lite.execute(
                "CREATE TABLE bench_raw (id integer PRIMARY KEY, writer int, i int, payload text)"
            )


def bench_appends(
    backend: str, scratch: Scratch, key_file: Path, changes: int, summary: Summary
) -> None:
    say(f"\n## 1. appends per second on {backend}")
    url = scratch.database(backend, "appends")
    settings = bench_settings(scratch.data_dir(f"{backend}-appends"), url, key_file)
    migrated(settings)
    phases: dict[str, Phase] = {}
    lock_rows: list[tuple[int, float, float]] = []
    for writers in (1, WRITERS):
        say(f"  audited changes, {writers} writer process(es) x {changes:,} ...")
        phases[f"audited-{writers}"] = p = run_writers(
            _audited_writer, (settings, changes), writers
        )
        hold = float(np.mean(p.lock_holds))
        busy = sum(p.lock_holds) / 1e3 / p.seconds
        say(f"    {p.events:,} events in {p.seconds:.2f} s = {p.rate:,.0f} appends/s")
        say(
            f"    head lock held per append (lock to commit done): mean {hold:.2f} ms, p50 "
            f"{pct(p.lock_holds, 50):.2f}, p95 {pct(p.lock_holds, 95):.2f} -> at most "
            f"{1e3 / hold:,.0f} appends/s however many writers; held {busy:.0%} of the "
            f"phase; waiting for it: mean {np.mean(p.lock_waits):.2f} ms"
        )
        lock_rows.append((writers, hold, busy))
    create_raw_table(backend, url)
    for writers in (1, WRITERS):
        say(f"  plain INSERT + COMMIT, {writers} writer process(es) x {changes:,} ...")
        phases[f"raw-{writers}"] = p = run_writers(_raw_writer, (backend, url, changes), writers)
        say(f"    {p.events:,} commits in {p.seconds:.2f} s = {p.rate:,.0f} commits/s")

    # The log the concurrent writers built must be one gap-free tree whose export verifies.
    services = build_services(settings)
    try:
        trail = services.audit
        trail.checkpoint(system_context("bench"))
        head, count, top = log_size(services.db, trail)
        report = verify_export(trail.export(), [trail.signer.verifier()])
        ok = head == count == top == report.entries
        say(
            f"  log after the run: {head:,} entries, gap-free: {count == top == head}, export "
            f"verifies ({report.entries:,} entries, {report.checkpoints} checkpoints): {ok}"
        )
        if not ok:
            raise RuntimeError(f"the log is inconsistent: head {head}, rows {count}, top {top}")
    finally:
        services.db.dispose()
        scratch.drop(url)

    a1, a8 = phases["audited-1"], phases[f"audited-{WRITERS}"]
    r1, r8 = phases["raw-1"], phases[f"raw-{WRITERS}"]
    say(
        f"  audited appends are {a8.rate / r8.rate:.0%} of the plain-commit ceiling with "
        f"{WRITERS} writers, {a1.rate / r1.rate:.0%} with 1"
    )
    target = backend == "postgresql"
    summary.add(f"appends/s, {backend}, 1 writer", f"{a1.rate:,.0f}/s")
    summary.add(
        f"appends/s, {backend}, {WRITERS} writers",
        f"{a8.rate:,.0f}/s",
        f">= {TARGET_APPENDS_PER_S:,.0f}/s" if target else "-",
        (a8.rate >= TARGET_APPENDS_PER_S) if target else None,
    )
    _, hold8, busy8 = lock_rows[-1]
    summary.add(
        f"  head lock held per append, {backend}, {WRITERS} writers",
        f"{hold8:.2f} ms (lock busy {busy8:.0%} of the phase)",
    )
    summary.add(
        f"  plain-commit ceiling, {backend}, 1 / {WRITERS} writers",
        f"{r1.rate:,.0f}/s / {r8.rate:,.0f}/s",
        "(reference)",
    )


# -- 2. append overhead --------------------------------------------------------------------------

NO_HASH = b"\0" * 32


class PlainTrail(AuditTrail):
    """The baseline: the append as it was before the Merkle log. Lock the head, number the
    events, insert them (a dummy leaf hash: the column is NOT NULL), bump the head's size.
    No canonical entry, no hashes, no tree nodes, no frontier, no checkpoint."""

    def _append(self, changes: ChangeSet) -> list[AuditEvent]:
        head = self.log.head(changes.session, lock=True)
        events = changes.numbered(head.size, utcnow())
        for event in events:
            event.leaf_hash = NO_HASH
        changes.session.add_all(events)
        head.size += len(events)
        changes.session.flush()
        return events


MODEL_WORDS = (
    "credit",
    "fraud",
    "churn",
    "pricing",
    "demand",
    "claims",
    "underwriting",
    "triage",
    "anomaly",
    "sentiment",
    "routing",
    "inventory",
    "collections",
    "kyc",
    "aml",
    "readmission",
    "imaging",
    "propensity",
)
MODEL_NOUNS = ("scorer", "classifier", "ranker", "regressor", "detector", "estimator")
TEAMS = (
    "retail-credit",
    "payments",
    "marketing-analytics",
    "supply-chain",
    "claims-ops",
    "clinical-ai",
    "risk-analytics",
    "pricing",
    "growth",
    "treasury",
    "compliance",
    "insurance-uw",
)
TAGS = (
    "gdpr",
    "pii",
    "batch",
    "realtime",
    "tabular",
    "nlp",
    "timeseries",
    "champion",
    "challenger",
    "regulated",
    "annex-iii",
    "sr-11-7",
    "customer-facing",
    "internal",
    "eu",
    "us",
    "gbm",
    "explainable",
)
TIERS = ("minimal", "limited", "high")


def model_specs(count: int, rng: random.Random) -> list[ModelCreate]:
    specs = []
    for i in range(count):
        word, other = rng.sample(MODEL_WORDS, 2)
        noun, team = rng.choice(MODEL_NOUNS), rng.choice(TEAMS)
        specs.append(
            ModelCreate(
                name=f"{word}-{noun}-{i:05d}",
                description=f"{word.capitalize()} {noun} for {team}, using {other} signals.",
                owner_team=team,
                risk_tier=RiskTier(rng.choice(TIERS)),
                domain=f"{word} / {other}",
                intended_use=f"Decision support for {team} on {word} cases.",
                out_of_scope_uses=["Fully automated decisions without review"],
                tags=rng.sample(TAGS, rng.randint(1, 4)),
                reason=f"register {word} {noun} for {team} (benchmark)",
            )
        )
    return specs


def bench_overhead(
    backend: str,
    scratch: Scratch,
    key_file: Path,
    rounds: int,
    per_round: int,
    seed: int,
    summary: Summary,
) -> None:
    say(f"\n## 2. append overhead on {backend}: RegistryService.create_model, 1 writer")
    urls = {v: scratch.database(backend, f"overhead-{v}") for v in ("merkle", "plain")}
    services = {}
    for variant, url in urls.items():
        settings = bench_settings(scratch.data_dir(f"{backend}-overhead-{variant}"), url, key_file)
        migrated(settings)
        services[variant] = build_services(settings)
    merkle_services, plain_services = services["merkle"], services["plain"]
    registries = {
        "merkle": merkle_services.registry,
        "plain": RegistryService(
            PlainTrail(
                plain_services.db,
                plain_services.audit.signer,
                plain_services.audit.origin,
                checkpoint_every=plain_services.settings.checkpoint_every,
            )
        ),
    }
    scientist = Actor(
        name="bench-scientist", kind="user", roles=frozenset({"data_scientist"}), user_id=None
    )
    ctx = Context(scientist, "bench-overhead", "10.0.0.7")
    specs = model_specs(WARMUP_CHANGES + rounds * per_round, random.Random(seed))
    times: dict[str, list[float]] = {"merkle": [], "plain": []}
    round_ms: dict[str, list[float]] = {"merkle": [], "plain": []}
    try:
        for registry in registries.values():
            for spec in specs[:WARMUP_CHANGES]:
                registry.create_model(ctx, spec)
        say(f"  {rounds} rounds x {per_round} changes per variant, alternating ...")
        for r in range(rounds):
            batch = specs[WARMUP_CHANGES + r * per_round : WARMUP_CHANGES + (r + 1) * per_round]
            order = ("merkle", "plain") if r % 2 == 0 else ("plain", "merkle")
            for variant in order:
                registry = registries[variant]
                clock = time.perf_counter
                started = clock()
                for spec in batch:
                    t0 = clock()
                    registry.create_model(ctx, spec)
                    times[variant].append((clock() - t0) * 1e3)
                round_ms[variant].append((clock() - started) * 1e3 / len(batch))
        total = WARMUP_CHANGES + rounds * per_round
        for variant, svc in services.items():
            head, count, top = log_size(svc.db, svc.audit)
            if not head == count == top == total:
                raise RuntimeError(f"{variant}: head {head}, rows {count}, top {top}, not {total}")
    finally:
        for svc in services.values():
            svc.db.dispose()
        for url in urls.values():
            scratch.drop(url)
    m, p = float(np.mean(times["merkle"])), float(np.mean(times["plain"]))
    overhead = (m / p - 1) * 100
    per_round_pct = [
        (a / b - 1) * 100 for a, b in zip(round_ms["merkle"], round_ms["plain"], strict=True)
    ]
    for variant in ("merkle", "plain"):
        values = times[variant]
        say(
            f"  {variant:<6}  mean {np.mean(values):.3f} ms/change   median "
            f"{np.median(values):.3f}   p95 {pct(values, 95):.3f}   (n={len(values):,})"
        )
    say(
        f"  overhead {overhead:+.1f} % (mean); median {np.median(times['merkle']):.3f} vs "
        f"{np.median(times['plain']):.3f} ms = "
        f"{(np.median(times['merkle']) / np.median(times['plain']) - 1) * 100:+.1f} %; "
        f"per round {min(per_round_pct):+.1f} .. {max(per_round_pct):+.1f} %"
    )
    summary.add(
        f"append overhead, {backend} (create_model)",
        f"{m:.2f} vs {p:.2f} ms = {overhead:+.1f} %",
        f"< {TARGET_OVERHEAD_PCT:.0f} %",
        overhead < TARGET_OVERHEAD_PCT,
    )


# -- 3. a large log, fast ------------------------------------------------------------------------

FIRST_NAMES = (
    "alex",
    "sam",
    "maria",
    "jonas",
    "priya",
    "wei",
    "fatima",
    "lukas",
    "chloe",
    "omar",
    "yuki",
    "ines",
    "noah",
    "sofia",
    "raj",
    "elena",
)
LAST_NAMES = (
    "meyer",
    "nguyen",
    "garcia",
    "kowalski",
    "smith",
    "rossi",
    "haddad",
    "tanaka",
    "okafor",
    "larsen",
    "dubois",
    "silva",
    "novak",
    "kim",
)
SERVICE_ACCOUNTS = ("svc-ci-pipeline", "svc-retrain-nightly", "svc-feature-store", "svc-monitor")
ROLES = ("viewer", "data_scientist", "data_engineer", "validator", "approver", "model_manager")
FORMATS = ("onnx", "sklearn", "xgboost", "pytorch", "lightgbm")
ACTIONS = (
    (Action.MODEL_VERSION_CREATE, 40),
    (Action.MODEL_UPDATE, 15),
    (Action.DATASET_VERSION_CREATE, 12),
    (Action.MODEL_CREATE, 10),
    (Action.TOKEN_CREATE, 6),
    (Action.USER_ROLE_GRANT, 4),
    (Action.TOKEN_REVOKE, 3),
    (Action.DATASET_CREATE, 3),
    (Action.USER_CREATE, 3),
    (Action.USER_ROLE_REVOKE, 2),
    (Action.USER_UPDATE, 2),
)
MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august")


class EventGenerator:
    """Varied, realistic audit events (entries of 300-500 bytes), deterministic per seed."""

    def __init__(self, rng: random.Random, start: datetime) -> None:
        self.rng = rng
        self.time = start
        self.users = [f"{f}.{last}" for f in FIRST_NAMES for last in LAST_NAMES]
        self.models = [
            f"{w}-{n}-{i:04d}"
            for i, (w, n) in enumerate(
                (rng.choice(MODEL_WORDS), rng.choice(MODEL_NOUNS)) for _ in range(3000)
            )
        ]
        self.datasets = [f"{rng.choice(MODEL_WORDS)}-features-{i:03d}" for i in range(400)]
        self.versions: dict[str, int] = {}
        self.actions = [a.value for a, _ in ACTIONS]
        self.cum_weights = list(np.cumsum([w for _, w in ACTIONS]))

    def _hex(self, bits: int) -> str:
        return f"{self.rng.getrandbits(bits):0{bits // 4}x}"

    def _ticket(self) -> str:
        return f"{self.rng.choice(('GOV', 'MRM', 'SEC', 'DATA'))}-{self.rng.randint(100, 99999)}"

    def _next_version(self, key: str) -> int:
        n = self.versions.get(key, 0) + 1
        self.versions[key] = n
        return n

    def event(self, seq: int) -> dict[str, Any]:
        rng = self.rng
        self.time += timedelta(microseconds=rng.randint(1_000, 60_000_000))
        action = rng.choices(self.actions, cum_weights=self.cum_weights)[0]
        roll = rng.random()
        if roll < 0.85:
            actor, kind = rng.choice(self.users), "user"
            client: str | None = (
                f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}"
            )
        elif roll < 0.97:
            actor, kind = rng.choice(SERVICE_ACCOUNTS), "service_account"
            client = f"172.16.{rng.randrange(256)}.{rng.randrange(256)}"
        else:
            actor, kind, client = "system", "system", None
        target, reason, details = self._what(action)
        return {
            "seq": seq,
            "time": self.time,
            "actor": actor,
            "actor_kind": kind,
            "action": action,
            "target": target,
            "reason": reason,
            "details": details,
            "request_id": self._hex(128),
            "client_addr": client,
        }

    def _what(self, action: str) -> tuple[str, str, dict[str, Any]]:
        rng = self.rng
        model = rng.choice(self.models)
        if action == Action.MODEL_VERSION_CREATE:
            v = self._next_version(model)
            dataset = rng.choice(self.datasets)
            return (
                f"model/{model}/versions/{v}",
                f"retrained on {rng.choice(MONTHS)} data after drift alert {self._ticket()}",
                {
                    "version": v,
                    "artifact": {
                        "sha256": self._hex(256),
                        "size": rng.randint(10_000, 500_000_000),
                        "format": rng.choice(FORMATS),
                        "filename": f"{model}-v{v}.bin",
                    },
                    "metrics": {
                        "roc_auc": round(rng.uniform(0.6, 0.95), 4),
                        "ks": round(rng.uniform(0.2, 0.6), 4),
                    },
                    "datasets": [{"dataset": dataset, "version": rng.randint(1, 40)}],
                    "stage": "development",
                },
            )
        if action == Action.MODEL_UPDATE:
            old, new = rng.sample(TIERS, 2)
            tags = rng.sample(TAGS, 3)
            return (
                f"model/{model}",
                f"model review {self._ticket()}: risk tier {old} -> {new} after validation",
                {
                    "risk_tier": {"old": old, "new": new},
                    "tags": {"old": tags[:2], "new": tags},
                    "description": {"old": f"{model} v1", "new": f"{model}, reviewed"},
                },
            )
        if action == Action.MODEL_CREATE:
            team = rng.choice(TEAMS)
            return (
                f"model/{model}",
                f"register {model} for {team} ({self._ticket()})",
                {
                    "name": model,
                    "owner_team": team,
                    "risk_tier": rng.choice(TIERS),
                    "domain": model.split("-")[0],
                    "tags": rng.sample(TAGS, rng.randint(1, 4)),
                    "intended_use": f"Decision support for {team}.",
                },
            )
        if action == Action.DATASET_VERSION_CREATE:
            dataset = rng.choice(self.datasets)
            v = self._next_version(dataset)
            return (
                f"dataset/{dataset}/versions/{v}",
                f"monthly snapshot {rng.choice(MONTHS)} ({self._ticket()})",
                {
                    "version": v,
                    "content_sha256": self._hex(256),
                    "uri": f"s3://lake/{dataset}/v{v}.parquet",
                    "row_count": rng.randint(1_000, 50_000_000),
                },
            )
        if action == Action.DATASET_CREATE:
            dataset = rng.choice(self.datasets)
            return (
                f"dataset/{dataset}",
                f"new feature table for {rng.choice(TEAMS)}",
                {"name": dataset, "owner_team": rng.choice(TEAMS), "pii": rng.random() < 0.3},
            )
        user = rng.choice(self.users)
        if action in (Action.TOKEN_CREATE, Action.TOKEN_REVOKE):
            token = rng.randint(1, 100_000)
            if action == Action.TOKEN_REVOKE:
                return (
                    f"user/{user}/tokens/{token}",
                    f"rotation policy {self._ticket()}",
                    {"token_id": token},
                )
            return (
                f"user/{user}/tokens/{token}",
                f"CI token for {rng.choice(TEAMS)} pipelines",
                {"token_id": token, "name": f"ci-{self._hex(16)}", "expires_in_days": 90},
            )
        if action in (Action.USER_ROLE_GRANT, Action.USER_ROLE_REVOKE):
            return (
                f"user/{user}",
                f"access review {self._ticket()}",
                {"role": rng.choice(ROLES)},
            )
        if action == Action.USER_CREATE:
            return (
                f"user/{user}",
                f"onboarding to {rng.choice(TEAMS)}",
                {"name": user, "kind": "user", "roles": rng.sample(ROLES, 2)},
            )
        return (
            f"user/{user}",
            f"leaver process {self._ticket()}",
            {"disabled": {"old": False, "new": True}},
        )


@dataclass(frozen=True)
class Built:
    entries: int
    checkpoints: int
    seconds: float
    hash_seconds: float
    insert_seconds: float
    mean_entry_bytes: float


def build_log(server: Server, entries: int, seed: int) -> Built:
    """Append synthetic events to the log (after the bootstrap's own) up to ``entries``,
    bypassing the change path but hashing exactly as it does."""
    services = server.services
    trail, db = services.audit, services.db
    every = services.settings.checkpoint_every
    with db.read() as session:
        head = trail.log.head(session)
        frontier = merkle.Frontier.from_bytes(head.size, head.frontier)
        last_cp: tuple[int, datetime | None] = (head.checkpoint_size, head.checkpoint_time)
    gen = EventGenerator(random.Random(seed), datetime(2025, 1, 6, 8, 0, tzinfo=UTC))
    events_t, nodes_t, cps_t = AuditEvent.__table__, LogNode.__table__, LogCheckpoint.__table__
    hash_s = insert_s = 0.0
    entry_total = checkpoints = 0
    first = frontier.size
    step = max(BUILD_BATCH, (entries - first) // 10 // BUILD_BATCH * BUILD_BATCH)
    started = time.perf_counter()
    seq = first
    while seq < entries:
        t0 = time.perf_counter()
        rows, nodes, cps = [], [], []
        end = min(seq + BUILD_BATCH, entries)
        for n in range(seq, end):
            row = gen.event(n)
            entry = canonical.dumps(entry_object(**row))
            entry_total += len(entry)
            row["leaf_hash"] = leaf = merkle.leaf_hash(entry)
            rows.append(row)
            for level, index, digest in frontier.append(leaf):
                nodes.append({"log_id": AUDIT_LOG, "level": level, "idx": index, "hash": digest})
            if frontier.size % every == 0:
                root = frontier.root()
                note = sign_note(
                    Checkpoint(trail.origin, frontier.size, root).body(), [trail.signer]
                )
                cps.append(
                    {
                        "log_id": AUDIT_LOG,
                        "tree_size": frontier.size,
                        "root_hash": root,
                        "time": row["time"],
                        "key_name": trail.signer.name,
                        "note": note,
                    }
                )
                last_cp = (frontier.size, row["time"])
        seq = end
        t1 = time.perf_counter()
        with db.write() as session:
            session.execute(insert(events_t), rows)
            if nodes:
                session.execute(insert(nodes_t), nodes)
            if cps:
                session.execute(insert(cps_t), cps)
        t2 = time.perf_counter()
        hash_s += t1 - t0
        insert_s += t2 - t1
        checkpoints += len(cps)
        if (seq - first) % step == 0 or seq == entries:
            elapsed = t2 - started
            say(
                f"    {seq:>10,}/{entries:,}  {elapsed:6.1f} s  "
                f"{(seq - first) / elapsed:8,.0f}/s  (generate+hash {hash_s:.1f} s, "
                f"insert {insert_s:.1f} s)"
            )
    with db.write() as session:
        session.execute(
            update(LogHead.__table__)
            .where(LogHead.__table__.c.log_id == AUDIT_LOG)
            .values(
                size=frontier.size,
                frontier=frontier.to_bytes(),
                checkpoint_size=last_cp[0],
                checkpoint_time=last_cp[1],
            )
        )
    row_cp, created = trail.checkpoint(system_context("bench-build"))
    checkpoints += int(created)
    if db.dialect == "postgresql":
        with db.write() as session:
            session.execute(text("ANALYZE"))
    seconds = time.perf_counter() - started
    if trail.tree_head().root_hash != frontier.root() or row_cp.root_hash != frontier.root():
        raise RuntimeError("the built log's head does not match the frontier")
    return Built(
        entries=frontier.size,
        checkpoints=checkpoints,
        seconds=seconds,
        hash_seconds=hash_s,
        insert_seconds=insert_s,
        mean_entry_bytes=entry_total / max(1, frontier.size - first),
    )


def time_calls(
    call: Callable[[int], Any], args: Sequence[int], budget: float = float("inf")
) -> list[float]:
    """Milliseconds per call; stops early once ``budget`` seconds are spent (a run that misses
    its target by far must still finish)."""
    clock = time.perf_counter
    out = []
    started = clock()
    for a in args:
        t0 = clock()
        call(a)
        t1 = clock()
        out.append((t1 - t0) * 1e3)
        if t1 - started > budget:
            break
    return out


def budget_note(values: Sequence[float], wanted: int, budget: float) -> str:
    if len(values) >= wanted:
        return ""
    return f"  [stopped after {len(values):,} of {wanted:,}: time budget {budget:.0f} s spent]"


def bench_proofs(
    server: Server,
    backend: str,
    size: int,
    samples: int,
    consistency_samples: int,
    http_samples: int,
    budget: float,
    seed: int,
    profile_dir: Path | None,
    summary: Summary,
) -> None:
    trail = server.services.audit
    rng = random.Random(seed + 1)
    latest = trail.latest_checkpoint()
    assert latest.tree_size == size, (latest.tree_size, size)

    # correctness first: proofs the server gives verify against the signed root
    for index in [0, size - 1, *rng.sample(range(size), 5)]:
        p = trail.inclusion(index, None)
        assert p.leaf_hash == merkle.leaf_hash(p.entry) and p.root_hash == latest.root_hash
        merkle.verify_inclusion(p.leaf_hash, p.index, p.tree_size, p.proof, p.root_hash)
    for first in [1, size - 1, *rng.sample(range(1, size), 5)]:
        c = trail.consistency(first, None)
        assert c.second_root == latest.root_hash
        merkle.verify_consistency(c.first, c.second, c.proof, c.first_root, c.second_root)

    indices = [rng.randrange(size) for _ in range(samples)]
    firsts = [rng.randrange(1, size) for _ in range(consistency_samples)]
    time_calls(lambda i: trail.inclusion(i, None), indices[:10])  # warm-up
    inclusion = time_calls(lambda i: trail.inclusion(i, None), indices, budget)
    say(
        f"  inclusion proof, in process        {latency_line(inclusion)}"
        + budget_note(inclusion, samples, budget)
    )
    consistency = time_calls(lambda f: trail.consistency(f, None), firsts, budget)
    say(
        f"  consistency proof, in process      {latency_line(consistency)}"
        + budget_note(consistency, consistency_samples, budget)
    )

    with warnings.catch_warnings():  # starlette's notice about httpx, not ours to act on
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with TestClient(server.app) as client:

        def get(index: int) -> None:
            r = client.get(
                "/api/v1/audit/proofs/inclusion", params={"index": index}, headers=headers
            )
            if r.status_code != 200:
                raise RuntimeError(f"inclusion proof over HTTP: {r.status_code} {r.text[:200]}")

        http_idx = [rng.randrange(size) for _ in range(http_samples)]
        time_calls(get, http_idx[:10])
        http = time_calls(get, http_idx, budget)
    say(
        f"  inclusion proof, HTTP (TestClient) {latency_line(http)}"
        + budget_note(http, http_samples, budget)
    )

    n = f"{size:,}"
    p95 = pct(inclusion, 95)
    summary.add(
        f"inclusion proof p95, {backend}, {n} entries",
        f"{p95:.2f} ms (p50 {pct(inclusion, 50):.2f}, p99 {pct(inclusion, 99):.2f}, "
        f"n={len(inclusion):,})",
        f"< {TARGET_INCLUSION_P95_MS:.0f} ms",
        p95 < TARGET_INCLUSION_P95_MS,
    )
    summary.add(
        f"  inclusion proof over HTTP p95, {backend}",
        f"{pct(http, 95):.2f} ms (p50 {pct(http, 50):.2f}, p99 {pct(http, 99):.2f}, "
        f"n={len(http):,})",
    )
    summary.add(
        f"  consistency proof p95, {backend}",
        f"{pct(consistency, 95):.2f} ms (p50 {pct(consistency, 50):.2f}, "
        f"p99 {pct(consistency, 99):.2f}, n={len(consistency):,})",
    )
    if profile_dir is not None:
        out = profile_dir / f"inclusion-{backend}.prof"
        profiler = cProfile.Profile()
        profiler.enable()
        for i in indices[:500]:
            trail.inclusion(i, None)
        profiler.disable()
        profiler.dump_stats(out)
        say(f"  profile of 500 inclusion proofs: {out}")
        print_profile(out)


def print_profile(path: Path, limit: int = 15) -> None:
    buffer = io.StringIO()
    stats = pstats.Stats(str(path), stream=buffer)
    stats.sort_stats("tottime").print_stats(limit)
    lines = buffer.getvalue().splitlines()
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    for line in lines[max(0, start - 3) :]:
        if line.strip():
            say("    " + line.rstrip())


# -- 4. export and offline verification -----------------------------------------------------------

#: The verifier process: nothing of the server, just what ``mlgov audit verify`` needs. Its
#: peak RSS is read twice: ``ru_maxrss``, which on Linux starts at the *parent's* high-water
#: mark (the kernel carries it over fork and exec, so a child of a big process reports at least
#: the parent's size), and ``VmHWM`` from /proc/self/status, the peak of this program's own
#: address space since exec. The verdict uses VmHWM.
VERIFY_CHILD = """\
import json, resource, sys, time
from mlgov.audit.verify import verify_export
from mlgov.tlog.note import Verifier

def hwm_kib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return -1

path, key, profile = sys.argv[1], sys.argv[2], sys.argv[3]
hwm_imports = hwm_kib()
verifiers = [Verifier.from_string(key)]
if profile:
    import cProfile
    profiler = cProfile.Profile()
    profiler.enable()
started = time.perf_counter()
with open(path, "rb") as f:
    report = verify_export(f, verifiers)
seconds = time.perf_counter() - started
if profile:
    profiler.disable()
    profiler.dump_stats(profile)
print(json.dumps({
    "seconds": seconds,
    "hwm_imports_kib": hwm_imports,
    "hwm_peak_kib": hwm_kib(),
    "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    "entries": report.entries,
    "checkpoints": report.checkpoints,
    "root": report.root_hash.hex(),
}))
"""


@dataclass(frozen=True)
class Verified:
    entries: int
    checkpoints: int
    seconds: float  # verify_export alone
    wall: float  # the whole process: interpreter start, imports, verification
    rss_imports: int  # bytes, VmHWM after the imports
    rss_peak: int  # bytes, VmHWM at the end: the verifier's own peak
    ru_maxrss: int  # bytes, as getrusage says (includes the parent's high-water mark)


def verify_in_child(path: Path, key: str, profile: Path | None = None) -> Verified:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", VERIFY_CHILD, str(path), key, str(profile or "")],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"the verifier failed ({done.returncode}):\n{done.stderr}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return Verified(
        entries=out["entries"],
        checkpoints=out["checkpoints"],
        seconds=out["seconds"],
        wall=wall,
        rss_imports=out["hwm_imports_kib"] * 1024,
        rss_peak=out["hwm_peak_kib"] * 1024,
        ru_maxrss=out["ru_maxrss_kib"] * 1024,
    )


def parent_rss() -> int:
    """This (the parent) process's high-water mark, in bytes."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def export_to(trail: AuditTrail, path: Path, tree_size: int | None = None) -> float:
    started = time.perf_counter()
    with open(path, "wb") as f:
        for line in trail.export(tree_size):
            f.write(line)
    return time.perf_counter() - started


def bench_verify(
    server: Server,
    backend: str,
    size: int,
    tmp: Path,
    verify_runs: int,
    profile_dir: Path | None,
    summary: Summary,
) -> None:
    trail = server.services.audit
    key = trail.signer.verifier().key_string()
    every = server.services.settings.checkpoint_every
    small = max(every, size // 10 // every * every)
    results = {}
    for n in (size, small):
        path = tmp / f"export-{backend}-{n}.jsonl"
        seconds = export_to(trail, path, None if n == size else n)
        nbytes = path.stat().st_size
        say(
            f"  export of {n:,} entries: {mib(nbytes)} ({nbytes / n:.0f} bytes/entry) in "
            f"{seconds:.1f} s = {n / seconds:,.0f} entries/s"
        )
        runs = []
        for _ in range(verify_runs if n == size else 1):
            v = verify_in_child(path, key)
            if v.entries != n:
                raise RuntimeError(f"the verifier saw {v.entries} entries, not {n}")
            say(
                f"  verify {n:,} entries ({v.checkpoints:,} checkpoints) in a separate process: "
                f"verify_export {v.seconds:.2f} s ({n / v.seconds:,.0f} entries/s), process "
                f"{v.wall:.2f} s; peak RSS {mib(v.rss_peak)} (VmHWM; {mib(v.rss_imports)} "
                f"after the imports)"
            )
            runs.append(v)
        v = sorted(runs, key=lambda r: r.wall)[len(runs) // 2]
        if len(runs) > 1:
            say(f"  median of {len(runs)} runs: process {v.wall:.2f} s")
        if n == size:
            say(
                f"  (ru_maxrss in the verifier says {mib(v.ru_maxrss)}: on Linux a child starts "
                f"from its parent's high-water mark, here this process's {mib(parent_rss())}, "
                "carried over fork and exec; VmHWM is the verifier's own peak)"
            )
        if profile_dir is not None and n == size:
            out = profile_dir / f"verify-{backend}.prof"
            verify_in_child(path, key, out)
            say(f"  profile of the verification: {out}")
            print_profile(out)
        path.unlink()
        results[n] = (seconds, nbytes, v)
    _, nbytes, big = results[size]
    _, _, little = results[small]
    big_rss, little_rss = big.rss_peak / 1e6, little.rss_peak / 1e6
    n = f"{size:,}"
    summary.add(f"export, {backend}, {n} entries", f"{results[size][0]:.1f} s, {mib(nbytes)}")
    summary.add(
        f"offline verify wall time, {n} entries ({backend} export)",
        f"{big.wall:.2f} s (verify_export {big.seconds:.2f} s; median of {verify_runs})",
        f"< {TARGET_VERIFY_S:.0f} s",
        big.wall < TARGET_VERIFY_S,
    )
    summary.add(
        f"offline verify peak RSS, {n} entries ({backend} export)",
        f"{big_rss:.1f} MB",
        f"< {TARGET_VERIFY_RSS_BYTES / 1e6:.0f} MB",
        big.rss_peak < TARGET_VERIFY_RSS_BYTES,
    )
    summary.add(
        f"  verify peak RSS at {small:,} entries ({backend})",
        f"{little_rss:.1f} MB ({little.wall:.2f} s)",
        "~ flat",
        None,
    )


def bench_log(
    backend: str,
    scratch: Scratch,
    key_file: Path,
    args: argparse.Namespace,
    parts: set[str],
    summary: Summary,
) -> None:
    say(f"\n## 3./4. a log of {args.entries:,} entries on {backend}")
    url = scratch.database(backend, "log")
    data_dir = scratch.data_dir(f"{backend}-log")
    settings = bench_settings(data_dir, url, key_file)
    server = build_server(settings)  # migrates, bootstraps the admin (whose events come first)
    try:
        say(f"  building the log ({BUILD_BATCH:,} events per insert batch) ...")
        built = build_log(server, args.entries, args.seed)
        say(
            f"  built {built.entries:,} entries in {built.seconds:.1f} s "
            f"({built.entries / built.seconds:,.0f}/s; generate+hash {built.hash_seconds:.1f} s, "
            f"insert {built.insert_seconds:.1f} s; {built.checkpoints:,} checkpoints; mean "
            f"entry {built.mean_entry_bytes:.0f} bytes)"
        )
        if backend == "sqlite":
            on_disk = sum(p.stat().st_size for p in data_dir.glob("mlgov.db*"))
            say(f"  database on disk: {mib(on_disk)}")
        summary.add(
            f"log build, {backend}, {built.entries:,} entries",
            f"{built.seconds:.1f} s ({built.entries / built.seconds:,.0f}/s)",
        )
        freeze_startup_objects()  # as `mlgov serve` does before it serves
        if "proofs" in parts:
            bench_proofs(
                server,
                backend,
                built.entries,
                args.proofs,
                args.consistency_proofs,
                args.http_proofs,
                args.proof_budget,
                args.seed,
                args.profile,
                summary,
            )
        if "verify" in parts:
            bench_verify(
                server,
                backend,
                built.entries,
                scratch.tmp,
                args.verify_runs,
                args.profile,
                summary,
            )
    finally:
        gc.unfreeze()
        server.services.db.dispose()
        scratch.drop(url)
        if backend == "sqlite":
            shutil.rmtree(data_dir, ignore_errors=True)


# -- main ----------------------------------------------------------------------------------------

PARTS = ("appends", "overhead", "proofs", "verify")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a fast run: 300 changes per writer, 10x30 overhead rounds on SQLite only, "
        "100,000 entries on SQLite only",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("MLGOV_BENCH_DATABASE_URL", DEFAULT_PG_URL),
        help="PostgreSQL server to run on, in databases created there and dropped at the end "
        f"(default: $MLGOV_BENCH_DATABASE_URL or {DEFAULT_PG_URL})",
    )
    parser.add_argument("--sqlite-only", action="store_true", help="skip PostgreSQL")
    parser.add_argument(
        "--only",
        default=",".join(PARTS),
        help=f"comma-separated parts to run, of {', '.join(PARTS)} (default: all)",
    )
    parser.add_argument(
        "--changes", type=int, help="audited changes per writer process (default 1,000; quick 300)"
    )
    parser.add_argument(
        "--rounds", type=int, help="overhead: alternating rounds (default 20; quick 10)"
    )
    parser.add_argument(
        "--per-round",
        type=int,
        help="overhead: changes per variant per round (default 100; quick 30)",
    )
    parser.add_argument(
        "--entries",
        type=int,
        help=f"entries of the log for proofs and verification (default {TARGET_ENTRIES:,}; "
        "quick 100,000)",
    )
    parser.add_argument(
        "--proofs",
        type=int,
        help="inclusion proofs to time in process (default 2,000; quick 1,000)",
    )
    parser.add_argument(
        "--consistency-proofs",
        type=int,
        help="consistency proofs to time in process (default 1,000; quick 500)",
    )
    parser.add_argument(
        "--http-proofs",
        type=int,
        help="inclusion proofs to time over HTTP (default 300; quick 200)",
    )
    parser.add_argument(
        "--proof-budget",
        type=float,
        default=150.0,
        help="seconds at most per kind of proof timed, after which timing stops with the "
        "samples so far (default 150)",
    )
    parser.add_argument(
        "--verify-runs",
        type=int,
        default=3,
        help="verifications of the full export; the median counts (default 3)",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument(
        "--profile",
        metavar="DIR",
        type=Path,
        help="also profile 500 inclusion proofs and one verification with cProfile (untimed "
        "extra runs), write the statistics to DIR and print the top costs",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {
        "changes": 300 if quick else 1_000,
        "rounds": 10 if quick else 20,
        "per_round": 30 if quick else 100,
        "entries": 100_000 if quick else TARGET_ENTRIES,
        "proofs": 1_000 if quick else 2_000,
        "consistency_proofs": 500 if quick else 1_000,
        "http_proofs": 200 if quick else 300,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    counts = (args.changes, args.rounds, args.per_round, args.proofs, args.consistency_proofs)
    if min(*counts, args.http_proofs, args.verify_runs) < 1 or args.proof_budget <= 0:
        parser.error("counts must be positive")
    if args.entries < 2_000:
        parser.error("--entries must be at least 2,000")
    args.parts = {p.strip() for p in args.only.split(",") if p.strip()}
    if not args.parts or not args.parts <= set(PARTS):
        parser.error(f"--only takes a comma-separated list of {', '.join(PARTS)}")
    if args.sqlite_only:
        args.database_url = None
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        args.profile = args.profile.resolve()
    return args


def postgres_version(url: str) -> str:
    try:
        with psycopg.connect(plain_pg_url(url), connect_timeout=5) as pg:
            row = pg.execute("SHOW server_version").fetchone()
            sync = pg.execute("SHOW synchronous_commit").fetchone()
    except psycopg.OperationalError as exc:
        raise SystemExit(
            f"cannot reach PostgreSQL at {url} ({exc}); give --database-url or --sqlite-only"
        ) from None
    return f"PostgreSQL {row[0] if row else '?'} (synchronous_commit={sync[0] if sync else '?'})"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started, load_start = time.perf_counter(), os.getloadavg()
    pg = postgres_version(args.database_url) if args.database_url else "PostgreSQL skipped"
    machine = (
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}, SQLite {sqlite3.sqlite_version}, {pg}"
    )
    say(f"mlgov audit log benchmark{' (quick)' if args.quick else ''}")
    say(f"machine: {machine}; load average {load_start[0]:.2f} at start")
    say(f"parts: {', '.join(p for p in PARTS if p in args.parts)}")

    tmp = Path(tempfile.mkdtemp(prefix="mlgov-audit-bench-"))
    key_file = tmp / "audit-signing.key"
    key_file.write_text(Signer.generate(KEY_NAME).key_string() + "\n")
    key_file.chmod(0o600)
    scratch = Scratch(args.database_url, tmp)
    summary = Summary()
    backends = ["sqlite", *(["postgresql"] if args.database_url else [])]
    try:
        if "appends" in args.parts:
            for backend in backends:
                bench_appends(backend, scratch, key_file, args.changes, summary)
        if "overhead" in args.parts:
            for backend in backends[:1] if args.quick else backends:
                bench_overhead(
                    backend,
                    scratch,
                    key_file,
                    args.rounds,
                    args.per_round,
                    args.seed,
                    summary,
                )
        if args.parts & {"proofs", "verify"}:
            for backend in backends[:1] if args.quick else backends:
                bench_log(backend, scratch, key_file, args, args.parts, summary)
    finally:
        scratch.close()
        shutil.rmtree(tmp, ignore_errors=True)
    load_end = os.getloadavg()
    summary.print(
        [
            f"mlgov audit log benchmark{' (quick)' if args.quick else ''}, "
            f"{time.perf_counter() - started:.0f} s",
            f"machine: {machine}",
            f"load average {load_start[0]:.2f} at start, {load_end[0]:.2f} at end",
            f"for comparison: {TESSERA_NOTE}",
        ]
    )
    return 0  # a report: the verdicts are printed, not signalled


if __name__ == "__main__":
    sys.exit(main())

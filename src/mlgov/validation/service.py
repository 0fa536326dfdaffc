"""The validation service: suite versions, the job queue, and the evidence a job produces.

Knows nothing of HTTP and never loads a model: requesting a run checks what can be checked
(permission, separation of duties, the suite's columns against the dataset's schema) and queues a
job; a worker (:mod:`mlgov.validation.runner`) claims it, runs it in a sandboxed child process,
and hands the results back to :meth:`ValidationService.complete` (or the error to
:meth:`ValidationService.fail`), which records them in one change with their audit events.

Claims are coordinated through the database: on PostgreSQL ``FOR UPDATE SKIP LOCKED`` lets
several workers claim different jobs at once; on SQLite the write transaction is exclusive. A
claim is a lease: a worker that dies stops renewing it, and once it expires another worker takes
the job again (at most :data:`MAX_ATTEMPTS` times).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from mlgov.audit.events import Action
from mlgov.audit.service import authorize
from mlgov.audit.trail import AuditTrail
from mlgov.context import Context, system_context
from mlgov.db import latest_of_each, utcnow
from mlgov.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from mlgov.identity.permissions import Permission
from mlgov.lifecycle.models import Evidence
from mlgov.lifecycle.service import LifecycleService
from mlgov.names import check_name
from mlgov.registry.models import Dataset, DatasetVersion, Lineage, Model, ModelVersion
from mlgov.registry.schemas import Stage
from mlgov.registry.service import (
    MAX_PAGE,
    Page,
    decode_number_cursor,
    encode_cursor,
    find_dataset_version,
)
from mlgov.storage import ArtifactStore, StoredArtifact
from mlgov.validation.models import (
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    ValidationJob,
    ValidationSuite,
)
from mlgov.validation.schemas import SuitePublish, ValidationCreate
from mlgov.validation.suite import SuiteDocument, parse_suite, referenced_columns

#: A job whose worker vanished this many times fails instead of being taken again.
MAX_ATTEMPTS = 3
#: How long a claim lasts without a renewal (the runner renews it while the job runs).
LEASE_SECONDS = 60.0
DATA_FORMATS = ("csv", "parquet")
MAX_ERROR_CHARS = 4000


@dataclass(frozen=True)
class JobView:
    job: ValidationJob
    model: str
    version: int
    suite: str
    suite_version: int
    dataset: str  # name@version


@dataclass(frozen=True)
class ArtifactRef:
    """A model version as a job needs it."""

    model: str
    version: int
    format: str
    sha256: str
    signature: dict[str, Any]


@dataclass(frozen=True)
class Claim:
    """Everything a worker needs to run a job, read when it claimed it."""

    job_id: int
    attempt: int
    worker: str
    candidate: ArtifactRef
    recorded: dict[str, Any]  # the candidate's data hash, code reference and environment
    champion: ArtifactRef | None
    suite: dict[str, Any]  # {name, version, sha256, definition}
    dataset: dict[str, Any]  # {name, version, sha256, uri, data_format, schema}
    scan_policy: dict[str, Any]
    requested_by: str
    requested_at: datetime


def job_target(job_id: int) -> str:
    return f"validation/{job_id}"


class ValidationService:
    def __init__(self, trail: AuditTrail, store: ArtifactStore, lifecycle: LifecycleService):
        self.trail = trail
        self.db = trail.db
        self.store = store
        self.lifecycle = lifecycle

    # -- suites ----------------------------------------------------------------------------

    def publish_suite(self, ctx: Context, name: str, data: SuitePublish) -> ValidationSuite:
        check_name(name)
        document = parse_suite(data.document, field_name="document")
        sha = hashlib.sha256(data.document.encode()).hexdigest()
        with self.trail.change(ctx, Permission.SUITE_MANAGE, data.reason) as cs:
            current = cs.session.execute(
                select(ValidationSuite)
                .where(ValidationSuite.name == name)
                .order_by(ValidationSuite.version.desc())
                .limit(1)
                .with_for_update()
            ).scalar_one_or_none()
            if current is not None and current.sha256 == sha:
                raise Conflict(
                    f"this is suite {name!r} version {current.version} already", field="document"
                )
            suite = ValidationSuite(
                name=name,
                version=(current.version + 1) if current else 1,
                document=data.document,
                definition=document.model_dump(mode="json"),
                sha256=sha,
                created_at=utcnow(),
                created_by=ctx.actor.name,
            )
            cs.session.add(suite)
            cs.session.flush()
            cs.record(
                Action.SUITE_CREATE,
                f"suite/{name}/versions/{suite.version}",
                {
                    "sha256": sha,
                    "previous_version": current.version if current else None,
                    "checks": sorted(document.model_dump(exclude_none=True)["checks"]),
                },
            )
        return suite

    def get_suite(self, name: str, version: int | None = None) -> ValidationSuite:
        with self.db.read() as session:
            suite = self._suite(session, name, version)
        if suite is None:
            suffix = f" version {version}" if version is not None else ""
            raise NotFound(f"no validation suite {name!r}{suffix}")
        return suite

    def suite_versions(self, name: str) -> list[int]:
        with self.db.read() as session:
            return list(
                session.execute(
                    select(ValidationSuite.version)
                    .where(ValidationSuite.name == name)
                    .order_by(ValidationSuite.version)
                ).scalars()
            )

    def list_suites(self) -> list[ValidationSuite]:
        """The latest version of each suite, by name."""
        with self.db.read() as session:
            return latest_of_each(session, ValidationSuite)

    @staticmethod
    def _suite(session: Session, name: str, version: int | None) -> ValidationSuite | None:
        stmt = select(ValidationSuite).where(ValidationSuite.name == name)
        if version is None:
            stmt = stmt.order_by(ValidationSuite.version.desc()).limit(1)
        else:
            stmt = stmt.where(ValidationSuite.version == version)
        return session.execute(stmt).scalar_one_or_none()

    # -- dataset data ------------------------------------------------------------------------

    def check_can_upload_data(self, ctx: Context, name: str, number: int, fmt: str) -> str:
        """Fail fast, before the body is streamed: permission, the version, no data yet.
        Returns the sha256 the data must have."""
        authorize(ctx, Permission.DATASET_VERSION_CREATE)
        if fmt not in DATA_FORMATS:
            raise InvalidInput(
                f"format must be one of {', '.join(DATA_FORMATS)}", field="query.format"
            )
        with self.db.read() as session:
            dv = find_dataset_version(session, check_name(name), number)
            if dv.data_format is not None:
                raise Conflict(f"the data of {name}@{number} was uploaded already")
            return dv.content_sha256

    def record_data(
        self, ctx: Context, name: str, number: int, fmt: str, artifact: StoredArtifact, reason: str
    ) -> DatasetVersion:
        """Record that the data of a dataset version (whose bytes match its registered hash,
        checked by the caller before the blob was committed) is in the artifact store."""
        with self.trail.change(ctx, Permission.DATASET_VERSION_CREATE, reason) as cs:
            dv = find_dataset_version(cs.session, check_name(name), number, lock=True)
            if dv.data_format is not None:
                raise Conflict(f"the data of {name}@{number} was uploaded already")
            if artifact.sha256 != dv.content_sha256:
                raise InvalidInput(
                    f"the data's sha256 is {artifact.sha256}, but {name}@{number} was "
                    f"registered with {dv.content_sha256}",
                    field="body",
                )
            dv.data_format = fmt
            dv.data_size = artifact.size
            cs.session.flush()
            cs.record(
                Action.DATASET_VERSION_DATA_UPLOAD,
                f"dataset/{name}/versions/{number}",
                {"sha256": artifact.sha256, "size": artifact.size, "format": fmt},
            )
            return dv

    # -- requesting a run ---------------------------------------------------------------------

    def request_run(
        self, ctx: Context, model_name: str, number: int, data: ValidationCreate
    ) -> JobView:
        authorize(ctx, Permission.VALIDATION_RUN)
        with self.trail.change(ctx, Permission.VALIDATION_RUN, data.reason) as cs:
            session = cs.session
            model = self.lifecycle.lock_model(session, model_name)
            version = self.lifecycle.version_of(session, model, number)
            policy = self.lifecycle.policy_of(session, model)
            if (
                policy.separation_of_duties.no_evidence_for_own_version
                and version.created_by == ctx.actor.name
            ):
                raise PermissionDenied(
                    f"separation of duties: {ctx.actor.name} created version {number} and may "
                    "not validate it (its policy's no_evidence_for_own_version)"
                )
            suite = self._suite(session, data.suite, data.suite_version)
            if suite is None:
                suffix = f" version {data.suite_version}" if data.suite_version else ""
                raise InvalidInput(f"no validation suite {data.suite!r}{suffix}", field="suite")
            ref = data.dataset
            dv = find_dataset_version(session, ref.dataset, ref.version, field="dataset")
            label = f"{ref.dataset}@{ref.version}"
            _check_columns(SuiteDocument.model_validate(suite.definition), version, dv, label)
            if dv.data_format is None and not dv.uri.startswith(("file:", "s3:")):
                raise InvalidInput(
                    f"the worker cannot read {label}: its data was not uploaded and its URI "
                    f"({dv.uri}) is neither file:// nor s3:// (upload it: PUT "
                    f"/api/v1/datasets/{data.dataset.dataset}/versions/"
                    f"{data.dataset.version}/data)",
                    field="dataset",
                )
            job = ValidationJob(
                model_version_id=version.id,
                suite_id=suite.id,
                dataset_version_id=dv.id,
                status=QUEUED,
                requested_by=ctx.actor.name,
                requested_at=utcnow(),
                reason=cs.reason,
                attempts=0,
                worker="",
                progress=0.0,
                progress_message="queued",
                error="",
                outcome=[],
            )
            session.add(job)
            session.flush()
            cs.record(
                Action.VALIDATION_REQUEST,
                job_target(job.id),
                {
                    "model": model.name,
                    "version": number,
                    "suite": suite.name,
                    "suite_version": suite.version,
                    "suite_sha256": suite.sha256,
                    "dataset": label,
                    "dataset_sha256": dv.content_sha256,
                },
            )
            return JobView(job, model.name, number, suite.name, suite.version, label)

    # -- reading -------------------------------------------------------------------------------

    def get_job(self, job_id: int) -> JobView:
        with self.db.read() as session:
            views = self._views(session, select(ValidationJob).where(ValidationJob.id == job_id))
        if not views:
            raise NotFound(f"no validation job #{job_id}")
        return views[0]

    def list_jobs(
        self,
        *,
        status: str | None = None,
        model: str | None = None,
        version: int | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[JobView]:
        limit = max(1, min(limit, MAX_PAGE))
        stmt = select(ValidationJob).order_by(ValidationJob.id.desc()).limit(limit + 1)
        if status is not None:
            stmt = stmt.where(ValidationJob.status == status)
        if cursor:
            stmt = stmt.where(ValidationJob.id < decode_number_cursor(cursor))
        with self.db.read() as session:
            if model is not None:
                ids = select(ModelVersion.id).join(Model).where(Model.name == model)
                if version is not None:
                    ids = ids.where(ModelVersion.version == version)
                stmt = stmt.where(ValidationJob.model_version_id.in_(ids))
            views = self._views(session, stmt)
        more = len(views) > limit
        views = views[:limit]
        return Page(views, encode_cursor(str(views[-1].job.id)) if more else None)

    def report(self, job_id: int) -> tuple[JobView, Iterator[bytes]]:
        view = self.get_job(job_id)
        if view.job.report_sha256 is None:
            raise NotFound(f"validation job #{job_id} has no report (status {view.job.status})")
        return view, self.store.open(view.job.report_sha256)

    def evidence_of(self, job_id: int) -> list[int]:
        with self.db.read() as session:
            return list(
                session.execute(
                    select(Evidence.id)
                    .where(Evidence.validation_job_id == job_id)
                    .order_by(Evidence.id)
                ).scalars()
            )

    @staticmethod
    def _views(session: Session, stmt: Any) -> list[JobView]:
        jobs = list(session.execute(stmt).scalars())
        if not jobs:
            return []
        versions = {
            r.id: (r.name, r.version)
            for r in session.execute(
                select(ModelVersion.id, Model.name, ModelVersion.version)
                .join(Model)
                .where(ModelVersion.id.in_({j.model_version_id for j in jobs}))
            )
        }
        suites = {
            r.id: (r.name, r.version)
            for r in session.execute(
                select(ValidationSuite.id, ValidationSuite.name, ValidationSuite.version).where(
                    ValidationSuite.id.in_({j.suite_id for j in jobs})
                )
            )
        }
        datasets = {
            r.id: f"{r.name}@{r.version}"
            for r in session.execute(
                select(DatasetVersion.id, Dataset.name, DatasetVersion.version)
                .join(Dataset)
                .where(DatasetVersion.id.in_({j.dataset_version_id for j in jobs}))
            )
        }
        return [
            JobView(
                job,
                *versions[job.model_version_id],
                *suites[job.suite_id],
                datasets[job.dataset_version_id],
            )
            for job in jobs
        ]

    # -- the worker's side ---------------------------------------------------------------------

    def claim(self, worker: str, now: datetime | None = None) -> Claim | None:
        """Lease the oldest runnable job: queued, or running under an expired lease (its worker
        died). A job whose workers died :data:`MAX_ATTEMPTS` times is failed instead."""
        while True:
            now = now or utcnow()
            with self.db.write() as session:
                job = session.execute(
                    select(ValidationJob)
                    .where(
                        or_(
                            ValidationJob.status == QUEUED,
                            (ValidationJob.status == RUNNING) & (ValidationJob.lease_until < now),
                        )
                    )
                    .order_by(ValidationJob.id)
                    .limit(1)
                    .with_for_update(skip_locked=True)
                ).scalar_one_or_none()
                if job is None:
                    return None
                if job.attempts >= MAX_ATTEMPTS:
                    abandoned = job.id
                else:
                    job.status = RUNNING
                    job.attempts += 1
                    job.worker = worker[:128]
                    job.lease_until = now + timedelta(seconds=LEASE_SECONDS)
                    job.started_at = now
                    job.progress = 0.0
                    job.progress_message = "starting"
                    session.flush()
                    return self._claim(session, job, worker)
            self._fail(
                abandoned,
                None,
                f"the job was abandoned: its worker stopped {MAX_ATTEMPTS} times without "
                "finishing (killed, out of memory, or the machine went away)",
            )

    def _claim(self, session: Session, job: ValidationJob, worker: str) -> Claim:
        version = session.get(ModelVersion, job.model_version_id)
        suite = session.get(ValidationSuite, job.suite_id)
        dv = session.get(DatasetVersion, job.dataset_version_id)
        assert version is not None and suite is not None and dv is not None
        model = version.model
        policy = self.lifecycle.policy_of(session, model)
        champion = session.execute(
            select(ModelVersion).where(
                ModelVersion.model_id == model.id,
                ModelVersion.stage == Stage.PRODUCTION.value,
                ModelVersion.id != version.id,
            )
        ).scalar_one_or_none()
        training = session.execute(
            select(DatasetVersion.content_sha256)
            .join(Lineage, Lineage.dataset_version_id == DatasetVersion.id)
            .where(Lineage.model_version_id == version.id, Lineage.role == "training")
            .order_by(Lineage.id)
            .limit(1)
        ).scalar_one_or_none()
        return Claim(
            job_id=job.id,
            attempt=job.attempts,
            worker=worker,
            candidate=_ref(model, version),
            recorded={
                "data_hash": training,
                "code_ref": dict(version.code_ref),
                "environment": dict(version.environment),
            },
            champion=_ref(model, champion) if champion is not None else None,
            suite={
                "name": suite.name,
                "version": suite.version,
                "sha256": suite.sha256,
                "definition": suite.definition,
            },
            dataset={
                "name": dv.dataset.name,
                "version": dv.version,
                "sha256": dv.content_sha256,
                "uri": dv.uri,
                "data_format": dv.data_format,
                "schema": list(dv.schema),
            },
            scan_policy={
                "allow_pickle": policy.artifacts.allow_pickle,
                "trusted_types": list(policy.artifacts.trusted_types),
            },
            requested_by=job.requested_by,
            requested_at=job.requested_at,
        )

    def heartbeat(self, claim: Claim, fraction: float | None = None, message: str = "") -> bool:
        """Renew the claim's lease (and record progress); False when the lease was lost (the
        job was taken by another worker after this one stalled)."""
        values: dict[str, Any] = {"lease_until": utcnow() + timedelta(seconds=LEASE_SECONDS)}
        if fraction is not None:
            values["progress"] = min(max(float(fraction), 0.0), 1.0)
            values["progress_message"] = message[:256]
        with self.db.write() as session:
            result = session.execute(
                update(ValidationJob)
                .where(
                    ValidationJob.id == claim.job_id,
                    ValidationJob.status == RUNNING,
                    ValidationJob.worker == claim.worker[:128],
                    ValidationJob.attempts == claim.attempt,
                )
                .values(**values)
            )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def complete(
        self,
        claim: Claim,
        checks: Sequence[dict[str, Any]],
        report: StoredArtifact,
        attachments: dict[str, list[dict[str, Any]]],
        runtime_seconds: float,
    ) -> JobView:
        """Record a finished run: one evidence record per check kind (with the report and the
        kind's files attached), the job's outcome, and the audit events, in one change.

        ``attachments`` maps a check kind to its stored files ({name, media_type, size,
        sha256}); the report is attached to every record."""
        ctx = system_context(f"validation-{claim.job_id}")
        suite_ref = {
            "name": claim.suite["name"],
            "version": claim.suite["version"],
            "sha256": claim.suite["sha256"],
            "definition": claim.suite["definition"],
            "job": claim.job_id,
        }
        report_item = {
            "name": "report.html",
            "media_type": "text/html",
            "size": report.size,
            "sha256": report.sha256,
        }
        with self.trail.change(ctx, Permission.VALIDATION_RUN, self._reason(claim)) as cs:
            session = cs.session
            model = self.lifecycle.lock_model(session, claim.candidate.model)
            job = self._running(session, claim)
            version = self.lifecycle.version_of(session, model, claim.candidate.version)
            dv = session.get(DatasetVersion, job.dataset_version_id)
            policy = self.lifecycle.policy_of(session, model)
            if (
                policy.separation_of_duties.no_evidence_for_own_version
                and version.created_by == job.requested_by
            ):
                raise PermissionDenied(
                    f"separation of duties: {job.requested_by} created version "
                    f"{version.version}; evidence they requested cannot be recorded"
                )
            outcome = []
            for check in checks:
                view = self.lifecycle.write_evidence(
                    cs,
                    model,
                    version,
                    kind=check["kind"],
                    passed=bool(check["passed"]),
                    summary=str(check.get("summary", ""))[:10_000],
                    suite=suite_ref,
                    results={
                        **check.get("results", {}),
                        "runtime_seconds": check.get("runtime_seconds"),
                        "peak_memory_mb": check.get("peak_memory_mb"),
                    },
                    checks=[_check_row(c) for c in check.get("checks", [])],
                    attachments=[*attachments.get(check["kind"], []), report_item],
                    dataset=dv,
                    created_by=job.requested_by,
                    source="validation",
                    job_id=job.id,
                )
                outcome.append(
                    {
                        "kind": check["kind"],
                        "passed": bool(check["passed"]),
                        "summary": str(check.get("summary", ""))[:1000],
                        "evidence_id": view.evidence.id,
                        "content_sha256": view.evidence.content_sha256,
                        "runtime_seconds": check.get("runtime_seconds"),
                        "peak_memory_mb": check.get("peak_memory_mb"),
                    }
                )
            job.status = SUCCEEDED
            job.passed = all(item["passed"] for item in outcome)
            job.outcome = outcome
            job.report_sha256 = report.sha256
            job.report_size = report.size
            job.runtime_seconds = runtime_seconds
            job.finished_at = utcnow()
            job.progress = 1.0
            job.progress_message = "done"
            job.lease_until = None
            job.champion_version = claim.champion.version if claim.champion else None
            session.flush()
            cs.record(
                Action.VALIDATION_COMPLETE,
                job_target(job.id),
                {
                    "model": model.name,
                    "version": version.version,
                    "passed": job.passed,
                    "evidence": [item["evidence_id"] for item in outcome],
                    "report_sha256": report.sha256,
                    "worker": claim.worker,
                    "attempt": claim.attempt,
                    "runtime_seconds": runtime_seconds,
                    "champion_version": job.champion_version,
                },
            )
            return self._views(session, select(ValidationJob).where(ValidationJob.id == job.id))[0]

    def fail(self, claim: Claim, message: str) -> None:
        """The job stopped on an error: record it on the job (audited); nothing else changes."""
        self._fail(claim.job_id, claim, message)

    def _fail(self, job_id: int, claim: Claim | None, message: str) -> None:
        text = message.strip()[:MAX_ERROR_CHARS] or "the job failed without a message"
        ctx = system_context(f"validation-{job_id}")
        reason = self._reason(claim) if claim else f"validation job #{job_id} abandoned"
        with self.trail.change(ctx, Permission.VALIDATION_RUN, reason) as cs:
            if claim is not None:
                job = self._running(cs.session, claim)
            else:
                found = cs.session.get(ValidationJob, job_id, with_for_update=True)
                if found is None or found.status not in (QUEUED, RUNNING):
                    raise Conflict(f"validation job #{job_id} is not open")
                job = found
            job.status = FAILED
            job.passed = None
            job.error = text
            job.finished_at = utcnow()
            job.lease_until = None
            cs.session.flush()
            cs.record(
                Action.VALIDATION_FAIL,
                job_target(job.id),
                {"error": text, "worker": job.worker, "attempt": job.attempts},
            )

    @staticmethod
    def _running(session: Session, claim: Claim) -> ValidationJob:
        job = session.get(ValidationJob, claim.job_id, with_for_update=True)
        if (
            job is None
            or job.status != RUNNING
            or job.worker != claim.worker[:128]
            or job.attempts != claim.attempt
        ):
            raise Conflict(
                f"validation job #{claim.job_id} is no longer this worker's (its lease expired "
                "and another worker took it, or it was finished)"
            )
        return job

    @staticmethod
    def _reason(claim: Claim) -> str:
        return (
            f"validation job #{claim.job_id}: suite {claim.suite['name']} "
            f"v{claim.suite['version']} on {claim.dataset['name']}@{claim.dataset['version']} "
            f"for {claim.candidate.model} v{claim.candidate.version}, requested by "
            f"{claim.requested_by}"
        )


# -- helpers -----------------------------------------------------------------------------------


def _ref(model: Model, version: ModelVersion) -> ArtifactRef:
    return ArtifactRef(
        model=model.name,
        version=version.version,
        format=version.format,
        sha256=version.artifact_sha256,
        signature=dict(version.signature),
    )


def _check_columns(
    suite: SuiteDocument, version: ModelVersion, dv: DatasetVersion, label: str
) -> None:
    """The suite's columns and the model's inputs against the dataset's registered schema:
    a mismatch is refused now rather than failing in the worker."""
    columns = {c["name"] for c in dv.schema}
    inputs = [spec["name"] for spec in version.signature.get("inputs", [])]
    missing_inputs = [name for name in inputs if name not in columns]
    if missing_inputs:
        raise InvalidInput(
            f"{label} lacks columns the model's signature needs: {', '.join(missing_inputs)}",
            field="dataset",
        )
    missing = sorted(referenced_columns(suite) - columns)
    if missing:
        raise InvalidInput(
            f"the suite names columns {label} does not have: {', '.join(missing)}",
            field="suite",
        )


def _check_row(check: dict[str, Any]) -> dict[str, Any]:
    """A check as evidence stores it (bounded like the API's ``Check``)."""
    value = check.get("value")
    threshold = check.get("threshold")
    return {
        "name": str(check.get("name", ""))[:256] or "check",
        "passed": bool(check.get("passed")),
        "value": value if isinstance(value, int | float | str | bool) or value is None else None,
        "threshold": threshold if isinstance(threshold, int | float | str) else None,
        "details": str(check.get("details", ""))[:512],
    }

"""Validation endpoints: suites, validation runs (queued jobs), their reports, and the upload
of a dataset version's data. Thin adapters over
:class:`mlgov.validation.service.ValidationService`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, Path, Query, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from mlgov.api.deps import Services, context, services
from mlgov.api.registry import (
    ArtifactResponse,
    Cursor,
    DatasetName,
    Limit,
    ModelName,
    VersionNumber,
)
from mlgov.api.views import DatasetVersionOut, Page, dataset_version_out
from mlgov.audit.service import check_reason
from mlgov.context import Context
from mlgov.errors import InvalidInput
from mlgov.names import NAME_PATTERN
from mlgov.storage import ArtifactMismatch
from mlgov.validation.models import ValidationSuite
from mlgov.validation.schemas import SuitePublish, ValidationCreate
from mlgov.validation.service import JobView

SuiteName = Annotated[str, Path(pattern=NAME_PATTERN, description="Suite name")]
JobId = Annotated[int, Path(ge=1, le=2**31 - 1, description="Validation job id")]
JobStatus = Literal["queued", "running", "succeeded", "failed"]


class SuiteOut(BaseModel):
    name: str
    version: int
    sha256: str
    document: str
    definition: dict[str, Any]
    created_at: datetime
    created_by: str
    versions: list[int]


class ReportOut(BaseModel):
    sha256: str
    size: int
    url: str


class ValidationOut(BaseModel):
    id: int
    model: str
    version: int
    suite: str
    suite_version: int
    dataset: str
    status: str
    passed: bool | None
    requested_by: str
    requested_at: datetime
    reason: str
    attempts: int
    worker: str
    started_at: datetime | None
    finished_at: datetime | None
    progress: float
    progress_message: str
    error: str
    champion_version: int | None
    outcome: list[dict[str, Any]]
    report: ReportOut | None
    runtime_seconds: float | None


def suite_out(suite: ValidationSuite, versions: list[int]) -> SuiteOut:
    return SuiteOut(
        name=suite.name,
        version=suite.version,
        sha256=suite.sha256,
        document=suite.document,
        definition=suite.definition,
        created_at=suite.created_at,
        created_by=suite.created_by,
        versions=versions,
    )


def validation_out(view: JobView) -> ValidationOut:
    job = view.job
    report = None
    if job.report_sha256 is not None:
        report = ReportOut(
            sha256=job.report_sha256,
            size=job.report_size or 0,
            url=f"/api/v1/validations/{job.id}/report",
        )
    return ValidationOut(
        id=job.id,
        model=view.model,
        version=view.version,
        suite=view.suite,
        suite_version=view.suite_version,
        dataset=view.dataset,
        status=job.status,
        passed=job.passed,
        requested_by=job.requested_by,
        requested_at=job.requested_at,
        reason=job.reason,
        attempts=job.attempts,
        worker=job.worker,
        started_at=job.started_at,
        finished_at=job.finished_at,
        progress=job.progress,
        progress_message=job.progress_message,
        error=job.error,
        champion_version=job.champion_version,
        outcome=list(job.outcome),
        report=report,
        runtime_seconds=job.runtime_seconds,
    )


# -- suites ------------------------------------------------------------------------------


def publish_suite(
    name: SuiteName,
    body: SuitePublish,
    ctx: Context = Depends(context),
    svc: Services = Depends(services),
) -> SuiteOut:
    suite = svc.validation.publish_suite(ctx, name, body)
    return suite_out(suite, svc.validation.suite_versions(name))


def list_suites(svc: Services = Depends(services)) -> list[SuiteOut]:
    return [
        suite_out(s, svc.validation.suite_versions(s.name)) for s in svc.validation.list_suites()
    ]


def get_suite(
    name: SuiteName,
    svc: Services = Depends(services),
    version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> SuiteOut:
    suite = svc.validation.get_suite(name, version)
    return suite_out(suite, svc.validation.suite_versions(name))


# -- runs --------------------------------------------------------------------------------


def request_validation(
    name: ModelName,
    version: VersionNumber,
    body: ValidationCreate,
    ctx: Context = Depends(context),
    svc: Services = Depends(services),
) -> ValidationOut:
    return validation_out(svc.validation.request_run(ctx, name, version, body))


def list_validations(
    svc: Services = Depends(services),
    status: Annotated[JobStatus | None, Query()] = None,
    model: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[ValidationOut]:
    if version is not None and model is None:
        raise InvalidInput("version needs model", field="query.version")
    page = svc.validation.list_jobs(
        status=status, model=model, version=version, limit=limit, cursor=cursor
    )
    return Page(items=[validation_out(v) for v in page.items], next_cursor=page.next_cursor)


def get_validation(job_id: JobId, svc: Services = Depends(services)) -> ValidationOut:
    return validation_out(svc.validation.get_job(job_id))


def download_report(job_id: JobId, svc: Services = Depends(services)) -> ArtifactResponse:
    view, chunks = svc.validation.report(job_id)
    return ArtifactResponse(
        chunks,
        media_type="text/html",
        headers={
            "Content-Length": str(view.job.report_size),
            "Content-Disposition": f'attachment; filename="validation-{job_id}.html"',
            "X-Content-SHA256": view.job.report_sha256 or "",
        },
    )


# -- dataset data ------------------------------------------------------------------------


async def upload_dataset_data(
    name: DatasetName,
    version: VersionNumber,
    request: Request,
    format: Annotated[Literal["csv", "parquet"], Query(description="The file's format.")],
    reason: Annotated[str, Query(min_length=1, max_length=2000, description="Why (audited).")],
    ctx: Context = Depends(context),
    svc: Services = Depends(services),
) -> DatasetVersionOut:
    """The body is the file itself (``application/octet-stream``), streamed to the artifact
    store; its sha256 must be the one the dataset version was registered with."""
    reason = check_reason(reason)
    expected = await run_in_threadpool(
        svc.validation.check_can_upload_data, ctx, name, version, format
    )
    writer = svc.store.writer(svc.settings.max_artifact_bytes)
    try:
        async for chunk in request.stream():
            if chunk:
                await run_in_threadpool(writer.write, chunk)
        # Data that is not what was registered is discarded, never stored.
        artifact = await run_in_threadpool(writer.commit, expected)
    except ArtifactMismatch as exc:
        raise InvalidInput(
            f"the data's sha256 is {exc.actual}, but {name}@{version} was registered with "
            f"{exc.expected}",
            field="body",
        ) from None
    except BaseException:
        await run_in_threadpool(writer.abort)
        raise
    dv = await run_in_threadpool(
        svc.validation.record_data, ctx, name, version, format, artifact, reason
    )
    return dataset_version_out(dv)

"""Registry endpoints: thin adapters over :class:`RegistryService`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from mlgov.api.deps import Services, context, services
from mlgov.api.problems import validation_errors
from mlgov.api.upload import read_version_upload
from mlgov.api.views import (
    DatasetOut,
    DatasetVersionOut,
    ModelOut,
    Page,
    VersionOut,
    dataset_out,
    dataset_version_out,
    model_out,
    version_out,
)
from mlgov.context import Context
from mlgov.errors import InvalidInput
from mlgov.names import NAME_PATTERN
from mlgov.registry.schemas import (
    DatasetCreate,
    DatasetVersionCreate,
    ModelCreate,
    ModelUpdate,
    RiskTier,
    Stage,
    VersionMetadata,
)
from mlgov.registry.service import CatalogQuery

ModelName = Annotated[str, Path(pattern=NAME_PATTERN, description="Model name")]
DatasetName = Annotated[str, Path(pattern=NAME_PATTERN, description="Dataset name")]
VersionNumber = Annotated[int, Path(ge=1, le=2**31 - 1, description="Version number")]
Limit = Annotated[int, Query(ge=1, le=200)]
Cursor = Annotated[str | None, Query(max_length=512)]
TextQuery = Annotated[str | None, Query(max_length=256, description="Free text")]


def create_model(
    body: ModelCreate, ctx: Context = Depends(context), svc: Services = Depends(services)
) -> ModelOut:
    return model_out(svc.registry.create_model(ctx, body))


def update_model(
    name: ModelName,
    body: ModelUpdate,
    ctx: Context = Depends(context),
    svc: Services = Depends(services),
) -> ModelOut:
    model = svc.registry.update_model(ctx, name, body)
    return model_out(model, svc.registry.latest_versions([model.id]).get(model.id))


def search_models(
    svc: Services = Depends(services),
    q: TextQuery = None,
    owner_team: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    risk_tier: RiskTier | None = None,
    stage: Stage | None = None,
    tag: Annotated[str | None, Query(max_length=64)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[ModelOut]:
    page = svc.registry.search_models(
        CatalogQuery(
            text=q,
            owner_team=owner_team,
            risk_tier=risk_tier.value if risk_tier else None,
            stage=stage.value if stage else None,
            tag=tag,
            limit=limit,
            cursor=cursor,
        )
    )
    latest = svc.registry.latest_versions([m.id for m in page.items])
    return Page[ModelOut](
        items=[model_out(m, latest.get(m.id)) for m in page.items], next_cursor=page.next_cursor
    )


def get_model(name: ModelName, svc: Services = Depends(services)) -> ModelOut:
    model = svc.registry.get_model(name)
    return model_out(model, svc.registry.latest_versions([model.id]).get(model.id))


async def create_version(
    name: ModelName,
    request: Request,
    ctx: Context = Depends(context),
    svc: Services = Depends(services),
) -> VersionOut:
    """Multipart upload: an ``artifact`` file part and a ``metadata`` JSON part (which
    carries the ``reason``). The artifact is streamed to the store and hashed on the way."""
    await run_in_threadpool(svc.registry.check_can_register_version, ctx, name)
    upload = await read_version_upload(
        request, svc.store, svc.settings.max_artifact_bytes, svc.settings.scan_dir
    )
    try:
        try:
            try:
                meta = VersionMetadata.model_validate_json(upload.metadata)
            except ValidationError as exc:
                errors = validation_errors(list(exc.errors()), prefix=("metadata",))  # type: ignore[arg-type]
                first = errors[0]
                raise InvalidInput(
                    f"{first['field']}: {first['message']}", field=first["field"]
                ) from None
            # A refusal must leave no blob behind: check what can be checked before committing.
            await run_in_threadpool(svc.registry.check_lineage, meta)
            # Scanned, never loaded: nothing in the artifact runs in this process.
            scan = await run_in_threadpool(
                svc.lifecycle.scan_upload, name, upload.scan_path, meta.format.value
            )
            artifact = await run_in_threadpool(upload.writer.commit)
        except BaseException:
            await run_in_threadpool(upload.writer.abort)
            raise
    finally:
        upload.discard_scan_copy()
    version = await run_in_threadpool(
        svc.registry.create_version, ctx, name, meta, artifact, upload.filename, scan
    )
    return version_out(version)


def list_versions(
    name: ModelName, svc: Services = Depends(services), limit: Limit = 50, cursor: Cursor = None
) -> Page[VersionOut]:
    page = svc.registry.list_versions(name, limit=limit, cursor=cursor)
    return Page[VersionOut](
        items=[version_out(v) for v in page.items], next_cursor=page.next_cursor
    )


def get_version(
    name: ModelName, version: VersionNumber, svc: Services = Depends(services)
) -> VersionOut:
    return version_out(svc.registry.get_version(name, version))


class ArtifactResponse(StreamingResponse):
    """An artifact's bytes, streamed from the store (its class documents the media type)."""

    media_type = "application/octet-stream"


def download_artifact(
    name: ModelName, version: VersionNumber, svc: Services = Depends(services)
) -> ArtifactResponse:
    v = svc.registry.get_version(name, version)
    chunks = svc.store.open(v.artifact_sha256)
    filename = v.artifact_filename.replace('"', "")
    return ArtifactResponse(
        chunks,
        headers={
            "Content-Length": str(v.artifact_size),
            "Content-Disposition": f'attachment; filename="{filename}"',
            "ETag": f'"sha256:{v.artifact_sha256}"',
            "X-Artifact-SHA256": v.artifact_sha256,
        },
    )


def create_dataset(
    body: DatasetCreate, ctx: Context = Depends(context), svc: Services = Depends(services)
) -> DatasetOut:
    return dataset_out(svc.registry.create_dataset(ctx, body))


def search_datasets(
    svc: Services = Depends(services),
    q: TextQuery = None,
    owner_team: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[DatasetOut]:
    page = svc.registry.search_datasets(q, owner_team, limit, cursor)
    return Page[DatasetOut](
        items=[dataset_out(d) for d in page.items], next_cursor=page.next_cursor
    )


def get_dataset(name: DatasetName, svc: Services = Depends(services)) -> DatasetOut:
    return dataset_out(svc.registry.get_dataset(name))


def create_dataset_version(
    name: DatasetName,
    body: DatasetVersionCreate,
    ctx: Context = Depends(context),
    svc: Services = Depends(services),
) -> DatasetVersionOut:
    return dataset_version_out(svc.registry.create_dataset_version(ctx, name, body), [])


def list_dataset_versions(
    name: DatasetName, svc: Services = Depends(services)
) -> list[DatasetVersionOut]:
    return [dataset_version_out(dv) for dv in svc.registry.list_dataset_versions(name)]


def get_dataset_version(
    name: DatasetName, version: VersionNumber, svc: Services = Depends(services)
) -> DatasetVersionOut:
    dv = svc.registry.get_dataset_version(name, version)
    return dataset_version_out(dv, svc.registry.dataset_version_usage(dv.id))

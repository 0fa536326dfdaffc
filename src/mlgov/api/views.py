"""JSON shapes of the API's answers, and their builders from stored rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field

from mlgov.audit.models import AuditEvent
from mlgov.identity.models import ApiToken, User
from mlgov.registry.models import Dataset, DatasetVersion, Model, ModelVersion
from mlgov.registry.service import VersionSummary


class LatestVersion(BaseModel):
    version: int
    stage: str
    created_at: datetime


class ModelOut(BaseModel):
    name: str
    description: str
    owner_team: str
    risk_tier: str
    domain: str
    intended_use: str
    out_of_scope_uses: list[str]
    tags: list[str]
    created_at: datetime
    created_by: str
    updated_at: datetime
    latest_version: LatestVersion | None = None


class LineageOut(BaseModel):
    dataset: str
    version: int
    role: str
    content_sha256: str


class VersionOut(BaseModel):
    model: str
    version: int
    stage: str
    artifact_sha256: str
    artifact_size: int
    artifact_filename: str
    format: str
    signature: dict[str, Any]
    algorithm: str
    hyperparameters: dict[str, Any]
    metrics: dict[str, Any]
    code_ref: dict[str, Any]
    environment: dict[str, Any]
    changelog: str
    created_at: datetime
    created_by: str
    lineage: list[LineageOut]


class DatasetOut(BaseModel):
    name: str
    description: str
    owner_team: str
    created_at: datetime
    created_by: str


class UsageOut(BaseModel):
    model: str
    version: int
    role: str


class DatasetVersionOut(BaseModel):
    dataset: str
    version: int
    content_sha256: str
    uri: str
    columns: list[dict[str, Any]] = Field(alias="schema")
    row_count: int
    datasheet: dict[str, Any]
    created_at: datetime
    created_by: str
    #: The uploaded data ({format, size}); null while only ``uri`` locates it.
    data: dict[str, Any] | None = None
    used_by: list[UsageOut] | None = None


class UserOut(BaseModel):
    name: str
    kind: str
    display_name: str
    email: str
    roles: list[str]
    disabled: bool
    created_at: datetime
    created_by: str


class TokenOut(BaseModel):
    id: str
    user: str
    name: str
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None


class IssuedTokenOut(TokenOut):
    token: str


class AuditEventOut(BaseModel):
    seq: int
    time: datetime
    actor: str
    actor_kind: str
    action: str
    target: str
    reason: str
    details: dict[str, Any]
    request_id: str
    client_addr: str | None
    leaf_hash: str = Field(description="Hex SHA-256 leaf hash of the event in the Merkle log")


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


def model_out(model: Model, latest: VersionSummary | None = None) -> ModelOut:
    return ModelOut(
        name=model.name,
        description=model.description,
        owner_team=model.owner_team,
        risk_tier=model.risk_tier,
        domain=model.domain,
        intended_use=model.intended_use,
        out_of_scope_uses=list(model.out_of_scope_uses),
        tags=model.tags,
        created_at=model.created_at,
        created_by=model.created_by,
        updated_at=model.updated_at,
        latest_version=LatestVersion(
            version=latest.version, stage=latest.stage, created_at=latest.created_at
        )
        if latest
        else None,
    )


def version_out(v: ModelVersion) -> VersionOut:
    return VersionOut(
        model=v.model.name,
        version=v.version,
        stage=v.stage,
        artifact_sha256=v.artifact_sha256,
        artifact_size=v.artifact_size,
        artifact_filename=v.artifact_filename,
        format=v.format,
        signature=v.signature,
        algorithm=v.algorithm,
        hyperparameters=v.hyperparameters,
        metrics=v.metrics,
        code_ref=v.code_ref,
        environment=v.environment,
        changelog=v.changelog,
        created_at=v.created_at,
        created_by=v.created_by,
        lineage=[
            LineageOut(
                dataset=link.dataset_version.dataset.name,
                version=link.dataset_version.version,
                role=link.role,
                content_sha256=link.dataset_version.content_sha256,
            )
            for link in v.lineage
        ],
    )


def dataset_out(d: Dataset) -> DatasetOut:
    return DatasetOut(
        name=d.name,
        description=d.description,
        owner_team=d.owner_team,
        created_at=d.created_at,
        created_by=d.created_by,
    )


def dataset_version_out(
    dv: DatasetVersion, used_by: list[tuple[str, int, str]] | None = None
) -> DatasetVersionOut:
    return DatasetVersionOut.model_validate(
        {
            "dataset": dv.dataset.name,
            "version": dv.version,
            "content_sha256": dv.content_sha256,
            "uri": dv.uri,
            "schema": dv.schema,
            "row_count": dv.row_count,
            "datasheet": dv.datasheet,
            "created_at": dv.created_at,
            "created_by": dv.created_by,
            "data": {"format": dv.data_format, "size": dv.data_size}
            if dv.data_format is not None
            else None,
            **(
                {"used_by": [{"model": m, "version": n, "role": r} for m, n, r in used_by]}
                if used_by is not None
                else {}
            ),
        }
    )


def user_out(u: User) -> UserOut:
    return UserOut(
        name=u.name,
        kind=u.kind,
        display_name=u.display_name,
        email=u.email,
        roles=u.roles,
        disabled=u.disabled,
        created_at=u.created_at,
        created_by=u.created_by,
    )


def token_out(t: ApiToken, user_name: str) -> TokenOut:
    return TokenOut(
        id=t.id,
        user=user_name,
        name=t.name,
        created_at=t.created_at,
        created_by=t.created_by,
        expires_at=t.expires_at,
        revoked_at=t.revoked_at,
    )


def audit_out(e: AuditEvent) -> AuditEventOut:
    return AuditEventOut(
        seq=e.seq,
        time=e.time,
        actor=e.actor,
        actor_kind=e.actor_kind,
        action=e.action,
        target=e.target,
        reason=e.reason,
        details=e.details,
        request_id=e.request_id,
        client_addr=e.client_addr,
        leaf_hash=e.leaf_hash.hex(),
    )

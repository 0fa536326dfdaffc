"""The registry: models, immutable model versions, datasets, dataset versions, lineage, and
catalog search. Knows nothing of HTTP; every change goes through :func:`change`."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import exists, func, or_, select
from sqlalchemy.orm import Session

from mlgov.artifacts.scan import ScanReport
from mlgov.audit.events import Action
from mlgov.audit.service import authorize
from mlgov.audit.trail import AuditTrail, ChangeSet
from mlgov.context import Context
from mlgov.db import utcnow
from mlgov.errors import Conflict, InvalidInput, NotFound
from mlgov.identity.permissions import Permission
from mlgov.lifecycle.models import StageChange
from mlgov.names import check_name
from mlgov.registry.models import (
    Dataset,
    DatasetVersion,
    Lineage,
    Model,
    ModelTag,
    ModelVersion,
)
from mlgov.registry.schemas import (
    RISK_ORDER,
    DatasetCreate,
    DatasetVersionCreate,
    ModelCreate,
    ModelUpdate,
    RiskTier,
    Stage,
    VersionMetadata,
)
from mlgov.storage import StoredArtifact

MAX_PAGE = 200


@dataclass(frozen=True)
class VersionSummary:
    version: int
    stage: str
    created_at: datetime


@dataclass(frozen=True)
class CatalogQuery:
    text: str | None = None
    owner_team: str | None = None
    risk_tier: str | None = None
    stage: str | None = None
    tag: str | None = None
    limit: int = 50
    cursor: str | None = None


T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: Sequence[T]
    next_cursor: str | None


def encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        # validate=True: a character outside the alphabet is an error, not silently dropped
        # (which turned a garbled cursor into "start from the beginning").
        padded = cursor + "=" * (-len(cursor) % 4)
        value = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidInput("cursor is not one this server issued", field="query.cursor") from None
    if "\x00" in value:  # never in a name or a number (and PostgreSQL cannot compare one)
        raise InvalidInput("cursor is not one this server issued", field="query.cursor")
    return value


def decode_number_cursor(cursor: str) -> int:
    """A cursor naming a version or a sequence number: a 64-bit count this server issued."""
    try:
        number = int(decode_cursor(cursor))
    except ValueError:
        number = -1
    if not 0 <= number < 2**63:  # a larger one does not fit the database's integers
        raise InvalidInput("cursor is not one this server issued", field="query.cursor")
    return number


def _like(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def search_text(model: Model) -> str:
    """What free-text search matches, lowercased once at write time (one column to scan
    instead of four expressions and a subquery per row)."""
    parts = [model.name, model.description, model.domain, model.intended_use, *model.tags]
    return "\n".join(parts).lower()


def _model_view(model: Model) -> dict[str, Any]:
    return {
        "description": model.description,
        "owner_team": model.owner_team,
        "risk_tier": model.risk_tier,
        "domain": model.domain,
        "intended_use": model.intended_use,
        "out_of_scope_uses": list(model.out_of_scope_uses),
        "tags": model.tags,
    }


#: Called in the change that registers a version, with the artifact's scan: the lifecycle
#: records it as the version's security_scan evidence and returns what the version's audit
#: event says of it (one event for the registration and the scan it includes).
ScanListener = Callable[[ChangeSet, Model, ModelVersion, "ScanReport"], dict[str, Any]]

#: Called in the change that altered a model (the lifecycle re-evaluates the model's pending
#: transition requests: against the new tier's policy, or with the new documentation).
ModelListener = Callable[[ChangeSet, Model], None]


class RegistryService:
    def __init__(self, trail: AuditTrail) -> None:
        self.trail = trail
        self.db = trail.db
        self.on_model_change: ModelListener | None = None
        self.on_version_scanned: ScanListener | None = None

    # -- models ------------------------------------------------------------------------

    def create_model(self, ctx: Context, data: ModelCreate) -> Model:
        with self.trail.change(ctx, Permission.MODEL_CREATE, data.reason) as cs:
            if cs.session.execute(select(Model.id).where(Model.name == data.name)).first():
                raise Conflict(f"a model named {data.name!r} exists already", field="name")
            now = utcnow()
            model = Model(
                name=data.name,
                description=data.description,
                owner_team=data.owner_team,
                risk_tier=data.risk_tier.value,
                domain=data.domain,
                intended_use=data.intended_use,
                out_of_scope_uses=list(data.out_of_scope_uses),
                created_at=now,
                created_by=ctx.actor.name,
                updated_at=now,
                tag_rows=[ModelTag(tag=t) for t in sorted(set(data.tags))],
            )
            model.search_text = search_text(model)
            cs.session.add(model)
            cs.session.flush()
            cs.record(Action.MODEL_CREATE, f"model/{model.name}", _model_view(model))
        return model

    def update_model(self, ctx: Context, name: str, data: ModelUpdate) -> Model:
        # A field left out or given as null is left unchanged (null is no value for any of them).
        fields = data.model_dump(exclude_unset=True, exclude_none=True, exclude={"reason"})
        if not fields:
            raise InvalidInput("nothing to change: give at least one field", field="body")
        new_tier = data.risk_tier
        with self.trail.change(ctx, Permission.MODEL_UPDATE, data.reason) as cs:
            model = self._model_for_update(cs.session, name)
            before = _model_view(model)
            if (
                new_tier is not None
                and RISK_ORDER[new_tier] < RISK_ORDER[RiskTier(model.risk_tier)]
            ):
                # Lowering the risk tier loosens every gate: an admin's decision.
                authorize(ctx, Permission.MODEL_RISK_TIER_LOWER)
            for key, value in fields.items():
                if key == "tags":
                    # Keep the rows of tags that stay: replacing them all would insert the new
                    # rows before deleting the old ones and trip the (model, tag) unique key.
                    kept = {t.tag: t for t in model.tag_rows if t.tag in value}
                    model.tag_rows = [kept.get(t) or ModelTag(tag=t) for t in sorted(set(value))]
                elif key == "risk_tier":
                    model.risk_tier = RiskTier(value).value
                else:
                    setattr(model, key, value)
            after = _model_view(model)
            changed = {
                k: {"old": before[k], "new": after[k]} for k in after if before[k] != after[k]
            }
            if not changed:
                raise InvalidInput(
                    "nothing to change: the values are the current ones", field="body"
                )
            model.updated_at = utcnow()
            model.search_text = search_text(model)
            cs.session.flush()
            cs.record(Action.MODEL_UPDATE, f"model/{name}", changed)
            if self.on_model_change is not None:
                self.on_model_change(cs, model)
        return model

    def get_model(self, name: str) -> Model:
        with self.db.read() as session:
            model = session.execute(select(Model).where(Model.name == name)).scalar_one_or_none()
        if model is None:
            raise NotFound(f"no model named {name!r}")
        return model

    def latest_versions(self, model_ids: Sequence[int]) -> dict[int, VersionSummary]:
        """Number, stage and time of each model's newest version: four columns, not whole
        version rows (the catalog shows nothing else, and loading versions costs 10x more)."""
        if not model_ids:
            return {}
        with self.db.read() as session:
            latest = (
                select(ModelVersion.model_id, func.max(ModelVersion.version).label("v"))
                .where(ModelVersion.model_id.in_(model_ids))
                .group_by(ModelVersion.model_id)
                .subquery()
            )
            rows = session.execute(
                select(
                    ModelVersion.model_id,
                    ModelVersion.version,
                    ModelVersion.stage,
                    ModelVersion.created_at,
                ).join(
                    latest,
                    (ModelVersion.model_id == latest.c.model_id)
                    & (ModelVersion.version == latest.c.v),
                )
            ).all()
        return {r[0]: VersionSummary(version=r[1], stage=r[2], created_at=r[3]) for r in rows}

    def search_models(self, query: CatalogQuery) -> Page[Model]:
        limit = max(1, min(query.limit, MAX_PAGE))
        stmt = select(Model).order_by(Model.name).limit(limit + 1)
        if query.text:
            stmt = stmt.where(Model.search_text.like(_like(query.text), escape="\\"))
        if query.owner_team:
            stmt = stmt.where(Model.owner_team == query.owner_team)
        if query.risk_tier:
            stmt = stmt.where(Model.risk_tier == query.risk_tier)
        if query.tag:
            stmt = stmt.where(
                exists().where(ModelTag.model_id == Model.id, ModelTag.tag == query.tag)
            )
        if query.stage:
            stmt = stmt.where(
                exists().where(ModelVersion.model_id == Model.id, ModelVersion.stage == query.stage)
            )
        if query.cursor:
            stmt = stmt.where(Model.name > decode_cursor(query.cursor))
        with self.db.read() as session:
            rows = list(session.execute(stmt).scalars())
        more = len(rows) > limit
        rows = rows[:limit]
        return Page(items=rows, next_cursor=encode_cursor(rows[-1].name) if more else None)

    # -- versions ----------------------------------------------------------------------

    def check_can_register_version(self, ctx: Context, model_name: str) -> None:
        """Fail fast, before an upload is streamed: permission and an existing model."""
        authorize(ctx, Permission.MODEL_VERSION_CREATE)
        self.get_model(model_name)

    def check_lineage(self, meta: VersionMetadata) -> None:
        """Fail fast, before an uploaded artifact is committed to the store: every dataset
        version the metadata names exists (checked again in the change's transaction)."""
        with self.db.read() as session:
            for i, ref in enumerate(meta.datasets):
                find_dataset_version(
                    session, ref.dataset, ref.version, field=f"metadata.datasets[{i}]"
                )

    def create_version(
        self,
        ctx: Context,
        model_name: str,
        meta: VersionMetadata,
        artifact: StoredArtifact,
        filename: str,
        scan: ScanReport | None = None,
    ) -> ModelVersion:
        if scan is not None and scan.sha256 != artifact.sha256:
            raise RuntimeError("the scan report is not of this artifact")
        with self.trail.change(ctx, Permission.MODEL_VERSION_CREATE, meta.reason) as cs:
            model = self._model_for_update(cs.session, model_name)
            links = []
            for i, ref in enumerate(meta.datasets):
                dv = find_dataset_version(
                    cs.session, ref.dataset, ref.version, field=f"metadata.datasets[{i}]"
                )
                links.append(Lineage(dataset_version=dv, role=ref.role))
            number = (
                cs.session.execute(
                    select(func.max(ModelVersion.version)).where(ModelVersion.model_id == model.id)
                ).scalar_one()
                or 0
            ) + 1
            version = ModelVersion(
                model=model,
                version=number,
                stage=Stage.DEVELOPMENT.value,
                artifact_sha256=artifact.sha256,
                artifact_size=artifact.size,
                artifact_filename=filename,
                format=meta.format.value,
                signature=meta.signature.model_dump(exclude_none=True),
                algorithm=meta.algorithm,
                hyperparameters=meta.hyperparameters,
                metrics=meta.metrics,
                code_ref=meta.code_ref.model_dump() if meta.code_ref else {},
                environment=meta.environment.model_dump(),
                changelog=meta.changelog,
                created_at=utcnow(),
                created_by=ctx.actor.name,
                lineage=links,
            )
            cs.session.add(version)
            cs.session.flush()
            cs.session.add(
                StageChange(
                    model_id=model.id,
                    model_version_id=version.id,
                    version=number,
                    from_stage=None,
                    to_stage=version.stage,
                    time=version.created_at,
                    actor=ctx.actor.name,
                    transition_id=None,
                    reason=cs.reason,
                )
            )
            scanned: dict[str, Any] | None = None
            if scan is not None and self.on_version_scanned is not None:
                scanned = self.on_version_scanned(cs, model, version, scan)
            cs.record(
                Action.MODEL_VERSION_CREATE,
                f"model/{model_name}/versions/{number}",
                {
                    "artifact_sha256": artifact.sha256,
                    "artifact_size": artifact.size,
                    "format": version.format,
                    "algorithm": version.algorithm,
                    "datasets": [
                        f"{ref.dataset}@{ref.version}:{ref.role}" for ref in meta.datasets
                    ],
                    "security_scan": scanned,
                },
            )
        return version

    def get_version(self, model_name: str, number: int) -> ModelVersion:
        with self.db.read() as session:
            version = session.execute(
                select(ModelVersion)
                .join(Model)
                .where(Model.name == model_name, ModelVersion.version == number)
            ).scalar_one_or_none()
        if version is None:
            self.get_model(model_name)  # 404 for the model first, if that is what's missing
            raise NotFound(f"model {model_name!r} has no version {number}")
        return version

    def list_versions(
        self, model_name: str, limit: int = 50, cursor: str | None = None
    ) -> Page[ModelVersion]:
        model = self.get_model(model_name)
        limit = max(1, min(limit, MAX_PAGE))
        stmt = (
            select(ModelVersion)
            .where(ModelVersion.model_id == model.id)
            .order_by(ModelVersion.version.desc())
            .limit(limit + 1)
        )
        if cursor:
            stmt = stmt.where(ModelVersion.version < decode_number_cursor(cursor))
        with self.db.read() as session:
            rows = list(session.execute(stmt).scalars())
        more = len(rows) > limit
        rows = rows[:limit]
        return Page(rows, encode_cursor(str(rows[-1].version)) if more else None)

    # -- datasets ----------------------------------------------------------------------

    def create_dataset(self, ctx: Context, data: DatasetCreate) -> Dataset:
        with self.trail.change(ctx, Permission.DATASET_CREATE, data.reason) as cs:
            if cs.session.execute(select(Dataset.id).where(Dataset.name == data.name)).first():
                raise Conflict(f"a dataset named {data.name!r} exists already", field="name")
            dataset = Dataset(
                name=data.name,
                description=data.description,
                owner_team=data.owner_team,
                created_at=utcnow(),
                created_by=ctx.actor.name,
            )
            cs.session.add(dataset)
            cs.session.flush()
            cs.record(
                Action.DATASET_CREATE,
                f"dataset/{data.name}",
                {"description": data.description, "owner_team": data.owner_team},
            )
        return dataset

    def create_dataset_version(
        self, ctx: Context, name: str, data: DatasetVersionCreate
    ) -> DatasetVersion:
        with self.trail.change(ctx, Permission.DATASET_VERSION_CREATE, data.reason) as cs:
            dataset = cs.session.execute(
                select(Dataset).where(Dataset.name == name).with_for_update()
            ).scalar_one_or_none()
            if dataset is None:
                raise NotFound(f"no dataset named {name!r}")
            number = (
                cs.session.execute(
                    select(func.max(DatasetVersion.version)).where(
                        DatasetVersion.dataset_id == dataset.id
                    )
                ).scalar_one()
                or 0
            ) + 1
            dv = DatasetVersion(
                dataset=dataset,
                version=number,
                content_sha256=data.content_sha256,
                uri=data.uri,
                schema=[c.model_dump() for c in data.schema_],
                row_count=data.row_count,
                datasheet=data.datasheet.model_dump(exclude_none=True),
                created_at=utcnow(),
                created_by=ctx.actor.name,
            )
            cs.session.add(dv)
            cs.session.flush()
            cs.record(
                Action.DATASET_VERSION_CREATE,
                f"dataset/{name}/versions/{number}",
                {
                    "content_sha256": dv.content_sha256,
                    "uri": dv.uri,
                    "row_count": dv.row_count,
                    "columns": len(dv.schema),
                },
            )
        return dv

    def get_dataset(self, name: str) -> Dataset:
        with self.db.read() as session:
            ds = session.execute(select(Dataset).where(Dataset.name == name)).scalar_one_or_none()
        if ds is None:
            raise NotFound(f"no dataset named {name!r}")
        return ds

    def search_datasets(
        self, text: str | None, owner_team: str | None, limit: int, cursor: str | None
    ) -> Page[Dataset]:
        limit = max(1, min(limit, MAX_PAGE))
        stmt = select(Dataset).order_by(Dataset.name).limit(limit + 1)
        if text:
            pattern = _like(text)
            stmt = stmt.where(
                or_(
                    func.lower(Dataset.name).like(pattern, escape="\\"),
                    func.lower(Dataset.description).like(pattern, escape="\\"),
                )
            )
        if owner_team:
            stmt = stmt.where(Dataset.owner_team == owner_team)
        if cursor:
            stmt = stmt.where(Dataset.name > decode_cursor(cursor))
        with self.db.read() as session:
            rows = list(session.execute(stmt).scalars())
        more = len(rows) > limit
        rows = rows[:limit]
        return Page(rows, encode_cursor(rows[-1].name) if more else None)

    def list_dataset_versions(self, name: str) -> Sequence[DatasetVersion]:
        dataset = self.get_dataset(name)
        with self.db.read() as session:
            return (
                session.execute(
                    select(DatasetVersion)
                    .where(DatasetVersion.dataset_id == dataset.id)
                    .order_by(DatasetVersion.version)
                )
                .scalars()
                .all()
            )

    def get_dataset_version(self, name: str, number: int) -> DatasetVersion:
        with self.db.read() as session:
            return find_dataset_version(session, name, number)

    def dataset_version_usage(self, dv_id: int) -> list[tuple[str, int, str]]:
        """Which model versions were built on this dataset version: (model, version, role)."""
        with self.db.read() as session:
            rows = session.execute(
                select(Model.name, ModelVersion.version, Lineage.role)
                .join(ModelVersion, Lineage.model_version_id == ModelVersion.id)
                .join(Model, ModelVersion.model_id == Model.id)
                .where(Lineage.dataset_version_id == dv_id)
                .order_by(Model.name, ModelVersion.version)
            ).all()
        return [(r[0], r[1], r[2]) for r in rows]

    # -- helpers -----------------------------------------------------------------------

    @staticmethod
    def _model_for_update(session: Session, name: str) -> Model:
        check_name(name)
        model = session.execute(
            select(Model).where(Model.name == name).with_for_update()
        ).scalar_one_or_none()
        if model is None:
            raise NotFound(f"no model named {name!r}")
        return model


def find_dataset_version(
    session: Session, name: str, number: int, *, field: str | None = None, lock: bool = False
) -> DatasetVersion:
    """The dataset version ``name@number``: a 404, or a 422 naming ``field`` when the caller
    got it from a request body. ``lock`` takes its row for the change (not the dataset's)."""
    stmt = (
        select(DatasetVersion)
        .join(Dataset)
        .where(Dataset.name == name, DatasetVersion.version == number)
    )
    if lock:
        stmt = stmt.with_for_update(of=DatasetVersion)
    dv = session.execute(stmt).scalar_one_or_none()
    if dv is None:
        message = f"no dataset version {name}@{number}"
        if field is not None:
            raise InvalidInput(message, field=field)
        raise NotFound(message)
    return dv

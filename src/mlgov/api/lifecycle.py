"""Lifecycle endpoints: policies, transition requests and decisions, evidence and the stage
history. Thin adapters over :class:`mlgov.lifecycle.service.LifecycleService`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, Path, Query
from pydantic import BaseModel

from mlgov.api.deps import Services, context, services
from mlgov.api.registry import ArtifactResponse, Cursor, Limit, ModelName, VersionNumber
from mlgov.api.views import Page
from mlgov.context import Context
from mlgov.lifecycle.models import Policy, StageChange
from mlgov.lifecycle.policy import EvidenceKind
from mlgov.lifecycle.schemas import (
    FILE_NAME_PATTERN,
    DecisionCreate,
    EvidenceCreate,
    PolicyPublish,
    TransitionCreate,
)
from mlgov.lifecycle.service import EvidenceView, TransitionView
from mlgov.names import NAME_PATTERN
from mlgov.registry.schemas import RiskTier
from mlgov.schemas import Reasoned

TransitionId = Annotated[int, Path(ge=1, le=2**31 - 1, description="Transition request id")]
EvidenceId = Annotated[int, Path(ge=1, le=2**31 - 1, description="Evidence record id")]
Status = Literal["pending", "applied", "rejected", "cancelled"]


# -- shapes ------------------------------------------------------------------------------


class PolicyOut(BaseModel):
    name: str
    version: int
    sha256: str
    document: str
    rules: dict[str, Any]
    created_at: datetime
    created_by: str
    versions: list[int]


class RequirementOut(BaseModel):
    id: str
    kind: str
    met: bool
    message: str
    data: dict[str, Any]


class EvaluationOut(BaseModel):
    policy: dict[str, Any]
    stage: str
    evaluated_at: str
    met: bool
    requirements: list[RequirementOut]
    unmet: list[str]


class DecisionOut(BaseModel):
    decision: str
    actor: str
    roles: list[str]
    comment: str
    created_at: datetime


class TransitionOut(BaseModel):
    id: int
    model: str
    version: int
    from_stage: str
    to_stage: str
    rollback: bool
    status: str
    requested_by: str
    reason: str
    created_at: datetime
    closed_at: datetime | None
    closed_by: str | None
    outcome: str
    evaluation: EvaluationOut
    evaluation_at_request: EvaluationOut
    decisions: list[DecisionOut]


class EvidenceOut(BaseModel):
    id: int
    model: str
    version: int
    kind: str
    passed: bool
    summary: str
    suite: dict[str, Any]
    dataset: str | None
    results: dict[str, Any]
    checks: list[dict[str, Any]]
    attachments: list[dict[str, Any]]
    created_at: datetime
    created_by: str
    content_sha256: str
    #: api (recorded through the API), scan (the server's scan at registration) or
    #: validation (computed by the server in validation run ``validation_job``).
    source: str
    validation_job: int | None


class StageChangeOut(BaseModel):
    version: int
    from_stage: str | None
    to_stage: str
    time: datetime
    actor: str
    transition_id: int | None
    reason: str


class StageAtOut(BaseModel):
    version: int
    stage: str
    since: datetime


class StageHistoryOut(BaseModel):
    model: str
    at: datetime | None
    #: The version in production at ``at`` (or now), if any.
    production: int | None
    #: Each version existing at ``at`` (or now) with the stage it was in then.
    stages: list[StageAtOut]
    #: Every stage change up to ``at`` (or now), oldest first.
    changes: list[StageChangeOut]


def policy_out(p: Policy, versions: list[int]) -> PolicyOut:
    return PolicyOut(
        name=p.name,
        version=p.version,
        sha256=p.sha256,
        document=p.document,
        rules=p.rules,
        created_at=p.created_at,
        created_by=p.created_by,
        versions=versions,
    )


def transition_out(view: TransitionView) -> TransitionOut:
    r = view.request
    return TransitionOut(
        id=r.id,
        model=view.model,
        version=view.version,
        from_stage=r.from_stage,
        to_stage=r.to_stage,
        rollback=r.rollback,
        status=r.status,
        requested_by=r.requested_by,
        reason=r.reason,
        created_at=r.created_at,
        closed_at=r.closed_at,
        closed_by=r.closed_by,
        outcome=r.outcome,
        evaluation=EvaluationOut.model_validate(r.evaluation),
        evaluation_at_request=EvaluationOut.model_validate(r.evaluation_at_request),
        decisions=[
            DecisionOut(
                decision=d.decision,
                actor=d.actor,
                roles=list(d.actor_roles),
                comment=d.comment,
                created_at=d.created_at,
            )
            for d in view.decisions
        ],
    )


def evidence_out(view: EvidenceView) -> EvidenceOut:
    e = view.evidence
    return EvidenceOut(
        id=e.id,
        model=view.model,
        version=view.version,
        kind=e.kind,
        passed=e.passed,
        summary=e.summary,
        suite=e.suite,
        dataset=view.dataset,
        results=e.results,
        checks=list(e.checks),
        attachments=list(e.attachments),
        created_at=e.created_at,
        created_by=e.created_by,
        content_sha256=e.content_sha256,
        source=e.source,
        validation_job=e.validation_job_id,
    )


def stage_change_out(c: StageChange) -> StageChangeOut:
    return StageChangeOut(
        version=c.version,
        from_stage=c.from_stage,
        to_stage=c.to_stage,
        time=c.time,
        actor=c.actor,
        transition_id=c.transition_id,
        reason=c.reason,
    )


# -- policies ----------------------------------------------------------------------------


def list_policies(svc: Services = Depends(services)) -> list[PolicyOut]:
    return [
        policy_out(p, [v.version for v in svc.lifecycle.policy_versions(p.name)])
        for p in svc.lifecycle.list_policies()
    ]


def get_policy(
    name: RiskTier,
    svc: Services = Depends(services),
    version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> PolicyOut:
    policy = svc.lifecycle.get_policy(name.value, version)
    return policy_out(policy, [v.version for v in svc.lifecycle.policy_versions(name.value)])


def publish_policy(
    name: RiskTier,
    body: PolicyPublish,
    ctx: Context = Depends(context),
    svc: Services = Depends(services),
) -> PolicyOut:
    policy = svc.lifecycle.publish_policy(ctx, name.value, body)
    return policy_out(policy, [v.version for v in svc.lifecycle.policy_versions(name.value)])


# -- transitions -------------------------------------------------------------------------


def request_transition(
    body: TransitionCreate, ctx: Context = Depends(context), svc: Services = Depends(services)
) -> TransitionOut:
    return transition_out(svc.lifecycle.request_transition(ctx, body))


def list_transitions(
    svc: Services = Depends(services),
    status: Status | None = None,
    model: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[TransitionOut]:
    page = svc.lifecycle.list_transitions(status=status, model=model, limit=limit, cursor=cursor)
    return Page[TransitionOut](
        items=[transition_out(v) for v in page.items], next_cursor=page.next_cursor
    )


def get_transition(transition_id: TransitionId, svc: Services = Depends(services)) -> TransitionOut:
    return transition_out(svc.lifecycle.get_transition(transition_id))


def decide(
    transition_id: TransitionId,
    body: DecisionCreate,
    ctx: Context = Depends(context),
    svc: Services = Depends(services),
) -> TransitionOut:
    return transition_out(svc.lifecycle.decide(ctx, transition_id, body))


class CancelBody(Reasoned):
    pass


def cancel_transition(
    transition_id: TransitionId,
    body: CancelBody,
    ctx: Context = Depends(context),
    svc: Services = Depends(services),
) -> TransitionOut:
    return transition_out(svc.lifecycle.cancel(ctx, transition_id, body.reason))


# -- evidence ----------------------------------------------------------------------------


def add_evidence(
    name: ModelName,
    version: VersionNumber,
    body: EvidenceCreate,
    ctx: Context = Depends(context),
    svc: Services = Depends(services),
) -> EvidenceOut:
    view = svc.lifecycle.add_evidence(ctx, name, version, body, svc.settings.max_request_bytes)
    return evidence_out(view)


def list_evidence(
    name: ModelName,
    version: VersionNumber,
    svc: Services = Depends(services),
    kind: Annotated[EvidenceKind | None, Query()] = None,
) -> list[EvidenceOut]:
    return [evidence_out(v) for v in svc.lifecycle.list_evidence(name, version, kind)]


def download_attachment(
    name: ModelName,
    version: VersionNumber,
    evidence_id: EvidenceId,
    filename: Annotated[str, Path(pattern=FILE_NAME_PATTERN)],
    svc: Services = Depends(services),
) -> ArtifactResponse:
    item, chunks = svc.lifecycle.attachment(name, version, evidence_id, filename)
    return ArtifactResponse(
        chunks,
        media_type=item["media_type"],
        headers={
            "Content-Length": str(item["size"]),
            "Content-Disposition": f'attachment; filename="{item["name"]}"',
            "X-Content-SHA256": item["sha256"],
        },
    )


# -- history -----------------------------------------------------------------------------


def stage_history(
    name: ModelName,
    svc: Services = Depends(services),
    at: Annotated[
        datetime | None,
        Query(description="An instant (ISO 8601; UTC when no offset is given)"),
    ] = None,
) -> StageHistoryOut:
    if at is not None and at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    changes = [c for c, _ in svc.lifecycle.stage_history(name)]
    if at is not None:
        changes = [c for c in changes if c.time <= at]
    stages = svc.lifecycle.stages_at(name, at or datetime.now(UTC))
    production = [s.version for s in stages if s.stage == "production"]
    return StageHistoryOut(
        model=name,
        at=at,
        production=production[0] if production else None,
        stages=[StageAtOut(version=s.version, stage=s.stage, since=s.since) for s in stages],
        changes=[stage_change_out(c) for c in changes],
    )

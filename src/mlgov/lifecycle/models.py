"""Tables of the lifecycle: policy versions, transition requests and their decisions, evidence
records and the stage history of every model version.

Decisions, evidence and stage changes are append-only (database triggers refuse UPDATE and
DELETE, see migration 0004): what was approved, on what evidence, and which version was in which
stage when, cannot be rewritten afterwards.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mlgov.db import Base, UTCDateTime


class Policy(Base):
    """One version of a risk tier's policy: the YAML as published and its parsed rules."""

    __tablename__ = "policies"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(32))
    version: Mapped[int] = mapped_column(Integer)
    document: Mapped[str] = mapped_column(Text)
    rules: Mapped[dict[str, Any]]
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(128))


class TransitionRequest(Base):
    __tablename__ = "transition_requests"
    __table_args__ = (
        Index("ix_transition_requests_status_id", "status", "id"),
        Index("ix_transition_requests_version_status", "model_version_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), index=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    from_stage: Mapped[str] = mapped_column(String(16))
    to_stage: Mapped[str] = mapped_column(String(16))
    rollback: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16))  # pending | applied | rejected | cancelled
    requested_by: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    closed_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    outcome: Mapped[str] = mapped_column(Text, default="")
    #: The policy evaluation when the request was made, and the latest one (at each decision,
    #: new evidence, policy or risk-tier change, and when it was applied).
    evaluation_at_request: Mapped[dict[str, Any]]
    evaluation: Mapped[dict[str, Any]]


class TransitionDecision(Base):
    """An approval or rejection. One per person and request: a person counts once."""

    __tablename__ = "transition_decisions"
    __table_args__ = (UniqueConstraint("transition_id", "actor"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    transition_id: Mapped[int] = mapped_column(ForeignKey("transition_requests.id"), index=True)
    decision: Mapped[str] = mapped_column(String(8))  # approve | reject
    actor: Mapped[str] = mapped_column(String(128))
    #: The roles the person held when deciding (approvals count for the roles a policy names).
    actor_roles: Mapped[list[str]]
    comment: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class StageChange(Base):
    """A version entered a stage (its creation enters ``development``)."""

    __tablename__ = "stage_changes"
    __table_args__ = (Index("ix_stage_changes_model_time", "model_id", "time"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    from_stage: Mapped[str | None] = mapped_column(String(16), nullable=True)
    to_stage: Mapped[str] = mapped_column(String(16))
    time: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(128))
    transition_id: Mapped[int | None] = mapped_column(
        ForeignKey("transition_requests.id"), nullable=True
    )
    reason: Mapped[str] = mapped_column(Text, default="")


class Evidence(Base):
    """An immutable record of evidence about a model version, with its content hash."""

    __tablename__ = "evidence"
    __table_args__ = (Index("ix_evidence_version_kind_id", "model_version_id", "kind", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    kind: Mapped[str] = mapped_column(String(64))
    passed: Mapped[bool] = mapped_column(Boolean)
    summary: Mapped[str] = mapped_column(Text, default="")
    #: The suite that produced it: {name, version, definition} (definition: any JSON).
    suite: Mapped[dict[str, Any]]
    dataset_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("dataset_versions.id"), nullable=True
    )
    results: Mapped[dict[str, Any]]
    #: Pass/fail per check: [{name, passed, value, threshold, ...}].
    checks: Mapped[list[Any]]
    #: Files kept in the artifact store: [{name, media_type, size, sha256}].
    attachments: Mapped[list[Any]]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(128))
    content_sha256: Mapped[str] = mapped_column(String(64))
    #: Who computed it: ``api`` (recorded by a person or a pipeline through the API), ``scan``
    #: (the server's scan of the artifact at registration), ``validation`` (a validation job
    #: the server ran, ``validation_job_id``).
    source: Mapped[str] = mapped_column(String(16), default="api", server_default="api")
    validation_job_id: Mapped[int | None] = mapped_column(
        ForeignKey("validation_jobs.id"), nullable=True
    )

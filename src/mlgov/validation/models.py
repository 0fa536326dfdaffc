"""Tables of validation: suite versions (append-only) and validation jobs.

A job names the model version, the suite version and the dataset version it runs on; the worker
that takes it records a lease, its progress, and at the end either the evidence records it
produced (and the HTML report) or the error that stopped it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from mlgov.db import Base, UTCDateTime

QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
JOB_STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED)


class ValidationSuite(Base):
    """One version of a validation suite: the YAML as published and its parsed definition."""

    __tablename__ = "validation_suites"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    document: Mapped[str] = mapped_column(Text)
    definition: Mapped[dict[str, Any]]
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(128))


class ValidationJob(Base):
    __tablename__ = "validation_jobs"
    __table_args__ = (
        Index("ix_validation_jobs_status_id", "status", "id"),
        Index("ix_validation_jobs_version_id", "model_version_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    suite_id: Mapped[int] = mapped_column(ForeignKey("validation_suites.id"))
    dataset_version_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id"))
    status: Mapped[str] = mapped_column(String(16))
    #: Whether every check passed (set when the job succeeded; a job that ran to the end with
    #: failing checks has succeeded as a job and ``passed`` false).
    passed: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    requested_by: Mapped[str] = mapped_column(String(128))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime())
    reason: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str] = mapped_column(String(128), default="")
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    progress_message: Mapped[str] = mapped_column(String(256), default="")
    error: Mapped[str] = mapped_column(Text, default="")
    #: The production version it was compared with (champion/challenger), when there was one.
    champion_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: Per check kind: {kind, passed, summary, evidence_id, runtime_seconds, peak_memory_mb}.
    outcome: Mapped[list[Any]]
    report_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    report_size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    runtime_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)

"""Tables of the registry: models, their immutable versions, datasets, dataset versions and
the lineage links between model versions and the dataset versions they were built on."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mlgov.db import Base, UTCDateTime


class Model(Base):
    __tablename__ = "models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    owner_team: Mapped[str] = mapped_column(String(128), index=True)
    risk_tier: Mapped[str] = mapped_column(String(16), index=True)
    domain: Mapped[str] = mapped_column(String(256), default="")
    intended_use: Mapped[str] = mapped_column(Text, default="")
    out_of_scope_uses: Mapped[list[str]]
    search_text: Mapped[str] = mapped_column(Text, default="")  # derived: see search_text()
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(128))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    tag_rows: Mapped[list[ModelTag]] = relationship(
        cascade="all, delete-orphan", order_by="ModelTag.tag", lazy="selectin"
    )

    @property
    def tags(self) -> list[str]:
        return [t.tag for t in self.tag_rows]


class ModelTag(Base):
    __tablename__ = "model_tags"
    __table_args__ = (UniqueConstraint("model_id", "tag"), Index("ix_model_tags_tag", "tag"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    tag: Mapped[str] = mapped_column(String(64))


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("model_id", "version"),
        Index("ix_model_versions_stage_model", "stage", "model_id"),
        # One version of a model in production at a time, whatever the code does.
        Index(
            "uq_model_versions_one_production",
            "model_id",
            unique=True,
            sqlite_where=text("stage = 'production'"),
            postgresql_where=text("stage = 'production'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    version: Mapped[int] = mapped_column(Integer)
    stage: Mapped[str] = mapped_column(String(16))
    artifact_sha256: Mapped[str] = mapped_column(String(64), index=True)
    artifact_size: Mapped[int] = mapped_column(BigInteger)
    artifact_filename: Mapped[str] = mapped_column(String(256))
    format: Mapped[str] = mapped_column(String(32))
    signature: Mapped[dict[str, Any]]
    algorithm: Mapped[str] = mapped_column(String(256), default="")
    hyperparameters: Mapped[dict[str, Any]]
    metrics: Mapped[dict[str, Any]]
    code_ref: Mapped[dict[str, Any]]
    environment: Mapped[dict[str, Any]]
    changelog: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(128))

    model: Mapped[Model] = relationship(lazy="joined")
    lineage: Mapped[list[Lineage]] = relationship(
        lazy="selectin", order_by="Lineage.id", back_populates="model_version"
    )


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    owner_team: Mapped[str] = mapped_column(String(128), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(128))


class DatasetVersion(Base):
    __tablename__ = "dataset_versions"
    __table_args__ = (UniqueConstraint("dataset_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    version: Mapped[int] = mapped_column(Integer)
    content_sha256: Mapped[str] = mapped_column(String(64))
    uri: Mapped[str] = mapped_column(String(2048))
    schema: Mapped[list[Any]]  # column specs, stored as JSON
    row_count: Mapped[int] = mapped_column(BigInteger)
    datasheet: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(128))
    #: Set once the data itself was uploaded to the artifact store (under ``content_sha256``):
    #: its file format (csv | parquet) and size. Until then the worker reads ``uri``.
    data_format: Mapped[str | None] = mapped_column(String(16), nullable=True)
    data_size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    dataset: Mapped[Dataset] = relationship(lazy="joined")


class Lineage(Base):
    """A model version was trained, validated or tested on a dataset version."""

    __tablename__ = "lineage"
    __table_args__ = (UniqueConstraint("model_version_id", "dataset_version_id", "role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    dataset_version_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id"), index=True)
    role: Mapped[str] = mapped_column(String(16))

    model_version: Mapped[ModelVersion] = relationship(back_populates="lineage")
    dataset_version: Mapped[DatasetVersion] = relationship(lazy="joined")

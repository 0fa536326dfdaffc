"""The lifecycle: policy versions, transition requests and decisions, evidence records, the
stage history of every version, and one production version per model.

Existing versions get their entry into their current stage (at their creation) in the stage
history. Decisions, evidence, stage changes and policy versions are append-only: triggers refuse
UPDATE and DELETE (and TRUNCATE on PostgreSQL), as for the audit trail.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mlgov.db

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

#: Tables whose rows, once written, never change.
APPEND_ONLY = ("transition_decisions", "evidence", "stage_changes", "policies")


def _triggers(dialect: str) -> list[str]:
    if dialect == "sqlite":
        return [
            f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, 'mlgov: {table} is append-only: {verb} refused'); END"
            for table in APPEND_ONLY
            for verb in ("UPDATE", "DELETE")
        ]
    # mlgov_append_only() comes from migration 0003.
    return [
        stmt
        for table in APPEND_ONLY
        for stmt in (
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION mlgov_append_only()",
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION mlgov_append_only()",
        )
    ]


def upgrade() -> None:
    op.create_table(
        "policies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", mlgov.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policies")),
        sa.UniqueConstraint("name", "version", name=op.f("uq_policies_name")),
    )
    op.create_table(
        "evidence",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("suite", sa.JSON(), nullable=False),
        sa.Column("dataset_version_id", sa.Integer(), nullable=True),
        sa.Column("results", sa.JSON(), nullable=False),
        sa.Column("checks", sa.JSON(), nullable=False),
        sa.Column("attachments", sa.JSON(), nullable=False),
        sa.Column("created_at", mlgov.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_version_id"],
            ["dataset_versions.id"],
            name=op.f("fk_evidence_dataset_version_id_dataset_versions"),
        ),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_evidence_model_version_id_model_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evidence")),
    )
    op.create_index(
        "ix_evidence_version_kind_id", "evidence", ["model_version_id", "kind", "id"], unique=False
    )
    op.create_table(
        "transition_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("from_stage", sa.String(length=16), nullable=False),
        sa.Column("to_stage", sa.String(length=16), nullable=False),
        sa.Column("rollback", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("requested_by", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", mlgov.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("closed_at", mlgov.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("closed_by", sa.String(length=128), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("evaluation_at_request", sa.JSON(), nullable=False),
        sa.Column("evaluation", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name=op.f("fk_transition_requests_model_id_models")
        ),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_transition_requests_model_version_id_model_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transition_requests")),
    )
    op.create_index(
        op.f("ix_transition_requests_model_id"), "transition_requests", ["model_id"], unique=False
    )
    op.create_index(
        "ix_transition_requests_status_id", "transition_requests", ["status", "id"], unique=False
    )
    op.create_index(
        "ix_transition_requests_version_status",
        "transition_requests",
        ["model_version_id", "status"],
        unique=False,
    )
    op.create_table(
        "stage_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("from_stage", sa.String(length=16), nullable=True),
        sa.Column("to_stage", sa.String(length=16), nullable=False),
        sa.Column("time", mlgov.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("transition_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name=op.f("fk_stage_changes_model_id_models")
        ),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_stage_changes_model_version_id_model_versions"),
        ),
        sa.ForeignKeyConstraint(
            ["transition_id"],
            ["transition_requests.id"],
            name=op.f("fk_stage_changes_transition_id_transition_requests"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stage_changes")),
    )
    op.create_index(
        "ix_stage_changes_model_time", "stage_changes", ["model_id", "time"], unique=False
    )
    op.create_index(
        op.f("ix_stage_changes_model_version_id"),
        "stage_changes",
        ["model_version_id"],
        unique=False,
    )
    op.create_table(
        "transition_decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("transition_id", sa.Integer(), nullable=False),
        sa.Column("decision", sa.String(length=8), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("actor_roles", sa.JSON(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("created_at", mlgov.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["transition_id"],
            ["transition_requests.id"],
            name=op.f("fk_transition_decisions_transition_id_transition_requests"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transition_decisions")),
        sa.UniqueConstraint(
            "transition_id", "actor", name=op.f("uq_transition_decisions_transition_id")
        ),
    )
    op.create_index(
        op.f("ix_transition_decisions_transition_id"),
        "transition_decisions",
        ["transition_id"],
        unique=False,
    )
    op.create_index(
        "uq_model_versions_one_production",
        "model_versions",
        ["model_id"],
        unique=True,
        sqlite_where=sa.text("stage = 'production'"),
        postgresql_where=sa.text("stage = 'production'"),
    )
    op.execute(
        "INSERT INTO stage_changes (model_id, model_version_id, version, from_stage, to_stage, "
        "time, actor, transition_id, reason) SELECT model_id, id, version, NULL, stage, "
        "created_at, created_by, NULL, 'version registered' FROM model_versions ORDER BY id"
    )
    for statement in _triggers(op.get_bind().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table in APPEND_ONLY:
        if dialect == "sqlite":
            for verb in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{verb}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
    op.drop_index("uq_model_versions_one_production", table_name="model_versions")
    for table in (
        "transition_decisions",
        "stage_changes",
        "transition_requests",
        "evidence",
        "policies",
    ):
        op.drop_table(table)

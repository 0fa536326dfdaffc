"""Validation: suite versions, validation jobs, where each evidence record came from, and
dataset data kept in the artifact store.

Suite versions are append-only like policies (triggers refuse UPDATE and DELETE, and TRUNCATE on
PostgreSQL). Evidence recorded before this revision was recorded through the API (``source``
``api``).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mlgov.db

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

APPEND_ONLY = ("validation_suites",)


def _triggers(dialect: str) -> list[str]:
    if dialect == "sqlite":
        return [
            f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, 'mlgov: {table} is append-only: {verb} refused'); END"
            for table in APPEND_ONLY
            for verb in ("UPDATE", "DELETE")
        ]
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
        "validation_suites",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", mlgov.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_validation_suites")),
        sa.UniqueConstraint("name", "version", name=op.f("uq_validation_suites_name")),
    )
    op.create_table(
        "validation_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("suite_id", sa.Integer(), nullable=False),
        sa.Column("dataset_version_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=True),
        sa.Column("requested_by", sa.String(length=128), nullable=False),
        sa.Column("requested_at", mlgov.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(length=128), nullable=False),
        sa.Column("lease_until", mlgov.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("started_at", mlgov.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", mlgov.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("progress_message", sa.String(length=256), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("champion_version", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.JSON(), nullable=False),
        sa.Column("report_sha256", sa.String(length=64), nullable=True),
        sa.Column("report_size", sa.BigInteger(), nullable=True),
        sa.Column("runtime_seconds", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["dataset_version_id"],
            ["dataset_versions.id"],
            name=op.f("fk_validation_jobs_dataset_version_id_dataset_versions"),
        ),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_validation_jobs_model_version_id_model_versions"),
        ),
        sa.ForeignKeyConstraint(
            ["suite_id"],
            ["validation_suites.id"],
            name=op.f("fk_validation_jobs_suite_id_validation_suites"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_validation_jobs")),
    )
    with op.batch_alter_table("validation_jobs", schema=None) as batch_op:
        batch_op.create_index("ix_validation_jobs_status_id", ["status", "id"], unique=False)
        batch_op.create_index(
            "ix_validation_jobs_version_id", ["model_version_id", "id"], unique=False
        )
    # ADD COLUMN: no table rebuild (a rebuild on SQLite would drop evidence's triggers).
    op.add_column(
        "evidence",
        sa.Column("source", sa.String(length=16), nullable=False, server_default="api"),
    )
    fk = "fk_evidence_validation_job_id_validation_jobs"
    if op.get_bind().dialect.name == "sqlite":
        # SQLite takes a REFERENCES clause in ADD COLUMN but no ALTER of constraints.
        op.execute(
            "ALTER TABLE evidence ADD COLUMN validation_job_id INTEGER "
            f"CONSTRAINT {fk} REFERENCES validation_jobs (id)"
        )
    else:
        op.add_column("evidence", sa.Column("validation_job_id", sa.Integer(), nullable=True))
        op.create_foreign_key(fk, "evidence", "validation_jobs", ["validation_job_id"], ["id"])
    op.add_column("dataset_versions", sa.Column("data_format", sa.String(length=16), nullable=True))
    op.add_column("dataset_versions", sa.Column("data_size", sa.BigInteger(), nullable=True))
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
    op.drop_column("dataset_versions", "data_size")
    op.drop_column("dataset_versions", "data_format")
    if dialect != "sqlite":
        op.drop_constraint("fk_evidence_validation_job_id_validation_jobs", "evidence")
    op.drop_column("evidence", "validation_job_id")
    op.drop_column("evidence", "source")
    with op.batch_alter_table("validation_jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_validation_jobs_version_id")
        batch_op.drop_index("ix_validation_jobs_status_id")
    op.drop_table("validation_jobs")
    op.drop_table("validation_suites")

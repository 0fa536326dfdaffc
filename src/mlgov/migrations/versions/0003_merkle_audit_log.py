"""The audit trail becomes a Merkle log: leaf hashes, subtree hashes, signed checkpoints, and
database triggers that refuse to update or delete audit rows.

Existing events get their leaf hashes and the tree is built from them, in sequence order. The
entry format is the stable, versioned one of :mod:`mlgov.audit.entry` (``mlgov.audit.v1``).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mlgov.db
from mlgov.audit.entry import entry_object
from mlgov.tlog import canonical, merkle

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

AUDIT_LOG = 1
BATCH = 5000

#: Tables whose rows, once written, never change.
APPEND_ONLY = ("audit_events", "tlog_nodes", "tlog_checkpoints")

SQLITE_TRIGGERS = [
    *(
        f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
        f"BEGIN SELECT RAISE(ABORT, 'mlgov: {table} is append-only: {verb} refused'); END"
        for table in APPEND_ONLY
        for verb in ("UPDATE", "DELETE")
    ),
    "CREATE TRIGGER tlog_heads_no_delete BEFORE DELETE ON tlog_heads "
    "BEGIN SELECT RAISE(ABORT, 'mlgov: tlog_heads rows are never deleted'); END",
    "CREATE TRIGGER tlog_heads_forward_only BEFORE UPDATE ON tlog_heads "
    "WHEN NEW.log_id <> OLD.log_id OR NEW.size < OLD.size "
    "OR NEW.checkpoint_size < OLD.checkpoint_size "
    "BEGIN SELECT RAISE(ABORT, 'mlgov: a log head only moves forward'); END",
]

POSTGRES_TRIGGERS = [
    """
    CREATE FUNCTION mlgov_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'mlgov: % is append-only: % refused', TG_TABLE_NAME, TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END $$
    """,
    """
    CREATE FUNCTION mlgov_head_forward_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'UPDATE' AND NEW.log_id = OLD.log_id AND NEW.size >= OLD.size
                AND NEW.checkpoint_size >= OLD.checkpoint_size THEN
            RETURN NEW;
        END IF;
        RAISE EXCEPTION 'mlgov: a log head only moves forward: % refused', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END $$
    """,
    *(
        stmt
        for table in APPEND_ONLY
        for stmt in (
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION mlgov_append_only()",
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION mlgov_append_only()",
        )
    ),
    "CREATE TRIGGER tlog_heads_forward_only BEFORE UPDATE OR DELETE ON tlog_heads "
    "FOR EACH ROW EXECUTE FUNCTION mlgov_head_forward_only()",
    "CREATE TRIGGER tlog_heads_no_truncate BEFORE TRUNCATE ON tlog_heads "
    "FOR EACH STATEMENT EXECUTE FUNCTION mlgov_append_only()",
]


def upgrade() -> None:
    op.create_table(
        "tlog_heads",
        sa.Column("log_id", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("frontier", sa.LargeBinary(), nullable=False),
        sa.Column("checkpoint_size", sa.BigInteger(), nullable=False),
        sa.Column("checkpoint_time", mlgov.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("log_id", name=op.f("pk_tlog_heads")),
    )
    op.create_table(
        "tlog_nodes",
        sa.Column("log_id", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("level", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("log_id", "level", "idx", name=op.f("pk_tlog_nodes")),
    )
    op.create_table(
        "tlog_checkpoints",
        sa.Column("log_id", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("tree_size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("root_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("time", mlgov.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("key_name", sa.String(length=255), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("log_id", "tree_size", name=op.f("pk_tlog_checkpoints")),
    )
    with op.batch_alter_table("audit_events") as batch_op:
        batch_op.add_column(sa.Column("leaf_hash", sa.LargeBinary(length=32), nullable=True))

    frontier = _backfill(op.get_bind())

    with op.batch_alter_table("audit_events") as batch_op:
        batch_op.alter_column("leaf_hash", existing_type=sa.LargeBinary(length=32), nullable=False)
    op.bulk_insert(
        sa.table(
            "tlog_heads",
            sa.column("log_id", sa.SmallInteger),
            sa.column("size", sa.BigInteger),
            sa.column("frontier", sa.LargeBinary),
            sa.column("checkpoint_size", sa.BigInteger),
        ),
        [
            {
                "log_id": AUDIT_LOG,
                "size": frontier.size,
                "frontier": frontier.to_bytes(),
                "checkpoint_size": 0,
            }
        ],
    )
    op.drop_table("audit_log_head")
    statements = (
        POSTGRES_TRIGGERS if op.get_bind().dialect.name == "postgresql" else SQLITE_TRIGGERS
    )
    for statement in statements:
        op.execute(statement)


def _backfill(conn: sa.Connection) -> merkle.Frontier:
    events = sa.table(
        "audit_events",
        sa.column("seq", sa.BigInteger),
        sa.column("time", mlgov.db.UTCDateTime()),
        sa.column("actor", sa.String),
        sa.column("actor_kind", sa.String),
        sa.column("action", sa.String),
        sa.column("target", sa.String),
        sa.column("reason", sa.Text),
        sa.column("details", sa.JSON),
        sa.column("request_id", sa.String),
        sa.column("client_addr", sa.String),
        sa.column("leaf_hash", sa.LargeBinary),
    )
    nodes = sa.table(
        "tlog_nodes",
        sa.column("log_id", sa.SmallInteger),
        sa.column("level", sa.SmallInteger),
        sa.column("idx", sa.BigInteger),
        sa.column("hash", sa.LargeBinary),
    )
    frontier = merkle.Frontier()
    after = -1
    while True:
        rows = conn.execute(
            sa.select(events).where(events.c.seq > after).order_by(events.c.seq).limit(BATCH)
        ).all()
        if not rows:
            return frontier
        leaves, new_nodes = [], []
        for row in rows:
            if row.seq != frontier.size:
                raise RuntimeError(
                    f"audit_events has a gap before seq {row.seq}: cannot build the log"
                )
            fields = {name: getattr(row, name) for name in row._fields if name != "leaf_hash"}
            leaf = merkle.leaf_hash(canonical.dumps(entry_object(**fields)))
            leaves.append({"s": row.seq, "h": leaf})
            for level, index, digest in frontier.append(leaf):
                new_nodes.append(
                    {"log_id": AUDIT_LOG, "level": level, "idx": index, "hash": digest}
                )
        conn.execute(
            events.update()
            .where(events.c.seq == sa.bindparam("s"))
            .values(leaf_hash=sa.bindparam("h")),
            leaves,
        )
        if new_nodes:
            conn.execute(nodes.insert(), new_nodes)
        after = rows[-1].seq


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        for table in (*APPEND_ONLY, "tlog_heads"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        op.execute("DROP TRIGGER IF EXISTS tlog_heads_forward_only ON tlog_heads")
        op.execute("DROP FUNCTION IF EXISTS mlgov_append_only()")
        op.execute("DROP FUNCTION IF EXISTS mlgov_head_forward_only()")
    else:
        for statement in SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {statement.split()[2]}")
    op.create_table(
        "audit_log_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log_head")),
    )
    size = bind.execute(sa.text("SELECT size FROM tlog_heads WHERE log_id = 1")).scalar_one()
    op.execute(
        sa.text("INSERT INTO audit_log_head (id, size) VALUES (1, :size)").bindparams(size=size)
    )
    with op.batch_alter_table("audit_events") as batch_op:
        batch_op.drop_column("leaf_hash")
    op.drop_table("tlog_checkpoints")
    op.drop_table("tlog_nodes")
    op.drop_table("tlog_heads")

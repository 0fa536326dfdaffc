"""Models carry their lowercased search text (name, description, domain, intended use, tags).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("models") as batch_op:
        batch_op.add_column(sa.Column("search_text", sa.Text(), nullable=False, server_default=""))
    conn = op.get_bind()
    models = sa.table(
        "models",
        sa.column("id", sa.Integer),
        sa.column("name", sa.String),
        sa.column("description", sa.Text),
        sa.column("domain", sa.String),
        sa.column("intended_use", sa.Text),
        sa.column("search_text", sa.Text),
    )
    tags = sa.table("model_tags", sa.column("model_id", sa.Integer), sa.column("tag", sa.String))
    by_model: dict[int, list[str]] = {}
    for model_id, tag in conn.execute(sa.select(tags.c.model_id, tags.c.tag).order_by(tags.c.tag)):
        by_model.setdefault(model_id, []).append(tag)
    rows = conn.execute(
        sa.select(
            models.c.id, models.c.name, models.c.description, models.c.domain, models.c.intended_use
        )
    ).all()
    for row in rows:
        parts = [row.name, row.description, row.domain, row.intended_use, *by_model.get(row.id, [])]
        conn.execute(
            models.update()
            .where(models.c.id == row.id)
            .values(search_text="\n".join(parts).lower())
        )


def downgrade() -> None:
    with op.batch_alter_table("models") as batch_op:
        batch_op.drop_column("search_text")

"""Schema migrations (Alembic), run on server start and by ``mlgov db upgrade``.

On PostgreSQL an advisory lock makes concurrent replicas starting together migrate once.
"""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from mlgov.db import Database

_MIGRATION_LOCK = 7_203_114_551  # arbitrary, constant advisory-lock key


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", "mlgov:migrations")
    return cfg


def upgrade(db: Database, revision: str = "head") -> None:
    cfg = alembic_config()
    with db.engine.connect() as conn:
        if db.dialect == "postgresql":
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK})
            conn.commit()
        try:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
            conn.commit()
        finally:
            if db.dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK})
                conn.commit()


def current(db: Database) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()

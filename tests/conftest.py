"""Test fixtures: the real app in process over real databases.

Every test that takes ``backend`` (directly or through ``server``/``client``) runs on SQLite (a
fresh file in tmp_path) and, when ``MLGOV_TEST_DATABASE_URL`` names a PostgreSQL server, on
PostgreSQL too (a database created for this run, migrated once, truncated between tests).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from mlgov import migrate
from mlgov.config import Settings
from mlgov.context import system_context
from mlgov.db import Database, normalise_url
from mlgov.models import metadata
from mlgov.server import Server, build_server

ADMIN_TOKEN = "mlgov_test-admin-token-0123456789abcdef"
PG_URL = os.environ.get("MLGOV_TEST_DATABASE_URL", "")
PG_SKIP_REASON = "MLGOV_TEST_DATABASE_URL is not set: PostgreSQL runs of the suite are skipped"


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A PostgreSQL database of our own for this test run, migrated once."""
    if not PG_URL:
        pytest.skip(PG_SKIP_REASON)
    server_url = make_url(normalise_url(PG_URL))
    name = f"mlgov_test_{os.getpid()}_{secrets.token_hex(3)}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = server_url.set(database=name).render_as_string(hide_password=False)
    db = Database(url)
    migrate.upgrade(db)
    db.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _reset_postgres(url: str) -> None:
    engine = create_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    with engine.begin() as conn:
        # The audit tables refuse TRUNCATE; replica mode lets this test reset through.
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        conn.execute(
            text(
                "INSERT INTO tlog_heads (log_id, size, frontier, checkpoint_size) "
                "VALUES (1, 0, '', 0)"
            )
        )
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'mlgov.db'}"
    url = str(request.getfixturevalue("pg_database"))
    _reset_postgres(url)
    return url


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        bootstrap_admin_token=ADMIN_TOKEN,
        max_artifact_bytes=64 * 1024,
        max_request_bytes=256 * 1024,
        checkpoint_interval=3600,  # no background signing mid-test; tests call it directly
    )


@pytest.fixture
def server(settings: Settings) -> Iterator[Server]:
    srv = build_server(settings)
    yield srv
    srv.services.db.dispose()


@pytest.fixture
def client(server: Server) -> Iterator[TestClient]:
    with TestClient(server.app) as c:
        yield c


@pytest.fixture
def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@dataclass(frozen=True)
class Person:
    name: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
def make_user(server: Server) -> Callable[..., Person]:
    """Create a user (or service account) holding ``roles`` and give it a token."""
    counter = iter(range(1_000_000))

    def make(*roles: str, name: str | None = None, kind: str = "user") -> Person:
        user = name or f"{'-'.join(roles) or 'nobody'}-{next(counter)}".replace("_", "-")
        ctx = system_context("test")
        server.services.identity.create_user(
            ctx, name=user, roles=list(roles), reason="test fixture", kind=kind
        )
        issued = server.services.identity.issue_token(
            ctx, user_name=user, name="test", reason="test fixture"
        )
        return Person(user, issued.secret)

    return make

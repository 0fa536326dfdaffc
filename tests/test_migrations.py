"""Migrations: the schema they build matches the models, and data migrations keep data."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from mlgov import migrate
from mlgov.db import Database, utcnow
from mlgov.models import metadata


def test_schema_after_migrations_matches_the_models(database_url):
    db = Database(database_url)
    migrate.upgrade(db)
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    db.dispose()
    assert diff == [], f"models and migrations disagree: {diff}"


def test_search_text_is_backfilled_from_models_and_tags(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'm.db'}")
    migrate.upgrade(db, "0001")
    now = utcnow()
    with db.write() as session:
        session.execute(
            text(
                "INSERT INTO models (id, name, description, owner_team, risk_tier, domain, "
                "intended_use, out_of_scope_uses, created_at, created_by, updated_at) VALUES "
                "(1, 'Credit-Risk', 'Scores LOANS', 'risk', 'high', 'Banking', 'Approvals', "
                "'[]', :t, 'sam', :t)"
            ),
            {"t": now},
        )
        session.execute(text("INSERT INTO model_tags (model_id, tag) VALUES (1, 'EU')"))
    migrate.upgrade(db)
    with db.read() as session:
        value = session.execute(text("SELECT search_text FROM models WHERE id = 1")).scalar_one()
    db.dispose()
    assert value == "credit-risk\nscores loans\nbanking\napprovals\neu"


def test_search_follows_model_updates(client, admin):
    body = {"name": "m1", "owner_team": "t", "risk_tier": "minimal", "reason": "r"}
    assert client.post("/api/v1/models", json=body, headers=admin).status_code == 201

    def found(q: str) -> list[str]:
        r = client.get("/api/v1/models", params={"q": q}, headers=admin)
        return [m["name"] for m in r.json()["items"]]

    assert found("mortgage") == []
    patch = {"description": "Mortgage affordability", "tags": ["Housing"], "reason": "r"}
    assert client.patch("/api/v1/models/m1", json=patch, headers=admin).status_code == 200
    assert found("MORTGAGE") == ["m1"] and found("housing") == ["m1"]

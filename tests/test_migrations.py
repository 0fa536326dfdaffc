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


def test_existing_events_become_a_verifiable_merkle_log(tmp_path):
    from mlgov.audit.trail import AuditTrail, entry_bytes
    from mlgov.audit.verify import verify_export
    from mlgov.context import system_context
    from mlgov.tlog import merkle
    from mlgov.tlog.note import Signer

    db = Database(f"sqlite:///{tmp_path / 'm.db'}")
    migrate.upgrade(db, "0002")
    now = utcnow()
    with db.write() as session:
        for seq in range(7):
            session.execute(
                text(
                    "INSERT INTO audit_events (seq, time, actor, actor_kind, action, target, "
                    "reason, details, request_id, client_addr) VALUES (:seq, :t, 'sam', 'user', "
                    "'model.create', :target, 'before the log', :details, 'req', NULL)"
                ),
                {"seq": seq, "t": now, "target": f"model/m{seq}", "details": '{"n": 1.5}'},
            )
        session.execute(text("UPDATE audit_log_head SET size = 7"))
    migrate.upgrade(db)

    trail = AuditTrail(db, Signer.generate("migrated"), "migrated/audit")
    with db.read() as session:
        events = session.execute(text("SELECT seq FROM audit_events ORDER BY seq")).all()
    assert len(events) == 7
    from mlgov.audit.models import AuditEvent

    with db.read() as session:
        rows = session.query(AuditEvent).order_by(AuditEvent.seq).all()
        leaves = [r.leaf_hash for r in rows]
        assert leaves == [merkle.leaf_hash(entry_bytes(r)) for r in rows]
    assert trail.tree_head().root_hash == merkle.root_of(leaves)
    trail.checkpoint(system_context("test"))
    report = verify_export(trail.export(), [trail.signer.verifier()])
    assert report.entries == 7 and report.checkpoints == 1
    db.dispose()

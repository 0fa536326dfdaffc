"""The audit trail as a verifiable Merkle log, on SQLite and PostgreSQL, through the API.

(a) checkpoints: signed C2SP notes whose roots are the RFC 9162 roots of the events' leaves,
    on demand, every N events and every T seconds; the key is generated once and kept;
(b) proofs: every inclusion and consistency proof the API serves verifies locally, and the
    API refuses what cannot be proven with a problem naming the field;
(c) the database itself refuses to update or delete audit rows;
(d) tampering through direct SQL (bypassing those guards, as an attacker with database access
    would) is caught by the offline verifier, which names the first bad entry.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import make_transient

from mlgov.audit.entry import ENTRY_OFFSET
from mlgov.audit.models import AuditEvent
from mlgov.audit.proofs import check_consistency, check_inclusion
from mlgov.audit.trail import entry_bytes
from mlgov.audit.verify import VerificationFailed, verify_export
from mlgov.config import Settings
from mlgov.db import Database, utcnow
from mlgov.server import Server, build_server
from mlgov.tlog import merkle
from mlgov.tlog.note import Checkpoint, Signer, Verifier, open_note, sign_note
from test_audit_trail import BOOTSTRAP_EVENTS, BOOTSTRAP_POLICIES

V1 = "/api/v1"

# The first start records BOOTSTRAP_EVENTS events (seq 0..5), the models' events follow. Its
# first change, the built-in policy packs, alone reaches checkpoint_every=4: the first start
# signs the checkpoint of size 4, and the appends sign one every 4 events after it (8, 12, ...).
BOOTSTRAP_CHECKPOINT = len(BOOTSTRAP_POLICIES)

#: For the tests that start from a log with no checkpoint: an interval the first start's events
#: do not reach, so nothing is signed until the test asks.
NOT_SIGNED_AT_BOOTSTRAP = pytest.mark.parametrize("checkpoint_every", [BOOTSTRAP_EVENTS + 2])


@pytest.fixture
def checkpoint_every() -> int:
    return 4


@pytest.fixture
def small_settings(settings: Settings, checkpoint_every: int) -> Settings:
    return dataclasses.replace(settings, checkpoint_every=checkpoint_every)


@pytest.fixture
def log_server(small_settings: Settings) -> Iterator[Server]:
    srv = build_server(small_settings)
    yield srv
    srv.services.db.dispose()


@pytest.fixture
def api(log_server: Server) -> Iterator[TestClient]:
    with TestClient(log_server.app) as c:
        yield c


def make_models(api: TestClient, admin: dict[str, str], count: int, prefix: str = "m") -> None:
    for i in range(count):
        body = {"name": f"{prefix}-{i}", "owner_team": "risk", "risk_tier": "minimal"}
        r = api.post(f"{V1}/models", json={**body, "reason": f"model {i}"}, headers=admin)
        assert r.status_code == 201, r.text


def public_key(api: TestClient) -> str:
    r = api.get(f"{V1}/audit/public-key")
    assert r.status_code == 200
    return str(r.json()["verifier_key"])


def leaves(server: Server) -> list[bytes]:
    with server.services.db.read() as session:
        rows = session.execute(text("SELECT leaf_hash FROM audit_events ORDER BY seq")).all()
    return [bytes(r[0]) for r in rows]


def export(api: TestClient, admin: dict[str, str], **params: Any) -> list[bytes]:
    r = api.get(f"{V1}/audit/export", params=params, headers=admin)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/x-ndjson")
    return r.content.splitlines()


# -- (a) checkpoints ------------------------------------------------------------------------


@NOT_SIGNED_AT_BOOTSTRAP
def test_checkpoints_are_signed_notes_over_the_events_tree(api, admin, log_server):
    make_models(api, admin, 1)  # bootstrap + 1 = 7 events, below checkpoint_every
    size = BOOTSTRAP_EVENTS + 1
    assert api.get(f"{V1}/audit/checkpoint", headers=admin).status_code == 404

    r = api.post(f"{V1}/audit/checkpoints", headers=admin)
    assert r.status_code == 201, r.text
    cp = r.json()
    assert cp["tree_size"] == size
    assert bytes.fromhex(cp["root_hash"]) == merkle.root_of(leaves(log_server))
    # nothing new: the same checkpoint again, 200
    again = api.post(f"{V1}/audit/checkpoints", headers=admin)
    assert again.status_code == 200 and again.json() == cp

    key = public_key(api)
    opened = open_note(cp["note"], [Verifier.from_string(key)])
    body = Checkpoint.parse(opened.text)
    assert (body.size, body.root_hash.hex()) == (size, cp["root_hash"])
    assert body.origin == log_server.services.audit.origin
    assert [s.name for s in opened.verified] == [cp["key_name"]]

    latest = api.get(f"{V1}/audit/checkpoint", headers=admin)
    assert latest.json() == cp
    plain = api.get(f"{V1}/audit/checkpoint", headers={**admin, "Accept": "text/plain"})
    assert plain.headers["content-type"].startswith("text/plain") and plain.text == cp["note"]


def test_a_checkpoint_is_signed_every_n_events_in_the_appending_transaction(api, admin, log_server):
    # 15 events, checkpoint_every=4: the first start signed 4, the models' appends 8 and 12
    make_models(api, admin, 15 - BOOTSTRAP_EVENTS)
    r = api.get(f"{V1}/audit/checkpoints", headers=admin)
    sizes = [c["tree_size"] for c in r.json()["items"]]
    assert sizes == [BOOTSTRAP_CHECKPOINT, 8, 12]
    for cp in r.json()["items"]:
        assert bytes.fromhex(cp["root_hash"]) == merkle.root_of(
            leaves(log_server)[: cp["tree_size"]]
        )
    after = api.get(f"{V1}/audit/checkpoints", params={"after_size": 4}, headers=admin)
    assert [c["tree_size"] for c in after.json()["items"]] == [8, 12]


@NOT_SIGNED_AT_BOOTSTRAP
def test_a_checkpoint_is_signed_when_the_interval_passed(api, admin, log_server):
    trail = log_server.services.audit
    make_models(api, admin, 1)
    first = trail.checkpoint_if_due()  # never signed: due at once
    assert first is not None and first.tree_size == BOOTSTRAP_EVENTS + 1
    assert trail.checkpoint_if_due() is None  # nothing new
    make_models(api, admin, 1, prefix="n")
    assert trail.checkpoint_if_due() is None  # new event, but the interval has not passed
    later = utcnow() + timedelta(seconds=trail.checkpoint_interval + 1)
    second = trail.checkpoint_if_due(later)
    assert second is not None and second.tree_size == BOOTSTRAP_EVENTS + 2


def test_the_signing_key_is_generated_once_private_and_kept(small_settings, tmp_path):
    first = build_server(small_settings)
    key_file = small_settings.signing_key_path
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    name = first.services.audit.signer.name
    first.services.db.dispose()
    second = build_server(small_settings)
    assert second.services.audit.signer.verifier() == first.services.audit.signer.verifier()
    second.services.db.dispose()

    own = Signer.generate("bank.example/mlgov")
    path = tmp_path / "operator.key"
    path.write_text(own.key_string() + "\n")
    os.chmod(path, 0o600)
    given = dataclasses.replace(small_settings, signing_key_file=path, audit_origin="bank/audit")
    third = build_server(given)
    assert third.services.audit.signer.verifier() == own.verifier()
    assert third.services.audit.origin == "bank/audit"
    assert name != own.name
    third.services.db.dispose()


def test_only_auditors_and_admins_sign_checkpoints(api, admin, make_user):
    for role in ("viewer", "data_scientist", "model_manager"):
        r = api.post(f"{V1}/audit/checkpoints", headers=make_user(role).headers)
        assert r.status_code == 403, (role, r.text)
    # the refused requests signed nothing: the only checkpoint is the first start's
    items = api.get(f"{V1}/audit/checkpoints", headers=admin).json()["items"]
    assert [c["tree_size"] for c in items] == [BOOTSTRAP_CHECKPOINT]
    r = api.post(f"{V1}/audit/checkpoints", headers=make_user("auditor").headers)
    assert r.status_code == 201


# -- (b) proofs -----------------------------------------------------------------------------


def test_every_inclusion_and_consistency_proof_verifies(api, admin, log_server):
    make_models(api, admin, 13 - BOOTSTRAP_EVENTS)  # 13 events; checkpoints at 4, 8, 12
    key = public_key(api)
    cp = api.post(f"{V1}/audit/checkpoints", headers=admin).json()
    assert cp["tree_size"] == 13
    all_leaves = leaves(log_server)
    for index in range(13):
        proof = api.get(
            f"{V1}/audit/proofs/inclusion", params={"index": index, "tree_size": 13}, headers=admin
        ).json()
        assert proof["leaf_hash"] == all_leaves[index].hex()
        checked = check_inclusion(proof, cp["note"], [key])
        assert checked["entry"]["seq"] == index
    # default tree size: the latest checkpoint's
    proof = api.get(f"{V1}/audit/proofs/inclusion", params={"index": 5}, headers=admin).json()
    assert proof["tree_size"] == 13

    notes = {
        c["tree_size"]: c["note"]
        for c in api.get(f"{V1}/audit/checkpoints", headers=admin).json()["items"]
    }
    assert sorted(notes) == [4, 8, 12, 13]
    for old in (4, 8, 12):
        p = api.get(
            f"{V1}/audit/proofs/consistency", params={"first": old, "second": 13}, headers=admin
        ).json()
        assert p["first_root"] == merkle.root_of(all_leaves[:old]).hex()
        assert check_consistency(notes[old], notes[13], p, [key])["new"]["tree_size"] == 13
    for first in range(1, 14):
        for second in range(first, 14):
            p = api.get(
                f"{V1}/audit/proofs/consistency",
                params={"first": first, "second": second},
                headers=admin,
            ).json()
            merkle.verify_consistency(
                first,
                second,
                [bytes.fromhex(h) for h in p["proof"]],
                merkle.root_of(all_leaves[:first]),
                merkle.root_of(all_leaves[:second]),
            )


def test_a_proof_against_the_wrong_key_or_a_changed_entry_fails(api, admin):
    make_models(api, admin, 3)
    cp = api.post(f"{V1}/audit/checkpoints", headers=admin).json()
    first_model = BOOTSTRAP_EVENTS  # the event of "model 0"
    proof = api.get(
        f"{V1}/audit/proofs/inclusion", params={"index": first_model}, headers=admin
    ).json()
    stranger = Signer.generate("someone-else").verifier().key_string()
    with pytest.raises(VerificationFailed, match=r"no signature|known key"):
        check_inclusion(proof, cp["note"], [stranger])
    forged = dict(proof, entry=proof["entry"].replace('"model 0"', '"model zero"'))
    assert forged["entry"] != proof["entry"]
    with pytest.raises(VerificationFailed, match="leaf hash") as exc:
        check_inclusion(forged, cp["note"], [public_key(api)])
    assert exc.value.seq == first_model
    tampered = dict(proof, proof=["00" * 32, *proof["proof"][1:]])
    with pytest.raises(VerificationFailed, match="not in the signed tree"):
        check_inclusion(tampered, cp["note"], [public_key(api)])


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("inclusion", {"index": 5, "tree_size": 5}, "query.index"),
        ("inclusion", {"index": 0, "tree_size": 99}, "query.tree_size"),
        ("inclusion", {"index": -1}, "query.index"),
        ("inclusion", {"index": "x"}, "query.index"),
        ("inclusion", {}, "query.index"),
        ("inclusion", {"index": 0, "tree_size": 0}, "query.tree_size"),
        ("consistency", {"first": 0, "second": 3}, "query.first"),
        ("consistency", {"first": 4, "second": 3}, "query.first"),
        ("consistency", {"first": 1, "second": 99}, "query.second"),
        ("consistency", {"first": 2**63}, "query.first"),
    ],
)
def test_proof_requests_that_cannot_be_answered_are_refused(api, admin, path, params, field):
    make_models(api, admin, 5)  # 11 events
    r = api.get(f"{V1}/audit/proofs/{path}", params=params, headers=admin)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["field"] == field


def test_the_empty_tree_refusal_is_explained(api, admin):
    make_models(api, admin, 1)
    r = api.get(f"{V1}/audit/proofs/consistency", params={"first": 0}, headers=admin)
    assert r.status_code == 422 and "empty tree" in r.json()["detail"]


# -- (c) the database refuses changes to the audit tables ---------------------------------


def _raw(db: Database) -> Any:
    return db.engine.begin()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_events SET reason = 'rewritten' WHERE seq = 0",
        "DELETE FROM audit_events WHERE seq = 0",
        "UPDATE tlog_nodes SET hash = hash",
        "DELETE FROM tlog_nodes",
        "UPDATE tlog_checkpoints SET note = 'x'",
        "DELETE FROM tlog_checkpoints",
        "UPDATE tlog_heads SET size = size - 1",
        "DELETE FROM tlog_heads",
    ],
)
def test_the_database_refuses_to_rewrite_the_log(api, admin, log_server, statement):
    make_models(api, admin, 8)  # checkpoints and inner nodes exist
    before = export(api, admin)
    refused = pytest.raises(DBAPIError, match=r"append-only|never deleted|only moves forward")
    with refused, _raw(log_server.services.db) as conn:
        conn.execute(text(statement))
    assert export(api, admin)[1:] == before[1:]


def test_postgresql_refuses_truncate_of_the_audit_tables(api, admin, log_server, backend):
    if backend != "postgresql":
        pytest.skip("TRUNCATE is a PostgreSQL statement")
    make_models(api, admin, 1)
    for table in ("audit_events", "tlog_nodes", "tlog_checkpoints", "tlog_heads"):
        with pytest.raises(DBAPIError, match="append-only"), _raw(log_server.services.db) as conn:
            conn.execute(text(f"TRUNCATE {table} CASCADE"))


# -- (d) tampering, caught offline ----------------------------------------------------------


def tamper(db: Database, *statements: tuple[str, dict[str, Any]]) -> None:
    """What an attacker with full database access does: switch the guards off, then write."""
    with db.engine.begin() as conn:
        if db.is_sqlite:
            names = conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            for name in [row[0] for row in names]:
                conn.exec_driver_sql(f'DROP TRIGGER "{name}"')
        else:
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        for statement, params in statements:
            conn.execute(text(statement), params)


@pytest.fixture
def signed_log(api, admin, log_server) -> dict[str, Any]:
    """A log of 20 events with checkpoints at 4, 8, 12, 16, 20, verified once untouched; the
    events from seq BOOTSTRAP_EVENTS (6) on are the models'."""
    make_models(api, admin, 20 - BOOTSTRAP_EVENTS)
    lines = export(api, admin)
    key = public_key(api)
    report = verify_export(lines, [Verifier.from_string(key)])
    assert (report.entries, report.checkpoints, report.unsigned_tail) == (20, 5, 0)
    assert report.head is not None and report.head.root_hash == merkle.root_of(leaves(log_server))
    with log_server.services.db.read() as session:
        actions = session.execute(text("SELECT action FROM audit_events ORDER BY seq")).scalars()
        assert list(actions)[BOOTSTRAP_EVENTS:] == ["model.create"] * (20 - BOOTSTRAP_EVENTS)
    return {"key": Verifier.from_string(key), "db": log_server.services.db, "lines": lines}


def failure(
    api: TestClient, admin: dict[str, str], log: dict[str, Any], **kw: Any
) -> VerificationFailed:
    with pytest.raises(VerificationFailed) as exc:
        verify_export(export(api, admin), [log["key"]], **kw)
    return exc.value


def _forge(db: Database, original: int, **changes: Any) -> AuditEvent:
    """Event ``original`` as an attacker would rewrite it: ``changes`` applied and a leaf hash that
    matches them (computed with the documented entry format)."""
    with db.read() as session:
        event = session.get(AuditEvent, original)
        assert event is not None
        session.expunge(event)
    make_transient(event)
    for name, value in changes.items():
        setattr(event, name, value)
    event.leaf_hash = merkle.leaf_hash(entry_bytes(event))
    return event


def test_tamper_one_field_of_one_entry(api, admin, signed_log):
    tamper(
        signed_log["db"], ("UPDATE audit_events SET reason = 'nothing to see' WHERE seq = 9", {})
    )
    exc = failure(api, admin, signed_log)
    assert exc.seq == 9 and "entry 9" in str(exc) and "recorded leaf hash" in str(exc)


def test_tamper_one_field_and_its_leaf_hash(api, admin, signed_log):
    leaf = _forge(signed_log["db"], 9, reason="nothing to see").leaf_hash
    tamper(
        signed_log["db"],
        (
            "UPDATE audit_events SET reason = 'nothing to see', leaf_hash = :h WHERE seq = 9",
            {"h": leaf},
        ),
    )
    exc = failure(api, admin, signed_log)
    # only the signed checkpoints can tell now: 8 still verifies, 12 does not
    assert exc.seq == 8 and "entries 8..11" in str(exc)


def test_tamper_delete_an_entry(api, admin, signed_log):
    tamper(signed_log["db"], ("DELETE FROM audit_events WHERE seq = 6", {}))
    exc = failure(api, admin, signed_log)
    assert exc.seq == 6 and "entry 6 is missing" in str(exc)


def test_tamper_insert_an_entry(api, admin, signed_log):
    db = signed_log["db"]
    # make room at 6, the first model's event (in two steps: the primary key is checked row by
    # row) ...
    tamper(
        db,
        ("UPDATE audit_events SET seq = -(seq + 1) WHERE seq >= 6", {}),
        ("UPDATE audit_events SET seq = -seq WHERE seq < 0", {}),
    )
    # ... and forge a well-formed event there, with a correct leaf hash (an INSERT: the
    # guards refuse only updates and deletes)
    forged = _forge(db, 7, seq=6, reason="approved by the board")
    with db.write() as session:
        session.add(forged)
    exc = failure(api, admin, signed_log)
    # the forged entry hashes correctly; the first one it displaced (before the checkpoint of
    # size 8 is reached) does not
    assert exc.seq == 7 and "recorded leaf hash" in str(exc)


def test_tamper_swap_two_entries(api, admin, signed_log):
    tamper(
        signed_log["db"],
        ("UPDATE audit_events SET seq = -1 WHERE seq = 7", {}),
        ("UPDATE audit_events SET seq = 7 WHERE seq = 14", {}),
        ("UPDATE audit_events SET seq = 14 WHERE seq = -1", {}),
    )
    exc = failure(api, admin, signed_log)
    assert exc.seq == 7 and "entry 7" in str(exc)


def test_tamper_replace_a_checkpoint_signature(api, admin, signed_log):
    with signed_log["db"].read() as session:
        note = session.execute(
            text("SELECT note FROM tlog_checkpoints WHERE tree_size = 12")
        ).scalar_one()
    body = note.split("\n\n")[0] + "\n"
    name = note.split("\n\n")[1].split(" ")[1]
    # a signature by another key under the log's key name
    impostor = Signer.generate(name)
    forged = sign_note(body, [impostor])
    tamper(
        signed_log["db"],
        ("UPDATE tlog_checkpoints SET note = :n WHERE tree_size = 12", {"n": forged}),
    )
    exc = failure(api, admin, signed_log)
    assert exc.seq is None and "checkpoint of size 12" in str(exc)


def test_tamper_truncate_the_tail_after_a_checkpoint(api, admin, signed_log):
    tamper(signed_log["db"], ("DELETE FROM audit_events WHERE seq >= 14", {}))
    exc = failure(api, admin, signed_log)
    assert exc.seq == 14 and "entries 14..15 are missing" in str(exc)


def test_a_rewound_log_is_caught_by_a_checkpoint_kept_outside(api, admin, signed_log, log_server):
    """The attacker truncates the events, the tree and the stored checkpoints consistently:
    only a checkpoint an auditor kept can tell (and does)."""
    kept = api.get(f"{V1}/audit/checkpoint", headers=admin).json()["note"]  # size 20
    db = signed_log["db"]
    frontier = merkle.Frontier()
    for leaf in leaves(log_server)[:14]:
        frontier.append(leaf)
    tamper(
        db,
        ("DELETE FROM audit_events WHERE seq >= 14", {}),
        ("DELETE FROM tlog_checkpoints WHERE tree_size > 14", {}),
        (
            "UPDATE tlog_heads SET size = 14, frontier = :f, checkpoint_size = 12",
            {"f": frontier.to_bytes()},
        ),
    )
    # without the kept checkpoint the rewound log looks whole up to its last checkpoint
    lines = export(api, admin, tree_size=12)
    assert verify_export(lines, [signed_log["key"]]).entries == 12
    with pytest.raises(VerificationFailed) as exc:
        verify_export(
            export(api, admin), [signed_log["key"]], trusted=[kept], allow_unsigned_tail=True
        )
    assert exc.value.seq == 14 and "truncated" in str(exc.value)


def test_entries_after_the_last_checkpoint_are_reported(api, admin, signed_log):
    make_models(api, admin, 1, prefix="late")  # event 20, no checkpoint yet
    exc = failure(api, admin, signed_log)
    assert exc.seq == 20 and "no signed checkpoint" in str(exc)
    report = verify_export(export(api, admin), [signed_log["key"]], allow_unsigned_tail=True)
    assert (report.entries, report.unsigned_tail) == (21, 1)


def test_the_export_is_bounded_by_tree_size_and_the_entry_bytes_are_the_leaves(
    api, admin, signed_log, log_server
):
    lines = export(api, admin, tree_size=8)
    entries = [line for line in lines if line.startswith(b'{"leaf_hash"')]
    assert len(entries) == 8
    assert [merkle.leaf_hash(e[ENTRY_OFFSET:-1]) for e in entries] == leaves(log_server)[:8]
    r = api.get(f"{V1}/audit/export", params={"tree_size": 99}, headers=admin)
    assert r.status_code == 422 and r.json()["field"] == "query.tree_size"


def test_a_foreign_or_garbled_export_is_refused(signed_log):
    lines = signed_log["lines"]
    key = signed_log["key"]
    with pytest.raises(VerificationFailed, match="not an mlgov audit export"):
        verify_export([b'{"hello":1}', *lines[1:]], [key])
    with pytest.raises(VerificationFailed, match="empty"):
        verify_export([], [key])
    garbled = [*lines[:3], lines[3][:-5], *lines[4:]]
    with pytest.raises(VerificationFailed):
        verify_export(garbled, [key])
    stranger = Signer.generate("someone").verifier()
    with pytest.raises(VerificationFailed, match="checkpoint of size 4"):
        verify_export(lines, [stranger])

"""Users, service accounts, roles and API tokens through the API, and the first-start bootstrap."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select, text

from mlgov.config import Settings
from mlgov.identity.models import ApiToken, User
from mlgov.server import Server, build_server
from test_audit_trail import BOOTSTRAP_EVENTS, BOOTSTRAP_POLICIES

V1 = "/api/v1"
PROBLEM_JSON = "application/problem+json"


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def new_token(client: Any, headers: dict[str, str], user: str, **extra: Any) -> dict[str, Any]:
    body = {"user": user, "name": extra.pop("name", "laptop"), "reason": "work", **extra}
    r = client.post(f"{V1}/tokens", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def refused(r: Any, status: int, words: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM_JSON
    assert words in r.json()["detail"], r.json()


def test_create_users_and_service_accounts(client, admin):
    r = client.post(
        f"{V1}/users",
        json={
            "name": "alice",
            "roles": ["data_scientist", "validator", "data_scientist"],
            "display_name": "Alice A.",
            "email": "alice@example.org",
            "password": "correct horse battery",
            "reason": "joins the credit team",
        },
        headers=admin,
    )
    assert r.status_code == 201, r.text
    alice = r.json()
    assert alice["roles"] == ["data_scientist", "validator"] and alice["kind"] == "user"
    assert alice["created_by"] == "admin" and alice["disabled"] is False
    assert "password" not in alice and "password_hash" not in alice
    r = client.post(
        f"{V1}/users",
        json={
            "name": "ci-bot",
            "kind": "service_account",
            "roles": ["data_scientist"],
            "reason": "CI pipeline",
        },
        headers=admin,
    )
    assert r.status_code == 201 and r.json()["kind"] == "service_account"
    # the service account works like any user, with a token and an audit trail of its own
    bot = new_token(client, admin, "ci-bot")
    me = client.get(f"{V1}/me", headers=bearer(bot["token"])).json()
    assert me["name"] == "ci-bot" and me["kind"] == "service_account"
    model = {"name": "m", "owner_team": "t", "risk_tier": "minimal", "reason": "nightly"}
    assert client.post(f"{V1}/models", json=model, headers=bearer(bot["token"])).status_code == 201
    events = client.get(f"{V1}/audit/events?actor=ci-bot", headers=admin).json()["items"]
    assert [(e["action"], e["actor_kind"]) for e in events] == [("model.create", "service_account")]
    users = client.get(f"{V1}/users", headers=admin).json()
    assert [u["name"] for u in users] == ["admin", "alice", "ci-bot"]
    r = client.post(
        f"{V1}/users", json={"name": "alice", "roles": [], "reason": "again"}, headers=admin
    )
    assert r.status_code == 409 and r.json()["field"] == "name"


def test_grant_and_revoke_roles(client, admin, make_user):
    bob = make_user("viewer")
    model = {"name": "m", "owner_team": "t", "risk_tier": "minimal", "reason": "r"}
    assert client.post(f"{V1}/models", json=model, headers=bob.headers).status_code == 403
    r = client.post(
        f"{V1}/users/{bob.name}/roles",
        json={"role": "data_scientist", "reason": "moved teams"},
        headers=admin,
    )
    assert r.status_code == 200 and r.json()["roles"] == ["data_scientist", "viewer"]
    # the grant takes effect on the next request
    assert client.post(f"{V1}/models", json=model, headers=bob.headers).status_code == 201
    r = client.post(
        f"{V1}/users/{bob.name}/roles", json={"role": "viewer", "reason": "again"}, headers=admin
    )
    assert r.status_code == 409 and r.json()["field"] == "role"
    r = client.request(
        "DELETE",
        f"{V1}/users/{bob.name}/roles/data_scientist",
        json={"reason": "moved back"},
        headers=admin,
    )
    assert r.status_code == 200 and r.json()["roles"] == ["viewer"]
    model["name"] = "m2"
    assert client.post(f"{V1}/models", json=model, headers=bob.headers).status_code == 403
    r = client.request(
        "DELETE", f"{V1}/users/{bob.name}/roles/auditor", json={"reason": "r"}, headers=admin
    )
    assert r.status_code == 404
    assert client.get(f"{V1}/users/{bob.name}", headers=admin).json()["roles"] == ["viewer"]
    actions = [
        (e["action"], e["details"])
        for e in client.get(f"{V1}/audit/events?target=user/{bob.name}", headers=admin).json()[
            "items"
        ]
        if e["action"].startswith("user.role")
    ]
    assert actions == [
        ("user.role_grant", {"role": "data_scientist"}),
        ("user.role_revoke", {"role": "data_scientist"}),
    ]


def test_the_last_admin_cannot_be_removed(client, admin, make_user):
    def revoke(name: str, headers: dict[str, str]) -> Any:
        return client.request(
            "DELETE", f"{V1}/users/{name}/roles/admin", json={"reason": "r"}, headers=headers
        )

    def disable(name: str, headers: dict[str, str]) -> Any:
        body = {"disabled": True, "reason": "r"}
        return client.patch(f"{V1}/users/{name}", json=body, headers=headers)

    before = client.get(f"{V1}/audit/events", headers=admin).json()["items"]
    r = revoke("admin", admin)
    assert r.status_code == 409 and r.json()["field"] == "role"
    assert "last admin" in r.json()["detail"]
    r = disable("admin", admin)
    assert r.status_code == 409 and r.json()["field"] == "disabled"
    assert client.get(f"{V1}/users/admin", headers=admin).json()["roles"] == ["admin"]
    assert client.get(f"{V1}/audit/events", headers=admin).json()["items"] == before
    # with a second admin, the first may go
    second = make_user("admin")
    assert revoke("admin", second.headers).status_code == 200
    assert revoke(second.name, second.headers).status_code == 409
    assert disable(second.name, second.headers).status_code == 409
    assert client.get(f"{V1}/me", headers=second.headers).json()["roles"] == ["admin"]


def test_disabled_users_tokens_stop_working(client, admin, make_user):
    carol = make_user("data_scientist")
    assert client.get(f"{V1}/me", headers=carol.headers).status_code == 200
    r = client.patch(
        f"{V1}/users/{carol.name}", json={"disabled": True, "reason": "left"}, headers=admin
    )
    assert r.status_code == 200 and r.json()["disabled"] is True
    refused(client.get(f"{V1}/me", headers=carol.headers), 401, "disabled")
    r = client.patch(
        f"{V1}/users/{carol.name}", json={"disabled": False, "reason": "back"}, headers=admin
    )
    assert r.status_code == 200
    assert client.get(f"{V1}/me", headers=carol.headers).status_code == 200


def test_tokens_expire_and_can_be_revoked(client, admin, server: Server, make_user):
    dave = make_user("viewer")
    soon = datetime.now(UTC) + timedelta(minutes=10)
    expiring = new_token(client, admin, dave.name, name="short", expires_at=soon.isoformat())
    assert datetime.fromisoformat(expiring["expires_at"]) == soon
    assert client.get(f"{V1}/me", headers=bearer(expiring["token"])).status_code == 200
    # Simulate the passage of time: move the token's expiry into the past in the database.
    with server.services.db.write() as session:
        row = session.get(ApiToken, expiring["id"])
        assert row is not None
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    refused(client.get(f"{V1}/me", headers=bearer(expiring["token"])), 401, "expired")

    revocable = new_token(client, dave.headers, dave.name, name="ci")
    assert client.get(f"{V1}/me", headers=bearer(revocable["token"])).status_code == 200
    r = client.request(
        "DELETE", f"{V1}/tokens/{revocable['id']}", json={"reason": "leaked"}, headers=dave.headers
    )
    assert r.status_code == 200 and r.json()["revoked_at"] is not None
    refused(client.get(f"{V1}/me", headers=bearer(revocable["token"])), 401, "revoked")
    r = client.request(
        "DELETE", f"{V1}/tokens/{revocable['id']}", json={"reason": "again"}, headers=admin
    )
    assert r.status_code == 409
    # the user's other token is unaffected
    assert client.get(f"{V1}/me", headers=dave.headers).json()["name"] == dave.name
    listed = {
        t["name"]: t for t in client.get(f"{V1}/users/{dave.name}/tokens", headers=admin).json()
    }
    assert listed["ci"]["revoked_at"] is not None and listed["test"]["revoked_at"] is None


def test_secrets_are_stored_hashed_and_shown_once(client, admin, server: Server, make_user):
    erin = make_user("viewer")
    issued = new_token(client, admin, erin.name)
    secret = issued["token"]
    assert secret.startswith("mlgov_") and len(secret) >= 40
    with server.services.db.read() as session:
        rows = session.execute(text("SELECT * FROM api_tokens")).mappings().all()
        events = session.execute(text("SELECT * FROM audit_events")).mappings().all()
    assert len(rows) == 3  # the admin's bootstrap token, erin's fixture token and this one
    for row in rows:
        for column, value in row.items():
            for known in (secret, erin.token):
                assert known not in str(value), f"a secret is stored in api_tokens.{column}"
    hashes = {row["id"]: row["secret_sha256"] for row in rows}
    assert hashes[issued["id"]] == hashlib.sha256(secret.encode()).hexdigest()
    for event in events:
        assert secret not in str(dict(event)) and erin.token not in str(dict(event))
    # shown in the create answer only, never listed
    r = client.get(f"{V1}/users/{erin.name}/tokens", headers=admin)
    assert r.status_code == 200 and secret not in r.text
    assert all("token" not in t and "secret_sha256" not in t for t in r.json())
    assert {t["id"] for t in r.json()} >= {issued["id"]}


def test_passwords_are_argon2id_hashes(client, admin, server: Server):
    password = "a long enough password"
    body = {"name": "frank", "roles": ["viewer"], "password": password, "reason": "r"}
    assert client.post(f"{V1}/users", json=body, headers=admin).status_code == 201
    r = client.patch(
        f"{V1}/users/frank",
        json={"password": "another long password", "reason": "r"},
        headers=admin,
    )
    assert r.status_code == 200
    with server.services.db.read() as session:
        stored = session.execute(
            select(User.password_hash).where(User.name == "frank")
        ).scalar_one()
    assert stored is not None and stored.startswith("$argon2id$")
    assert password not in stored and "another long password" not in stored
    update = client.get(f"{V1}/audit/events?action=user.update", headers=admin).json()["items"]
    assert update[-1]["details"] == {"password": "changed"}


def test_users_manage_their_own_tokens_only(client, admin, make_user):
    grace = make_user("data_engineer")
    heidi = make_user("viewer")
    mine = new_token(client, grace.headers, grace.name, name="mine")
    assert mine["created_by"] == grace.name
    r = client.get(f"{V1}/users/{grace.name}/tokens", headers=grace.headers)
    assert r.status_code == 200 and {t["name"] for t in r.json()} == {"test", "mine"}
    heidis = client.get(f"{V1}/users/{heidi.name}/tokens", headers=admin).json()
    assert client.get(f"{V1}/users/nobody/tokens", headers=admin).status_code == 404
    before = client.get(f"{V1}/audit/events", headers=admin).json()["items"]
    body = {"user": heidi.name, "name": "sneaky", "reason": "r"}
    refused(client.post(f"{V1}/tokens", json=body, headers=grace.headers), 403, "token:manage")
    refused(client.get(f"{V1}/users/{heidi.name}/tokens", headers=grace.headers), 403, "token")
    r = client.request(
        "DELETE", f"{V1}/tokens/{heidis[0]['id']}", json={"reason": "r"}, headers=grace.headers
    )
    refused(r, 403, "token:manage")
    assert client.get(f"{V1}/audit/events", headers=admin).json()["items"] == before
    assert client.get(f"{V1}/users/{heidi.name}/tokens", headers=admin).json() == heidis
    assert client.get(f"{V1}/me", headers=heidi.headers).status_code == 200
    # an admin manages anyone's
    other = new_token(client, admin, heidi.name, name="by-admin")
    assert other["created_by"] == "admin" and other["user"] == heidi.name
    r = client.request("DELETE", f"{V1}/tokens/{other['id']}", json={"reason": "r"}, headers=admin)
    assert r.status_code == 200


def _settings(database_url: str, data_dir: Path, token: str | None) -> Settings:
    return Settings(data_dir=data_dir, database_url=database_url, bootstrap_admin_token=token)


def test_bootstrap_creates_one_admin_once(database_url, tmp_path, monkeypatch):
    env_token = "mlgov_bootstrap-from-the-environment-0123456789"
    monkeypatch.setenv("MLGOV_BOOTSTRAP_ADMIN_TOKEN", env_token)
    monkeypatch.setenv("MLGOV_DATABASE_URL", database_url)
    settings = Settings.from_env(tmp_path / "data")
    assert settings.bootstrap_admin_token == env_token
    first = build_server(settings)
    try:
        assert first.bootstrap_token == env_token
        with TestClient(first.app) as client:
            me = client.get(f"{V1}/me", headers=bearer(env_token)).json()
            assert me["name"] == "admin" and me["roles"] == ["admin"]
    finally:
        first.services.db.dispose()
    # a second start (another replica, or a restart) on the same database creates nothing
    again = build_server(_settings(database_url, tmp_path / "data2", "mlgov_another-token-xyz"))
    try:
        assert again.bootstrap_token is None
        with again.services.db.read() as session:
            users = session.execute(select(User.name)).scalars().all()
            tokens = session.execute(select(ApiToken.id)).scalars().all()
        assert users == ["admin"] and len(tokens) == 1
        with TestClient(again.app) as client:
            assert client.get(f"{V1}/me", headers=bearer(env_token)).status_code == 200
            r = client.get(f"{V1}/me", headers=bearer("mlgov_another-token-xyz"))
            assert r.status_code == 401
            events = client.get(f"{V1}/audit/events", headers=bearer(env_token)).json()["items"]
        # the first start's events only: the policy packs, the admin and its token
        assert len(events) == BOOTSTRAP_EVENTS
        assert [(e["action"], e["target"]) for e in events] == [
            *(("policy.create", target) for target in BOOTSTRAP_POLICIES),
            ("user.create", "user/admin"),
            ("token.create", events[-1]["target"]),
        ]
    finally:
        again.services.db.dispose()


def test_bootstrap_without_a_configured_token_shows_a_random_one(database_url, tmp_path):
    srv = build_server(_settings(database_url, tmp_path / "data", None))
    try:
        secret = srv.bootstrap_token
        assert secret is not None and secret.startswith("mlgov_") and len(secret) > 40
        with TestClient(srv.app) as client:
            assert client.get(f"{V1}/me", headers=bearer(secret)).json()["name"] == "admin"
        with srv.services.db.read() as session:
            stored = session.execute(select(ApiToken.secret_sha256)).scalar_one()
        assert stored == hashlib.sha256(secret.encode()).hexdigest()
    finally:
        srv.services.db.dispose()


def test_concurrent_removals_never_leave_no_admin(server: Server, make_user):
    """Two admins removing each other's admin role (or disabling each other) at the same time:
    exactly one succeeds, the other is refused, an admin remains. Repeated to give a race a
    chance to show."""
    import threading

    from mlgov.context import system_context
    from mlgov.errors import Conflict

    identity = server.services.identity
    ctx = system_context("test")
    for round_ in range(5):
        second = make_user("admin").name
        names = ["admin", second]
        barrier = threading.Barrier(2)
        outcomes: list[str] = []

        def remove(
            name: str, disable: bool, barrier: threading.Barrier, outcomes: list[str]
        ) -> None:
            barrier.wait()
            try:
                if disable:
                    identity.update_user(ctx, name, reason="race", disabled=True)
                else:
                    identity.revoke_role(ctx, name, "admin", reason="race")
                outcomes.append("done")
            except Conflict:
                outcomes.append("refused")

        disable = round_ % 2 == 1
        threads = [
            threading.Thread(target=remove, args=(n, disable, barrier, outcomes)) for n in names
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes) == ["done", "refused"], (round_, outcomes)
        active_admins = [
            u.name for u in identity.list_users() if "admin" in u.roles and not u.disabled
        ]
        assert len(active_admins) == 1, active_admins
        # back to "admin" as the only active admin before the next round
        if "admin" not in active_admins:
            user = identity.get_user("admin")
            if user.disabled:
                identity.update_user(ctx, "admin", reason="restore", disabled=False)
            else:
                identity.grant_role(ctx, "admin", "admin", reason="restore")
        for name in active_admins:
            if name != "admin":
                identity.update_user(ctx, name, reason="restore", disabled=True)


def test_password_login_issues_an_expiring_audited_token(client, admin):
    password = "correct horse battery staple"
    r = client.post(
        "/api/v1/users",
        json={"name": "pat", "roles": ["viewer"], "password": password, "reason": "new hire"},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    r = client.post(
        "/api/v1/login",
        json={"user": "pat", "password": password, "reason": "morning login"},
        headers={"X-Request-Id": "login-1"},
    )
    assert r.status_code == 201, r.text
    issued = r.json()
    expires = datetime.fromisoformat(issued["expires_at"])
    assert timedelta(hours=11) < expires - datetime.now(UTC) <= timedelta(hours=12)
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {issued['token']}"})
    assert me.status_code == 200 and me.json()["name"] == "pat"
    events = client.get(
        "/api/v1/audit/events", params={"action": "token.create", "actor": "pat"}, headers=admin
    ).json()["items"]
    assert [(e["reason"], e["request_id"]) for e in events] == [("morning login", "login-1")]


def test_password_login_refusals(client, admin, make_user):
    password = "correct horse battery staple"
    for body in (
        {"name": "pat", "roles": ["viewer"], "password": password, "reason": "r"},
        {"name": "robot", "roles": ["viewer"], "kind": "service_account", "reason": "r"},
    ):
        assert client.post("/api/v1/users", json=body, headers=admin).status_code == 201
    before = client.get("/api/v1/audit/events", headers=admin).json()["items"]

    def login(**body):
        return client.post("/api/v1/login", json={"reason": "try", **body})

    for body in (
        {"user": "pat", "password": "wrong password here"},
        {"user": "nobody", "password": password},
        {"user": "robot", "password": password},  # service accounts have no password
    ):
        r = login(**body)
        assert r.status_code == 401, (body, r.text)
        assert r.json()["detail"] == "unknown user or wrong password"  # no user enumeration
    r = client.post("/api/v1/login", json={"user": "pat", "password": password})
    assert r.status_code == 422 and r.json()["field"] == "reason"
    far = (datetime.now(UTC) + timedelta(days=31)).isoformat()
    r = login(user="pat", password=password, expires_at=far)
    assert r.status_code == 422 and r.json()["field"] == "expires_at"
    client.patch("/api/v1/users/pat", json={"disabled": True, "reason": "left"}, headers=admin)
    assert login(user="pat", password=password).status_code == 401
    after = client.get("/api/v1/audit/events", headers=admin).json()["items"]
    assert [e["action"] for e in after[len(before) :]] == ["user.update"]

"""Bad input gets a clear RFC 9457 problem naming the offending field, and changes nothing.

Each test takes a snapshot of the whole state (row counts of every table, the audit log head,
the artifact store's blobs and staging files) before the bad request and compares it after,
and also looks for the would-be object through the API.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from mlgov.context import system_context
from mlgov.identity.models import ApiToken
from mlgov.models import metadata
from mlgov.server import Server
from mlgov.tlog.models import LogHead

V1 = "/api/v1"
PROBLEM_JSON = "application/problem+json"
LIMIT = 64 * 1024  # the test settings' artifact limit
BODY_LIMIT = 256 * 1024  # the test settings' limit for other bodies
META = {
    "format": "other",
    "signature": {"inputs": [{"name": "age", "type": "integer", "min": 18, "max": 120}]},
    "reason": "new version",
}


def snapshot(server: Server) -> dict[str, Any]:
    store = server.services.store
    with server.services.db.read() as session:
        rows = {
            t.name: session.execute(select(func.count()).select_from(t)).scalar_one()
            for t in metadata.sorted_tables
        }
        head = session.execute(select(LogHead.size)).scalar_one()
    blobs = sorted(p.name for p in store.objects_dir.glob("*/*"))  # type: ignore[attr-defined]
    tmp = store.tmp_dir  # type: ignore[attr-defined]
    staged = sorted(p.name for p in tmp.iterdir()) if tmp.exists() else []
    return {"rows": rows, "audit_head": head, "blobs": blobs, "staged": staged}


def assert_problem(r: Any, status: int, field: str | None, case: Any = None) -> dict[str, Any]:
    """An RFC 9457 problem with this status naming this field (None: no field)."""
    where = f"{r.request.method} {r.request.url} {case if case is not None else ''}"
    assert r.status_code == status, f"{where}: {r.status_code} {r.text}"
    assert r.headers["content-type"] == PROBLEM_JSON, where
    body: dict[str, Any] = r.json()
    assert body["status"] == status, where
    assert body["type"].startswith("https://") and body["title"] and body["detail"], where
    assert body.get("field") == field, f"{where}: {body}"
    return body


def files(artifact: bytes = b"model", meta: Any = None) -> dict[str, Any]:
    text = meta if isinstance(meta, str) else json.dumps(META if meta is None else meta)
    return {"artifact": ("model.skops", artifact), "metadata": (None, text)}


@pytest.fixture
def model(client, admin) -> str:
    body = {"name": "credit", "owner_team": "risk", "risk_tier": "high", "reason": "setup"}
    assert client.post(f"{V1}/models", json=body, headers=admin).status_code == 201
    return "credit"


def _no_versions(client, admin, model: str) -> None:
    r = client.get(f"{V1}/models/{model}/versions", headers=admin)
    assert r.status_code == 200 and r.json()["items"] == []


# -- JSON bodies --------------------------------------------------------------------------

MODEL = {"name": "fraud", "owner_team": "risk", "risk_tier": "high", "reason": "new model"}


BAD_MODEL_BODIES: list[tuple[dict[str, Any], str]] = [
    ({k: v for k, v in MODEL.items() if k != "reason"}, "reason"),
    ({**MODEL, "reason": ""}, "reason"),
    ({**MODEL, "reason": "   \n\t"}, "reason"),
    ({**MODEL, "reason": "x" * 4001}, "reason"),
    ({**MODEL, "colour": "red"}, "colour"),
    ({**MODEL, "risk_tier": "medium"}, "risk_tier"),
    ({**MODEL, "name": "a/b"}, "name"),
    ({**MODEL, "name": ".."}, "name"),
    ({**MODEL, "name": "bad\nname"}, "name"),
    ({**MODEL, "name": "trailing\n"}, "name"),
    ({**MODEL, "name": "x y"}, "name"),
    ({**MODEL, "name": "a\\b"}, "name"),
    ({**MODEL, "tags": ["ok", "not ok"]}, "tags[1]"),
]


def test_bad_model_bodies_are_refused_and_change_nothing(client, admin, server):
    before = snapshot(server)
    for body, field in BAD_MODEL_BODIES:
        r = client.post(f"{V1}/models", json=body, headers=admin)
        problem = assert_problem(r, 422, field, case=body)
        assert problem["errors"][0]["field"] == field
    r = client.post(
        f"{V1}/models",
        content=b'{"name": "x",',
        headers={**admin, "content-type": "application/json"},
    )
    problem = assert_problem(r, 422, "body")
    assert "JSON" in problem["detail"] and "character 13" in problem["detail"]
    assert snapshot(server) == before
    assert client.get(f"{V1}/models", headers=admin).json()["items"] == []


def test_duplicate_model_name_is_a_conflict(client, admin, server, model):
    before = snapshot(server)
    body = {**MODEL, "name": model, "description": "a second one", "reason": "again"}
    assert_problem(client.post(f"{V1}/models", json=body, headers=admin), 409, "name")
    assert snapshot(server) == before
    assert client.get(f"{V1}/models/{model}", headers=admin).json()["description"] == ""


BAD_BODIES: list[tuple[str, dict[str, Any], str]] = [
    (f"{V1}/datasets", {"name": "a/b", "owner_team": "d", "reason": "r"}, "name"),
    (f"{V1}/datasets", {"name": "..", "owner_team": "d", "reason": "r"}, "name"),
    (f"{V1}/users", {"name": "bad\nname", "roles": [], "reason": "r"}, "name"),
    (f"{V1}/users", {"name": "x y", "roles": [], "reason": "r"}, "name"),
    (f"{V1}/users", {"name": "ok", "roles": ["viewer", "wizard"], "reason": "r"}, "roles[1]"),
    (f"{V1}/users", {"name": "ok", "roles": ["viewer"]}, "reason"),
    (f"{V1}/users", {"name": "ok", "roles": [], "reason": "r", "admin": True}, "admin"),
    (f"{V1}/users", {"name": "ok", "password": "short", "reason": "r"}, "password"),
    (f"{V1}/tokens", {"user": "admin", "name": "a/b", "reason": "r"}, "name"),
    (f"{V1}/tokens", {"user": "admin", "name": "t"}, "reason"),
    (
        f"{V1}/tokens",
        {"user": "admin", "name": "t", "reason": "r", "expires_at": "2999-01-01T00:00:00"},
        "expires_at",
    ),
    (
        f"{V1}/tokens",
        {"user": "admin", "name": "t", "reason": "r", "expires_at": "2000-01-01T00:00:00Z"},
        "expires_at",
    ),
    (
        f"{V1}/users",
        {
            "name": "ci-bot",
            "kind": "service_account",
            "roles": ["data_scientist"],
            "password": "a-long-enough-password",
            "reason": "service accounts use tokens",
        },
        "password",
    ),
]


def test_bad_identity_and_dataset_bodies(client, admin, server):
    before = snapshot(server)
    for url, body, field in BAD_BODIES:
        assert_problem(client.post(url, json=body, headers=admin), 422, field, case=(url, body))
    assert snapshot(server) == before
    assert [u["name"] for u in client.get(f"{V1}/users", headers=admin).json()] == ["admin"]
    assert client.get(f"{V1}/datasets", headers=admin).json()["items"] == []


def test_unknown_role_in_grant_and_revoke(client, admin, server, make_user):
    person = make_user("viewer")
    before = snapshot(server)
    r = client.post(
        f"{V1}/users/{person.name}/roles", json={"role": "wizard", "reason": "r"}, headers=admin
    )
    assert_problem(r, 422, "role")
    r = client.request(
        "DELETE", f"{V1}/users/{person.name}/roles/wizard", json={"reason": "r"}, headers=admin
    )
    assert_problem(r, 422, "path.role")
    assert snapshot(server) == before
    assert client.get(f"{V1}/users/{person.name}", headers=admin).json()["roles"] == ["viewer"]


def test_delete_without_a_reason(client, admin, server, make_user):
    person = make_user("viewer")
    token_id = client.get(f"{V1}/users/{person.name}/tokens", headers=admin).json()[0]["id"]
    before = snapshot(server)
    assert_problem(client.delete(f"{V1}/tokens/{token_id}", headers=admin), 422, "body")
    r = client.request("DELETE", f"{V1}/tokens/{token_id}", json={}, headers=admin)
    assert_problem(r, 422, "reason")
    r = client.request("DELETE", f"{V1}/tokens/{token_id}", json={"reason": " "}, headers=admin)
    assert_problem(r, 422, "reason")
    assert snapshot(server) == before
    assert client.get(f"{V1}/me", headers=person.headers).status_code == 200


def test_patch_model_without_reason_or_changes(client, admin, server, model):
    before = snapshot(server)
    url = f"{V1}/models/{model}"
    assert_problem(client.patch(url, json={"description": "x"}, headers=admin), 422, "reason")
    assert_problem(client.patch(url, json={"reason": "nothing"}, headers=admin), 422, "body")
    r = client.patch(url, json={"owner": "me", "reason": "r"}, headers=admin)
    assert_problem(r, 422, "owner")
    assert snapshot(server) == before


# -- names in paths -----------------------------------------------------------------------


BAD_PATH_NAMES = ["a%2Fb", "a%2fb", "%2E%2E", "bad%0Aname", "x%20y", "a%5Cb", "-lead"]


def test_bad_names_in_paths(client, admin, server, model):
    before = snapshot(server)
    for encoded in BAD_PATH_NAMES:
        requests = [
            ("GET", f"{V1}/models/{encoded}", {}),
            ("PATCH", f"{V1}/models/{encoded}", {"json": {"description": "d", "reason": "r"}}),
            ("POST", f"{V1}/models/{encoded}/versions", {"files": files()}),
            ("GET", f"{V1}/models/{encoded}/versions/1/artifact", {}),
            ("POST", f"{V1}/datasets/{encoded}/versions", {"json": {"reason": "r"}}),
            ("GET", f"{V1}/users/{encoded}", {}),
            ("POST", f"{V1}/users/{encoded}/roles", {"json": {"role": "viewer", "reason": "r"}}),
            ("GET", f"{V1}/users/{encoded}/tokens", {}),
        ]
        for method, url, kwargs in requests:
            r = client.request(method, url, headers=admin, **kwargs)
            assert_problem(r, 422, "path.name", case=encoded)
    r = client.get(f"{V1}/models/credit/versions/1%2F2", headers=admin)
    assert_problem(r, 422, "path.version")
    assert snapshot(server) == before


def test_encoded_slash_cannot_reach_another_route(client, admin, server, model):
    """``credit%2Fversions`` is a (bad) model name, not the versions of ``credit``."""
    before = snapshot(server)
    r = client.get(f"{V1}/models/{model}%2Fversions", headers=admin)
    assert_problem(r, 422, "path.name")
    r = client.post(f"{V1}/models/{model}%2Fversions", files=files(), headers=admin)
    assert_problem(r, 422, "path.name")
    assert snapshot(server) == before
    _no_versions(client, admin, model)


# -- queries ------------------------------------------------------------------------------


BAD_QUERIES = [
    (f"{V1}/audit/events?cursor=not-a-cursor", "query.cursor"),
    (f"{V1}/audit/events?cursor=%25%25%25", "query.cursor"),
    (f"{V1}/models?cursor=%25%25%25", "query.cursor"),
    (f"{V1}/models?cursor=%FF%FE", "query.cursor"),
    (f"{V1}/datasets?cursor=*", "query.cursor"),
    (f"{V1}/models/credit/versions?cursor=bm90LWEtbnVtYmVy", "query.cursor"),
    (f"{V1}/audit/events?since=2024-01-01T00:00:00", "query.since"),
    (f"{V1}/audit/events?until=2024-01-01T00:00:00", "query.until"),
    (f"{V1}/audit/events?since=yesterday", "query.since"),
    (f"{V1}/audit/events?action=model.explode", "query.action"),
    (f"{V1}/models?risk_tier=medium", "query.risk_tier"),
    (f"{V1}/models?stage=retired", "query.stage"),
    (f"{V1}/models?limit=0", "query.limit"),
    (f"{V1}/models/credit/versions/0", "path.version"),
]


def test_bad_query_parameters(client, admin, server, model):
    before = snapshot(server)
    for url, field in BAD_QUERIES:
        assert_problem(client.get(url, headers=admin), 422, field)
    assert snapshot(server) == before
    # an empty cursor is no cursor: the first page
    r = client.get(f"{V1}/models?cursor=", headers=admin)
    assert r.status_code == 200 and [m["name"] for m in r.json()["items"]] == [model]


# -- credentials and permissions ----------------------------------------------------------


def _set_expiry(server: Server, token_id: str, when: datetime) -> None:
    with server.services.db.write() as session:
        row = session.get(ApiToken, token_id)
        assert row is not None
        row.expires_at = when


def test_expired_revoked_and_unknown_tokens(client, admin, server, make_user):
    person = make_user("data_scientist")
    soon = datetime.now(UTC) + timedelta(hours=1)
    ctx = system_context("test")
    expiring = server.services.identity.issue_token(
        ctx, user_name=person.name, name="expiring", reason="test", expires_at=soon
    )
    revoked = server.services.identity.issue_token(
        ctx, user_name=person.name, name="revoked", reason="test"
    )
    r = client.request(
        "DELETE", f"{V1}/tokens/{revoked.token.id}", json={"reason": "leaked"}, headers=admin
    )
    assert r.status_code == 200, r.text
    # Simulate the passage of time: the token's expiry moves into the past.
    _set_expiry(server, expiring.token.id, datetime.now(UTC) - timedelta(seconds=1))
    before = snapshot(server)
    for secret, words in [
        (expiring.secret, "expired"),
        (revoked.secret, "revoked"),
        ("mlgov_unknown", "unknown"),
    ]:
        r = client.post(f"{V1}/models", json=MODEL, headers={"Authorization": f"Bearer {secret}"})
        problem = assert_problem(r, 401, None)
        assert words in problem["detail"]
        assert r.headers["www-authenticate"] == "Bearer"
    assert snapshot(server) == before
    assert client.get(f"{V1}/models/fraud", headers=admin).status_code == 404
    # the person's own fixture token still works
    assert client.post(f"{V1}/models", json=MODEL, headers=person.headers).status_code == 201


def test_role_without_the_permission_is_forbidden(client, admin, server, make_user):
    engineer = make_user("data_engineer")
    before = snapshot(server)
    r = client.post(f"{V1}/models", json=MODEL, headers=engineer.headers)
    problem = assert_problem(r, 403, None)
    assert "model:create" in problem["detail"]
    assert snapshot(server) == before
    assert client.get(f"{V1}/models/fraud", headers=admin).status_code == 404


# -- body limits ---------------------------------------------------------------------------


def test_bodies_over_the_request_limit(client, admin, server):
    payload = json.dumps({**MODEL, "description": "x" * BODY_LIMIT}).encode()
    json_type = {**admin, "content-type": "application/json"}

    def chunks(data: bytes):
        for start in range(0, len(data), 16 * 1024):
            yield data[start : start + 16 * 1024]

    before = snapshot(server)
    r = client.post(f"{V1}/models", content=payload, headers=json_type)
    assert int(r.request.headers["content-length"]) > BODY_LIMIT
    assert_problem(r, 413, "body")
    # without a Content-Length, the bytes received are counted
    r = client.post(f"{V1}/models", content=chunks(payload), headers=json_type)
    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in r.request.headers
    assert_problem(r, 413, "body")
    assert snapshot(server) == before
    assert client.get(f"{V1}/models/fraud", headers=admin).status_code == 404
    # a chunked body under the limit is fine
    r = client.post(f"{V1}/models", content=chunks(json.dumps(MODEL).encode()), headers=json_type)
    assert r.status_code == 201, r.text


# -- version uploads -----------------------------------------------------------------------


def test_artifact_over_the_limit(client, admin, server, model):
    before = snapshot(server)
    r = client.post(
        f"{V1}/models/{model}/versions", files=files(b"\x01" * (LIMIT + 1)), headers=admin
    )
    assert_problem(r, 413, "artifact")
    after = snapshot(server)
    assert after == before
    assert after["blobs"] == [] and after["staged"] == []
    _no_versions(client, admin, model)
    # exactly at the limit is fine
    r = client.post(f"{V1}/models/{model}/versions", files=files(b"\x01" * LIMIT), headers=admin)
    assert r.status_code == 201, r.text


def test_chunked_upload_over_the_upload_limit(client, admin, server, model):
    boundary = "b0undary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="artifact"; filename="m"\r\n\r\n'
    ).encode()

    def chunks():
        yield head
        for _ in range(200):  # 2 MB: past the artifact limit plus the multipart allowance
            yield b"\x02" * 10_000

    before = snapshot(server)
    r = client.post(
        f"{V1}/models/{model}/versions",
        content=chunks(),
        headers={**admin, "content-type": f"multipart/form-data; boundary={boundary}"},
    )
    # Which limit trips first (the artifact's, or the body's counted by the middleware)
    # depends on how the bytes arrive; either way it is a 413 and nothing is kept.
    field = "body" if "request body" in r.json().get("detail", "") else "artifact"
    assert_problem(r, 413, field)
    after = snapshot(server)
    assert after == before and after["staged"] == []
    _no_versions(client, admin, model)


META_NO_REASON = {k: v for k, v in META.items() if k != "reason"}


BAD_UPLOADS: list[Any] = [
    pytest.param(files(meta="{not json"), "metadata", id="metadata-not-json"),
    pytest.param(files(meta="[1, 2]"), "metadata", id="metadata-not-an-object"),
    pytest.param(
        files(meta={**META, "signature": {"inputs": []}}),
        "metadata.signature.inputs",
        id="no-inputs",
    ),
    pytest.param(
        files(meta={**META, "signature": {"inputs": [{"name": "age", "type": "int128"}]}}),
        "metadata.signature.inputs[0].type",
        id="bad-feature-type",
    ),
    pytest.param(files(meta=META_NO_REASON), "metadata.reason", id="no-reason"),
    pytest.param(files(meta={**META, "reason": "  "}), "metadata.reason", id="blank-reason"),
    pytest.param(files(meta={**META, "colour": "red"}), "metadata.colour", id="unknown-field"),
    pytest.param(files(meta={**META, "format": "zip"}), "metadata.format", id="bad-format"),
    pytest.param(
        files(meta={**META, "datasets": [{"dataset": "nope", "version": 1}]}),
        "metadata.datasets[0]",
        id="unknown-dataset",
    ),
    pytest.param({"metadata": (None, json.dumps(META))}, "artifact", id="missing-artifact-part"),
    pytest.param({"artifact": ("m", b"x")}, "metadata", id="missing-metadata-part"),
    pytest.param(
        [
            ("artifact", ("a", b"first")),
            ("artifact", ("b", b"second")),
            ("metadata", (None, json.dumps(META))),
        ],
        "artifact",
        id="duplicate-artifact-part",
    ),
    pytest.param(
        [
            ("metadata", (None, json.dumps(META))),
            ("artifact", ("a", b"first")),
            ("metadata", (None, json.dumps(META))),
        ],
        "metadata",
        id="duplicate-metadata-part",
    ),
    pytest.param({**files(), "comment": (None, "hi")}, "comment", id="unexpected-part"),
]


def test_bad_version_uploads(client, admin, server, model):
    before = snapshot(server)
    for case in BAD_UPLOADS:
        upload, field = case.values
        r = client.post(f"{V1}/models/{model}/versions", files=upload, headers=admin)
        assert_problem(r, 422, field, case=case.id)
        after = snapshot(server)
        assert after == before, case.id
        assert after["blobs"] == [] and after["staged"] == [], case.id
    _no_versions(client, admin, model)


MALFORMED_UPLOADS: list[Any] = [
    pytest.param("application/json", json.dumps(META).encode(), id="json-body"),
    pytest.param("application/octet-stream", b"\x00\x01", id="raw-body"),
    pytest.param("multipart/form-data", b"--x\r\n", id="no-boundary"),
    pytest.param("multipart/form-data; boundary=xyz", b"garbage", id="garbage"),
    pytest.param(
        "multipart/form-data; boundary=xyz",
        b'--xyz\r\nContent-Disposition: form-data; name="artifact"\r\n\r\nabc',
        id="unterminated",
    ),
    pytest.param(
        "multipart/form-data; boundary=xyz",
        b"--xyz\r\nContent-Type: text/plain\r\n\r\nabc\r\n--xyz--\r\n",
        id="no-disposition",
    ),
]


def test_non_multipart_or_malformed_uploads(client, admin, server, model):
    before = snapshot(server)
    for case in MALFORMED_UPLOADS:
        content_type, content = case.values
        r = client.post(
            f"{V1}/models/{model}/versions",
            content=content,
            headers={**admin, "content-type": content_type},
        )
        assert_problem(r, 422, "body", case=case.id)
        after = snapshot(server)
        assert after == before and after["staged"] == [], case.id
    _no_versions(client, admin, model)


# -- versions are immutable ----------------------------------------------------------------


def test_versions_cannot_be_modified(client, admin, server, model):
    r = client.post(f"{V1}/models/{model}/versions", files=files(b"v1 bytes"), headers=admin)
    assert r.status_code == 201
    original = client.get(f"{V1}/models/{model}/versions/1", headers=admin).json()
    before = snapshot(server)
    url = f"{V1}/models/{model}/versions/1"
    attempts = [
        client.put(url, json={**META, "algorithm": "changed"}, headers=admin),
        client.patch(url, json={"algorithm": "changed", "reason": "r"}, headers=admin),
        client.request("DELETE", url, json={"reason": "r"}, headers=admin),
        client.post(f"{url}/artifact", files={"artifact": ("m", b"new bytes")}, headers=admin),
        client.put(f"{url}/artifact", content=b"new bytes", headers=admin),
        client.request("DELETE", f"{url}/artifact", json={"reason": "r"}, headers=admin),
    ]
    for r in attempts:
        problem = assert_problem(r, 405, None)
        assert r.request.method in problem["detail"]
    assert snapshot(server) == before
    assert client.get(url, headers=admin).json() == original
    assert client.get(f"{url}/artifact", headers=admin).content == b"v1 bytes"

"""First end-to-end checks of the API over both databases."""

from __future__ import annotations

import json


def test_register_model_and_version(client, admin):
    r = client.post(
        "/api/v1/models",
        json={"name": "credit", "owner_team": "risk", "risk_tier": "high", "reason": "new model"},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    meta = {
        "format": "other",
        "signature": {"inputs": [{"name": "age", "type": "integer"}]},
        "reason": "first version",
    }
    r = client.post(
        "/api/v1/models/credit/versions",
        headers=admin,
        files={"artifact": ("m.skops", b"abc"), "metadata": (None, json.dumps(meta))},
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["version"] == 1 and body["stage"] == "development"
    assert (
        body["artifact_sha256"]
        == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    events = client.get("/api/v1/audit/events", headers=admin).json()["items"]
    assert [e["action"] for e in events][-2:] == ["model.create", "model_version.create"]


def test_openapi_and_offline_docs(client):
    spec = client.get("/openapi.json").json()
    op = spec["paths"]["/api/v1/models"]["post"]
    assert "model:create" in op["description"] and "`data_scientist`" in op["description"]
    upload = spec["paths"]["/api/v1/models/{name}/versions"]["post"]["requestBody"]
    form = upload["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["artifact", "metadata"]
    meta = form["properties"]["metadata"]["$ref"].rsplit("/", 1)[-1]
    assert "reason" in spec["components"]["schemas"][meta]["required"]
    assert "Signature" in spec["components"]["schemas"]
    page = client.get("/docs")
    assert page.status_code == 200
    assert "cdn" not in page.text.lower()
    assert "/static/swagger-ui/swagger-ui-bundle.js" in page.text
    js = client.get("/static/swagger-ui/swagger-ui-bundle.js")
    assert js.status_code == 200 and len(js.content) > 100_000

"""The registry through the API: catalog search, versions, lineage, artifacts, model updates."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import update

from mlgov.registry.models import Model, ModelVersion
from mlgov.server import Server

V1 = "/api/v1"
SIGNATURE = {"inputs": [{"name": "income", "type": "double", "min": 0}]}


def create_model(client: Any, headers: dict[str, str], name: str, **fields: Any) -> dict[str, Any]:
    body = {"name": name, "owner_team": "risk", "risk_tier": "limited", "reason": "r", **fields}
    r = client.post(f"{V1}/models", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def upload(
    client: Any, headers: dict[str, str], model: str, data: bytes, **meta: Any
) -> dict[str, Any]:
    metadata = {"format": "other", "signature": SIGNATURE, "reason": "new version", **meta}
    files = {"artifact": ("model.onnx", data), "metadata": (None, json.dumps(metadata))}
    r = client.post(f"{V1}/models/{model}/versions", files=files, headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def names(client: Any, headers: dict[str, str], **params: Any) -> list[str]:
    r = client.get(f"{V1}/models", params={"limit": 200, **params}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["next_cursor"] is None
    return [m["name"] for m in r.json()["items"]]


def events(client: Any, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    r = client.get(f"{V1}/audit/events", params={"limit": 1000, **params}, headers=headers)
    assert r.status_code == 200
    return list(r.json()["items"])


# -- catalog search -----------------------------------------------------------------------


def test_catalog_search_text_and_filters(client, admin, server: Server):
    create_model(
        client,
        admin,
        "credit-scoring",
        description="Scores retail LOAN applications",
        owner_team="risk",
        risk_tier="high",
        domain="Annex III 5(b): creditworthiness",
        tags=["retail", "gbm"],
    )
    create_model(
        client,
        admin,
        "fraud-detector",
        description="Flags card transactions",
        owner_team="payments",
        risk_tier="limited",
        intended_use="Route suspicious payments to manual review",
        tags=["cards"],
    )
    create_model(
        client,
        admin,
        "churn",
        description="Predicts churn within 100% of accounts",
        owner_team="risk",
        risk_tier="minimal",
        domain="marketing",
        tags=["retail"],
    )
    create_model(client, admin, "triage_v2", owner_team="health", risk_tier="high")
    upload(client, admin, "credit-scoring", b"credit v1")
    upload(client, admin, "fraud-detector", b"fraud v1")
    # No transition API exists yet: put one version in staging directly in the database.
    with server.services.db.write() as session:
        fraud = session.query(Model).filter_by(name="fraud-detector").one()
        session.execute(
            update(ModelVersion).where(ModelVersion.model_id == fraud.id).values(stage="staging")
        )

    everything = ["churn", "credit-scoring", "fraud-detector", "triage_v2"]
    assert names(client, admin) == everything
    # free text: name, description, domain, intended use, tags; case-insensitive
    assert names(client, admin, q="FRAUD") == ["fraud-detector"]  # name
    assert names(client, admin, q="loan") == ["credit-scoring"]  # description
    assert names(client, admin, q="creditworth") == ["credit-scoring"]  # domain
    assert names(client, admin, q="manual review") == ["fraud-detector"]  # intended use
    assert names(client, admin, q="cards") == ["fraud-detector"]  # tag
    assert names(client, admin, q="retail") == ["churn", "credit-scoring"]  # tag + description
    assert names(client, admin, q="nothing like it") == []
    # LIKE wildcards in the text are literal characters
    assert names(client, admin, q="100%") == ["churn"]
    assert names(client, admin, q="%") == ["churn"]
    assert names(client, admin, q="e_v") == ["triage_v2"]
    assert names(client, admin, q="_") == ["triage_v2"]
    # filters
    assert names(client, admin, owner_team="risk") == ["churn", "credit-scoring"]
    assert names(client, admin, risk_tier="high") == ["credit-scoring", "triage_v2"]
    assert names(client, admin, stage="development") == ["credit-scoring"]
    assert names(client, admin, stage="staging") == ["fraud-detector"]
    assert names(client, admin, stage="production") == []
    assert names(client, admin, tag="retail") == ["churn", "credit-scoring"]
    assert names(client, admin, tag="ret") == []  # a tag filter is exact
    # combined filters
    assert names(client, admin, owner_team="risk", risk_tier="high") == ["credit-scoring"]
    assert names(client, admin, owner_team="risk", tag="retail", risk_tier="minimal") == ["churn"]
    assert names(client, admin, q="retail", stage="development") == ["credit-scoring"]
    assert names(client, admin, owner_team="payments", risk_tier="high") == []
    # the catalog shows each model's latest version
    found = client.get(f"{V1}/models", params={"q": "credit"}, headers=admin).json()["items"]
    assert found[0]["latest_version"]["version"] == 1
    assert found[0]["latest_version"]["stage"] == "development"


def test_catalog_pagination_has_no_duplicates_or_omissions(client, admin):
    created = [f"model-{i:02d}" for i in range(11)]
    for i, name in enumerate(reversed(created)):  # insertion order differs from name order
        create_model(client, admin, name, owner_team="even" if i % 2 else "odd")

    def pages(**params: Any) -> list[list[str]]:
        out: list[list[str]] = []
        cursor = None
        while True:
            query = {**params, **({"cursor": cursor} if cursor else {})}
            page = client.get(f"{V1}/models", params=query, headers=admin).json()
            out.append([m["name"] for m in page["items"]])
            cursor = page["next_cursor"]
            if cursor is None:
                return out

    got = pages(limit=4)
    assert [len(p) for p in got] == [4, 4, 3]
    assert [n for p in got for n in p] == created
    # with a filter, pages hold only matching models
    odd = pages(limit=2, owner_team="odd")
    expected = sorted(n for i, n in enumerate(reversed(created)) if not i % 2)
    assert [n for p in odd for n in p] == expected and len(odd) == 3
    # a page added to while paging neither repeats nor skips
    first = client.get(f"{V1}/models", params={"limit": 5}, headers=admin).json()
    create_model(client, admin, "model-99")  # sorts after the first page
    create_model(client, admin, "aaa")  # sorts before it
    rest = client.get(
        f"{V1}/models", params={"limit": 200, "cursor": first["next_cursor"]}, headers=admin
    ).json()
    seen = [m["name"] for m in first["items"] + rest["items"]]
    assert seen == [*created, "model-99"]


# -- versions -------------------------------------------------------------------------------


def test_versions_are_numbered_per_model(client, admin):
    create_model(client, admin, "alpha")
    create_model(client, admin, "beta")
    numbers = [
        (m, upload(client, admin, m, f"{m}-{i}".encode())["version"])
        for i, m in enumerate(["alpha", "beta", "alpha", "alpha", "beta"])
    ]
    assert numbers == [("alpha", 1), ("beta", 1), ("alpha", 2), ("alpha", 3), ("beta", 2)]
    r = client.get(f"{V1}/models/alpha/versions", headers=admin).json()
    assert [v["version"] for v in r["items"]] == [3, 2, 1] and r["next_cursor"] is None
    # paging through the versions
    page = client.get(f"{V1}/models/alpha/versions", params={"limit": 2}, headers=admin).json()
    assert [v["version"] for v in page["items"]] == [3, 2]
    rest = client.get(
        f"{V1}/models/alpha/versions",
        params={"limit": 2, "cursor": page["next_cursor"]},
        headers=admin,
    ).json()
    assert [v["version"] for v in rest["items"]] == [1] and rest["next_cursor"] is None
    v2 = client.get(f"{V1}/models/alpha/versions/2", headers=admin).json()
    assert v2["model"] == "alpha" and v2["version"] == 2 and v2["stage"] == "development"
    assert v2["artifact_sha256"] == hashlib.sha256(b"alpha-2").hexdigest()
    assert v2["created_by"] == "admin" and v2["format"] == "other"
    (feature,) = v2["signature"]["inputs"]
    assert (feature["name"], feature["type"], feature["min"]) == ("income", "double", 0)
    assert client.get(f"{V1}/models/alpha", headers=admin).json()["latest_version"]["version"] == 3
    assert client.get(f"{V1}/models/alpha/versions/4", headers=admin).status_code == 404
    assert client.get(f"{V1}/models/gamma/versions/1", headers=admin).status_code == 404


def test_lineage_is_shown_on_both_sides(client, admin):
    create_model(client, admin, "credit")
    r = client.post(
        f"{V1}/datasets", json={"name": "loans", "owner_team": "data", "reason": "r"}, headers=admin
    )
    assert r.status_code == 201
    for n in (1, 2):
        body = {
            "content_sha256": hashlib.sha256(f"loans {n}".encode()).hexdigest(),
            "uri": f"s3://data/loans-{n}.parquet",
            "schema": [{"name": "income", "type": "double"}],
            "row_count": 1000 * n,
            "datasheet": {"motivation": "credit decisions", "personal_data": {"present": False}},
            "reason": "monthly extract",
        }
        r = client.post(f"{V1}/datasets/loans/versions", json=body, headers=admin)
        assert r.status_code == 201 and r.json()["version"] == n
    version = upload(
        client,
        admin,
        "credit",
        b"weights",
        datasets=[
            {"dataset": "loans", "version": 1, "role": "training"},
            {"dataset": "loans", "version": 2, "role": "validation"},
        ],
    )
    lineage = [(link["dataset"], link["version"], link["role"]) for link in version["lineage"]]
    assert lineage == [("loans", 1, "training"), ("loans", 2, "validation")]
    assert version["lineage"][0]["content_sha256"] == hashlib.sha256(b"loans 1").hexdigest()
    shown = client.get(f"{V1}/models/credit/versions/1", headers=admin).json()
    assert shown["lineage"] == version["lineage"]
    dv1 = client.get(f"{V1}/datasets/loans/versions/1", headers=admin).json()
    assert dv1["used_by"] == [{"model": "credit", "version": 1, "role": "training"}]
    assert dv1["row_count"] == 1000 and dv1["datasheet"]["motivation"] == "credit decisions"
    dv2 = client.get(f"{V1}/datasets/loans/versions/2", headers=admin).json()
    assert dv2["used_by"] == [{"model": "credit", "version": 1, "role": "validation"}]
    listed = client.get(f"{V1}/datasets/loans/versions", headers=admin).json()
    assert [d["version"] for d in listed] == [1, 2]


def test_artifacts_download_identically_and_share_blobs(client, admin, server: Server):
    create_model(client, admin, "one")
    create_model(client, admin, "two")
    data = bytes(range(256)) * 200  # 51,200 bytes, every byte value
    digest = hashlib.sha256(data).hexdigest()
    first = upload(client, admin, "one", data)
    second = upload(client, admin, "two", data)
    assert first["artifact_sha256"] == second["artifact_sha256"] == digest
    assert first["artifact_size"] == len(data)
    for model in ("one", "two"):
        r = client.get(f"{V1}/models/{model}/versions/1/artifact", headers=admin)
        assert r.status_code == 200
        assert r.content == data
        assert r.headers["x-artifact-sha256"] == digest
        assert r.headers["content-length"] == str(len(data))
        assert r.headers["content-type"] == "application/octet-stream"
        assert 'filename="model.onnx"' in r.headers["content-disposition"]
    store = server.services.store
    blobs = sorted(p.name for p in store.objects_dir.glob("*/*"))  # type: ignore[attr-defined]
    assert blobs == [digest]
    assert (store.objects_dir / digest[:2] / digest).read_bytes() == data  # type: ignore[attr-defined]


# -- model updates --------------------------------------------------------------------------


def test_patch_model_records_old_and_new_values(client, admin):
    create_model(client, admin, "credit", description="v0", tags=["a", "b"], domain="credit")
    body = {
        "description": "Scores loan applications",
        "tags": ["b", "c", "c"],
        "domain": "credit",  # unchanged: not in the details
        "reason": "model card review",
    }
    r = client.patch(f"{V1}/models/credit", json=body, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["description"] == "Scores loan applications"
    assert r.json()["tags"] == ["b", "c"]
    shown = client.get(f"{V1}/models/credit", headers=admin).json()
    assert shown["tags"] == ["b", "c"] and shown["description"] == "Scores loan applications"
    assert shown["updated_at"] > shown["created_at"]
    (event,) = events(client, admin, action="model.update")
    assert event["target"] == "model/credit" and event["reason"] == "model card review"
    assert event["details"] == {
        "description": {"old": "v0", "new": "Scores loan applications"},
        "tags": {"old": ["a", "b"], "new": ["b", "c"]},
    }
    # no fields, or only the current values: 422 and nothing recorded
    for empty in (
        {"reason": "nothing"},
        {"description": "Scores loan applications", "reason": "r"},
    ):
        r = client.patch(f"{V1}/models/credit", json=empty, headers=admin)
        assert r.status_code == 422 and r.json()["field"] == "body"
    assert len(events(client, admin, action="model.update")) == 1
    assert (
        client.patch(
            f"{V1}/models/nope", json={"description": "x", "reason": "r"}, headers=admin
        ).status_code
        == 404
    )


def test_lowering_the_risk_tier_needs_an_admin(client, admin, make_user):
    scientist = make_user("data_scientist")
    manager = make_user("model_manager")
    create_model(client, scientist.headers, "credit", risk_tier="limited")

    def tier() -> str:
        return str(client.get(f"{V1}/models/credit", headers=admin).json()["risk_tier"])

    def patch(who: dict[str, str], risk_tier: str, **extra: Any) -> Any:
        body = {"risk_tier": risk_tier, "reason": f"to {risk_tier}", **extra}
        return client.patch(f"{V1}/models/credit", json=body, headers=who)

    r = patch(scientist.headers, "high")  # raising: allowed
    assert r.status_code == 200 and tier() == "high"
    for who in (scientist, manager):
        r = patch(who.headers, "minimal", description="lowered quietly")
        assert r.status_code == 403, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert "model:risk_tier_lower" in r.json()["detail"]
        assert tier() == "high"
        assert client.get(f"{V1}/models/credit", headers=admin).json()["description"] == ""
    r = patch(manager.headers, "unacceptable")
    assert r.status_code == 200 and tier() == "unacceptable"
    r = patch(admin, "minimal")  # an admin may lower it
    assert r.status_code == 200 and tier() == "minimal"
    updates = events(client, admin, action="model.update")
    assert [(e["actor"], e["details"]["risk_tier"]) for e in updates] == [
        (scientist.name, {"old": "limited", "new": "high"}),
        (manager.name, {"old": "high", "new": "unacceptable"}),
        ("admin", {"old": "unacceptable", "new": "minimal"}),
    ]

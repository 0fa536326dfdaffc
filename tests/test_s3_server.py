"""The server with its artifacts in S3 (a moto server on loopback standing in for AWS)."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from fastapi.testclient import TestClient
from moto.server import ThreadedMotoServer

from mlgov.config import Settings
from mlgov.server import Server, build_server

V1 = "/api/v1"
BUCKET = "mlgov-artifacts"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    try:
        host, port = moto.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        moto.stop()


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The environment the server's S3 client reads, and a client of our own to look inside."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLGOV_S3_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=BUCKET)
    return client


def _serve(settings: Settings, artifacts_url: str) -> Server:
    return build_server(dataclasses.replace(settings, artifacts_url=artifacts_url))


def test_versions_round_trip_through_s3(s3, settings, admin):
    prefix = f"team/{uuid.uuid4().hex}"  # the bucket outlives one test
    srv = _serve(settings, f"s3://{BUCKET}/{prefix}")
    try:
        with TestClient(srv.app) as client:
            assert client.get("/readyz").status_code == 200
            assert client.get("/readyz").json()["checks"] == {
                "database": "ok",
                "artifact_store": "ok",
            }
            body = {"name": "credit", "owner_team": "risk", "risk_tier": "high", "reason": "r"}
            assert client.post(f"{V1}/models", json=body, headers=admin).status_code == 201
            data = bytes(range(256)) * 100
            digest = hashlib.sha256(data).hexdigest()
            meta = {
                "format": "other",
                "signature": {"inputs": [{"name": "x", "type": "double"}]},
                "reason": "first version",
            }
            files = {"artifact": ("m.onnx", data), "metadata": (None, json.dumps(meta))}
            r = client.post(f"{V1}/models/credit/versions", files=files, headers=admin)
            assert r.status_code == 201, r.text
            assert r.json()["artifact_sha256"] == digest
            r = client.get(f"{V1}/models/credit/versions/1/artifact", headers=admin)
            assert r.status_code == 200 and r.content == data
            assert r.headers["x-artifact-sha256"] == digest
        listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/")
        keys = [o["Key"] for o in listed.get("Contents", [])]
        assert f"{prefix}/sha256/{digest}" in keys
        assert not [k for k in keys if k.startswith(f"{prefix}/tmp/")]
        stored = s3.get_object(Bucket=BUCKET, Key=f"{prefix}/sha256/{digest}")["Body"].read()
        assert stored == data
        # nothing was written to the local data directory's artifact store
        assert not (settings.data_dir / "artifacts" / "sha256").exists()
    finally:
        srv.services.db.dispose()


def test_readiness_fails_when_the_bucket_is_missing(s3, settings):
    srv = _serve(settings, "s3://no-such-bucket/prefix")
    try:
        with TestClient(srv.app) as client:
            r = client.get("/readyz")
            assert r.status_code == 503
            assert r.json()["status"] == "unavailable"
            assert r.json()["checks"]["database"] == "ok"
            assert r.json()["checks"]["artifact_store"].startswith("error")
            assert client.get("/healthz").status_code == 200  # alive, just not ready
    finally:
        srv.services.db.dispose()

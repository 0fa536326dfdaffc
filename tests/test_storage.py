"""Tests for the content-addressed artifact store (local directory and S3 via moto)."""

from __future__ import annotations

import hashlib
import random
import stat
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto.server import ThreadedMotoServer

from mlgov.storage import (
    S3_PART_SIZE,
    ArtifactMismatch,
    ArtifactNotFound,
    ArtifactStore,
    ArtifactTooLarge,
    ArtifactWriter,
    LocalArtifactStore,
    S3ArtifactStore,
    StoredArtifact,
    open_store,
)

BUCKET = "mlgov-test-artifacts"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNKNOWN_SHA256 = "ab" * 32
BIG = 9 * (1 << 20)  # > S3_PART_SIZE, so the S3 writer goes multipart


def _random_bytes(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def _chunks(data: bytes, size: int = 700_001) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _store_bytes(store: ArtifactStore, data: bytes, max_bytes: int | None = None) -> StoredArtifact:
    with store.writer(len(data) if max_bytes is None else max_bytes) as writer:
        for chunk in _chunks(data):
            writer.write(chunk)
        return writer.commit()


# ------------------------------------------------------------------------------ fixtures


@dataclass
class S3Env:
    endpoint_url: str
    client: Any
    calls: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def s3_env() -> Iterator[S3Env]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint_url = f"http://{host}:{port}"
        client = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )
        client.create_bucket(Bucket=BUCKET)
        env = S3Env(endpoint_url=endpoint_url, client=client)

        def record(event_name: str, **_: Any) -> None:
            env.calls.append(event_name.rsplit(".", 1)[-1])

        client.meta.events.register("before-call.s3", record)
        yield env
    finally:
        server.stop()


@dataclass
class Backend:
    name: str
    store: Any
    staging_leftovers: Callable[[], list[str]]
    object_names: Callable[[], list[str]]


def _local_backend(root: Path) -> Backend:
    store = LocalArtifactStore(root)

    def leftovers() -> list[str]:
        tmp = root / "tmp"
        return sorted(p.name for p in tmp.iterdir()) if tmp.exists() else []

    def objects() -> list[str]:
        base = root / "sha256"
        return sorted(p.name for p in base.glob("*/*")) if base.exists() else []

    return Backend("local", store, leftovers, objects)


def _s3_backend(env: S3Env, **kwargs: Any) -> Backend:
    prefix = f"test-{uuid.uuid4().hex}"
    store = S3ArtifactStore(BUCKET, prefix, client=env.client, **kwargs)
    client = env.client

    def keys(sub: str) -> list[str]:
        response = client.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/{sub}/")
        return sorted(o["Key"].rsplit("/", 1)[-1] for o in response.get("Contents", []))

    def leftovers() -> list[str]:
        uploads = client.list_multipart_uploads(Bucket=BUCKET, Prefix=f"{prefix}/")
        return keys("tmp") + [f"upload:{u['Key']}" for u in uploads.get("Uploads", [])]

    return Backend("s3", store, leftovers, lambda: keys("sha256"))


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "local":
        return _local_backend(tmp_path / "artifacts")
    env: S3Env = request.getfixturevalue("s3_env")
    env.calls.clear()
    return _s3_backend(env)


# ---------------------------------------------------------------------------- round trips


def test_round_trip_multi_chunk(backend: Backend, s3_env_calls: list[str]) -> None:
    data = _random_bytes(BIG)
    expected = hashlib.sha256(data).hexdigest()

    artifact = _store_bytes(backend.store, data)

    assert artifact == StoredArtifact(sha256=expected, size=len(data))
    assert backend.store.exists(expected)
    assert backend.store.size(expected) == len(data)
    chunks = list(backend.store.open(expected, chunk_size=1 << 20))
    assert all(len(c) <= 1 << 20 for c in chunks)
    assert len(chunks) >= BIG // (1 << 20)
    assert b"".join(chunks) == data
    assert backend.object_names() == [expected]
    assert backend.staging_leftovers() == []
    if backend.name == "s3":
        assert s3_env_calls.count("UploadPart") == 2
        assert "CreateMultipartUpload" in s3_env_calls
        assert "CompleteMultipartUpload" in s3_env_calls


@pytest.fixture
def s3_env_calls(backend: Backend, request: pytest.FixtureRequest) -> list[str]:
    """The S3 operations issued by the test (empty list for the local backend)."""
    if backend.name != "s3":
        return []
    env: S3Env = request.getfixturevalue("s3_env")
    return env.calls


def test_round_trip_empty(backend: Backend) -> None:
    with backend.store.writer(0) as writer:
        artifact = writer.commit()

    assert artifact == StoredArtifact(sha256=EMPTY_SHA256, size=0)
    assert backend.store.exists(EMPTY_SHA256)
    assert backend.store.size(EMPTY_SHA256) == 0
    assert b"".join(backend.store.open(EMPTY_SHA256)) == b""
    assert backend.object_names() == [EMPTY_SHA256]
    assert backend.staging_leftovers() == []


def test_small_artifact_single_request(backend: Backend, s3_env_calls: list[str]) -> None:
    data = b"model weights" * 1000
    artifact = _store_bytes(backend.store, data)

    assert artifact.sha256 == hashlib.sha256(data).hexdigest()
    assert b"".join(backend.store.open(artifact.sha256, chunk_size=4096)) == data
    assert backend.staging_leftovers() == []
    if backend.name == "s3":
        assert "CreateMultipartUpload" not in s3_env_calls
        assert "CopyObject" not in s3_env_calls
        assert s3_env_calls.count("PutObject") == 1


@pytest.mark.parametrize("size", [10_000, BIG], ids=["small", "multipart"])
def test_identical_content_is_stored_once(
    backend: Backend, size: int, s3_env_calls: list[str]
) -> None:
    data = _random_bytes(size, seed=1)

    first = _store_bytes(backend.store, data)
    calls_before = len(s3_env_calls)
    second = _store_bytes(backend.store, data)
    second_calls = s3_env_calls[calls_before:]

    assert first == second
    assert first.sha256 == hashlib.sha256(data).hexdigest()
    assert backend.object_names() == [first.sha256]
    assert backend.staging_leftovers() == []
    assert b"".join(backend.store.open(first.sha256)) == data
    # The second upload finds the object already in place and skips the put / copy.
    assert "PutObject" not in second_calls
    assert "CopyObject" not in second_calls
    assert "UploadPartCopy" not in second_calls


def test_content_addresses_differ(backend: Backend) -> None:
    a = _store_bytes(backend.store, b"a")
    b = _store_bytes(backend.store, b"b")
    assert a.sha256 != b.sha256
    assert backend.object_names() == sorted([a.sha256, b.sha256])


# ------------------------------------------------------------------------------ size limit


@pytest.mark.parametrize("limit", [1000, BIG], ids=["small", "multipart"])
def test_too_large_leaves_nothing_behind(
    backend: Backend, limit: int, s3_env_calls: list[str]
) -> None:
    data = _random_bytes(limit + 1, seed=2)
    writer = backend.store.writer(limit)

    with pytest.raises(ArtifactTooLarge) as excinfo:
        for chunk in _chunks(data):
            writer.write(chunk)

    assert excinfo.value.limit == limit
    assert str(limit) in str(excinfo.value)
    assert backend.object_names() == []
    assert backend.staging_leftovers() == []
    assert not backend.store.exists(hashlib.sha256(data).hexdigest())
    if backend.name == "s3" and limit == BIG:
        assert "UploadPart" in s3_env_calls  # a multipart upload was in progress ...
        assert "AbortMultipartUpload" in s3_env_calls  # ... and was aborted
    # The writer is closed; further use is an error, abort stays a no-op.
    with pytest.raises(RuntimeError):
        writer.write(b"x")
    with pytest.raises(RuntimeError):
        writer.commit()
    writer.abort()


def test_commit_expecting_another_hash_stores_nothing(backend: Backend) -> None:
    data = _random_bytes(5000, seed=7)
    expected = hashlib.sha256(b"what was registered").hexdigest()
    writer = backend.store.writer(BIG)
    for chunk in _chunks(data):
        writer.write(chunk)
    with pytest.raises(ArtifactMismatch) as excinfo:
        writer.commit(expected)
    assert excinfo.value.expected == expected
    assert excinfo.value.actual == hashlib.sha256(data).hexdigest()
    assert backend.object_names() == []
    assert backend.staging_leftovers() == []
    with pytest.raises(RuntimeError):
        writer.commit()
    # The right hash commits.
    with backend.store.writer(BIG) as writer:
        writer.write(data)
        stored = writer.commit(hashlib.sha256(data).hexdigest())
    assert backend.store.exists(stored.sha256)


def test_exactly_at_limit_is_accepted(backend: Backend) -> None:
    data = _random_bytes(1000, seed=3)
    artifact = _store_bytes(backend.store, data, max_bytes=len(data))
    assert artifact.size == len(data)


def test_negative_limit_rejected(backend: Backend) -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        backend.store.writer(-1)


# ------------------------------------------------------------------------ writer lifecycle


@pytest.mark.parametrize("size", [100, BIG], ids=["small", "multipart"])
def test_exception_in_context_aborts(backend: Backend, size: int) -> None:
    data = _random_bytes(size, seed=4)

    with pytest.raises(KeyError), backend.store.writer(size) as writer:
        for chunk in _chunks(data):
            writer.write(chunk)
        raise KeyError("client went away")

    assert backend.object_names() == []
    assert backend.staging_leftovers() == []


def test_exit_without_commit_discards(backend: Backend) -> None:
    with backend.store.writer(100) as writer:
        writer.write(b"abandoned")
    assert backend.object_names() == []
    assert backend.staging_leftovers() == []


def test_abort_is_idempotent_and_noop_after_commit(backend: Backend) -> None:
    writer: ArtifactWriter = backend.store.writer(100)
    writer.write(b"payload")
    writer.abort()
    writer.abort()
    with pytest.raises(RuntimeError):
        writer.commit()
    assert backend.staging_leftovers() == []

    writer = backend.store.writer(100)
    writer.write(b"payload")
    artifact = writer.commit()
    assert writer.commit() == artifact
    writer.abort()
    writer.abort()
    assert backend.store.exists(artifact.sha256)
    assert b"".join(backend.store.open(artifact.sha256)) == b"payload"


# --------------------------------------------------------------------- lookups / validation


def test_unknown_address(backend: Backend) -> None:
    assert not backend.store.exists(UNKNOWN_SHA256)
    with pytest.raises(ArtifactNotFound):
        backend.store.size(UNKNOWN_SHA256)
    with pytest.raises(ArtifactNotFound):
        backend.store.open(UNKNOWN_SHA256)  # raised eagerly, before iteration


BAD_SHAS = [
    "../../etc/passwd",
    "AB" * 32,
    "ab" * 31,
    "ab" * 33,
    "",
    "g" * 64,
    "ab" * 31 + "/x",
    "ab" * 32 + "\n",
]


@pytest.mark.parametrize("bad", BAD_SHAS)
@pytest.mark.parametrize("method", ["exists", "size", "open"])
def test_invalid_sha256_rejected(backend: Backend, method: str, bad: str) -> None:
    with pytest.raises(ValueError, match="sha256"):
        getattr(backend.store, method)(bad)


def test_open_rejects_bad_chunk_size(backend: Backend) -> None:
    artifact = _store_bytes(backend.store, b"x")
    with pytest.raises(ValueError, match="chunk_size"):
        backend.store.open(artifact.sha256, chunk_size=0)


def test_check_ok(backend: Backend) -> None:
    backend.store.check()
    assert backend.staging_leftovers() == []


# ------------------------------------------------------------------------- backend specifics


def test_local_layout_and_permissions(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = LocalArtifactStore(root)
    data = b"layout"
    artifact = _store_bytes(store, data)

    path = root / "sha256" / artifact.sha256[:2] / artifact.sha256
    assert path.read_bytes() == data
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert list((root / "tmp").iterdir()) == []
    assert store.url == root.resolve().as_uri()


def test_local_check_fails_when_not_writable(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("file in the way")
    store = LocalArtifactStore(blocker / "artifacts")
    with pytest.raises(OSError):
        store.check()


def test_s3_check_fails_for_missing_bucket(s3_env: S3Env) -> None:
    store = S3ArtifactStore("no-such-bucket-mlgov", client=s3_env.client)
    with pytest.raises(ClientError):
        store.check()


def test_s3_multipart_server_side_copy(s3_env: S3Env) -> None:
    backend = _s3_backend(s3_env, multipart_copy_threshold=5 * (1 << 20))
    s3_env.calls.clear()
    data = _random_bytes(BIG, seed=5)

    artifact = _store_bytes(backend.store, data)

    assert "UploadPartCopy" in s3_env.calls
    assert b"".join(backend.store.open(artifact.sha256)) == data
    assert backend.staging_leftovers() == []
    assert backend.object_names() == [artifact.sha256]


def test_s3_part_size_covers_large_limits(s3_env: S3Env) -> None:
    store = S3ArtifactStore(BUCKET, client=s3_env.client)
    writer = store.writer(200 * (1 << 30))
    try:
        part_size: int = writer._part_size  # type: ignore[attr-defined]
        assert part_size >= S3_PART_SIZE
        assert part_size * 10_000 >= 200 * (1 << 30)
        assert part_size % (1 << 20) == 0
    finally:
        writer.abort()


# ------------------------------------------------------------------------------ open_store


def test_open_store_default_is_local(tmp_path: Path) -> None:
    for url in (None, ""):
        store = open_store(url, tmp_path)
        assert isinstance(store, LocalArtifactStore)
        assert store.root == (tmp_path / "artifacts").resolve()
        assert store.url == (tmp_path / "artifacts").resolve().as_uri()


def test_open_store_file_url(tmp_path: Path) -> None:
    root = tmp_path / "elsewhere with space"
    store = open_store(root.as_uri(), tmp_path / "data")
    assert isinstance(store, LocalArtifactStore)
    assert store.root == root.resolve()
    artifact = _store_bytes(store, b"via file url")
    assert (root / "sha256" / artifact.sha256[:2] / artifact.sha256).is_file()

    assert isinstance(open_store(f"file://localhost{root}", tmp_path), LocalArtifactStore)


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("ftp://host/path", "'ftp'"),
        ("gs://bucket/prefix", "'gs'"),
        ("/plain/path", r"scheme \(none\)"),
        ("file://relative/path", "file:///"),
        ("s3://", "bucket"),
        ("s3:///prefix-only", "bucket"),
        ("s3://key:secret@bucket/x", "credentials"),
        ("s3://bucket/x?versioning=1", "query"),
    ],
)
def test_open_store_rejects_bad_urls(tmp_path: Path, url: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        open_store(url, tmp_path)


def _set_s3_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, endpoint_url: str) -> None:
    monkeypatch.setenv("MLGOV_S3_ENDPOINT_URL", endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)


def test_open_store_s3_url(s3_env: S3Env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _set_s3_env(monkeypatch, tmp_path, s3_env.endpoint_url)

    store = open_store(f"s3://{BUCKET}/models/prod/", tmp_path)
    assert isinstance(store, S3ArtifactStore)
    assert (store.bucket, store.prefix) == (BUCKET, "models/prod")
    assert store.url == f"s3://{BUCKET}/models/prod"
    assert store.client.meta.region_name == "eu-west-1"
    store.check()

    artifact = _store_bytes(store, b"through open_store")
    key = f"models/prod/sha256/{artifact.sha256}"
    assert s3_env.client.head_object(Bucket=BUCKET, Key=key)["ContentLength"] == artifact.size

    bare = open_store(f"s3://{BUCKET}", tmp_path)
    assert isinstance(bare, S3ArtifactStore)
    assert (bare.prefix, bare.url) == ("", f"s3://{BUCKET}")

    missing = open_store("s3://no-such-bucket-mlgov/x", tmp_path)
    with pytest.raises(ClientError):
        missing.check()


def test_stores_satisfy_protocol(tmp_path: Path, s3_env: S3Env) -> None:
    local = LocalArtifactStore(tmp_path)
    s3 = S3ArtifactStore(BUCKET, client=s3_env.client)
    assert isinstance(local, ArtifactStore)
    assert isinstance(s3, ArtifactStore)
    for store in (local, s3):
        writer = store.writer(1)
        try:
            assert isinstance(writer, ArtifactWriter)
        finally:
            writer.abort()

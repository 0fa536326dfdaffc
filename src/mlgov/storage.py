"""Content-addressed storage for model artifacts.

Every artifact mlgov manages (serialised models, evaluation reports, ...) is stored as an
immutable blob addressed by the lowercase hex SHA-256 of its bytes. Two backends implement
the :class:`ArtifactStore` protocol:

* :class:`LocalArtifactStore` keeps objects in a directory (by default ``<data_dir>/artifacts``)
  at ``<root>/sha256/<first two hex chars>/<hex>``. Uploads are staged in ``<root>/tmp/`` and
  moved into place atomically, so a reader never sees a partial object.
* :class:`S3ArtifactStore` keeps objects in an S3-compatible bucket at
  ``<prefix>/sha256/<hex>``. Large uploads are streamed to a staging key with a multipart
  upload and copied server-side to their final key once the hash is known.

Uploads go through an :class:`ArtifactWriter` obtained from :meth:`ArtifactStore.writer`,
which hashes incrementally, enforces a size limit and either commits or discards the staged
data::

    with store.writer(max_bytes=limit) as writer:
        for chunk in request_body:
            writer.write(chunk)
        artifact = writer.commit()

Use :func:`open_store` to build a store from a URL (``file:///abs/path`` or
``s3://bucket/prefix``). Stores may be shared between threads; a single writer may not.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Protocol, Self, runtime_checkable
from urllib.parse import unquote, urlsplit

import boto3  # type: ignore[import-untyped]
from boto3.s3.transfer import TransferConfig  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

__all__ = [
    "ArtifactNotFound",
    "ArtifactStore",
    "ArtifactTooLarge",
    "ArtifactWriter",
    "LocalArtifactStore",
    "S3ArtifactStore",
    "StoredArtifact",
    "open_store",
]

logger = logging.getLogger(__name__)

S3_ENDPOINT_ENV = "MLGOV_S3_ENDPOINT_URL"
DEFAULT_REGION = "us-east-1"

_MiB = 1 << 20
_GiB = 1 << 30
# Multipart part size used by the S3 writer (grown for very large limits, see below).
S3_PART_SIZE = 8 * _MiB
# S3 limits: at most 10 000 parts per multipart upload, CopyObject handles up to 5 GiB.
_S3_MAX_PARTS = 10_000
_S3_MAX_SINGLE_COPY = 5 * _GiB
_S3_COPY_PART_SIZE = 256 * _MiB

_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


class ArtifactTooLarge(Exception):
    """Raised by :meth:`ArtifactWriter.write` when the artifact grows past ``max_bytes``."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"artifact exceeds the size limit of {limit} bytes")
        self.limit = limit


class ArtifactMismatch(Exception):
    """The bytes written do not hash to the sha256 they were expected to have."""

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"the bytes' sha256 is {actual}, not the expected {expected}")
        self.expected = expected
        self.actual = actual


class ArtifactNotFound(Exception):
    """Raised when no artifact is stored under the requested address."""

    def __init__(self, sha256: str) -> None:
        super().__init__(f"artifact sha256:{sha256} not found")
        self.sha256 = sha256


@dataclass(frozen=True)
class StoredArtifact:
    """Address and size of a committed artifact."""

    sha256: str  # lowercase hex
    size: int


@runtime_checkable
class ArtifactWriter(Protocol):
    """A single in-progress upload. Not thread-safe."""

    def write(self, chunk: bytes) -> None: ...

    def commit(self, expected_sha256: str | None = None) -> StoredArtifact: ...

    def abort(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


@runtime_checkable
class ArtifactStore(Protocol):
    """A content-addressed blob store."""

    url: str

    def writer(self, max_bytes: int) -> ArtifactWriter: ...

    def exists(self, sha256: str) -> bool: ...

    def size(self, sha256: str) -> int: ...

    def open(self, sha256: str, chunk_size: int = 1 << 20) -> Iterator[bytes]: ...

    def check(self) -> None: ...


def _validate_sha256(sha256: str) -> str:
    """Return ``sha256`` if it is 64 lowercase hex characters, else raise ``ValueError``."""
    if not isinstance(sha256, str) or _SHA256_RE.fullmatch(sha256) is None:
        raise ValueError(f"invalid sha256 {sha256!r}: expected 64 lowercase hex characters")
    return sha256


def _validate_chunk_size(chunk_size: int) -> None:
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")


class _BaseWriter:
    """State machine, hashing and size limit shared by the backend writers.

    Subclasses implement ``_stage`` (persist a chunk), ``_finish`` (make the staged data
    available under its address) and ``_discard`` (best-effort removal of staged data).
    """

    def __init__(self, max_bytes: int) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            raise ValueError(f"max_bytes must be a non-negative integer, got {max_bytes!r}")
        self._max_bytes = max_bytes
        self._hash = hashlib.sha256()
        self._size = 0
        self._result: StoredArtifact | None = None
        self._closed = False

    def write(self, chunk: bytes) -> None:
        self._ensure_open()
        if not chunk:
            return
        if self._size + len(chunk) > self._max_bytes:
            self.abort()
            raise ArtifactTooLarge(self._max_bytes)
        self._hash.update(chunk)
        self._size += len(chunk)
        try:
            self._stage(chunk)
        except BaseException:
            self.abort()
            raise

    def commit(self, expected_sha256: str | None = None) -> StoredArtifact:
        """Make the written bytes available under their sha256. With ``expected_sha256``,
        bytes that hash otherwise are discarded (:class:`ArtifactMismatch`), never stored."""
        if self._result is not None:
            return self._result
        self._ensure_open()
        artifact = StoredArtifact(sha256=self._hash.hexdigest(), size=self._size)
        if expected_sha256 is not None and artifact.sha256 != expected_sha256:
            self.abort()
            raise ArtifactMismatch(expected_sha256, artifact.sha256)
        try:
            self._finish(artifact)
        except BaseException:
            self.abort()
            raise
        self._closed = True
        self._result = artifact
        return artifact

    def abort(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._discard()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # No-op after commit(); otherwise (exception or forgotten commit) discard staged data.
        self.abort()

    def _ensure_open(self) -> None:
        if self._closed:
            raise RuntimeError("artifact writer is already committed or aborted")

    def _stage(self, chunk: bytes) -> None:
        raise NotImplementedError

    def _finish(self, artifact: StoredArtifact) -> None:
        raise NotImplementedError

    def _discard(self) -> None:
        raise NotImplementedError


# --------------------------------------------------------------------------- local backend


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _makedirs_durable(path: Path) -> None:
    """Create ``path`` (and parents) and fsync the parent of every directory created."""
    if path.is_dir():
        return
    _makedirs_durable(path.parent)
    try:
        path.mkdir()
    except FileExistsError:
        if not path.is_dir():
            raise
        return
    _fsync_dir(path.parent)


class _LocalWriter(_BaseWriter):
    def __init__(self, store: LocalArtifactStore, max_bytes: int) -> None:
        super().__init__(max_bytes)
        self._store = store
        _makedirs_durable(store.tmp_dir)
        fd, name = tempfile.mkstemp(prefix="upload-", suffix=".part", dir=store.tmp_dir)
        self._tmp_path = Path(name)
        self._file: BinaryIO | None = os.fdopen(fd, "wb")

    def _stage(self, chunk: bytes) -> None:
        assert self._file is not None
        self._file.write(chunk)

    def _finish(self, artifact: StoredArtifact) -> None:
        assert self._file is not None
        file, self._file = self._file, None
        with file:
            file.flush()
            os.fsync(file.fileno())
        final = self._store._object_path(artifact.sha256)
        if final.exists():
            # Same content is already stored: content addressing makes this a no-op.
            self._tmp_path.unlink(missing_ok=True)
            return
        _makedirs_durable(final.parent)
        os.chmod(self._tmp_path, 0o444)
        os.replace(self._tmp_path, final)
        _fsync_dir(final.parent)

    def _discard(self) -> None:
        try:
            if self._file is not None:
                file, self._file = self._file, None
                file.close()
            self._tmp_path.unlink(missing_ok=True)
        except OSError:
            logger.warning("could not remove staged artifact %s", self._tmp_path, exc_info=True)


class LocalArtifactStore:
    """Artifact store in a local directory (see the module docstring for the layout)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser().resolve()
        self.url = self.root.as_uri()
        self.objects_dir = self.root / "sha256"
        self.tmp_dir = self.root / "tmp"

    def __repr__(self) -> str:
        return f"LocalArtifactStore({str(self.root)!r})"

    def _object_path(self, sha256: str) -> Path:
        sha256 = _validate_sha256(sha256)
        return self.objects_dir / sha256[:2] / sha256

    def writer(self, max_bytes: int) -> ArtifactWriter:
        return _LocalWriter(self, max_bytes)

    def exists(self, sha256: str) -> bool:
        return self._object_path(sha256).is_file()

    def size(self, sha256: str) -> int:
        path = self._object_path(sha256)
        try:
            return path.stat().st_size
        except FileNotFoundError:
            raise ArtifactNotFound(sha256) from None

    def open(self, sha256: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        path = self._object_path(sha256)
        _validate_chunk_size(chunk_size)
        if not path.is_file():
            raise ArtifactNotFound(sha256)
        return self._iter_file(path, sha256, chunk_size)

    @staticmethod
    def _iter_file(path: Path, sha256: str, chunk_size: int) -> Iterator[bytes]:
        try:
            file = path.open("rb")
        except FileNotFoundError:
            raise ArtifactNotFound(sha256) from None
        with file:
            while chunk := file.read(chunk_size):
                yield chunk

    def check(self) -> None:
        """Raise ``OSError`` unless the store directory exists (or can be created) and is
        writable."""
        _makedirs_durable(self.objects_dir)
        _makedirs_durable(self.tmp_dir)
        fd, name = tempfile.mkstemp(prefix="check-", dir=self.tmp_dir)
        try:
            os.write(fd, b"ok")
        finally:
            os.close(fd)
            os.unlink(name)


# ------------------------------------------------------------------------------ S3 backend


def _is_not_found(error: ClientError) -> bool:
    code = str(error.response.get("Error", {}).get("Code", ""))
    return code in _NOT_FOUND_CODES


def _part_size_for(max_bytes: int) -> int:
    """8 MiB parts, grown (in whole MiB) so that ``max_bytes`` fits in 10 000 parts."""
    needed = math.ceil(max_bytes / _S3_MAX_PARTS)
    return max(S3_PART_SIZE, math.ceil(needed / _MiB) * _MiB)


class _S3Writer(_BaseWriter):
    def __init__(self, store: S3ArtifactStore, max_bytes: int) -> None:
        super().__init__(max_bytes)
        self._store = store
        self._client = store.client
        self._bucket = store.bucket
        self._staging_key = store._key("tmp", uuid.uuid4().hex)
        self._part_size = _part_size_for(max_bytes)
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._staged_complete = False

    def _stage(self, chunk: bytes) -> None:
        self._buffer += chunk
        while len(self._buffer) >= self._part_size:
            part = bytes(self._buffer[: self._part_size])
            del self._buffer[: self._part_size]
            self._upload_part(part)

    def _upload_part(self, data: bytes) -> None:
        if self._upload_id is None:
            response = self._client.create_multipart_upload(
                Bucket=self._bucket,
                Key=self._staging_key,
                ContentType="application/octet-stream",
            )
            self._upload_id = str(response["UploadId"])
        number = len(self._parts) + 1
        response = self._client.upload_part(
            Bucket=self._bucket,
            Key=self._staging_key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=data,
        )
        self._parts.append({"ETag": response["ETag"], "PartNumber": number})

    def _finish(self, artifact: StoredArtifact) -> None:
        final_key = self._store._key("sha256", artifact.sha256)
        if self._upload_id is None:
            # Small artifact: everything is in memory and the hash is known, so write the
            # final key directly (no staging object, no copy).
            data, self._buffer = bytes(self._buffer), bytearray()
            if not self._store._head_exists(final_key):
                self._client.put_object(
                    Bucket=self._bucket,
                    Key=final_key,
                    Body=data,
                    ContentType="application/octet-stream",
                )
            return
        if self._buffer:
            last, self._buffer = bytes(self._buffer), bytearray()
            self._upload_part(last)
        self._client.complete_multipart_upload(
            Bucket=self._bucket,
            Key=self._staging_key,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": self._parts},
        )
        self._upload_id = None
        self._staged_complete = True
        if not self._store._head_exists(final_key):
            # Managed copy: CopyObject below the threshold, UploadPartCopy (needed past
            # 5 GiB) above it.
            self._client.copy(
                CopySource={"Bucket": self._bucket, "Key": self._staging_key},
                Bucket=self._bucket,
                Key=final_key,
                Config=self._store.transfer_config,
            )
        # The artifact is stored; failing to remove the staging copy must not fail the commit.
        self._discard()

    def _discard(self) -> None:
        self._buffer = bytearray()
        try:
            if self._upload_id is not None:
                upload_id, self._upload_id = self._upload_id, None
                self._client.abort_multipart_upload(
                    Bucket=self._bucket, Key=self._staging_key, UploadId=upload_id
                )
            if self._staged_complete:
                self._staged_complete = False
                self._client.delete_object(Bucket=self._bucket, Key=self._staging_key)
        except (BotoCoreError, ClientError):
            logger.warning(
                "could not clean up staged artifact s3://%s/%s",
                self._bucket,
                self._staging_key,
                exc_info=True,
            )


class S3ArtifactStore:
    """Artifact store in an S3-compatible bucket (see the module docstring for the layout).

    ``client`` must be a boto3 S3 client (it needs boto3's managed ``copy``). Staged uploads
    left behind by a crashed process live under ``<prefix>/tmp/``; a bucket lifecycle rule
    expiring that prefix and aborting incomplete multipart uploads cleans them up.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: Any,
        multipart_copy_threshold: int = _S3_MAX_SINGLE_COPY,
    ) -> None:
        if not bucket:
            raise ValueError("S3 bucket name must not be empty")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.transfer_config = TransferConfig(
            multipart_threshold=multipart_copy_threshold,
            multipart_chunksize=min(_S3_COPY_PART_SIZE, max(multipart_copy_threshold, 5 * _MiB)),
        )

    def __repr__(self) -> str:
        return f"S3ArtifactStore({self.url!r})"

    def _key(self, kind: str, name: str) -> str:
        return f"{self.prefix}/{kind}/{name}" if self.prefix else f"{kind}/{name}"

    def _object_key(self, sha256: str) -> str:
        return self._key("sha256", _validate_sha256(sha256))

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            response: dict[str, Any] = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if _is_not_found(error):
                return None
            raise
        return response

    def _head_exists(self, key: str) -> bool:
        return self._head(key) is not None

    def writer(self, max_bytes: int) -> ArtifactWriter:
        return _S3Writer(self, max_bytes)

    def exists(self, sha256: str) -> bool:
        return self._head_exists(self._object_key(sha256))

    def size(self, sha256: str) -> int:
        head = self._head(self._object_key(sha256))
        if head is None:
            raise ArtifactNotFound(sha256)
        return int(head["ContentLength"])

    def open(self, sha256: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        key = self._object_key(sha256)
        _validate_chunk_size(chunk_size)
        if not self._head_exists(key):
            raise ArtifactNotFound(sha256)
        return self._iter_object(key, sha256, chunk_size)

    def _iter_object(self, key: str, sha256: str, chunk_size: int) -> Iterator[bytes]:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if _is_not_found(error):
                raise ArtifactNotFound(sha256) from None
            raise
        body = response["Body"]
        try:
            yield from body.iter_chunks(chunk_size)
        finally:
            body.close()

    def check(self) -> None:
        """Raise (``botocore`` ``ClientError``/``BotoCoreError``) unless the bucket is reachable."""
        self.client.head_bucket(Bucket=self.bucket)


# ---------------------------------------------------------------------------------- factory


def s3_client_from_env() -> Any:
    endpoint_url = os.environ.get(S3_ENDPOINT_ENV) or None
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
    config = Config(
        connect_timeout=5,
        read_timeout=60,
        retries={"max_attempts": 3, "mode": "standard"},
        # Custom endpoints (MinIO, Ceph, moto) generally need path-style addressing.
        s3={"addressing_style": "path"} if endpoint_url else None,
    )
    session = boto3.session.Session()
    return session.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)


def open_store(url: str | None, data_dir: Path) -> ArtifactStore:
    """Build the artifact store for ``url``.

    * ``None`` or ``""``: a local store in ``data_dir / "artifacts"``;
    * ``file:///abs/path``: a local store at that absolute path;
    * ``s3://bucket[/prefix]``: an S3 store. The endpoint comes from ``MLGOV_S3_ENDPOINT_URL``
      (optional, for MinIO/Ceph/...), the region from ``AWS_REGION``/``AWS_DEFAULT_REGION``
      (default ``us-east-1``), credentials from boto3's usual chain.

    Raises ``ValueError`` for any other URL.
    """
    if not url:
        return LocalArtifactStore(Path(data_dir) / "artifacts")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if parts.query or parts.fragment:
        raise ValueError(f"artifact store URL {url!r} must not have a query or fragment")
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError(
                f"artifact store URL {url!r} must be file:///absolute/path "
                f"(got host {parts.netloc!r})"
            )
        path = unquote(parts.path)
        if not path.startswith("/"):
            raise ValueError(f"artifact store URL {url!r} must name an absolute path")
        return LocalArtifactStore(Path(path))
    if scheme == "s3":
        if not parts.netloc:
            raise ValueError(f"artifact store URL {url!r} must name a bucket: s3://bucket/prefix")
        if "@" in parts.netloc or ":" in parts.netloc:
            raise ValueError(
                f"artifact store URL {url!r} must not contain credentials or a port; "
                f"use the AWS credential chain and {S3_ENDPOINT_ENV}"
            )
        return S3ArtifactStore(parts.netloc, unquote(parts.path), client=s3_client_from_env())
    shown = repr(parts.scheme) if parts.scheme else "(none)"
    raise ValueError(
        f"unsupported artifact store URL scheme {shown} in {url!r}: "
        "expected file:///absolute/path or s3://bucket/prefix"
    )

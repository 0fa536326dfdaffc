"""Streaming ``multipart/form-data`` for version uploads.

The ``artifact`` part is hashed and written to the artifact store's staging area as it arrives
(never held in memory); the ``metadata`` part (JSON) is bounded. The writer is returned
uncommitted so the caller validates the metadata and scans the artifact before the blob is
committed. The scan reads a local copy written beside the staging (the store may be S3): the
caller deletes it with :meth:`Upload.discard_scan_copy`.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from mlgov.errors import InvalidInput, PayloadTooLarge
from mlgov.storage import ArtifactStore, ArtifactWriter

FLUSH_BYTES = 1 << 20
MAX_METADATA_BYTES = 1 << 20
PARTS = ("artifact", "metadata")


@dataclass
class Upload:
    metadata: bytes
    writer: ArtifactWriter
    filename: str
    #: A local copy of the artifact for the scan (deleted by discard_scan_copy).
    scan_path: Path

    def discard_scan_copy(self) -> None:
        self.scan_path.unlink(missing_ok=True)


@dataclass
class _State:
    header_field: bytes = b""
    header_value: bytes = b""
    headers: dict[bytes, bytes] = field(default_factory=dict)
    current: str | None = None
    filename: str = ""
    seen: set[str] = field(default_factory=set)
    artifact_chunks: list[bytes] = field(default_factory=list)
    artifact_pending: int = 0
    metadata: bytearray = field(default_factory=bytearray)
    ended: bool = False
    error: InvalidInput | PayloadTooLarge | None = None


def _disposition(headers: dict[bytes, bytes]) -> tuple[str, str]:
    raw = headers.get(b"content-disposition")
    if raw is None:
        raise InvalidInput("a multipart part has no Content-Disposition header", field="body")
    kind, params = parse_options_header(raw)
    if kind != b"form-data" or b"name" not in params:
        raise InvalidInput("a multipart part is not a named form-data field", field="body")
    name = params[b"name"].decode("utf-8", "replace")
    filename = params.get(b"filename", b"").decode("utf-8", "replace")
    return name, filename.replace("\\", "/").rsplit("/", 1)[-1][:256]


async def read_version_upload(
    request: Request, store: ArtifactStore, max_bytes: int, scan_dir: Path
) -> Upload:
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise InvalidInput(
            "expected multipart/form-data with an 'artifact' file part and a 'metadata' JSON part",
            field="body",
        )
    state = _State()
    writer = store.writer(max_bytes)
    scan_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="scan-", suffix=".artifact", dir=scan_dir)
    scan_path = Path(name)
    scan_copy: BinaryIO = os.fdopen(fd, "wb")

    def stage(data: bytes) -> None:
        writer.write(data)  # enforces the size limit first
        scan_copy.write(data)

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state.header_field += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state.header_value += data[start:end]

    def on_header_end() -> None:
        state.headers[state.header_field.lower()] = state.header_value
        state.header_field = state.header_value = b""

    def on_headers_finished() -> None:
        name, filename = _disposition(state.headers)
        if name not in PARTS:
            raise InvalidInput(
                f"unexpected multipart field {name!r}; expected artifact and metadata", field=name
            )
        if name in state.seen:
            raise InvalidInput(f"multipart field {name!r} is given twice", field=name)
        state.seen.add(name)
        state.current = name
        if name == "artifact":
            state.filename = filename or "artifact"

    def on_part_data(data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if state.current == "artifact":
            state.artifact_chunks.append(chunk)
            state.artifact_pending += len(chunk)
        elif state.current == "metadata":
            state.metadata += chunk
            if len(state.metadata) > MAX_METADATA_BYTES:
                raise PayloadTooLarge(
                    f"metadata exceeds {MAX_METADATA_BYTES} bytes", field="metadata"
                )

    def on_part_begin() -> None:
        state.headers = {}
        state.current = None

    def on_end() -> None:
        state.ended = True

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_end": on_end,
        },
    )

    async def flush() -> None:
        if state.artifact_chunks:
            data = b"".join(state.artifact_chunks)
            state.artifact_chunks.clear()
            state.artifact_pending = 0
            await run_in_threadpool(stage, data)

    try:
        async for chunk in request.stream():
            try:
                parser.write(chunk)
            except MultipartParseError as exc:
                raise InvalidInput(f"malformed multipart body: {exc}", field="body") from None
            if state.artifact_pending >= FLUSH_BYTES:
                await flush()
        await flush()
        try:
            parser.finalize()
        except MultipartParseError as exc:
            raise InvalidInput(f"malformed multipart body: {exc}", field="body") from None
        if not state.ended:
            raise InvalidInput(
                "malformed multipart body: it ends before its closing boundary", field="body"
            )
        for part in PARTS:
            if part not in state.seen:
                raise InvalidInput(f"the multipart field {part!r} is missing", field=part)
        scan_copy.close()
    except BaseException:
        scan_copy.close()
        scan_path.unlink(missing_ok=True)
        await run_in_threadpool(writer.abort)
        raise
    return Upload(
        metadata=bytes(state.metadata),
        writer=writer,
        filename=state.filename,
        scan_path=scan_path,
    )

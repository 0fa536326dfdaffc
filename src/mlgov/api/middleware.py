"""ASGI middleware: a request id on every request and response, bounded request bodies, no
encoded ``/`` inside a path segment and no NUL in the query.

The body limit is enforced twice: a declared ``Content-Length`` over the limit is refused before
anything is read, and the received bytes are counted so a chunked or lying body is cut off too.

Routing matches the *decoded* path, so ``/models/a%2Fb`` would be routed as ``/models/a/b`` (a
404, or another route altogether); no name may contain ``/``, so such a request is refused as
invalid input naming the path parameter that holds it.

No text the API takes may contain a NUL character (PostgreSQL cannot store or compare one): one
in a query parameter is refused here, as invalid input naming the parameter.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl, unquote

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        limit_for: Callable[[str, str], int],
        path_templates: Sequence[str] = (),
    ) -> None:
        self.app = app
        self.limit_for = limit_for
        self.path_templates = [t.split("/") for t in path_templates]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        incoming = headers.get("x-request-id", "")
        request_id = incoming if _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        raw_path = scope.get("raw_path") or b""
        if b"%2f" in raw_path.lower():
            field = self._field_with_slash(raw_path.decode("latin-1"))
            detail = f"{field}: a name cannot contain '/'"
            await _problem(scope, send_with_id, request_id, 422, "Invalid input", detail, field)
            return

        query = scope.get("query_string") or b""
        if b"%00" in query:
            field = _query_field_with_nul(query.decode("latin-1"))
            detail = f"{field}: a NUL character is not allowed"
            await _problem(scope, send_with_id, request_id, 422, "Invalid input", detail, field)
            return

        limit = self.limit_for(scope["method"], scope["path"])
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            detail = f"request body exceeds the limit of {limit} bytes"
            await _problem(
                scope, send_with_id, request_id, 413, "Payload too large", detail, "body"
            )
            return

        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, f"request body exceeds the limit of {limit} bytes")
            return message

        await self.app(scope, counting_receive, send_with_id)

    def _field_with_slash(self, raw_path: str) -> str:
        """``path.<parameter>`` of the first segment holding an encoded ``/``."""
        segments = [unquote(s) for s in raw_path.split("/")]
        for parts in self.path_templates:
            if len(parts) != len(segments):
                continue
            params: dict[str, str] = {}
            for part, segment in zip(parts, segments, strict=True):
                if part.startswith("{") and part.endswith("}"):
                    params[part[1:-1]] = segment
                elif part != segment:
                    break
            else:
                for name, value in params.items():
                    if "/" in value:
                        return f"path.{name}"
        return "path"


def _query_field_with_nul(query: str) -> str:
    """``query.<parameter>`` of the first parameter holding a NUL."""
    for name, value in parse_qsl(query, keep_blank_values=True):
        if "\x00" in value and "\x00" not in name:
            return f"query.{name}"
    return "query"


async def _problem(
    scope: Scope, send: Send, request_id: str, status: int, title: str, detail: str, field: str
) -> None:
    body: dict[str, Any] = {
        "type": "https://mlgov.dev/problems/" + title.lower().replace(" ", "-"),
        "title": title,
        "status": status,
        "detail": detail,
        "instance": scope["path"],
        "request_id": request_id,
        "field": field,
        "errors": [{"field": field, "message": detail}],
    }
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})

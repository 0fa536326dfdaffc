"""RFC 9457 problem details for every error the API returns.

Each problem carries ``type``, ``title``, ``status``, ``detail``, ``instance`` and, where an
input is at fault, ``field`` (the first offending field, dotted: ``body.metadata.reason``) and
``errors`` (every offending field with its message).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mlgov.errors import MlgovError, field_path
from mlgov.storage import ArtifactNotFound, ArtifactTooLarge

log = logging.getLogger("mlgov.api")

PROBLEM_JSON = "application/problem+json"
_TYPE_BASE = "https://mlgov.dev/problems/"

#: JSON Schema of the documents :func:`problem` (and the middleware) build, for the OpenAPI
#: document: every error response of every operation is one of these.
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "An RFC 9457 problem details document.",
    "type": "object",
    "required": ["type", "title", "status", "detail", "instance"],
    "properties": {
        "type": {"type": "string", "description": "A URI naming the kind of problem."},
        "title": {"type": "string", "description": "A short summary of the kind of problem."},
        "status": {"type": "integer", "description": "The HTTP status code."},
        "detail": {"type": "string", "description": "What went wrong with this request."},
        "instance": {"type": "string", "description": "The request's path."},
        "request_id": {"type": "string", "description": "The request's X-Request-ID."},
        "field": {
            "type": "string",
            "description": "The first offending input, dotted: `metadata.reason`, `query.limit`.",
        },
        "errors": {
            "type": "array",
            "description": "Every offending input with its message.",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}


def problem(
    request: Request,
    status: int,
    title: str,
    detail: str,
    *,
    field: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": _TYPE_BASE + title.lower().replace(" ", "-"),
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
    }
    request_id = getattr(request.state, "request_id", None)
    if request_id:
        body["request_id"] = request_id
    if field is not None:
        body["field"] = field
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _loc(loc: tuple[Any, ...] | list[Any]) -> str:
    """``("body", "signature", "inputs", 0)`` -> ``signature.inputs[0]``: body fields are named
    as the client wrote them; path and query parameters keep their ``path.``/``query.`` prefix."""
    if len(loc) > 1 and loc[0] == "body":
        loc = tuple(loc[1:])
    return field_path(loc)


def _error(e: dict[str, Any], prefix: tuple[str, ...]) -> dict[str, Any]:
    loc = tuple(e.get("loc", ()))
    message = e.get("msg", "invalid")
    if e.get("type") == "json_invalid" and len(loc) == 2 and isinstance(loc[1], int):
        # FastAPI puts the character offset where a list index would go ("body[13]").
        reason = (e.get("ctx") or {}).get("error", "")
        message = f"{message}: {reason} at character {loc[1]}".replace(":  at", " at")
        loc = loc[:1]
    return {"field": _loc((*prefix, *loc)), "message": message}


def validation_errors(
    raw: list[dict[str, Any]], prefix: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    return [_error(e, prefix) for e in raw]


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = validation_errors(list(exc.errors()))
        first = errors[0] if errors else {"field": None, "message": "invalid request"}
        return problem(
            request,
            422,
            "Invalid input",
            f"{first['field']}: {first['message']}",
            field=first["field"],
            errors=errors,
        )

    @app.exception_handler(MlgovError)
    async def _domain(request: Request, exc: MlgovError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        errors = [{"field": exc.field, "message": exc.detail}] if exc.field else None
        return problem(
            request,
            exc.status,
            exc.title,
            exc.detail,
            field=exc.field,
            errors=errors,
            headers=headers,
        )

    @app.exception_handler(ArtifactTooLarge)
    async def _too_large(request: Request, exc: ArtifactTooLarge) -> JSONResponse:
        return problem(
            request,
            413,
            "Payload too large",
            f"the artifact exceeds the limit of {exc.limit} bytes",
            field="artifact",
        )

    @app.exception_handler(ArtifactNotFound)
    async def _missing_blob(request: Request, exc: ArtifactNotFound) -> JSONResponse:
        log.error("artifact blob missing from the store: %s", exc)
        return problem(
            request,
            500,
            "Artifact missing",
            "the artifact is registered but missing from the artifact store",
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:
            # FastAPI could not read the JSON body at all (not UTF-8, say): invalid input,
            # like a JSON syntax error, not a bare 400.
            message = "cannot be read as JSON" + (f" ({exc.__cause__})" if exc.__cause__ else "")
            return problem(
                request,
                422,
                "Invalid input",
                f"body: {message}",
                field="body",
                errors=[{"field": "body", "message": message}],
            )
        titles = {404: "Not found", 405: "Method not allowed", 413: "Payload too large"}
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
        return problem(
            request,
            exc.status_code,
            titles.get(exc.status_code, "Error"),
            detail,
            field="body" if exc.status_code == 413 else None,  # the body limit, see middleware
            headers=dict(exc.headers) if exc.headers else None,
        )

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(
            request,
            500,
            "Internal error",
            "the server failed to handle this request; it has been logged",
        )

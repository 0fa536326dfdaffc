"""The FastAPI application: built from the routing table, the services and the problem
handlers. ``create_app`` is what ``mlgov serve`` runs and what the tests drive in process."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, get_type_hints

from fastapi import Depends, FastAPI, Response
from fastapi.datastructures import Default
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from mlgov import __version__
from mlgov.api import problems
from mlgov.api.deps import Services, require
from mlgov.api.middleware import RequestContextMiddleware
from mlgov.api.routes import ROUTES, Route
from mlgov.identity.permissions import DESCRIPTIONS, roles_for
from mlgov.registry.schemas import VersionMetadata

log = logging.getLogger("mlgov.api")

MULTIPART_OVERHEAD = 1 << 20  # metadata part and multipart framing around the artifact

DESCRIPTION = """\
mlgov is a governance control plane for production machine-learning models: registry and
lineage, roles and separation of duties, and an audit trail of every change.

Authenticate with `Authorization: Bearer <token>`. Every state-changing request carries a
`reason`, recorded with the change in the audit trail. Errors are RFC 9457
`application/problem+json` documents naming the offending `field`.
"""


# Which operations may answer with a problem: (route, its generated OpenAPI operation) -> bool.
Applies = Callable[[Route, dict[str, Any]], bool]


def _always(route: Route, operation: dict[str, Any]) -> bool:
    return True


def _api(route: Route, operation: dict[str, Any]) -> bool:
    return route.path.startswith("/api/")  # the token (or, to log in, the password) is checked


def _guarded(route: Route, operation: dict[str, Any]) -> bool:
    return route.permission is not None


def _names_objects(route: Route, operation: dict[str, Any]) -> bool:
    return "{" in route.path or "requestBody" in operation  # a body may name others too


def _changes(route: Route, operation: dict[str, Any]) -> bool:
    return route.method != "GET"


def _takes_input(route: Route, operation: dict[str, Any]) -> bool:
    return "parameters" in operation or "requestBody" in operation


#: The problems (RFC 9457, ``application/problem+json``) the API answers with, and which
#: operations may answer each: every error response is documented, with its schema.
PROBLEM_RESPONSES: tuple[tuple[int, str, Applies], ...] = (
    (401, "Unauthenticated: no, unknown, expired or revoked token (or a wrong password)", _api),
    (403, "Forbidden by the permission table or a governance rule", _guarded),
    (404, "Not found: a named object does not exist", _names_objects),
    (405, "Method not allowed on this path", _always),
    (409, "Conflict: a duplicate name, stale state, or a change to what never changes", _changes),
    (413, "Payload too large: the request body exceeds its limit", _always),
    (422, "Invalid input: `field` names the (first) offending input", _takes_input),
)


def _describe(route: Route) -> str:
    doc = (route.endpoint.__doc__ or "").strip()
    if route.permission is None:
        access = "**Access:** public, no token needed."
    else:
        roles = ", ".join(f"`{r}`" for r in roles_for(route.permission))
        access = (
            f"**Permission:** `{route.permission.value}` — {DESCRIPTIONS[route.permission]} "
            f"**Roles:** {roles}."
        )
    return f"{doc}\n\n{access}".strip()


def _response_class(route: Route) -> Any:
    """An endpoint that builds its own response names its class, which documents the media
    type (an artifact download is ``application/octet-stream``, not JSON)."""
    returns = get_type_hints(route.endpoint).get("return")
    if isinstance(returns, type) and issubclass(returns, Response) and returns.media_type:
        return returns
    return Default(JSONResponse)


CHECKPOINT_TICK_MIN = 0.25


async def _checkpoint_timer(svc: Services) -> None:
    """Sign a checkpoint whenever events arrived and the interval passed (every replica runs
    this; the head lock makes them take turns, and one that finds it done does nothing)."""
    trail = svc.audit
    tick = max(CHECKPOINT_TICK_MIN, trail.checkpoint_interval / 4)
    while True:
        await asyncio.sleep(tick)
        try:
            await run_in_threadpool(trail.checkpoint_if_due)
        except Exception:
            log.exception("signing the periodic audit checkpoint failed; retrying")


WORKER_STOP_SECONDS = 15.0


def _start_embedded_worker(svc: Services) -> Callable[[], None] | None:
    """With ``MLGOV_EMBEDDED_WORKER``, run the worker in this process too: webhook deliveries
    and validation jobs, each in a daemon thread (several replicas may each run one: deliveries
    and jobs are claimed, never shared). Returns the function that stops them, waiting for the
    sends in flight (a validation job in flight is left to its lease)."""
    if not svc.settings.embedded_worker:
        return None
    import threading

    from mlgov.server import validation_runner
    from mlgov.webhooks.worker import WebhookWorker, exponential_backoff

    stop = threading.Event()
    worker = WebhookWorker(svc.db, svc.webhooks.box, backoff=exponential_backoff(jitter=0.1))
    runner = validation_runner(svc)

    def deliver() -> None:
        try:
            worker.run_forever(stop)
        finally:
            worker.close()

    threads = [
        threading.Thread(target=deliver, name="mlgov-webhook-worker", daemon=True),
        threading.Thread(
            target=runner.run_forever, args=(stop,), name="mlgov-validation-worker", daemon=True
        ),
    ]
    for thread in threads:
        thread.start()

    def halt() -> None:
        stop.set()
        threads[0].join(WORKER_STOP_SECONDS)

    return halt


def create_app(svc: Services) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        timer = asyncio.create_task(_checkpoint_timer(svc))
        stop_worker = _start_embedded_worker(svc)
        try:
            yield
        finally:
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer
            if stop_worker is not None:
                await run_in_threadpool(stop_worker)

    app = FastAPI(
        lifespan=lifespan,
        title="mlgov",
        version=__version__,
        description=DESCRIPTION,
        openapi_url="/openapi.json",
        docs_url=None,  # served below from packaged assets: works offline, no CDN
        redoc_url=None,
    )
    _install_docs(app)
    app.state.services = svc
    problems.install(app)
    for route in ROUTES:
        deps: list[Any] = [] if route.permission is None else [Depends(require(route.permission))]
        app.add_api_route(
            route.path,
            route.endpoint,
            methods=[route.method],
            status_code=route.status,
            response_class=_response_class(route),
            summary=route.summary,
            description=_describe(route),
            dependencies=deps,
            tags=[route.tag],
            openapi_extra={"x-permission": route.permission.value if route.permission else None},
        )
    upload_paths = {(r.method, r.path) for r in ROUTES if r.upload}
    upload_routes = [
        (method, r.path_regex)
        for r in app.routes
        if isinstance(r, APIRoute)
        for method in r.methods or ()
        if (method, r.path) in upload_paths
    ]
    settings = svc.settings

    def limit_for(method: str, path: str) -> int:
        """Uploads may carry an artifact (plus a little metadata); everything else is small."""
        if any(method == m and regex.match(path) for m, regex in upload_routes):
            return settings.max_artifact_bytes + MULTIPART_OVERHEAD
        return settings.max_request_bytes

    _document(app)
    app.add_middleware(
        RequestContextMiddleware, limit_for=limit_for, path_templates=[r.path for r in ROUTES]
    )
    return app


SWAGGER_STATIC = "/static/swagger-ui"


def _install_docs(app: FastAPI) -> None:
    assets = importlib.resources.files("swagger_ui") / "static"
    app.mount(SWAGGER_STATIC, StaticFiles(directory=str(assets)), name="swagger-ui")

    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="mlgov API",
            swagger_js_url=f"{SWAGGER_STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER_STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{SWAGGER_STATIC}/favicon-32x32.png",
        )

    app.add_api_route("/docs", docs, methods=["GET"], include_in_schema=False)


def _document(app: FastAPI) -> None:
    """Complete the generated OpenAPI document with what FastAPI cannot see (built once)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = generate()
        _document_uploads(schema)
        _document_problems(schema)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _document_uploads(schema: dict[str, Any]) -> None:
    """Upload endpoints parse their multipart body themselves (to stream it), so FastAPI cannot
    see its shape: describe it in the OpenAPI document by hand, from the metadata model."""
    meta = VersionMetadata.model_json_schema(ref_template="#/components/schemas/{model}")
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(meta.pop("$defs", {}))
    components["VersionMetadata"] = meta
    for route in ROUTES:
        if not route.upload:
            continue
        operation = schema["paths"][route.path][route.method.lower()]
        if route.raw_body:
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                },
            }
            continue
        operation["requestBody"] = {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["artifact", "metadata"],
                        "properties": {
                            "artifact": {
                                "type": "string",
                                "format": "binary",
                                "description": "The model artifact, streamed and hashed.",
                            },
                            "metadata": {
                                "$ref": "#/components/schemas/VersionMetadata",
                                "description": "JSON, with the reason for the change.",
                            },
                        },
                    },
                    "encoding": {"metadata": {"contentType": "application/json"}},
                }
            },
        }


def _document_problems(schema: dict[str, Any]) -> None:
    """Every error is an RFC 9457 problem (see :mod:`mlgov.api.problems`), not FastAPI's
    validation error: document each operation's problems from :data:`PROBLEM_RESPONSES`."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = problems.PROBLEM_SCHEMA
    content = {problems.PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for route in ROUTES:
        operation = schema["paths"][route.path][route.method.lower()]
        responses = operation.setdefault("responses", {})
        for status, description, applies in PROBLEM_RESPONSES:
            if applies(route, operation):
                responses[str(status)] = {"description": description, "content": content}
        for status, description in route.extra_responses:
            extra: dict[str, Any] = {"description": description}
            if status >= 400:
                extra["content"] = content
            else:
                extra["content"] = responses[str(route.status)].get("content", {})
            responses[str(status)] = extra
    for unused in ("HTTPValidationError", "ValidationError"):  # FastAPI's 422, replaced above
        components.pop(unused, None)

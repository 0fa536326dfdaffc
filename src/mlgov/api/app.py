"""The FastAPI application: built from the routing table, the services and the problem
handlers. ``create_app`` is what ``mlgov serve`` runs and what the tests drive in process."""

from __future__ import annotations

import importlib.resources
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles

from mlgov import __version__
from mlgov.api import problems
from mlgov.api.deps import Services, require
from mlgov.api.middleware import RequestContextMiddleware
from mlgov.api.routes import ROUTES, Route
from mlgov.identity.permissions import DESCRIPTIONS, roles_for
from mlgov.registry.schemas import VersionMetadata

MULTIPART_OVERHEAD = 1 << 20  # metadata part and multipart framing around the artifact

DESCRIPTION = """\
mlgov is a governance control plane for production machine-learning models: registry and
lineage, roles and separation of duties, and an audit trail of every change.

Authenticate with `Authorization: Bearer <token>`. Every state-changing request carries a
`reason`, recorded with the change in the audit trail. Errors are RFC 9457
`application/problem+json` documents naming the offending `field`.
"""


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


def create_app(svc: Services) -> FastAPI:
    app = FastAPI(
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

    _document_uploads(app)
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


def _document_uploads(app: FastAPI) -> None:
    """Upload endpoints parse their multipart body themselves (to stream it), so FastAPI cannot
    see its shape: describe it in the OpenAPI document by hand, from the metadata model."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = generate()
        meta = VersionMetadata.model_json_schema(ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(meta.pop("$defs", {}))
        components["VersionMetadata"] = meta
        for route in ROUTES:
            if not route.upload:
                continue
            operation = schema["paths"][route.path][route.method.lower()]
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
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]

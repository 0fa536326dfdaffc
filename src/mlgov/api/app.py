"""The FastAPI application: built from the routing table, the services and the problem
handlers. ``create_app`` is what ``mlgov serve`` runs and what the tests drive in process."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI
from fastapi.routing import APIRoute

from mlgov import __version__
from mlgov.api import problems
from mlgov.api.deps import Services, require
from mlgov.api.middleware import RequestContextMiddleware
from mlgov.api.routes import ROUTES, Route
from mlgov.identity.permissions import DESCRIPTIONS, roles_for

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
        docs_url="/docs",
        redoc_url=None,
    )
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
        r
        for r in app.routes
        if isinstance(r, APIRoute) and any((m, r.path) in upload_paths for m in r.methods)
    ]
    settings = svc.settings

    def limit_for(method: str, path: str) -> int:
        for r in upload_routes:
            if method in r.methods and r.path_regex.match(path):
                return settings.max_artifact_bytes + (1 << 20)
        return settings.max_request_bytes

    app.add_middleware(RequestContextMiddleware, limit_for=limit_for)
    return app

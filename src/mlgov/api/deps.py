"""Request-scoped dependencies: the services, the authenticated actor and the change context."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from mlgov.audit.service import authorize
from mlgov.audit.trail import AuditTrail
from mlgov.config import Settings
from mlgov.context import Actor, Context
from mlgov.db import Database
from mlgov.errors import Unauthenticated
from mlgov.identity.permissions import Permission
from mlgov.identity.service import IdentityService
from mlgov.lifecycle.service import LifecycleService
from mlgov.registry.service import RegistryService
from mlgov.storage import ArtifactStore
from mlgov.validation.service import ValidationService
from mlgov.webhooks.service import WebhookService


@dataclass
class Services:
    settings: Settings
    db: Database
    store: ArtifactStore
    identity: IdentityService
    registry: RegistryService
    lifecycle: LifecycleService
    webhooks: WebhookService
    validation: ValidationService
    audit: AuditTrail


def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


_bearer = HTTPBearer(auto_error=False, description="An mlgov API token: `Bearer mlgov_…`")


def current_actor(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
    svc: Services = Depends(services),
) -> Actor:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("missing bearer token (Authorization: Bearer <token>)")
    actor = svc.identity.authenticate(credentials.credentials)
    request.state.actor = actor.name
    return actor


def context(request: Request, actor: Actor = Depends(current_actor)) -> Context:
    return Context(
        actor=actor,
        request_id=getattr(request.state, "request_id", "-"),
        client_addr=request.client.host if request.client else None,
    )


def anonymous_context(request: Request) -> Context:
    """The context of a call made before anyone is authenticated (password login)."""
    return Context(
        actor=Actor(name="anonymous", kind="anonymous"),
        request_id=getattr(request.state, "request_id", "-"),
        client_addr=request.client.host if request.client else None,
    )


def require(permission: Permission) -> Callable[..., None]:
    """The route-level guard built from the permission table (runs before body validation)."""

    def guard(ctx: Context = Depends(context)) -> None:
        authorize(ctx, permission)

    guard.__name__ = f"require_{permission.name.lower()}"
    return guard

"""Webhook endpoints: thin adapters over :class:`~mlgov.webhooks.service.WebhookService`, and
the JSON shapes of their answers. The signing secret is in the creation's answer only."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, Path, Query
from pydantic import BaseModel, Field

from mlgov.api.deps import Services, context, services
from mlgov.api.views import Page
from mlgov.context import Context
from mlgov.names import NAME_PATTERN
from mlgov.schemas import Reasoned
from mlgov.webhooks.models import Webhook, WebhookAttempt, WebhookDelivery
from mlgov.webhooks.schemas import WebhookCreate

WebhookName = Annotated[str, Path(pattern=NAME_PATTERN, description="Webhook name")]
Limit = Annotated[int, Query(ge=1, le=200)]
Cursor = Annotated[str | None, Query(max_length=512)]
DeliveryStatus = Literal["pending", "delivered", "failed"]


class ReasonBody(Reasoned):
    pass


class WebhookOut(BaseModel):
    name: str
    url: str
    description: str
    events: list[str]
    active: bool = Field(description="False once removed: nothing more is delivered to it.")
    created_at: datetime
    created_by: str
    disabled_at: datetime | None


class WebhookCreated(WebhookOut):
    secret: str = Field(
        description="The signing secret (HMAC-SHA256 key of X-Mlgov-Signature): shown once."
    )


class AttemptOut(BaseModel):
    attempt: int
    started_at: datetime
    duration_ms: float
    status_code: int | None
    error: str
    response_excerpt: str


class DeliveryOut(BaseModel):
    id: int
    event_id: str = Field(description="The event's id, sent as X-Mlgov-Delivery.")
    event_type: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    last_status_code: int | None
    last_error: str
    created_at: datetime
    delivered_at: datetime | None
    payload: dict[str, Any] = Field(description="The JSON body sent (and signed).")
    attempt_log: list[AttemptOut] = Field(description="Every attempt, oldest first.")


def webhook_out(w: Webhook) -> WebhookOut:
    return WebhookOut(
        name=w.name,
        url=w.url,
        description=w.description,
        events=list(w.events),
        active=w.active,
        created_at=w.created_at,
        created_by=w.created_by,
        disabled_at=w.disabled_at,
    )


def attempt_out(a: WebhookAttempt) -> AttemptOut:
    return AttemptOut(
        attempt=a.attempt,
        started_at=a.started_at,
        duration_ms=a.duration_ms,
        status_code=a.status_code,
        error=a.error,
        response_excerpt=a.response_excerpt,
    )


def delivery_out(d: WebhookDelivery) -> DeliveryOut:
    return DeliveryOut(
        id=d.id,
        event_id=d.event_id,
        event_type=d.event_type,
        status=d.status,  # type: ignore[arg-type]
        attempts=d.attempts,
        next_attempt_at=d.next_attempt_at,
        last_status_code=d.last_status_code,
        last_error=d.last_error,
        created_at=d.created_at,
        delivered_at=d.delivered_at,
        payload=json.loads(d.payload),
        attempt_log=[attempt_out(a) for a in d.attempt_rows],
    )


def create_webhook(
    body: WebhookCreate, ctx: Context = Depends(context), svc: Services = Depends(services)
) -> WebhookCreated:
    """Subscribe a receiver to governance events. The answer carries the signing secret,
    shown this once: store it where the receiver can verify signatures with it."""
    hook, secret = svc.webhooks.create(ctx, body)
    return WebhookCreated(**webhook_out(hook).model_dump(), secret=secret)


def list_webhooks(svc: Services = Depends(services)) -> list[WebhookOut]:
    """Every subscription, removed ones included (``active`` false)."""
    return [webhook_out(w) for w in svc.webhooks.list()]


def get_webhook(name: WebhookName, svc: Services = Depends(services)) -> WebhookOut:
    return webhook_out(svc.webhooks.get(name))


def delete_webhook(
    name: WebhookName,
    body: ReasonBody,
    ctx: Context = Depends(context),
    svc: Services = Depends(services),
) -> WebhookOut:
    """Remove a subscription: nothing more is delivered to it (its pending deliveries are
    marked failed); it and its delivery history stay readable, and its name stays taken."""
    return webhook_out(svc.webhooks.delete(ctx, name, body.reason))


def list_deliveries(
    name: WebhookName,
    svc: Services = Depends(services),
    status: DeliveryStatus | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[DeliveryOut]:
    """A webhook's deliveries, newest first, each with every attempt: status code or error,
    duration and the start of the receiver's answer."""
    page = svc.webhooks.deliveries(name, status=status, limit=limit, cursor=cursor)
    return Page[DeliveryOut](
        items=[delivery_out(d) for d in page.items], next_cursor=page.next_cursor
    )

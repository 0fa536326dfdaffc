"""Webhook subscriptions and the outbox of their deliveries.

Creating and removing a subscription are audited changes (``webhook:manage``). The signing
secret is generated here, returned once, and stored encrypted with the server's
:class:`~mlgov.secretbox.SecretBox`, bound to the webhook's name.

:meth:`WebhookService.enqueue` is the outbox: a governance service calls it inside its own
change transaction, so the deliveries are written with the action and its audit event, or not
at all. Nothing is sent here; the :mod:`worker <mlgov.webhooks.worker>` does that later.

Removing a subscription keeps its row (``active`` false), its deliveries and their attempts;
its deliveries still pending are marked ``failed`` with the error ``subscription removed`` and
are never sent. Its name stays taken, so its history stays addressable.
"""

from __future__ import annotations

import json
import secrets
import urllib.parse
import uuid
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload

from mlgov.audit.entry import format_time
from mlgov.audit.events import Action
from mlgov.audit.trail import AuditTrail
from mlgov.context import Context
from mlgov.db import utcnow
from mlgov.errors import Conflict, InvalidInput, NotFound
from mlgov.identity.permissions import Permission
from mlgov.names import check_name
from mlgov.registry.service import MAX_PAGE, Page, decode_number_cursor, encode_cursor
from mlgov.secretbox import SecretBox
from mlgov.webhooks.events import GovernanceEvent
from mlgov.webhooks.models import (
    DELIVERY_STATUSES,
    FAILED,
    PENDING,
    Webhook,
    WebhookDelivery,
)
from mlgov.webhooks.schemas import WebhookCreate

SECRET_PREFIX = "whsec_"
SUBSCRIPTION_REMOVED = "subscription removed"
MAX_URL_CHARS = 2048


def new_webhook_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def secret_context(name: str) -> bytes:
    """The associated data a webhook's secret is encrypted under: its name."""
    return b"mlgov.webhook.secret:" + name.encode("utf-8")


def check_url(url: str, field: str = "url") -> str:
    """An absolute http(s) address with a host, no credentials and no fragment."""
    if not isinstance(url, str) or not url:
        raise InvalidInput("url is required", field=field)
    if len(url) > MAX_URL_CHARS:
        raise InvalidInput(f"url is longer than {MAX_URL_CHARS} characters", field=field)
    if any(c <= " " or c == "\x7f" for c in url):
        raise InvalidInput("url cannot contain spaces or control characters", field=field)
    try:
        url.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("url is not valid UTF-8 (lone surrogate)", field=field) from None
    try:
        parts = urllib.parse.urlsplit(url)
        _ = parts.port  # a port that is not a number raises here
        httpx.URL(url)
    except (ValueError, httpx.InvalidURL) as exc:
        raise InvalidInput(f"url is not a valid address: {exc}", field=field) from None
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidInput("url must start with http:// or https://", field=field)
    if not parts.hostname:
        raise InvalidInput("url must name a host", field=field)
    if parts.username is not None or parts.password is not None:
        raise InvalidInput(
            "url cannot carry credentials (user:password@): it is shown to every webhook "
            "reader; receivers authenticate deliveries by their signature",
            field=field,
        )
    if parts.fragment or url.endswith("#"):
        raise InvalidInput("url cannot have a fragment (#…): it is never sent", field=field)
    return url


def check_events(events: Sequence[str]) -> list[str]:
    """Event type names, known and without duplicates, in the order given."""
    if not events:
        raise InvalidInput("subscribe to at least one event type", field="events")
    known = {e.value for e in GovernanceEvent}
    seen: list[str] = []
    for index, event in enumerate(events):
        value = str(event.value if isinstance(event, GovernanceEvent) else event)
        if value not in known:
            raise InvalidInput(
                f"unknown event type {value!r}; event types are: {', '.join(sorted(known))}",
                field=f"events[{index}]",
            )
        if value in seen:
            raise InvalidInput(f"event type {value!r} is named twice", field=f"events[{index}]")
        seen.append(value)
    return seen


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"a webhook payload cannot hold {type(value).__name__} values")


def event_payload(
    event_id: str, event: GovernanceEvent, time: datetime, data: Mapping[str, Any]
) -> str:
    """The JSON body of an event, exactly as it is signed and sent (ASCII, compact)."""
    return json.dumps(
        {"id": event_id, "type": event.value, "time": format_time(time), "data": data},
        separators=(",", ":"),
        default=_json_default,
        allow_nan=False,
    )


class WebhookService:
    def __init__(self, trail: AuditTrail, box: SecretBox) -> None:
        self.trail = trail
        self.db = trail.db
        self.box = box

    # -- changes -----------------------------------------------------------------------

    def create(self, ctx: Context, data: WebhookCreate) -> tuple[Webhook, str]:
        """Subscribe ``data.url`` to ``data.events``. Returns the webhook and its signing
        secret, which is never shown again."""
        check_name(data.name)
        url = check_url(data.url)
        events = check_events(data.events)
        secret = new_webhook_secret()
        with self.trail.change(ctx, Permission.WEBHOOK_MANAGE, data.reason) as cs:
            existing = cs.session.execute(
                select(Webhook.active).where(Webhook.name == data.name)
            ).first()
            if existing is not None:
                removed = "" if existing.active else " (removed; names are not reused)"
                raise Conflict(
                    f"a webhook named {data.name!r} exists already{removed}", field="name"
                )
            hook = Webhook(
                name=data.name,
                url=url,
                description=data.description,
                events=events,
                secret_encrypted=self.box.encrypt(
                    secret.encode("utf-8"), context=secret_context(data.name)
                ),
                active=True,
                created_at=utcnow(),
                created_by=ctx.actor.name,
            )
            cs.session.add(hook)
            cs.session.flush()
            cs.session.info.pop("mlgov.webhooks", None)  # subscriptions read before: stale
            cs.record(Action.WEBHOOK_CREATE, f"webhook/{data.name}", {"url": url, "events": events})
        return hook, secret

    def delete(self, ctx: Context, name: str, reason: str | None) -> Webhook:
        """Remove a subscription: nothing more is delivered to it, its pending deliveries are
        marked failed (``subscription removed``), its history stays."""
        with self.trail.change(ctx, Permission.WEBHOOK_MANAGE, reason) as cs:
            hook = cs.session.execute(
                select(Webhook).where(Webhook.name == name).with_for_update()
            ).scalar_one_or_none()
            if hook is None:
                raise NotFound(f"no webhook named {name!r}")
            if not hook.active:
                raise Conflict(f"webhook {name!r} is removed already")
            now = utcnow()
            hook.active = False
            hook.disabled_at = now
            cancelled = cs.session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.webhook_id == hook.id, WebhookDelivery.status == PENDING)
                .values(status=FAILED, last_error=SUBSCRIPTION_REMOVED, lease_until=None)
            ).rowcount  # type: ignore[attr-defined]
            cs.session.flush()
            cs.session.info.pop("mlgov.webhooks", None)
            cs.record(
                Action.WEBHOOK_DELETE, f"webhook/{name}", {"pending_deliveries_dropped": cancelled}
            )
        return hook

    # -- the outbox ----------------------------------------------------------------------

    def enqueue(self, session: Session, event: GovernanceEvent, data: Mapping[str, Any]) -> int:
        """Write one delivery of ``event`` per active webhook subscribed to it, in ``session``
        (the caller's open change transaction: they commit or roll back with the change).
        Returns how many were written. ``data`` must be JSON (datetimes are written in RFC
        3339); it is serialised once, and that text is what every receiver gets."""
        event = GovernanceEvent(event)
        now = utcnow()
        event_id = str(uuid.uuid4())
        payload = event_payload(event_id, event, now, data)  # fails loudly on bad data
        # Subscriptions are few: one read of the active ones, filtered here (a JSON list
        # membership test has no portable index).
        # Read once per transaction: a change that queues several events (a decision that
        # applies a transition) reads the subscriptions once.
        rows = session.info.get("mlgov.webhooks")
        if rows is None:
            rows = session.info["mlgov.webhooks"] = session.execute(
                select(Webhook.id, Webhook.events)
                .where(Webhook.active.is_(True))
                .order_by(Webhook.id)
            ).all()
        targets = [hook_id for hook_id, events in rows if event.value in events]
        if not targets:
            return 0
        session.add_all(
            [
                WebhookDelivery(
                    webhook_id=hook_id,
                    event_id=event_id,
                    event_type=event.value,
                    payload=payload,
                    status=PENDING,
                    attempts=0,
                    next_attempt_at=now,
                    last_error="",
                    created_at=now,
                )
                for hook_id in targets
            ]
        )
        session.flush()
        return len(targets)

    # -- reads -------------------------------------------------------------------------

    def get(self, name: str) -> Webhook:
        with self.db.read() as session:
            hook = session.execute(select(Webhook).where(Webhook.name == name)).scalar_one_or_none()
        if hook is None:
            raise NotFound(f"no webhook named {name!r}")
        return hook

    def deliveries(
        self,
        name: str,
        status: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[WebhookDelivery]:
        """A webhook's deliveries, newest first, each with its attempts (``attempt_rows``)."""
        if status is not None and status not in DELIVERY_STATUSES:
            raise InvalidInput(
                f"status must be one of {', '.join(DELIVERY_STATUSES)}", field="query.status"
            )
        hook = self.get(name)
        limit = max(1, min(limit, MAX_PAGE))
        stmt = (
            select(WebhookDelivery)
            .where(WebhookDelivery.webhook_id == hook.id)
            .options(selectinload(WebhookDelivery.attempt_rows))
            .order_by(WebhookDelivery.id.desc())
            .limit(limit + 1)
        )
        if status is not None:
            stmt = stmt.where(WebhookDelivery.status == status)
        if cursor:
            stmt = stmt.where(WebhookDelivery.id < decode_number_cursor(cursor))
        with self.db.read() as session:
            rows = list(session.execute(stmt).scalars())
        more = len(rows) > limit
        rows = rows[:limit]
        return Page(rows, encode_cursor(str(rows[-1].id)) if more else None)

    def list(self) -> Sequence[Webhook]:
        """Every subscription, removed ones included (``active`` false), by name."""
        with self.db.read() as session:
            return session.execute(select(Webhook).order_by(Webhook.name)).scalars().all()

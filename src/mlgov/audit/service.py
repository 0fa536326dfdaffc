"""Permission and reason checks shared by every change, and the audit trail's queries.

The change path itself (permission, reason, change and event in one transaction, appended to
the Merkle log) is :meth:`mlgov.audit.trail.AuditTrail.change`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, or_, select

from mlgov.audit.models import AuditEvent
from mlgov.context import Context
from mlgov.errors import InvalidInput, PermissionDenied
from mlgov.identity.permissions import Permission, allowed

MAX_REASON_CHARS = 4000


def authorize(ctx: Context, permission: Permission) -> None:
    if ctx.actor.is_system or allowed(ctx.actor.roles, permission):
        return
    raise PermissionDenied(
        f"{ctx.actor.name} lacks permission {permission.value!r} "
        f"(roles held: {', '.join(sorted(ctx.actor.roles)) or 'none'})"
    )


def check_reason(reason: str | None) -> str:
    text = (reason or "").strip()
    if not text:
        raise InvalidInput("a non-empty reason is required for every change", field="reason")
    if len(text) > MAX_REASON_CHARS:
        raise InvalidInput(f"reason is longer than {MAX_REASON_CHARS} characters", field="reason")
    return text


@dataclass(frozen=True)
class AuditQuery:
    actor: str | None = None
    action: str | None = None
    target: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    after_seq: int | None = None
    limit: int = 100


def _like_prefix(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "/%"


def events_statement(query: AuditQuery) -> Select[AuditEvent]:
    """Events in sequence order. ``target`` matches the object and everything below it
    (``model/credit-risk`` includes ``model/credit-risk/versions/2``)."""
    stmt = select(AuditEvent).order_by(AuditEvent.seq).limit(query.limit)
    if query.actor:
        stmt = stmt.where(AuditEvent.actor == query.actor)
    if query.action:
        stmt = stmt.where(AuditEvent.action == query.action)
    if query.target:
        stmt = stmt.where(
            or_(
                AuditEvent.target == query.target,
                AuditEvent.target.like(_like_prefix(query.target), escape="\\"),
            )
        )
    if query.since:
        stmt = stmt.where(AuditEvent.time >= query.since)
    if query.until:
        stmt = stmt.where(AuditEvent.time < query.until)
    if query.after_seq is not None:
        stmt = stmt.where(AuditEvent.seq > query.after_seq)
    return stmt

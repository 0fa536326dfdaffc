"""The one path for every state change, and the audit trail's read side.

A service changes state only inside :func:`change`: it checks the permission against the
permission table, requires a non-empty reason, opens one write transaction and hands back a
:class:`ChangeSet` whose :meth:`ChangeSet.record` appends the audit event in that same
transaction. The transaction commits only if at least one event was recorded, so nothing
changes without its event and a failed change leaves neither.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from mlgov.audit.events import Action
from mlgov.audit.models import AuditEvent, AuditLogHead
from mlgov.context import Context
from mlgov.db import Database, utcnow
from mlgov.errors import InvalidInput, PermissionDenied
from mlgov.identity.permissions import Permission, allowed

AUDIT_LOG_ID = 1
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


@dataclass
class ChangeSet:
    session: Session
    ctx: Context
    reason: str
    events: list[AuditEvent] = field(default_factory=list)

    def record(self, action: Action, target: str, details: dict[str, Any]) -> AuditEvent:
        """Append the audit event for this change, in the change's own transaction."""
        head = self.session.execute(
            select(AuditLogHead).where(AuditLogHead.id == AUDIT_LOG_ID).with_for_update()
        ).scalar_one()
        event = AuditEvent(
            seq=head.size,
            time=utcnow(),
            actor=self.ctx.actor.name,
            actor_kind=self.ctx.actor.kind,
            action=action.value,
            target=target,
            reason=self.reason,
            details=details,
            request_id=self.ctx.request_id,
            client_addr=self.ctx.client_addr,
        )
        head.size += 1
        self.session.add(event)
        self.session.flush()
        self.events.append(event)
        return event


@contextmanager
def change(
    db: Database, ctx: Context, permission: Permission, reason: str | None
) -> Iterator[ChangeSet]:
    authorize(ctx, permission)
    text = check_reason(reason)
    with db.write() as session:
        changes = ChangeSet(session=session, ctx=ctx, reason=text)
        yield changes
        if not changes.events:
            raise RuntimeError("a change must record its audit event before it commits")


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


class AuditService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def events(self, query: AuditQuery) -> Sequence[AuditEvent]:
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
        with self.db.read() as session:
            return session.execute(stmt).scalars().all()

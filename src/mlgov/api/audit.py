"""Audit trail read endpoints."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Query

from mlgov.api.deps import Services, services
from mlgov.api.views import AuditEventOut, Page, audit_out
from mlgov.audit.events import Action
from mlgov.audit.service import AuditQuery
from mlgov.errors import InvalidInput
from mlgov.registry.service import decode_number_cursor, encode_cursor


def list_events(
    svc: Services = Depends(services),
    actor: Annotated[str | None, Query(max_length=128)] = None,
    action: Action | None = None,
    target: Annotated[str | None, Query(max_length=512)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> Page[AuditEventOut]:
    """Events in sequence order, filtered; ``target`` includes everything below it."""
    for field, value in (("since", since), ("until", until)):
        if value is None:
            continue
        if value.tzinfo is None:
            raise InvalidInput(f"{field} needs a time zone (e.g. 'Z')", field=f"query.{field}")
        try:
            value.astimezone(UTC)  # as stored; year 9999 at -14:00 is past the calendar's end
        except OverflowError:
            raise InvalidInput(f"{field} is out of range", field=f"query.{field}") from None
    after = decode_number_cursor(cursor) if cursor else None
    rows = svc.audit.events(
        AuditQuery(
            actor=actor,
            action=action.value if action else None,
            target=target,
            since=since,
            until=until,
            after_seq=after,
            limit=limit + 1,
        )
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return Page[AuditEventOut](
        items=[audit_out(e) for e in rows],
        next_cursor=encode_cursor(str(rows[-1].seq)) if more else None,
    )

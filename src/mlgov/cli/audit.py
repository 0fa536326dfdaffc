"""``mlgov audit``: read the audit trail (who changed what, when, and why)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from mlgov.audit.events import Action
from mlgov.cli import output as out
from mlgov.cli.config import connect

audit_app = typer.Typer(help="The audit trail of every change.", no_args_is_help=True)


def parse_time(value: str | None, option: str) -> datetime | None:
    """An ISO 8601 time; one without a zone is taken as UTC."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO 8601 time (e.g. 2024-05-01 or 2024-05-01T12:00:00Z)",
            param_hint=option,
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@audit_app.command("events")
def audit_events(
    actor: Annotated[str | None, typer.Option(help="Only this actor's events.")] = None,
    action: Annotated[Action | None, typer.Option(help="Only this action.")] = None,
    target: Annotated[
        str | None, typer.Option(help="Only this target and below, e.g. model/credit.")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="From this time (ISO 8601; UTC unless a zone is given).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Up to this time (ISO 8601).")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many events.")] = 100,
    json_: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per line instead of a table.")
    ] = False,
) -> None:
    """List audit events, oldest first."""
    with connect() as api:
        found = api.audit_events(
            actor=actor,
            action=action.value if action else None,
            target=target,
            since=parse_time(since, "--since"),
            until=parse_time(until, "--until"),
            limit=min(limit + 1, 1000),
        )
        events, more = out.first(found, limit)
    if json_:
        out.emit_json_lines(events)
        return
    out.table(
        ["seq", "time", "actor", "action", "target", "reason"],
        (
            [e["seq"], out.when(e["time"]), e["actor"], e["action"], e["target"], e["reason"]]
            for e in events
        ),
    )
    if more:
        out.info(f"(first {limit} shown; raise --limit or narrow with --since for more)")

"""``mlgov promote``, ``approve``, ``reject``, ``transitions``, ``policies``, ``evidence``,
``history`` and ``webhooks``: the lifecycle of model versions from the shell.

A promotion is a transition request, evaluated against the model's risk-tier policy at once:
it is applied when every requirement is met, and stays pending (exit code 0: the request was
made) until evidence, approvals or documentation complete it. Each command shows the
requirements with ✔/✘ and what is still missing, in the server's words.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from mlgov.cli import output as out
from mlgov.cli.audit import parse_time
from mlgov.cli.config import connect
from mlgov.cli.options import AsJson, Reason, read_json, read_json_object
from mlgov.webhooks.events import GovernanceEvent

transitions_app = typer.Typer(
    help="Transition requests: list them (bare `mlgov transitions`), show one, cancel one.",
    invoke_without_command=True,
)
policies_app = typer.Typer(
    help="The policy of each risk tier (YAML, versioned): what a transition needs.",
    no_args_is_help=True,
)
evidence_app = typer.Typer(
    help="Evidence on model versions: test results, scans, reviews (immutable, hashed).",
    no_args_is_help=True,
)
webhooks_app = typer.Typer(
    help="Webhooks: governance events delivered to your systems, signed.",
    no_args_is_help=True,
)


# The choices of options, spelled here rather than imported from the server's schemas (which
# load pydantic, which the client commands never need).


class Stage(StrEnum):
    DEVELOPMENT = "development"
    STAGING = "staging"
    PRODUCTION = "production"
    ARCHIVED = "archived"


class Status(StrEnum):
    PENDING = "pending"
    APPLIED = "applied"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


class Tier(StrEnum):
    UNACCEPTABLE = "unacceptable"
    HIGH = "high"
    LIMITED = "limited"
    MINIMAL = "minimal"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


TransitionId = Annotated[int, typer.Argument(metavar="ID", min=1, help="Transition request id.")]
Comment = Annotated[
    str,
    typer.Option(
        "--comment",
        "--reason",
        help="Why (required; recorded as the decision's reason in the audit trail).",
        show_default=False,
    ),
]
Limit = Annotated[int, typer.Option(min=1, help="Show at most this many rows.")]


# ------------------------------------------------------------------------- transitions


def _move(t: dict[str, Any]) -> str:
    return f"{t['from_stage']} → {t['to_stage']}" + (" (rollback)" if t["rollback"] else "")


def _requirements(evaluation: dict[str, Any], *, unmet_only: bool = False) -> None:
    """The requirements of an evaluation, ✔ or ✘ each, with the server's message."""
    policy = evaluation.get("policy") or {}
    items = [r for r in evaluation["requirements"] if not (unmet_only and r["met"])]
    title = (
        f"{'still unmet' if unmet_only else 'requirements'} for {evaluation['stage']} "
        f"(the {policy.get('name')} policy, version {policy.get('version')})"
    )
    console = out.stdout()
    if not items:
        console.print(Text(f"{title}: none", style="dim"))
        return
    grid = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left")
    grid.add_column("")
    grid.add_column("requirement")
    grid.add_column("", overflow="fold")
    for r in items:
        mark = Text("✔", style="green") if r["met"] else Text("✘", style="bold red")
        grid.add_row(mark, Text(r["id"]), Text(r["message"]))
    console.print(grid)


def _status(t: dict[str, Any]) -> None:
    """The request in one bold line, then its status in colour."""
    console = out.stdout()
    console.print(
        Text(f"Transition request #{t['id']}: {t['model']} version {t['version']}, {_move(t)}")
    )
    status = t["status"]
    if status == "pending":
        unmet = len(t["evaluation"]["unmet"])
        console.print(
            Text(f"pending: {unmet} requirement{'' if unmet == 1 else 's'} unmet", style="yellow")
        )
    elif status == "applied":
        console.print(
            Text(f"applied: version {t['version']} is in {t['to_stage']} now", style="green")
        )
    else:  # the outcome names the status ("rejected by …", "cancelled: …") or follows it
        outcome = t["outcome"]
        line = outcome if outcome.startswith(status) else f"{status}: {outcome}"
        console.print(Text(line, style="red"))


@transitions_app.callback()
def transitions_list(
    ctx: typer.Context,
    status: Annotated[Status | None, typer.Option(help="Only requests in this status.")] = None,
    model: Annotated[str | None, typer.Option(help="Only this model's requests.")] = None,
    limit: Limit = 50,
    json_: AsJson = False,
) -> None:
    """List transition requests, newest first (`--status pending` is the approvals inbox)."""
    if ctx.invoked_subcommand is not None:
        return
    with connect() as api:
        found = api.list_transitions(
            status=status.value if status else None, model=model, limit=min(limit + 1, 200)
        )
        requests, more = out.first(found, limit)
    if json_:
        out.emit_json_lines(requests)
        return
    out.table(
        ["id", "model", "version", "move", "status", "unmet", "requested by", "created"],
        (
            [
                t["id"],
                t["model"],
                t["version"],
                _move(t),
                t["status"],
                len(t["evaluation"]["unmet"]) if t["status"] == "pending" else "",
                t["requested_by"],
                out.when(t["created_at"]),
            ]
            for t in requests
        ),
    )
    if more:
        out.info(f"(first {limit} shown; raise --limit for more)")


@transitions_app.command("show")
def transitions_show(transition_id: TransitionId, json_: AsJson = False) -> None:
    """Show a transition request: its requirements and decisions."""
    with connect() as api:
        t = api.get_transition(transition_id)
    if json_:
        out.emit_json(t)
        return
    closed = f"{out.when(t['closed_at'])} by {t['closed_by']}" if t["closed_at"] else ""
    out.record(
        [
            ("model", t["model"]),
            ("version", t["version"]),
            ("move", _move(t)),
            ("status", t["status"]),
            ("outcome", t["outcome"]),
            ("requested", f"{out.when(t['created_at'])} by {t['requested_by']}"),
            ("reason", t["reason"]),
            ("closed", closed),
        ],
        title=f"transition request #{t['id']}",
    )
    _requirements(t["evaluation"])
    out.table(
        ["decision", "by", "roles", "comment", "time"],
        (
            [d["decision"], d["actor"], d["roles"], d["comment"], out.when(d["created_at"])]
            for d in t["decisions"]
        ),
        title="decisions",
    )


@transitions_app.command("cancel")
def transitions_cancel(transition_id: TransitionId, reason: Reason, json_: AsJson = False) -> None:
    """Cancel your own pending transition request."""
    with connect() as api:
        t = api.cancel_transition(transition_id, reason)
    if json_:
        out.emit_json(t)
    else:
        _status(t)


def promote(
    model: Annotated[str, typer.Argument(help="The model.")],
    reason: Reason,
    version: Annotated[
        int | None,
        typer.Argument(
            min=1, help="The version to move (none with --rollback).", show_default=False
        ),
    ] = None,
    to: Annotated[Stage | None, typer.Option("--to", help="The stage to move it to.")] = None,
    rollback: Annotated[
        bool,
        typer.Option(
            "--rollback",
            help="Bring back the version in production before the current one (the newest "
            "archived version that was in production).",
        ),
    ] = False,
    json_: AsJson = False,
) -> None:
    """Request a stage transition (or a rollback), evaluated against the policy at once.

    It is applied when every requirement is met and stays pending otherwise; both exit 0
    (the request was made)."""
    if rollback:
        if version is not None:
            raise typer.BadParameter(
                "a rollback picks the version itself: give no VERSION", param_hint="VERSION"
            )
        if to not in (None, Stage.PRODUCTION):
            raise typer.BadParameter("a rollback goes to production", param_hint="--to")
    else:
        if version is None:
            raise typer.BadParameter("give the VERSION to move (or --rollback)")
        if to is None:
            raise typer.BadParameter("give the stage to move to", param_hint="--to")
    with connect() as api:
        if rollback:
            t = api.rollback(model, reason)
        else:
            assert version is not None and to is not None
            t = api.request_transition(model, version, to.value, reason)
    if json_:
        out.emit_json(t)
        return
    _status(t)
    _requirements(t["evaluation"])


def _decided(t: dict[str, Any], json_: bool) -> None:
    if json_:
        out.emit_json(t)
        return
    _status(t)
    if t["status"] == "pending":
        _requirements(t["evaluation"], unmet_only=True)


def approve(transition_id: TransitionId, comment: Comment, json_: AsJson = False) -> None:
    """Approve a pending transition request.

    The request is applied at once if that was its last requirement. Separation of duties
    refuses the requester and the version's creator."""
    with connect() as api:
        t = api.approve(transition_id, comment)
    _decided(t, json_)


def reject(transition_id: TransitionId, comment: Comment, json_: AsJson = False) -> None:
    """Reject a pending transition request, which closes it."""
    with connect() as api:
        t = api.reject(transition_id, comment)
    _decided(t, json_)


# ---------------------------------------------------------------------------- policies


@policies_app.command("list")
def policies_list(json_: AsJson = False) -> None:
    """List the current policy of each risk tier."""
    with connect() as api:
        policies = api.list_policies()
    if json_:
        out.emit_json_lines(policies)
        return
    out.table(
        ["tier", "version", "versions", "sha256", "published by", "published"],
        (
            [
                p["name"],
                p["version"],
                p["versions"],
                p["sha256"][:12],
                p["created_by"],
                out.when(p["created_at"]),
            ]
            for p in policies
        ),
    )


@policies_app.command("show")
def policies_show(
    tier: Annotated[Tier, typer.Argument(help="The risk tier.")],
    version: Annotated[
        int | None, typer.Option(min=1, help="An earlier version (default: the current one).")
    ] = None,
    json_: AsJson = False,
) -> None:
    """Print a tier's policy YAML on stdout (its version and hash on stderr)."""
    with connect() as api:
        p = api.get_policy(tier.value, version)
    if json_:
        out.emit_json(p)
        return
    out.stderr().print(
        Text(
            f"# the {p['name']} policy, version {p['version']} of "
            f"{', '.join(map(str, p['versions']))}; sha256 {p['sha256']}; published "
            f"{out.when(p['created_at'])} by {p['created_by']}",
            style="dim",
        )
    )
    document = p["document"]
    typer.echo(document, nl=not document.endswith("\n"))


@policies_app.command("set")
def policies_set(
    tier: Annotated[Tier, typer.Argument(help="The risk tier.")],
    file: Annotated[
        Path,
        typer.Argument(exists=True, dir_okay=False, help="The new policy (YAML)."),
    ],
    reason: Reason,
    json_: AsJson = False,
) -> None:
    """Publish a new version of a tier's policy (admin).

    Pending requests of the tier's models are evaluated again against it."""
    try:
        document = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise typer.BadParameter(f"cannot read {file}: {exc}", param_hint="FILE") from None
    with connect() as api:
        p = api.publish_policy(tier.value, document, reason)
    if json_:
        out.emit_json(p)
    else:
        out.success(
            f"Published the {p['name']} policy version {p['version']} (sha256 {p['sha256']})."
        )


# ---------------------------------------------------------------------------- evidence

_DATASET_REF = re.compile(r"^[^@\s]+@\d+$")


@evidence_app.command("add")
def evidence_add(
    model: str,
    version: Annotated[int, typer.Argument(min=1)],
    kind: Annotated[
        str,
        typer.Option(
            help="performance, fairness, explainability, robustness, reproducibility, "
            "security_scan, ethics_review, documentation, or a custom kind."
        ),
    ],
    reason: Reason,
    passed: Annotated[
        bool | None,
        typer.Option(
            "--passed/--failed", help="Whether the evidence passed (required).", show_default=False
        ),
    ] = None,
    results: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="Results JSON file (object).")
    ] = None,
    checks: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help='Checks JSON file: [{"name", "passed", "value", "threshold", "details"}].',
        ),
    ] = None,
    summary: Annotated[str, typer.Option(help="One paragraph on what was found.")] = "",
    suite: Annotated[
        str | None, typer.Option(help="The test suite that produced it: NAME or NAME@VERSION.")
    ] = None,
    dataset: Annotated[
        str | None, typer.Option(help="The dataset version it was measured on: NAME@VERSION.")
    ] = None,
    attach: Annotated[
        list[Path] | None,
        typer.Option(exists=True, dir_okay=False, help="A file to attach (repeatable)."),
    ] = None,
    json_: AsJson = False,
) -> None:
    """Record evidence on a model version.

    Pending requests of the version are evaluated again, and applied if now met."""
    if passed is None:
        raise typer.BadParameter(
            "say whether the evidence passed: --passed or --failed", param_hint="--passed"
        )
    if dataset is not None and not _DATASET_REF.fullmatch(dataset):
        raise typer.BadParameter(
            f"{dataset!r} is not NAME@VERSION, e.g. loans@3", param_hint="--dataset"
        )
    result_values = read_json_object(results, "--results") if results else None
    check_list: list[dict[str, Any]] = []
    if checks is not None:
        value = read_json(checks, "--checks")
        if not isinstance(value, list) or not all(isinstance(c, dict) for c in value):
            raise typer.BadParameter(
                f"{checks} must hold a JSON list of objects", param_hint="--checks"
            )
        check_list = value
    with connect() as api:
        e = api.add_evidence(
            model,
            version,
            kind,
            passed,
            reason,
            results=result_values,
            checks=check_list,
            summary=summary,
            suite=suite,
            dataset=dataset,
            attachments=attach or [],
        )
    if json_:
        out.emit_json(e)
        return
    out.success(
        f"Recorded {e['kind']} evidence #{e['id']} on {e['model']} version {e['version']}: "
        f"{'passed' if e['passed'] else 'failed'} (sha256 {e['content_sha256']})."
    )
    if e["attachments"]:
        out.table(
            ["attachment", "media type", "size", "sha256"],
            (
                [a["name"], a["media_type"], out.size(a["size"]), a["sha256"]]
                for a in e["attachments"]
            ),
        )


@evidence_app.command("list")
def evidence_list(
    model: str,
    version: Annotated[int, typer.Argument(min=1)],
    kind: Annotated[str | None, typer.Option(help="Only this kind.")] = None,
    json_: AsJson = False,
) -> None:
    """List a version's evidence, oldest first."""
    with connect() as api:
        records = api.list_evidence(model, version, kind)
    if json_:
        out.emit_json_lines(records)
        return
    out.table(
        [
            "id",
            "kind",
            "passed",
            "summary",
            "suite",
            "dataset",
            "attachments",
            "source",
            "by",
            "recorded",
        ],
        (
            [
                e["id"],
                e["kind"],
                e["passed"],
                e["summary"],
                _suite(e["suite"]),
                e["dataset"],
                [a["name"] for a in e["attachments"]],
                e["source"],
                e["created_by"],
                out.when(e["created_at"]),
            ]
            for e in records
        ),
    )


def _suite(suite: dict[str, Any]) -> str:
    if not suite:
        return ""
    return f"{suite['name']}@{suite['version']}" if suite.get("version") else suite["name"]


@evidence_app.command("download")
def evidence_download(
    model: str,
    version: Annotated[int, typer.Argument(min=1)],
    evidence_id: Annotated[int, typer.Argument(metavar="EVIDENCE_ID", min=1)],
    filename: Annotated[str, typer.Argument(help="The attachment's name.")],
    out_path: Annotated[
        Path, typer.Option("--out", help="File to write (or a directory: keeps the name).")
    ],
) -> None:
    """Download an evidence attachment, verifying its SHA-256."""
    with connect() as api:
        saved = api.download_evidence_attachment(model, version, evidence_id, filename, out_path)
    out.success(f"Saved {saved['path']} ({out.size(saved['size'])}, sha256 verified).")


# ----------------------------------------------------------------------------- history


def history(
    model: str,
    at: Annotated[
        str | None,
        typer.Option(help="The instant to look at (ISO 8601; UTC unless a zone is given)."),
    ] = None,
    json_: AsJson = False,
) -> None:
    """Which version was in which stage at an instant (default: now), and the changes."""
    moment = parse_time(at, "--at")
    with connect() as api:
        h = api.stage_history(model, moment)
    if json_:
        out.emit_json(h)
        return
    when = out.when(h["at"]) if h["at"] else "now"
    production = h["production"]
    out.record(
        [
            ("model", h["model"]),
            ("at", when),
            ("production", f"version {production}" if production is not None else "none"),
        ],
        title=f"stage history of {model}",
    )
    out.table(
        ["version", "stage", "since"],
        ([s["version"], s["stage"], out.when(s["since"])] for s in h["stages"]),
        title=f"stages at {when}",
    )
    out.table(
        ["time", "version", "from", "to", "by", "request", "reason"],
        (
            [
                out.when(c["time"]),
                c["version"],
                c["from_stage"] or "(registered)",
                c["to_stage"],
                c["actor"],
                f"#{c['transition_id']}" if c["transition_id"] else "",
                c["reason"],
            ]
            for c in h["changes"]
        ),
        title="changes",
    )


# ---------------------------------------------------------------------------- webhooks


@webhooks_app.command("create")
def webhooks_create(
    name: str,
    url: Annotated[str, typer.Argument(help="The http(s) address that receives the events.")],
    event: Annotated[
        list[GovernanceEvent],
        typer.Option("--event", help="An event type to deliver (repeatable, at least one)."),
    ],
    reason: Reason,
    description: Annotated[str, typer.Option(help="What the receiver is.")] = "",
    json_: AsJson = False,
) -> None:
    """Subscribe a webhook; its signing secret is printed once."""
    with connect() as api:
        hook = api.create_webhook(name, url, [e.value for e in event], reason, description)
    if json_:
        out.emit_json(hook)
        return
    out.success(f"Created webhook {hook['name']} → {hook['url']} ({', '.join(hook['events'])}).")
    out.secret_box(
        "webhook signing secret — shown once, store it now",
        hook["secret"],
        hint="Receivers check X-Mlgov-Signature (HMAC-SHA256) with it.",
    )
    out.warn("the secret cannot be shown again; store it where the receiver can read it.")


@webhooks_app.command("list")
def webhooks_list(json_: AsJson = False) -> None:
    """List webhooks, removed ones included."""
    with connect() as api:
        hooks = api.list_webhooks()
    if json_:
        out.emit_json_lines(hooks)
        return
    out.table(
        ["name", "url", "events", "active", "created by", "created", "removed"],
        (
            [
                w["name"],
                w["url"],
                w["events"],
                w["active"],
                w["created_by"],
                out.when(w["created_at"]),
                out.when(w["disabled_at"]),
            ]
            for w in hooks
        ),
    )


@webhooks_app.command("deliveries")
def webhooks_deliveries(
    name: str,
    status: Annotated[
        DeliveryStatus | None, typer.Option(help="Only deliveries in this status.")
    ] = None,
    limit: Limit = 50,
    json_: AsJson = False,
) -> None:
    """List a webhook's deliveries, newest first, with their attempts."""
    with connect() as api:
        found = api.webhook_deliveries(
            name, status=status.value if status else None, limit=min(limit + 1, 200)
        )
        deliveries, more = out.first(found, limit)
    if json_:
        out.emit_json_lines(deliveries)
        return
    out.table(
        ["id", "event", "status", "attempts", "last code", "last error", "created", "delivered"],
        (
            [
                d["id"],
                d["event_type"],
                d["status"],
                d["attempts"],
                d["last_status_code"],
                d["last_error"],
                out.when(d["created_at"]),
                out.when(d["delivered_at"]),
            ]
            for d in deliveries
        ),
    )
    if more:
        out.info(f"(first {limit} shown; raise --limit for more)")


@webhooks_app.command("delete")
def webhooks_delete(name: str, reason: Reason, json_: AsJson = False) -> None:
    """Remove a webhook: nothing more is delivered to it; its history is kept."""
    with connect() as api:
        hook = api.delete_webhook(name, reason)
    if json_:
        out.emit_json(hook)
    else:
        out.success(f"Removed webhook {hook['name']} (its delivery history is kept).")

"""``mlgov audit``: read the audit trail (who changed what, when, and why) and prove it:
checkpoints, inclusion and consistency proofs, export and offline verification."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from mlgov.audit.events import Action
from mlgov.audit.proofs import verifiers_from
from mlgov.audit.verify import VerificationFailed, verify_export
from mlgov.cli import output as out
from mlgov.cli.config import connect, credentials
from mlgov.client import Client, PermissionDenied
from mlgov.tlog.note import NoteError, Signer

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


# -- the verifiable log -----------------------------------------------------------------------

KeyOption = Annotated[
    list[str],
    typer.Option(
        "--public-key",
        help="The log's public key (name+hash+base64) or a file holding it; repeat for "
        "rotated keys.",
    ),
]


def _keys(values: list[str]) -> list[str]:
    """Each value is a verifier key, or a file holding one per line."""
    keys: list[str] = []
    for value in values:
        if "+" in value and not Path(value).exists():
            keys.append(value.strip())
            continue
        path = Path(value)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise out.CliError(f"--public-key {value}: not a key, and {exc.strerror}") from None
        keys.extend(line.strip() for line in lines if line.strip())
    if not keys:
        raise out.CliError("--public-key is required: the key you trust to have signed the log")
    return keys


def _read_note(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise out.CliError(f"{path}: {exc.strerror}") from None


def _failed(exc: VerificationFailed) -> NoReturn:
    where = f" at entry {exc.seq}" if exc.seq is not None else ""
    out.error(f"verification FAILED{where}: {exc}")
    raise typer.Exit(1)


@audit_app.command("public-key")
def audit_public_key(
    key_file: Annotated[
        Path | None,
        typer.Option(help="Derive it from this private key file instead of asking the server."),
    ] = None,
) -> None:
    """Print the public key that verifies the log's checkpoints (C2SP verifier key)."""
    if key_file is not None:
        try:
            signer = Signer.from_key_string(key_file.read_text(encoding="utf-8").strip())
        except OSError as exc:
            raise out.CliError(f"{key_file}: {exc.strerror}") from None
        except NoteError as exc:
            raise out.CliError(f"{key_file}: {exc}") from None
        print(signer.verifier().key_string())
        return
    with connect() as api:
        print(api.audit_public_key()["verifier_key"])


@audit_app.command("checkpoint")
def audit_checkpoint(
    create: Annotated[
        bool, typer.Option("--create", help="Sign one of the log as it is now.")
    ] = False,
    note: Annotated[
        bool, typer.Option("--note", help="Print only the signed note (to keep it as evidence).")
    ] = False,
) -> None:
    """Show the latest signed checkpoint of the audit log."""
    with connect() as api:
        cp = api.create_audit_checkpoint() if create else api.audit_checkpoint()
    if note:
        print(cp["note"], end="")
        return
    out.record(
        [
            ("tree size", cp["tree_size"]),
            ("root hash", cp["root_hash"]),
            ("signed", out.when(cp["time"])),
            ("key", cp["key_name"]),
        ],
        title="checkpoint",
    )


@audit_app.command("prove")
def audit_prove(
    seq: Annotated[int, typer.Argument(min=0, help="Sequence number of the event.")],
    public_key: KeyOption = [],  # noqa: B006 (typer reads the default, never mutates it)
) -> None:
    """Prove that an event is in the signed log: check the checkpoint's signature and the
    inclusion proof locally."""
    keys = _keys(public_key)
    with connect() as api:
        try:
            result = api.verify_audit_entry(seq, keys)
        except VerificationFailed as exc:
            _failed(exc)
    entry, head = result["entry"], result["checkpoint"]
    out.success(
        f"event {seq} is in the log signed by {', '.join(head['key_names'])} "
        f"(tree of {head['tree_size']} entries, root {head['root_hash']})"
    )
    out.record(
        [
            ("time", entry["time"]),
            ("actor", entry["actor"]),
            ("action", entry["action"]),
            ("target", entry["target"]),
            ("reason", entry["reason"]),
            ("leaf hash", result["leaf_hash"]),
        ]
    )


@audit_app.command("consistency")
def audit_consistency(
    old: Annotated[Path, typer.Argument(help="A checkpoint note you kept earlier.")],
    public_key: KeyOption = [],  # noqa: B006
) -> None:
    """Prove that the server's latest checkpoint extends one you kept: nothing logged before
    it was changed or dropped since."""
    keys = _keys(public_key)
    note = _read_note(old)
    with connect() as api:
        try:
            result = api.verify_audit_consistency(note, keys)
        except VerificationFailed as exc:
            _failed(exc)
    out.success(
        f"the log of {result['new']['tree_size']} entries extends the one of "
        f"{result['old']['tree_size']} you kept (root {result['new']['root_hash']})"
    )


@audit_app.command("export")
def audit_export(
    out_path: Annotated[Path, typer.Option("--out", help="File to write (JSON Lines).")],
    checkpoint: Annotated[
        bool,
        typer.Option(help="Have the server sign a checkpoint first, so the export ends on one."),
    ] = True,
) -> None:
    """Export the audit log (entries and signed checkpoints) for offline verification."""
    with connect() as api:
        size = None
        if checkpoint:
            try:
                size = api.create_audit_checkpoint()["tree_size"]
            except PermissionDenied:
                out.warn("you may not sign checkpoints: the export ends at the latest one's")
                size = api.audit_checkpoint()["tree_size"]
        lines = api.export_audit(out_path, tree_size=size)
    out.success(f"wrote {out_path} ({lines} lines)")


@audit_app.command("verify")
def audit_verify(
    file: Annotated[
        Path | None, typer.Argument(help="An export file (mlgov audit export).")
    ] = None,
    public_key: KeyOption = [],  # noqa: B006
    server: Annotated[
        str | None,
        typer.Option(
            help="Verify the live log of this server instead of a file (uses your token)."
        ),
    ] = None,
    trusted: Annotated[
        list[Path],
        typer.Option(
            "--checkpoint", help="A checkpoint note kept earlier that the log must still match."
        ),
    ] = [],  # noqa: B006
    allow_unsigned_tail: Annotated[
        bool, typer.Option(help="Accept entries after the last signed checkpoint.")
    ] = False,
) -> None:
    """Verify every entry, root and checkpoint signature of an export, with only the public
    key. Exits 1 and names the first bad entry on failure."""
    if (file is None) == (server is None):
        raise out.CliError("give an export FILE or --server URL (one of them)")
    keys = _keys(public_key)
    notes = [_read_note(path) for path in trusted]
    try:
        verifiers = verifiers_from(keys)
        if file is not None:
            try:
                with open(file, "rb") as lines:
                    report = verify_export(
                        lines, verifiers, trusted=notes, allow_unsigned_tail=allow_unsigned_tail
                    )
            except OSError as exc:
                raise out.CliError(f"{file}: {exc.strerror}") from None
        else:
            assert server is not None
            with Client(server, credentials().token) as api:
                try:
                    size = api.create_audit_checkpoint()["tree_size"]
                except PermissionDenied:
                    size = api.audit_checkpoint()["tree_size"]
                with api.audit_export_lines(size) as lines:
                    report = verify_export(
                        lines, verifiers, trusted=notes, allow_unsigned_tail=allow_unsigned_tail
                    )
    except VerificationFailed as exc:
        _failed(exc)
    head = report.head
    signed = (
        f"signed tree head: size {head.size}, root {head.root_hash.hex()}, origin {head.origin}, "
        f"key {', '.join(head.key_names)}"
        if head
        else "no signed checkpoint"
    )
    checkpoints = "checkpoint" if report.checkpoints == 1 else "checkpoints"
    out.success(f"verified {report.entries:,} entries and {report.checkpoints:,} {checkpoints}")
    out.info(signed)
    if report.unsigned_tail:
        out.warn(f"the last {report.unsigned_tail} entries are covered by no signed checkpoint")

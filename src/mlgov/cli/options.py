"""Options shared by many commands, and readers for the files they name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Reason = Annotated[
    str,
    typer.Option(
        "--reason",
        help="Why this change is made (required; recorded in the audit trail).",
        show_default=False,
    ),
]


def read_json_object(path: Path, option: str) -> dict[str, Any]:
    """The JSON object in ``path``; a usage error (exit 2) naming ``option`` otherwise."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(
            f"cannot read JSON from {path}: {exc}", param_hint=option
        ) from None
    if not isinstance(value, dict):
        raise typer.BadParameter(f"{path} must hold a JSON object", param_hint=option)
    return value


def read_json(path: Path, option: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(
            f"cannot read JSON from {path}: {exc}", param_hint=option
        ) from None

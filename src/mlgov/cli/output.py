"""How the CLI talks to people: Rich tables and records on stdout, JSON for scripts, errors in
red on stderr, boxed one-time secrets and progress bars (on stderr, so stdout stays clean).

Text from the server is always wrapped in :class:`rich.text.Text`, never parsed as markup.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import typer
from rich import box
from rich.console import Console
from rich.panel import Panel
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from mlgov.client import MlgovError


class CliError(Exception):
    """A failure to report in one line (not logged in, unreadable file, ...): exit code 1."""


def stdout() -> Console:
    return Console(highlight=False)


def stderr() -> Console:
    return Console(stderr=True, highlight=False)


# ------------------------------------------------------------------------------ messages


def success(message: str) -> None:
    stdout().print(Text(message, style="green"))


def info(message: str) -> None:
    stdout().print(Text(message))


def warn(message: str) -> None:
    stderr().print(Text(f"Warning: {message}", style="yellow"))


def error(message: str) -> None:
    stderr().print(Text(f"Error: {message}", style="bold red"))


def problem(exc: MlgovError) -> None:
    """An API problem: its title (and status), detail and field, in red on stderr."""
    text = Text(style="red")
    head = f"{exc.title} ({exc.status})" if exc.status else exc.title
    text.append(f"Error: {head}\n", style="bold red")
    text.append(f"  {exc.detail}")
    if exc.field:
        text.append(f"\n  field: {exc.field}")
    request_id = exc.problem.get("request_id")
    if exc.status and exc.status >= 500 and request_id:
        text.append(f"\n  request id: {request_id}")
    stderr().print(text)


def secret_box(title: str, secret: str, hint: str = "") -> None:
    """A one-time secret in a clearly marked box (stdout, so it can be captured)."""
    body = Text(secret, style="bold")
    if hint:
        body.append(f"\n\n{hint}", style="dim")
    stdout().print(
        Panel(body, title=Text(title, style="bold yellow"), border_style="yellow", expand=False)
    )


# -------------------------------------------------------------------------------- JSON


def emit_json(value: Any) -> None:
    """One JSON document, indented."""
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False))


def emit_json_lines(values: Iterable[Any]) -> None:
    """One compact JSON document per line (for jq and friends)."""
    for value in values:
        typer.echo(json.dumps(value, ensure_ascii=False))


# ------------------------------------------------------------------------------ tables


def cell(value: Any) -> str:
    """A value as table text: lists joined, None empty, times shortened to the second."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(cell(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def when(value: str | None) -> str:
    """An API timestamp (ISO 8601, UTC) as ``2024-05-01 12:00:00Z``."""
    if not value:
        return ""
    return value[:19].replace("T", " ") + "Z"


def size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def table(
    columns: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str | None = None
) -> int:
    """Print rows as a Rich table; return how many there were."""
    out = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left")
    for column in columns:
        out.add_column(column, overflow="fold")
    count = 0
    for row in rows:
        out.add_row(*(Text(cell(v)) for v in row))
        count += 1
    console = stdout()
    if count:
        console.print(out)
    else:
        console.print(Text("(none)", style="dim"))
    return count


def record(fields: Sequence[tuple[str, Any]], *, title: str | None = None) -> None:
    """Print one object as aligned ``key  value`` lines."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    for key, value in fields:
        grid.add_row(Text(key), Text(cell(value)))
    console = stdout()
    if title:
        console.print(Text(title, style="bold underline"))
    console.print(grid)


# ----------------------------------------------------------------------------- progress


@contextmanager
def progress_bar(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A transfer bar on stderr; yields a callback taking the bytes done so far."""
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=stderr(),
    )
    task = bar.add_task(description, total=total)
    with bar:
        yield lambda done: bar.update(task, completed=done)


T = TypeVar("T")


def first(items: Iterable[T], limit: int) -> tuple[list[T], bool]:
    """At most ``limit`` items, reading one more to tell whether there were more."""
    taken = list(itertools.islice(items, limit + 1))
    return taken[:limit], len(taken) > limit

"""``mlgov validate``, ``mlgov validations``, ``mlgov suites`` and ``mlgov datasets
upload-data``: evidence the server computes, from the shell.

``mlgov validate MODEL VERSION --suite S --dataset D@V`` queues a run; with ``--wait`` it shows
the worker's progress as a bar and the outcome of each check when the run ends (exit code 1 when
the run failed to complete; a run whose checks failed completed, and exits 0 with the failures
shown — the gates act on them).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from mlgov.cli import output as out
from mlgov.cli.config import connect
from mlgov.cli.options import AsJson, Reason

suites_app = typer.Typer(
    help="Validation suites (YAML, versioned): which checks a run computes, with thresholds.",
    no_args_is_help=True,
)
validations_app = typer.Typer(
    help="Validation runs: list them (bare `mlgov validations`), show one, get its report.",
    invoke_without_command=True,
)

JobId = Annotated[int, typer.Argument(metavar="ID", min=1, help="Validation run id.")]
_DATASET_REF = re.compile(r"^[^@\s]+@\d+$")


def _dataset(value: str) -> str:
    if not _DATASET_REF.match(value):
        raise typer.BadParameter("expected NAME@VERSION, e.g. credit-applications@2")
    return value


# ------------------------------------------------------------------------------- suites


@suites_app.command("list")
def suites_list(json_: AsJson = False) -> None:
    """List the latest version of each suite."""
    with connect() as api:
        suites = api.list_suites()
    if json_:
        out.emit_json_lines(suites)
        return
    out.table(
        ["suite", "version", "checks", "sha256", "published by", "published"],
        (
            [
                s["name"],
                s["version"],
                sorted(k for k, v in (s["definition"].get("checks") or {}).items() if v),
                s["sha256"][:12],
                s["created_by"],
                out.when(s["created_at"]),
            ]
            for s in suites
        ),
    )


@suites_app.command("show")
def suites_show(
    name: str,
    version: Annotated[int | None, typer.Option(min=1, help="An earlier version.")] = None,
    json_: AsJson = False,
) -> None:
    """Print a suite's YAML (or its record as JSON)."""
    with connect() as api:
        s = api.get_suite(name, version)
    if json_:
        out.emit_json(s)
        return
    typer.echo(s["document"], nl=not s["document"].endswith("\n"))


@suites_app.command("publish")
def suites_publish(
    name: str,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="The suite (YAML).")],
    reason: Reason,
    json_: AsJson = False,
) -> None:
    """Publish a new version of a suite (validator or admin)."""
    try:
        document = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise typer.BadParameter(f"cannot read {file}: {exc}", param_hint="FILE") from None
    with connect() as api:
        s = api.publish_suite(name, document, reason)
    if json_:
        out.emit_json(s)
    else:
        out.success(f"Published suite {s['name']} version {s['version']} (sha256 {s['sha256']}).")


# ------------------------------------------------------------------------------ running


def validate(
    model: str,
    version: Annotated[int, typer.Argument(min=1)],
    suite: Annotated[str, typer.Option(help="The suite's name.")],
    dataset: Annotated[
        str, typer.Option(help="The dataset version, NAME@VERSION.", callback=_dataset)
    ],
    reason: Reason,
    suite_version: Annotated[
        int | None, typer.Option(min=1, help="A suite version (default: the latest).")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Follow the run with a progress bar until it ends.")
    ] = False,
    timeout: Annotated[
        float | None, typer.Option(min=1, help="With --wait: give up after this many seconds.")
    ] = None,
    json_: AsJson = False,
) -> None:
    """Run a validation suite on a model version and a dataset version (validator or admin).

    The server's worker computes the evidence; each check kind becomes an evidence record that
    the lifecycle gates act on."""
    with connect() as api:
        job = api.validate(model, version, suite, dataset, reason, suite_version=suite_version)
        if not wait:
            if json_:
                out.emit_json(job)
            else:
                out.success(
                    f"Queued validation run #{job['id']}: {job['suite']} v{job['suite_version']} "
                    f"on {job['dataset']} for {model} v{version}. Follow it with "
                    f"`mlgov validations show {job['id']}`."
                )
            return
        job = _follow(api, job["id"], timeout)
    if json_:
        out.emit_json(job)
    else:
        _show(job)
    if job["status"] == "failed":
        raise typer.Exit(1)


def _follow(api: Any, job_id: int, timeout: float | None) -> dict[str, Any]:
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=out.stderr(),
    )
    task = bar.add_task(f"run #{job_id}: queued", total=1.0)

    def seen(job: dict[str, Any]) -> None:
        bar.update(
            task,
            completed=job["progress"],
            description=f"run #{job_id}: {job['progress_message'] or job['status']}",
        )

    with bar:
        return api.wait_for_validation(job_id, timeout=timeout, progress=seen)  # type: ignore[no-any-return]


def _show(job: dict[str, Any]) -> None:
    if job["status"] == "failed":
        out.error(f"Validation run #{job['id']} failed: {job['error']}")
        return
    out.record(
        [
            ("run", job["id"]),
            ("model", f"{job['model']} v{job['version']}"),
            ("suite", f"{job['suite']} v{job['suite_version']}"),
            ("dataset", job["dataset"]),
            ("status", job["status"]),
            ("passed", job["passed"]),
            ("progress", f"{job['progress']:.0%} {job['progress_message']}"),
            ("requested by", job["requested_by"]),
            ("worker", job["worker"]),
            ("runtime", f"{job['runtime_seconds']:.1f} s" if job["runtime_seconds"] else ""),
            ("champion", job["champion_version"]),
            ("report", job["report"]["url"] if job["report"] else ""),
            ("error", job["error"]),
        ],
        title=f"Validation run #{job['id']}",
    )
    if job["outcome"]:
        out.table(
            ["kind", "passed", "evidence", "seconds", "peak MiB", "summary"],
            (
                [
                    o["kind"],
                    o["passed"],
                    o["evidence_id"],
                    o.get("runtime_seconds"),
                    o.get("peak_memory_mb"),
                    o["summary"],
                ]
                for o in job["outcome"]
            ),
        )


@validations_app.callback()
def validations_list(
    ctx: typer.Context,
    status: Annotated[
        str | None, typer.Option(help="queued, running, succeeded or failed.")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Only this model's runs.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many rows.")] = 50,
    json_: AsJson = False,
) -> None:
    """List validation runs, newest first."""
    if ctx.invoked_subcommand is not None:
        return
    with connect() as api:
        jobs = api.list_validations(status=status, model=model, limit=limit)
    if json_:
        out.emit_json_lines(jobs)
        return
    out.table(
        ["id", "model", "version", "suite", "dataset", "status", "passed", "by", "requested"],
        (
            [
                j["id"],
                j["model"],
                j["version"],
                f"{j['suite']}@{j['suite_version']}",
                j["dataset"],
                j["status"],
                j["passed"],
                j["requested_by"],
                out.when(j["requested_at"]),
            ]
            for j in jobs
        ),
    )


@validations_app.command("show")
def validations_show(job_id: JobId, json_: AsJson = False) -> None:
    """Show a run: status, progress, each check's outcome, the error of a failed run."""
    with connect() as api:
        job = api.get_validation(job_id)
    if json_:
        out.emit_json(job)
    else:
        _show(job)


@validations_app.command("report")
def validations_report(
    job_id: JobId,
    out_path: Annotated[Path, typer.Option("--out", help="File to write (or a directory).")] = Path(
        "."
    ),
) -> None:
    """Download a run's HTML report (self-contained, opens offline), verifying its SHA-256."""
    with connect() as api:
        saved = api.download_validation_report(job_id, out_path)
    out.success(f"Saved {saved['path']} ({out.size(saved['size'])}, sha256 verified).")


# ------------------------------------------------------------------------- dataset data


def datasets_upload_data(
    dataset: str,
    version: Annotated[int, typer.Argument(min=1)],
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="The data file (CSV or Parquet).")
    ],
    reason: Reason,
    format: Annotated[
        str | None, typer.Option(help="csv or parquet (default: from the file name).")
    ] = None,
    json_: AsJson = False,
) -> None:
    """Upload a dataset version's data so validation runs can read it (its sha256 must be the
    registered one)."""
    total = file.stat().st_size
    with connect() as api, out.progress_bar(f"upload {file.name}", total) as report:
        dv = api.upload_dataset_data(dataset, version, file, reason, format=format, progress=report)
    if json_:
        out.emit_json(dv)
    else:
        out.success(
            f"Uploaded the data of {dataset}@{version} ({out.size(total)}, {dv['data']['format']})."
        )

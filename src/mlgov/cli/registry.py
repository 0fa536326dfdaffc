"""``mlgov models``, ``mlgov versions`` and ``mlgov datasets``: the registry from the shell."""

from __future__ import annotations

import csv
import hashlib
import importlib.metadata
import platform
import re
from pathlib import Path
from typing import Annotated, Any

import typer

from mlgov.cli import output as out
from mlgov.cli.config import connect
from mlgov.cli.options import AsJson, Reason, read_json, read_json_object

models_app = typer.Typer(help="Register, find and describe models.", no_args_is_help=True)
versions_app = typer.Typer(
    help="Model versions: upload artifacts with their metadata, download them.",
    no_args_is_help=True,
)
datasets_app = typer.Typer(
    help="Datasets and their versions (content hash, schema, datasheet).", no_args_is_help=True
)

RISK_TIERS = "unacceptable, high, limited or minimal"
Limit = Annotated[int, typer.Option(min=1, help="Show at most this many rows.")]


def _when(value: str | None) -> str:
    return out.when(value)


# -------------------------------------------------------------------------------- models


def _model_fields(model: dict[str, Any]) -> list[tuple[str, Any]]:
    latest = model.get("latest_version")
    return [
        ("name", model["name"]),
        ("description", model["description"]),
        ("owner team", model["owner_team"]),
        ("risk tier", model["risk_tier"]),
        ("domain", model["domain"]),
        ("intended use", model["intended_use"]),
        ("out of scope", model["out_of_scope_uses"]),
        ("tags", model["tags"]),
        ("latest version", f"{latest['version']} ({latest['stage']})" if latest else "none"),
        ("created", f"{_when(model['created_at'])} by {model['created_by']}"),
        ("updated", _when(model["updated_at"])),
    ]


@models_app.command("list")
def models_list(
    q: Annotated[str | None, typer.Option(help="Free text (name, description, use).")] = None,
    owner_team: Annotated[str | None, typer.Option(help="Owner team.")] = None,
    risk_tier: Annotated[str | None, typer.Option(help=f"Risk tier: {RISK_TIERS}.")] = None,
    stage: Annotated[str | None, typer.Option(help="Stage of the latest version.")] = None,
    tag: Annotated[str | None, typer.Option(help="A tag the model carries.")] = None,
    limit: Limit = 50,
    json_: AsJson = False,
) -> None:
    """Search the model catalog."""
    with connect() as api:
        found = api.search_models(
            q=q,
            owner_team=owner_team,
            risk_tier=risk_tier,
            stage=stage,
            tag=tag,
            limit=min(limit + 1, 200),
        )
        models, more = out.first(found, limit)
    if json_:
        out.emit_json_lines(models)
        return
    out.table(
        ["name", "owner team", "risk tier", "latest", "tags", "updated"],
        (
            [
                m["name"],
                m["owner_team"],
                m["risk_tier"],
                f"v{lv['version']} {lv['stage']}" if (lv := m.get("latest_version")) else "",
                m["tags"],
                _when(m["updated_at"]),
            ]
            for m in models
        ),
    )
    if more:
        out.info(f"(first {limit} shown; raise --limit for more)")


@models_app.command("show")
def models_show(name: str, json_: AsJson = False) -> None:
    """Show a model and its latest version."""
    with connect() as api:
        model = api.get_model(name)
    if json_:
        out.emit_json(model)
    else:
        out.record(_model_fields(model), title=f"model {name}")


OutOfScope = Annotated[
    list[str] | None,
    typer.Option("--out-of-scope", help="A use the model is not for (repeatable)."),
]
Tags = Annotated[list[str] | None, typer.Option("--tag", help="A tag (repeatable).")]


@models_app.command("create")
def models_create(
    name: str,
    owner_team: Annotated[str, typer.Option(help="The team that owns the model.")],
    risk_tier: Annotated[str, typer.Option(help=f"Risk tier: {RISK_TIERS}.")],
    reason: Reason,
    description: Annotated[str, typer.Option(help="What the model does.")] = "",
    domain: Annotated[str, typer.Option(help="Domain, e.g. credit scoring.")] = "",
    intended_use: Annotated[str, typer.Option(help="What the model is for.")] = "",
    out_of_scope: OutOfScope = None,
    tag: Tags = None,
    json_: AsJson = False,
) -> None:
    """Register a new model."""
    with connect() as api:
        model = api.create_model(
            name,
            owner_team,
            risk_tier,
            reason,
            description=description,
            domain=domain,
            intended_use=intended_use,
            out_of_scope_uses=out_of_scope or [],
            tags=tag or [],
        )
    if json_:
        out.emit_json(model)
    else:
        out.success(f"Registered model {model['name']} (risk tier {model['risk_tier']}).")


@models_app.command("update")
def models_update(
    name: str,
    reason: Reason,
    description: Annotated[str | None, typer.Option(help="New description.")] = None,
    owner_team: Annotated[str | None, typer.Option(help="New owner team.")] = None,
    risk_tier: Annotated[str | None, typer.Option(help=f"New risk tier: {RISK_TIERS}.")] = None,
    domain: Annotated[str | None, typer.Option(help="New domain.")] = None,
    intended_use: Annotated[str | None, typer.Option(help="New intended use.")] = None,
    out_of_scope: OutOfScope = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="Replace the tags with these (repeatable).")
    ] = None,
    json_: AsJson = False,
) -> None:
    """Change a model's metadata (only the options given change)."""
    fields: dict[str, Any] = {
        "description": description,
        "owner_team": owner_team,
        "risk_tier": risk_tier,
        "domain": domain,
        "intended_use": intended_use,
        "out_of_scope_uses": out_of_scope or None,
        "tags": tag or None,
    }
    changes = {k: v for k, v in fields.items() if v is not None}
    if not changes:
        raise typer.BadParameter("give at least one field to change", param_hint="options")
    with connect() as api:
        model = api.update_model(name, reason, **changes)
    if json_:
        out.emit_json(model)
    else:
        out.success(f"Updated model {name}: {', '.join(sorted(changes))}.")


# ------------------------------------------------------------------------------ versions

_DATASET_REF = re.compile(r"^(?P<dataset>[^@\s]+)@(?P<version>\d+)(?::(?P<role>[a-z]+))?$")


def parse_dataset_ref(value: str) -> dict[str, Any]:
    """``NAME@VERSION[:role]`` (role: training, the default, validation or test)."""
    match = _DATASET_REF.fullmatch(value)
    if not match:
        raise typer.BadParameter(
            f"{value!r} is not NAME@VERSION[:role], e.g. credit-data@3:training",
            param_hint="--dataset",
        )
    return {
        "dataset": match["dataset"],
        "version": int(match["version"]),
        "role": match["role"] or "training",
    }


def current_environment() -> dict[str, Any]:
    """This interpreter's Python version and installed distributions (name -> version)."""
    packages: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"] if dist.metadata else None
        if name and len(name) <= 128 and name not in packages:
            packages[name] = dist.version or ""
    limited = dict(sorted(packages.items(), key=lambda kv: kv[0].lower())[:2000])
    return {"python": platform.python_version(), "packages": limited}


def _version_row(v: dict[str, Any]) -> list[Any]:
    return [
        v["version"],
        v["stage"],
        v["format"],
        v["artifact_sha256"][:12],
        out.size(v["artifact_size"]),
        v["created_by"],
        _when(v["created_at"]),
    ]


@versions_app.command("list")
def versions_list(model: str, json_: AsJson = False) -> None:
    """List a model's versions, newest first."""
    with connect() as api:
        versions = api.list_versions(model)
    if json_:
        out.emit_json_lines(versions)
        return
    out.table(
        ["version", "stage", "format", "sha256", "size", "created by", "created"],
        (_version_row(v) for v in versions),
    )


@versions_app.command("show")
def versions_show(model: str, version: int, json_: AsJson = False) -> None:
    """Show a version: artifact, signature, lineage, code and environment."""
    with connect() as api:
        v = api.get_version(model, version)
    if json_:
        out.emit_json(v)
        return
    code = v.get("code_ref") or {}
    env = v.get("environment") or {}
    out.record(
        [
            ("model", v["model"]),
            ("version", v["version"]),
            ("stage", v["stage"]),
            ("artifact", f"{v['artifact_filename']} ({out.size(v['artifact_size'])})"),
            ("sha256", v["artifact_sha256"]),
            ("format", v["format"]),
            ("algorithm", v["algorithm"]),
            ("hyperparameters", v["hyperparameters"] or ""),
            ("metrics", v["metrics"] or ""),
            ("code", f"{code['repository']}@{code['commit']}" if code else ""),
            ("python", env.get("python", "")),
            ("packages", len(env.get("packages") or {})),
            ("changelog", v["changelog"]),
            ("created", f"{_when(v['created_at'])} by {v['created_by']}"),
        ],
        title=f"{model} version {version}",
    )
    signature = v.get("signature") or {}
    for part in ("inputs", "outputs"):
        specs = signature.get(part) or []
        if specs:
            out.table(
                ["name", "type", "nullable", "range / categories"],
                (
                    [
                        s["name"],
                        s["type"],
                        s.get("nullable", False),
                        s.get("categories") or _range(s.get("min"), s.get("max")),
                    ]
                    for s in specs
                ),
                title=f"signature {part}",
            )
    if v["lineage"]:
        out.table(
            ["dataset", "version", "role", "content sha256"],
            (
                [d["dataset"], d["version"], d["role"], d["content_sha256"][:12]]
                for d in v["lineage"]
            ),
            title="lineage",
        )


def _range(low: float | None, high: float | None) -> str:
    if low is None and high is None:
        return ""
    return f"{'' if low is None else low} .. {'' if high is None else high}"


@versions_app.command("create")
def versions_create(
    model: str,
    artifact_file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="The artifact.")
    ],
    format_: Annotated[
        str,
        typer.Option("--format", help="Artifact format: skops, onnx, xgboost, lightgbm, mlflow, …"),
    ],
    signature: Annotated[
        Path,
        typer.Option(
            exists=True,
            dir_okay=False,
            help='Signature JSON file: {"inputs": [{"name", "type", ...}], "outputs": [...]}.',
        ),
    ],
    reason: Reason,
    algorithm: Annotated[
        str | None, typer.Option(help="Algorithm, e.g. gradient boosting.")
    ] = None,
    metrics: Annotated[
        Path | None,
        typer.Option(
            exists=True, dir_okay=False, help="Training metrics JSON file (name -> number)."
        ),
    ] = None,
    hyperparameters: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="Hyperparameters JSON file.")
    ] = None,
    code_repo: Annotated[str | None, typer.Option(help="Code repository URL.")] = None,
    code_commit: Annotated[
        str | None, typer.Option(help="Commit the model was built from.")
    ] = None,
    changelog: Annotated[
        str | None, typer.Option(help="What changed since the last version.")
    ] = None,
    dataset: Annotated[
        list[str] | None,
        typer.Option(help="Lineage: NAME@VERSION[:training|validation|test] (repeatable)."),
    ] = None,
    environment_auto: Annotated[
        bool,
        typer.Option(help="Record this Python's version and installed packages."),
    ] = False,
    json_: AsJson = False,
) -> None:
    """Register a model version, uploading its artifact with a progress bar."""
    metadata: dict[str, Any] = {}
    if algorithm is not None:
        metadata["algorithm"] = algorithm
    if metrics is not None:
        metadata["metrics"] = read_json_object(metrics, "--metrics")
    if hyperparameters is not None:
        metadata["hyperparameters"] = read_json_object(hyperparameters, "--hyperparameters")
    if (code_repo is None) != (code_commit is None):
        raise typer.BadParameter("give both or neither", param_hint="--code-repo/--code-commit")
    if code_repo is not None:
        metadata["code_ref"] = {"repository": code_repo, "commit": code_commit}
    if changelog is not None:
        metadata["changelog"] = changelog
    if dataset:
        metadata["datasets"] = [parse_dataset_ref(d) for d in dataset]
    if environment_auto:
        metadata["environment"] = current_environment()
    sig = read_json_object(signature, "--signature")
    total = artifact_file.stat().st_size
    with connect() as api, out.progress_bar(f"upload {artifact_file.name}", total) as report:
        v = api.create_version(
            model,
            artifact_file,
            format=format_,
            signature=sig,
            reason=reason,
            progress=report,
            **metadata,
        )
    if json_:
        out.emit_json(v)
    else:
        out.success(
            f"Registered {v['model']} version {v['version']} "
            f"(sha256 {v['artifact_sha256']}, {out.size(v['artifact_size'])})."
        )


@versions_app.command("download")
def versions_download(
    model: str,
    version: int,
    out_path: Annotated[
        Path, typer.Option("--out", help="File to write (or a directory: keeps the file name).")
    ],
) -> None:
    """Download a version's artifact, verifying its SHA-256."""
    with connect() as api:
        v = api.get_version(model, version)
        with out.progress_bar(f"download {v['artifact_filename']}", v["artifact_size"]) as report:
            result = api.download_artifact(model, version, out_path, progress=report)
    out.success(f"Saved {result['path']} ({out.size(result['size'])}, sha256 verified).")


# ------------------------------------------------------------------------------ datasets


@datasets_app.command("list")
def datasets_list(
    q: Annotated[str | None, typer.Option(help="Free text.")] = None,
    owner_team: Annotated[str | None, typer.Option(help="Owner team.")] = None,
    limit: Limit = 50,
    json_: AsJson = False,
) -> None:
    """Search datasets."""
    with connect() as api:
        found = api.search_datasets(q=q, owner_team=owner_team, limit=min(limit + 1, 200))
        datasets, more = out.first(found, limit)
    if json_:
        out.emit_json_lines(datasets)
        return
    out.table(
        ["name", "owner team", "description", "created by", "created"],
        (
            [d["name"], d["owner_team"], d["description"], d["created_by"], _when(d["created_at"])]
            for d in datasets
        ),
    )
    if more:
        out.info(f"(first {limit} shown; raise --limit for more)")


@datasets_app.command("show")
def datasets_show(name: str, json_: AsJson = False) -> None:
    """Show a dataset."""
    with connect() as api:
        d = api.get_dataset(name)
    if json_:
        out.emit_json(d)
        return
    out.record(
        [
            ("name", d["name"]),
            ("description", d["description"]),
            ("owner team", d["owner_team"]),
            ("created", f"{_when(d['created_at'])} by {d['created_by']}"),
        ],
        title=f"dataset {name}",
    )


@datasets_app.command("create")
def datasets_create(
    name: str,
    owner_team: Annotated[str, typer.Option(help="The team that owns the dataset.")],
    reason: Reason,
    description: Annotated[str, typer.Option(help="What the data is.")] = "",
    json_: AsJson = False,
) -> None:
    """Register a new dataset."""
    with connect() as api:
        d = api.create_dataset(name, owner_team, reason, description=description)
    if json_:
        out.emit_json(d)
    else:
        out.success(f"Registered dataset {d['name']}.")


def _file_sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _csv_rows(path: Path) -> int:
    """Data rows of a CSV/TSV file (the header row not counted)."""
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with path.open(newline="", encoding="utf-8", errors="replace") as file:
        return max(sum(1 for _ in csv.reader(file, delimiter=delimiter)) - 1, 0)


@datasets_app.command("version-create")
def datasets_version_create(
    name: str,
    schema: Annotated[
        Path,
        typer.Option(
            exists=True,
            dir_okay=False,
            help='Schema JSON file: [{"name": ..., "type": ..., "description": ...}, ...].',
        ),
    ],
    reason: Reason,
    content_sha256: Annotated[
        str | None, typer.Option(help="SHA-256 of the data (or use --from-file).")
    ] = None,
    uri: Annotated[
        str | None, typer.Option(help="Where the data lives (s3://, file://, …).")
    ] = None,
    row_count: Annotated[int | None, typer.Option(min=0, help="Number of rows.")] = None,
    datasheet: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="Datasheet JSON file.")
    ] = None,
    from_file: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="A local data file: computes --content-sha256, and --uri and (for CSV) "
            "--row-count when not given.",
        ),
    ] = None,
    json_: AsJson = False,
) -> None:
    """Register a dataset version (content hash, location, schema, row count, datasheet)."""
    if from_file is not None:
        digest = _file_sha256(from_file)
        if content_sha256 is not None and content_sha256.lower() != digest:
            raise typer.BadParameter(
                f"{from_file} has sha256 {digest}", param_hint="--content-sha256"
            )
        content_sha256 = digest
        uri = uri or from_file.resolve().as_uri()
        if row_count is None and from_file.suffix.lower() in {".csv", ".tsv"}:
            row_count = _csv_rows(from_file)
    for value, option in (
        (content_sha256, "--content-sha256"),
        (uri, "--uri"),
        (row_count, "--row-count"),
    ):
        if value is None:
            raise typer.BadParameter("required (or give --from-file)", param_hint=option)
    columns = read_json(schema, "--schema")
    if not isinstance(columns, list):
        raise typer.BadParameter(
            f"{schema} must hold a JSON list of columns", param_hint="--schema"
        )
    assert content_sha256 is not None and uri is not None and row_count is not None
    with connect() as api:
        dv = api.create_dataset_version(
            name,
            content_sha256=content_sha256,
            uri=uri,
            schema=columns,
            row_count=row_count,
            datasheet=read_json_object(datasheet, "--datasheet") if datasheet else None,
            reason=reason,
        )
    if json_:
        out.emit_json(dv)
    else:
        out.success(
            f"Registered {dv['dataset']} version {dv['version']} "
            f"(sha256 {dv['content_sha256']}, {dv['row_count']} rows)."
        )


@datasets_app.command("versions")
def datasets_versions(name: str, json_: AsJson = False) -> None:
    """List a dataset's versions."""
    with connect() as api:
        versions = api.list_dataset_versions(name)
    if json_:
        out.emit_json_lines(versions)
        return
    out.table(
        ["version", "content sha256", "rows", "uri", "created by", "created"],
        (
            [
                dv["version"],
                dv["content_sha256"][:12],
                dv["row_count"],
                dv["uri"],
                dv["created_by"],
                _when(dv["created_at"]),
            ]
            for dv in versions
        ),
    )


@datasets_app.command("version-show")
def datasets_version_show(name: str, version: int, json_: AsJson = False) -> None:
    """Show a dataset version, its schema, and the model versions built on it."""
    with connect() as api:
        dv = api.get_dataset_version(name, version)
    if json_:
        out.emit_json(dv)
        return
    sheet = {k: v for k, v in (dv.get("datasheet") or {}).items() if v}
    out.record(
        [
            ("dataset", dv["dataset"]),
            ("version", dv["version"]),
            ("content sha256", dv["content_sha256"]),
            ("uri", dv["uri"]),
            ("rows", dv["row_count"]),
            *((f"datasheet: {k}", v) for k, v in sheet.items()),
            ("created", f"{_when(dv['created_at'])} by {dv['created_by']}"),
        ],
        title=f"{name} version {version}",
    )
    out.table(
        ["column", "type", "description"],
        ([c["name"], c["type"], c.get("description", "")] for c in dv["schema"]),
        title="schema",
    )
    if dv.get("used_by"):
        out.table(
            ["model", "version", "role"],
            ([u["model"], u["version"], u["role"]] for u in dv["used_by"]),
            title="used by",
        )

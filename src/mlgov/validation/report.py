"""The validation report: one self-contained, offline HTML file.

:func:`render_report` writes the header (model, version, suite, dataset and its sha256, who
asked, when, runtime), a summary of every check kind with a pass/fail badge, and a section per
kind: its summary, its table of checks, the key results as tables, and plots (ROC curve and
calibration or residuals; per-group bars; permutation importance and SHAP mean |value|;
robustness per perturbation; champion vs challenger). Plots are drawn with matplotlib's Agg
renderer into PNG files embedded as ``data:`` URIs; the CSS is inline; nothing refers to
another file or any network address, so the report opens the same anywhere, years later.
User text (names, descriptions, feature names, group values) is escaped by jinja2's
autoescape.

The ``context`` (what :mod:`mlgov.validation.execute` passes; every key optional)::

    {"model": {"name", "version"}, "suite": {"name", "version", "sha256"},
     "dataset": {"name", "version", "sha256"}, "requested_by", "requested_at",
     "generated_at", "runtime_seconds", "rows",
     "checks": [<check record>, ...],           # see mlgov.validation.checks
     "plots": {"performance": {...}, "fairness": [...], ...}}   # each kind's plot data
"""

from __future__ import annotations

import base64
import importlib.resources
import io
import math
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2

MAX_TABLE_ROWS = 50
MAX_BAR_GROUPS = 30
KIND_TITLES = {
    "performance": "Performance",
    "fairness": "Fairness",
    "explainability": "Explainability",
    "robustness": "Robustness",
    "reproducibility": "Reproducibility",
    "champion_challenger": "Champion / challenger",
}


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "-"
        return f"{value:.4g}"
    if isinstance(value, list):
        text = ", ".join(str(v) for v in value[:10])
        return text + (", …" if len(value) > 10 else "")
    return str(value)


def _table(title: str, columns: list[str], rows: Iterable[Iterable[Any]]) -> dict[str, Any]:
    body = [[_fmt(v) for v in row] for row in rows]
    more = max(0, len(body) - MAX_TABLE_ROWS)
    return {"title": title, "columns": columns, "rows": body[:MAX_TABLE_ROWS], "more": more}


# -- plots ----------------------------------------------------------------------------------------


def _png(draw: Callable[[Any], None], size: tuple[float, float] = (6.0, 3.6)) -> str:
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, dpi=96, layout="constrained")
    draw(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _short(label: Any, limit: int = 28) -> str:
    """User text as a plot label: shortened, and with ``$`` escaped so matplotlib does not
    read it as mathtext (which a malformed formula would make raise)."""
    text = str(label)
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("$", r"\$")


def _values(values: Iterable[Any]) -> list[float]:
    return [
        float(v) if isinstance(v, int | float) and math.isfinite(v) else math.nan for v in values
    ]


def _performance_plots(data: dict[str, Any]) -> list[dict[str, str]]:
    images = []
    if "roc" in data:
        roc = data["roc"]

        def roc_plot(figure: Any) -> None:
            ax = figure.subplots()
            ax.plot(roc["fpr"], roc["tpr"], color="#1f5fa8", lw=2, label="model")
            ax.plot([0, 1], [0, 1], color="#999", ls="--", lw=1, label="chance")
            ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC curve")
            ax.legend(loc="lower right")

        images.append({"title": "ROC curve", "uri": _png(roc_plot, (4.6, 4.0))})
    if "calibration" in data:
        cal = data["calibration"]

        def calibration_plot(figure: Any) -> None:
            ax = figure.subplots()
            ax.plot(cal["predicted"], cal["observed"], marker="o", color="#1f5fa8", label="model")
            ax.plot([0, 1], [0, 1], color="#999", ls="--", lw=1, label="perfect")
            ax.set(
                xlabel="mean predicted P(positive)",
                ylabel="observed positive rate",
                title="Calibration (10 bins)",
            )
            ax.legend(loc="upper left")

        images.append({"title": "Calibration", "uri": _png(calibration_plot, (4.6, 4.0))})
    if "residuals" in data:
        res = data["residuals"]

        def residual_plot(figure: Any) -> None:
            ax = figure.subplots()
            ax.scatter(res["predicted"], res["residual"], s=6, alpha=0.5, color="#1f5fa8")
            ax.axhline(0, color="#999", lw=1)
            ax.set(xlabel="prediction", ylabel="label - prediction", title="Residuals")

        images.append({"title": "Residuals", "uri": _png(residual_plot)})
    return images


def _fairness_plots(data: list[dict[str, Any]]) -> list[dict[str, str]]:
    images = []
    for feature in data:
        groups = [_short(g) for g in feature["groups"][:MAX_BAR_GROUPS]]
        metrics = {m: _values(v[:MAX_BAR_GROUPS]) for m, v in feature["metrics"].items()}
        if not groups or not metrics:
            continue

        def bars(
            figure: Any,
            groups: list[str] = groups,
            metrics: dict[str, list[float]] = metrics,
            name: str = feature["feature"],
        ) -> None:
            ax = figure.subplots()
            width = 0.8 / len(metrics)
            for index, (metric, values) in enumerate(metrics.items()):
                positions = [g + index * width - 0.4 + width / 2 for g in range(len(groups))]
                ax.bar(positions, values, width=width, label=metric)
            ax.set_xticks(
                range(len(groups)),
                groups,
                rotation=30 if len(groups) > 4 else 0,
                ha="right" if len(groups) > 4 else "center",
            )
            ax.set(title=f"By group: {_short(name, 60)}")
            ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.0, 0.5))

        images.append({"title": f"Groups of {feature['feature']}", "uri": _png(bars, (7.0, 3.8))})
    return images


def _barh(
    title: str, labels: list[str], values: list[float], errors: list[float] | None, xlabel: str
) -> str:
    def draw(figure: Any) -> None:
        ax = figure.subplots()
        positions = list(range(len(labels)))[::-1]
        ax.barh(positions, values, xerr=errors, color="#1f5fa8", ecolor="#555")
        ax.set_yticks(positions, [_short(label, 36) for label in labels])
        ax.set(title=title, xlabel=xlabel)

    return _png(draw, (6.4, max(2.4, 0.32 * len(labels) + 1.2)))


def _explainability_plots(data: dict[str, Any]) -> list[dict[str, str]]:
    images = []
    perm = data.get("permutation") or []
    if perm:
        images.append(
            {
                "title": "Permutation importance",
                "uri": _barh(
                    "Permutation importance (score lost when shuffled)",
                    [p["feature"] for p in perm],
                    _values(p["mean"] for p in perm),
                    _values(p["std"] for p in perm),
                    "importance",
                ),
            }
        )
    shap = data.get("shap") or []
    if shap:
        images.append(
            {
                "title": "SHAP mean |value|",
                "uri": _barh(
                    "SHAP: mean |value|",
                    [s["feature"] for s in shap],
                    _values(s["mean_abs"] for s in shap),
                    None,
                    "mean |SHAP value|",
                ),
            }
        )
    return images


def _robustness_plots(data: list[dict[str, Any]]) -> list[dict[str, str]]:
    if not data:
        return []
    names = [_short(d["name"], 20) for d in data]
    panels = [
        ("mean_abs_change", "mean |change|"),
        ("label_agreement", "label agreement"),
        ("error_rate", "error rate"),
    ]
    panels = [p for p in panels if any(isinstance(d.get(p[0]), int | float) for d in data)]

    def draw(figure: Any) -> None:
        axes = figure.subplots(1, len(panels), squeeze=False)[0]
        for ax, (key, title) in zip(axes, panels, strict=True):
            ax.bar(range(len(names)), _values(d.get(key) for d in data), color="#1f5fa8")
            ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
            ax.set(title=title)

    if not panels:
        return []
    return [{"title": "Perturbations", "uri": _png(draw, (3.0 * len(panels) + 1, 3.6))}]


def _champion_plots(data: dict[str, Any]) -> list[dict[str, str]]:
    champion, challenger = data.get("champion") or {}, data.get("challenger") or {}
    values = _values([champion.get("value"), challenger.get("value")])
    if not champion or all(math.isnan(v) for v in values):
        return []

    def draw(figure: Any) -> None:
        ax = figure.subplots()
        labels = [
            f"champion v{champion.get('version')}",
            f"challenger v{challenger.get('version')}",
        ]
        ax.bar(labels, values, color=["#888", "#1f5fa8"])
        ax.set(title=_short(data.get("metric", ""), 60))

    return [{"title": "Champion vs challenger", "uri": _png(draw, (4.6, 3.4))}]


PLOTTERS: dict[str, Callable[[Any], list[dict[str, str]]]] = {
    "performance": _performance_plots,
    "fairness": _fairness_plots,
    "explainability": _explainability_plots,
    "robustness": _robustness_plots,
    "champion_challenger": _champion_plots,
}


# -- tables ---------------------------------------------------------------------------------------


def _performance_tables(results: dict[str, Any]) -> list[dict[str, Any]]:
    boot = results.get("bootstrap") or {}
    level = f"{100 * float(boot.get('confidence', 0.95)):g}%"
    tables = [
        _table(
            "Metrics",
            [
                "metric",
                "value",
                f"{level} CI low",
                f"{level} CI high",
                "resamples used",
                "min",
                "max",
                "note",
            ],
            (
                [
                    name,
                    m.get("value"),
                    m.get("ci_low"),
                    m.get("ci_high"),
                    m.get("bootstrap_used"),
                    m.get("min"),
                    m.get("max"),
                    m.get("note"),
                ]
                for name, m in (results.get("metrics") or {}).items()
            ),
        )
    ]
    confusion = results.get("confusion_matrix")
    if confusion and len(confusion.get("labels", [])) <= 20:
        labels = confusion["labels"]
        tables.append(
            _table(
                "Confusion matrix (rows: label, columns: prediction)",
                ["label \\ prediction", *labels],
                ([label, *row] for label, row in zip(labels, confusion["counts"], strict=True)),
            )
        )
    return tables


def _fairness_tables(results: dict[str, Any]) -> list[dict[str, Any]]:
    tables = []
    metrics = [m for m in results.get("metrics", []) if m != "count"]
    for feature in results.get("features", []):
        tables.append(
            _table(
                f"Groups of {feature['feature']}",
                ["group", "count", *metrics],
                ([g["group"], g["count"], *(g.get(m) for m in metrics)] for g in feature["groups"]),
            )
        )
        disparities = dict(feature.get("disparities") or {})
        disparities.update({f"{m}_difference": v for m, v in feature.get("difference", {}).items()})
        disparities.update({f"{m}_ratio": v for m, v in feature.get("ratio", {}).items()})
        tables.append(
            _table(
                f"Disparities across {feature['feature']}",
                ["measure", "value"],
                disparities.items(),
            )
        )
    return tables


def _explainability_tables(results: dict[str, Any]) -> list[dict[str, Any]]:
    perm = results.get("permutation") or {}
    tables = [
        _table(
            f"Permutation importance ({perm.get('scoring')}, {perm.get('rows')} rows, "
            f"{perm.get('n_repeats')} repeats; top {len(perm.get('features', []))} of "
            f"{perm.get('total_features')})",
            ["feature", "importance (mean)", "std", "share"],
            (
                [f["feature"], f.get("importance_mean"), f.get("importance_std"), f.get("share")]
                for f in perm.get("features", [])
            ),
        )
    ]
    shap = results.get("shap")
    if shap is not None and shap.get("available"):
        tables.append(
            _table(
                f"SHAP mean |value| ({shap.get('method')}, {shap.get('rows')} rows, "
                f"{shap.get('units')} units)",
                ["feature", "mean |value|"],
                ([f["feature"], f.get("mean_abs")] for f in shap.get("features", [])),
            )
        )
    elif shap is not None:
        tables.append(_table("SHAP", ["status"], [[shap.get("reason")]]))
    return tables


def _robustness_tables(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        _table(
            f"Perturbations of {results.get('rows')} rows (change in "
            f"{results.get('change_units') or 'n/a'})",
            [
                "name",
                "kind",
                "features",
                "rows perturbed",
                "mean |change|",
                "max |change|",
                "label agreement",
                "error rate",
                "score before",
                "score after",
                "first error",
            ],
            (
                [
                    p["name"],
                    p["kind"],
                    p.get("features"),
                    p.get("rows_perturbed"),
                    p.get("mean_abs_change"),
                    p.get("max_abs_change"),
                    p.get("label_agreement"),
                    p.get("error_rate"),
                    (p.get("score") or {}).get("clean"),
                    (p.get("score") or {}).get("perturbed"),
                    p.get("first_error") or p.get("note"),
                ]
                for p in results.get("perturbations", [])
            ),
        )
    ]


def _reproducibility_tables(results: dict[str, Any]) -> list[dict[str, Any]]:
    recorded = results.get("recorded") or {}
    code = recorded.get("code_ref") or {}
    env = recorded.get("environment") or {}
    det = results.get("determinism") or {}
    return [
        _table(
            "Recorded provenance",
            ["field", "value"],
            [
                ["training data sha256", recorded.get("data_hash")],
                ["code repository", code.get("repository")],
                ["code commit", code.get("commit")],
                ["python", env.get("python")],
                ["packages recorded", env.get("packages")],
            ],
        ),
        _table("Determinism (two fresh loads)", ["measure", "value"], det.items()),
    ]


def _champion_tables(results: dict[str, Any]) -> list[dict[str, Any]]:
    if results.get("champion") is None:
        return []
    rows = [
        [role, (results.get(role) or {}).get("version"), (results.get(role) or {}).get("value")]
        for role in ("champion", "challenger")
    ]
    rows.append(["margin (positive: challenger better)", None, results.get("margin")])
    return [_table(str(results.get("metric")), ["", "version", "value"], rows)]


TABLES: dict[str, Callable[[dict[str, Any]], list[dict[str, Any]]]] = {
    "performance": _performance_tables,
    "fairness": _fairness_tables,
    "explainability": _explainability_tables,
    "robustness": _robustness_tables,
    "reproducibility": _reproducibility_tables,
    "champion_challenger": _champion_tables,
}


# -- the page -------------------------------------------------------------------------------------


def _section(check: dict[str, Any], plots: dict[str, Any]) -> dict[str, Any]:
    kind = str(check.get("kind", ""))
    results = check.get("results") or {}
    plot_data = plots.get(kind)
    return {
        "kind": kind,
        "title": KIND_TITLES.get(kind, kind),
        "passed": bool(check.get("passed")),
        "summary": check.get("summary", ""),
        "items": [
            {
                "name": i.get("name", ""),
                "passed": bool(i.get("passed")),
                "value": _fmt(i.get("value")),
                "threshold": _fmt(i.get("threshold")),
                "details": i.get("details", ""),
            }
            for i in check.get("checks", [])
        ],
        "tables": TABLES[kind](results) if kind in TABLES else [],
        "images": PLOTTERS[kind](plot_data) if plot_data and kind in PLOTTERS else [],
        "attachments": [a.get("name", "") for a in check.get("attachments", [])],
        "runtime": _fmt(check.get("runtime_seconds")),
        "memory": _fmt(check.get("peak_memory_mb")),
    }


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_report(path: Path, context: dict[str, Any]) -> None:
    """Write the report for ``context`` to ``path`` (UTF-8 HTML, no external resources)."""
    template_text = (
        importlib.resources.files("mlgov.validation")
        .joinpath("report.html.j2")
        .read_text(encoding="utf-8")
    )
    template = _environment().from_string(template_text)
    checks = list(context.get("checks") or [])
    plots = dict(context.get("plots") or {})
    sections = [_section(check, plots) for check in checks]
    model = context.get("model") or {}
    suite = context.get("suite") or {}
    dataset = context.get("dataset") or {}
    html = template.render(
        model_name=str(model.get("name", "")),
        model_version=_fmt(model.get("version")),
        suite_name=str(suite.get("name", "")),
        suite_version=_fmt(suite.get("version")),
        suite_sha256=str(suite.get("sha256", "")),
        dataset_name=str(dataset.get("name", "")),
        dataset_version=_fmt(dataset.get("version")),
        dataset_sha256=str(dataset.get("sha256", "")),
        requested_by=str(context.get("requested_by", "")),
        requested_at=str(context.get("requested_at", "")),
        generated_at=str(
            context.get("generated_at") or datetime.now(UTC).isoformat(timespec="seconds")
        ),
        runtime=_fmt(context.get("runtime_seconds")),
        rows=_fmt(context.get("rows")),
        passed=all(s["passed"] for s in sections),
        sections=sections,
    )
    path.write_text(html, encoding="utf-8")

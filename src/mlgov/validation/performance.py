"""The performance check: the suite's metrics on every row, with bootstrap intervals.

Results::

    {"rows": 2000, "task": "classification", "positive_label": 1, "threshold": 0.5,
     "classes": [0, 1],
     "metrics": {"roc_auc": {"value": 0.83, "ci_low": 0.81, "ci_high": 0.85,
                             "bootstrap_used": 200, "greater_is_better": true,
                             "min": 0.7, "max": null, "note": ""}},
     "bootstrap": {"samples": 200, "confidence": 0.95, "seed": 0},
     "gate_on": "estimate",
     "confusion_matrix": {"labels": [0, 1], "counts": [[tn, fp], [fn, tp]]}}

Each bound of the suite is one item (``roc_auc >= 0.7``), compared with the point estimate or,
with ``gate_on: confidence_bound``, with the interval's pessimistic end.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.calibration import calibration_curve  # type: ignore[import-untyped]
from sklearn.metrics import roc_curve  # type: ignore[import-untyped]

from mlgov.validation.checks import (
    CheckContext,
    CheckOutcome,
    bound_items,
    finalise,
    fmt,
    item,
)
from mlgov.validation.metrics import bootstrap, metric_value, unavailable_reason
from mlgov.validation.model import Scored
from mlgov.validation.suite import KNOWN_METRICS, Performance

MAX_CURVE_POINTS = 200
MAX_RESIDUAL_POINTS = 2000


def _thin(*arrays: np.ndarray, limit: int = MAX_CURVE_POINTS) -> list[list[float]]:
    n = len(arrays[0])
    keep = np.unique(np.linspace(0, n - 1, min(n, limit)).round().astype(np.int64))
    return [[float(v) for v in a[keep]] for a in arrays]


def _plots(scored: Scored) -> dict[str, Any]:
    plots: dict[str, Any] = {}
    if scored.task == "regression":
        rng = np.random.default_rng(0)
        rows = np.arange(scored.n)
        if scored.n > MAX_RESIDUAL_POINTS:
            rows = np.sort(rng.choice(scored.n, MAX_RESIDUAL_POINTS, replace=False))
        predicted = scored.pred[rows].astype(float)
        plots["residuals"] = {
            "predicted": predicted.tolist(),
            "residual": (scored.y[rows] - predicted).tolist(),
        }
        return plots
    if scored.binary and scored.p_pos is not None and scored.y_bin is not None:
        y, p = scored.y_bin, scored.p_pos
        if 0 < y.sum() < len(y):
            fpr, tpr, _ = roc_curve(y, p)
            plots["roc"] = dict(zip(("fpr", "tpr"), _thin(fpr, tpr), strict=True))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # empty bins
                observed, predicted = calibration_curve(y, p, n_bins=10, strategy="uniform")
            plots["calibration"] = {"predicted": predicted.tolist(), "observed": observed.tolist()}
    return plots


def _confusion(scored: Scored) -> dict[str, Any]:
    classes = list(scored.predictor.classes or [])
    k = len(classes)
    counts = np.bincount(
        np.asarray(scored.y, dtype=np.int64) * k + np.asarray(scored.pred, dtype=np.int64),
        minlength=k * k,
    ).reshape(k, k)
    return {"labels": [str(c) for c in classes], "counts": counts.tolist()}


def run(ctx: CheckContext, config: Performance) -> CheckOutcome:
    scored = ctx.scored
    names = list(config.metrics)
    intervals = bootstrap(
        names,
        scored,
        samples=config.bootstrap.samples,
        confidence=config.bootstrap.confidence,
        seed=config.bootstrap.seed,
    )
    metrics: dict[str, Any] = {}
    items: list[dict[str, Any]] = []
    use_ci = config.gate_on == "confidence_bound"
    for name, bound in config.metrics.items():
        info = KNOWN_METRICS[name]
        reason = unavailable_reason(name, scored)
        value = metric_value(name, scored)
        interval = intervals.get(name)
        note = reason or ("" if value is not None else f"{name} is undefined on these rows")
        metrics[name] = {
            "value": value,
            "ci_low": interval.low if interval else None,
            "ci_high": interval.high if interval else None,
            "bootstrap_used": interval.used if interval else 0,
            "greater_is_better": info.greater_is_better,
            "min": bound.min,
            "max": bound.max,
            "note": note,
        }
        low = high = None
        if use_ci:  # the pessimistic end of the interval for each bound
            low = interval.low if interval else None
            high = interval.high if interval else None
            if low is None or high is None:
                items.extend(
                    item(
                        f"{name} {op} {limit:g}",
                        False,
                        None,
                        limit,
                        note or "no bootstrap resample defined the metric",
                    )
                    for op, limit in ((">=", bound.min), ("<=", bound.max))
                    if limit is not None
                )
                continue
        items.extend(
            bound_items(
                name,
                value,
                bound,
                why_missing=note,
                low=low,
                high=high,
                against="confidence bound" if use_ci else "",
            )
        )
    results: dict[str, Any] = {
        "rows": scored.n,
        "task": scored.task,
        "metrics": metrics,
        "bootstrap": config.bootstrap.model_dump(),
        "gate_on": config.gate_on,
    }
    if scored.task == "classification":
        results["positive_label"] = ctx.suite.positive_label
        results["threshold"] = ctx.suite.threshold if scored.proba is not None else None
        results["classes"] = [str(c) for c in scored.predictor.classes or []]
        results["confusion_matrix"] = _confusion(scored)
    shown = []
    for name in names[:4]:
        entry = metrics[name]
        text = f"{name} {fmt(entry['value'])}"
        if entry["ci_low"] is not None:
            text += f" [{fmt(entry['ci_low'])}, {fmt(entry['ci_high'])}]"
        shown.append(text)
    failed = [i["name"] for i in items if not i["passed"]]
    summary = f"On {scored.n:,} rows: {'; '.join(shown)}" + (" ..." if len(names) > 4 else "")
    summary += f". Failed: {', '.join(failed)}." if failed else "."
    record = finalise("performance", summary, results, items)
    return CheckOutcome(record, {"performance": _plots(scored)})

"""The fairness check: per-group metrics and disparities with fairlearn.

Each sensitive feature is evaluated on its own (and, with ``intersectional: true``, all of them
combined, groups named ``age_band=young, sex=F``); missing values form their own group
``(missing)``. Classification is evaluated one-vs-rest on ``positive_label`` (1 = positive), so
fairlearn's selection rate and error rates read as the suite author expects.

Results::

    {"rows": 2000, "task": "classification", "positive_label": 1,
     "features": [{"feature": "sex", "groups": [{"group": "F", "count": 1010,
                                                "selection_rate": 0.31, ...}, ...],
                   "overall": {"selection_rate": 0.30, ...},
                   "difference": {"selection_rate": 0.05, ...},   # MetricFrame.difference()
                   "ratio": {"selection_rate": 0.85, ...},        # MetricFrame.ratio()
                   "disparities": {"demographic_parity_difference": 0.05, ...}}]}

Each threshold is checked for every feature: ``demographic_parity_difference[sex] <= 0.1``.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
from fairlearn import metrics as flm  # type: ignore[import-untyped]
from sklearn import metrics as skm  # type: ignore[import-untyped]
from sklearn.exceptions import UndefinedMetricWarning  # type: ignore[import-untyped]

from mlgov.validation.checks import CheckContext, CheckOutcome, bound_items, finalise, write_csv
from mlgov.validation.model import Scored
from mlgov.validation.suite import DEFAULT_GROUP_METRICS, DISPARITY_METRICS, Fairness

MAX_GROUPS = 200
MISSING = "(missing)"
SCORE_METRICS = ("roc_auc", "mean_score")
DISPARITY_INPUTS = ("selection_rate", "true_positive_rate", "false_positive_rate")


def _quiet(function: Callable[..., Any]) -> Callable[..., float]:
    """A metric whose undefined cases (one class in a group) give NaN without a warning."""

    @functools.wraps(function)
    def wrapped(*args: Any, **kwargs: Any) -> float:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            warnings.filterwarnings("ignore", "y_pred contains classes not in y_true")
            return float(function(*args, **kwargs))

    return wrapped


def _roc_auc(y_true: Any, y_score: Any) -> float:
    if len(np.unique(y_true)) < 2:
        return float("nan")
    return float(skm.roc_auc_score(y_true, y_score))


def _mean(y_true: Any, y_pred: Any) -> float:
    return float(np.mean(y_pred)) if len(y_pred) else float("nan")


#: The function behind every group metric (the fairness tests compare with fairlearn's own).
GROUP_FUNCTIONS: dict[str, Callable[..., float]] = {
    "selection_rate": flm.selection_rate,
    "true_positive_rate": flm.true_positive_rate,
    "false_positive_rate": flm.false_positive_rate,
    "false_negative_rate": flm.false_negative_rate,
    "true_negative_rate": flm.true_negative_rate,
    "accuracy": skm.accuracy_score,
    "balanced_accuracy": _quiet(skm.balanced_accuracy_score),
    "precision": functools.partial(skm.precision_score, zero_division=np.nan),
    "recall": functools.partial(skm.recall_score, zero_division=np.nan),
    "f1": functools.partial(skm.f1_score, zero_division=np.nan),
    "roc_auc": _roc_auc,
    "mean_score": _mean,
    "rmse": skm.root_mean_squared_error,
    "mae": skm.mean_absolute_error,
    "r2": _quiet(skm.r2_score),
    "mean_prediction": flm.mean_prediction,
    "count": flm.count,
}

#: fairlearn's disparity functions, which :func:`_disparities` reproduces (and tests compare).
DISPARITY_FUNCTIONS: dict[str, Callable[..., float]] = {
    "demographic_parity_difference": flm.demographic_parity_difference,
    "demographic_parity_ratio": flm.demographic_parity_ratio,
    "equalized_odds_difference": flm.equalized_odds_difference,
    "equalized_odds_ratio": flm.equalized_odds_ratio,
}


def group_labels(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """Group names as text: a column's values, or ``col=value, col=value`` combined."""

    def text(column: str) -> pd.Series:
        values = frame[column]
        present = values.notna()
        out = values.astype(object).where(present, MISSING)
        return out.where(~present, out.map(str)).astype(str)

    if len(columns) == 1:
        labels = text(columns[0])
    else:
        labels = functools.reduce(
            lambda left, right: left + ", " + right,
            [column + "=" + text(column) for column in columns],
        )
    return labels.rename(" & ".join(columns)).reset_index(drop=True)


def _truth_and_prediction(scored: Scored) -> tuple[np.ndarray, np.ndarray]:
    if scored.task == "classification":
        assert scored.y_bin is not None and scored.pred_bin is not None
        return scored.y_bin, scored.pred_bin
    return np.asarray(scored.y), np.asarray(scored.pred)


def evaluate(
    scored: Scored, groups: pd.Series, metric_names: list[str], disparities: bool
) -> dict[str, Any]:
    """Per-group metrics (and, for classification, the disparities) for one grouping."""
    y, pred = _truth_and_prediction(scored)
    label_metrics = [m for m in metric_names if m not in SCORE_METRICS]
    score_metrics = [m for m in metric_names if m in SCORE_METRICS]
    frames = []
    if label_metrics:
        frames.append(
            flm.MetricFrame(
                metrics={m: GROUP_FUNCTIONS[m] for m in label_metrics},
                y_true=y,
                y_pred=pred,
                sensitive_features=groups,
            )
        )
    if score_metrics and scored.p_pos is not None:
        frames.append(
            flm.MetricFrame(
                metrics={m: GROUP_FUNCTIONS[m] for m in score_metrics},
                y_true=y,
                y_pred=scored.p_pos,
                sensitive_features=groups,
            )
        )
    by_group = pd.concat([f.by_group for f in frames], axis=1) if frames else pd.DataFrame()
    overall = pd.concat([f.overall for f in frames]) if frames else pd.Series(dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # ratios with a zero group
        difference = pd.concat([f.difference() for f in frames]) if frames else pd.Series()
        ratio = pd.concat([f.ratio() for f in frames]) if frames else pd.Series()
    counts = groups.value_counts()
    rows = []
    for group, values in by_group.iterrows():
        entry: dict[str, Any] = {"group": str(group), "count": int(counts.get(group, 0))}
        entry.update({m: float(values[m]) for m in by_group.columns if m != "count"})
        rows.append(entry)
    result: dict[str, Any] = {
        "groups": rows,
        "overall": {m: float(v) for m, v in overall.items() if m != "count"},
        "difference": {m: float(v) for m, v in difference.items() if m != "count"},
        "ratio": {m: float(v) for m, v in ratio.items() if m != "count"},
        "disparities": {},
    }
    if disparities:
        result["disparities"] = _disparities(difference, ratio)
    return result


def _disparities(difference: pd.Series, ratio: pd.Series) -> dict[str, float]:
    """fairlearn's four disparities, from the group metrics already computed: its functions
    build these same MetricFrames (selection rate; TPR then FPR, worst case) again, which on
    100,000 rows costs seconds each."""
    return {
        "demographic_parity_difference": float(difference["selection_rate"]),
        "demographic_parity_ratio": float(ratio["selection_rate"]),
        "equalized_odds_difference": float(
            max(difference[["true_positive_rate", "false_positive_rate"]])
        ),
        "equalized_odds_ratio": float(min(ratio[["true_positive_rate", "false_positive_rate"]])),
    }


def _threshold_value(evaluation: dict[str, Any], name: str) -> float | None:
    if name in DISPARITY_METRICS:
        value = evaluation["disparities"].get(name)
    elif name.endswith("_difference"):
        value = evaluation["difference"].get(name.removesuffix("_difference"))
    else:
        value = evaluation["ratio"].get(name.removesuffix("_ratio"))
    return None if value is None or not np.isfinite(value) else float(value)


def _needed_metrics(config: Fairness, task: str, has_proba: bool) -> list[str]:
    names = list(config.metrics or DEFAULT_GROUP_METRICS[task])  # type: ignore[index]
    for threshold in config.thresholds:
        if threshold in DISPARITY_METRICS:
            continue
        metric = threshold.removesuffix("_difference").removesuffix("_ratio")
        if metric not in names:
            names.append(metric)
    if task == "classification":  # the disparities are computed from these
        names += [m for m in DISPARITY_INPUTS if m not in names]
    if not has_proba:
        names = [m for m in names if m not in SCORE_METRICS]
    return names


def run(ctx: CheckContext, config: Fairness) -> CheckOutcome:
    scored = ctx.scored
    metric_names = _needed_metrics(config, scored.task, scored.p_pos is not None)
    disparities = scored.task == "classification"
    groupings = [[feature] for feature in config.sensitive_features]
    if config.intersectional and len(config.sensitive_features) > 1:
        groupings.append(list(config.sensitive_features))
    features: list[dict[str, Any]] = []
    items: list[dict[str, Any]] = []
    csv_rows: list[list[Any]] = []
    for columns in groupings:
        groups = group_labels(ctx.frame, columns)
        name = " & ".join(columns)
        distinct = groups.nunique()
        if distinct > MAX_GROUPS:
            raise ValueError(
                f"the sensitive feature {name!r} has {distinct:,} distinct values; fairness "
                f"compares groups, at most {MAX_GROUPS} (bin or recode the column)"
            )
        evaluation = {"feature": name, **evaluate(scored, groups, metric_names, disparities)}
        features.append(evaluation)
        for group in evaluation["groups"]:
            csv_rows.append(
                [name, group["group"], group["count"]]
                + [group.get(m) for m in metric_names if m != "count"]
            )
        for threshold, bound in config.thresholds.items():
            value = _threshold_value(evaluation, threshold)
            items.extend(
                bound_items(
                    f"{threshold}[{name}]",
                    value,
                    bound,
                    why_missing=f"{threshold} is undefined for {name} (a group lacks the "
                    "cases it compares, or the model gives no probabilities)",
                )
            )
    header = ["feature", "group", "count"] + [m for m in metric_names if m != "count"]
    attachment = write_csv(ctx.out_dir, "fairness_by_group.csv", header, csv_rows)
    results: dict[str, Any] = {
        "rows": scored.n,
        "task": scored.task,
        "metrics": metric_names,
        "features": features,
    }
    if scored.task == "classification":
        results["positive_label"] = ctx.suite.positive_label
    failed = [i["name"] for i in items if not i["passed"]]
    summary = (
        f"{len(features)} grouping(s) of {scored.n:,} rows "
        f"({', '.join(f['feature'] for f in features)})"
    )
    summary += (
        f"; failed: {', '.join(failed)}."
        if failed
        else ("; every disparity is within its threshold." if items else ".")
    )
    record = finalise("fairness", summary, results, items, [attachment])
    plot = [
        {
            "feature": f["feature"],
            "groups": [g["group"] for g in f["groups"]],
            "metrics": {m: [g.get(m) for g in f["groups"]] for m in metric_names if m != "count"},
        }
        for f in features
    ]
    return CheckOutcome(record, {"fairness": plot})

"""The explainability check: permutation importance, and SHAP values where the model allows.

Permutation importance is scikit-learn's ``permutation_importance`` itself, run on a seeded
sample of rows (``permutation.max_rows``) through a small estimator adapter around the loaded
model; the score is a suite metric (``permutation.scoring``, by default ROC AUC for a binary
classifier with probabilities, accuracy for other classifiers, R² for regression), negated
when lower is better, so an importance is always the score lost when the feature is shuffled.
SHAP values come from :mod:`mlgov.validation.attributions`.

Results::

    {"permutation": {"scoring": "roc_auc", "rows": 2000, "n_repeats": 5, "seed": 0,
                     "baseline_score": 0.83, "total_features": 12,
                     "features": [{"feature": "income", "importance_mean": 0.08,
                                   "importance_std": 0.01, "share": 0.41}, ...]},   # top_k
     "shap": {"available": true, "reason": "", "method": "xgboost TreeSHAP (pred_contribs)",
              "rows": 1000, "units": "margin", "additivity_max_abs_error": 1e-6,
              "features": [{"feature": "income", "mean_abs": 0.52}, ...]}}   # top_k

``share`` is a feature's part of the summed positive importances. Items: the top feature's
share (``max_top_feature_share``), the importance of named features (``max_importance``, e.g.
a proxy of a protected attribute) and, when the suite requires it, that SHAP values exist.
CSV attachments hold every feature: permutation_importance.csv, shap_mean_abs.csv.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
from sklearn.inspection import permutation_importance  # type: ignore[import-untyped]

from mlgov.validation.attributions import shap_values
from mlgov.validation.checks import CheckContext, CheckOutcome, finalise, fmt, item, write_csv
from mlgov.validation.metrics import metric_value, unavailable_reason
from mlgov.validation.model import Predictor, Scored, rescore, sample_rows, subset
from mlgov.validation.suite import KNOWN_METRICS, Explainability


class EstimatorAdapter:
    """Just enough of a scikit-learn estimator for ``permutation_importance``: the scorer
    does the predicting, through the :class:`Predictor`."""

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor

    def fit(self, X: Any, y: Any) -> EstimatorAdapter:
        raise NotImplementedError("a loaded model is not refitted")

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.predictor.outputs(X)[1]


def default_scoring(scored: Scored) -> str:
    if scored.task == "regression":
        return "r2"
    return "roc_auc" if scored.binary and scored.p_pos is not None else "accuracy"


def make_scorer(name: str) -> Any:
    """A scikit-learn scorer (``scorer(estimator, X, y)``, greater is better) for a suite
    metric, computed on the adapter's predictions."""
    sign = 1.0 if KNOWN_METRICS[name].greater_is_better else -1.0

    def scorer(estimator: EstimatorAdapter, X: pd.DataFrame, y: np.ndarray) -> float:
        value = metric_value(name, rescore(estimator.predictor, X, y))
        return float("nan") if value is None else sign * value

    return scorer


def permutation(
    ctx: CheckContext, config: Explainability, scoring: str
) -> tuple[dict[str, Any], pd.DataFrame]:
    settings = config.permutation
    rows = sample_rows(ctx.scored.n, settings.max_rows, settings.seed)
    X = ctx.X.iloc[rows].reset_index(drop=True)
    sampled = subset(ctx.scored, rows)
    scorer = make_scorer(scoring)
    adapter = EstimatorAdapter(ctx.scored.predictor)
    result = permutation_importance(
        adapter,
        X,
        sampled.y,
        scoring=scorer,
        n_repeats=settings.n_repeats,
        random_state=settings.seed,
    )
    table = pd.DataFrame(
        {
            "feature": [str(c) for c in X.columns],
            "importance_mean": result.importances_mean,
            "importance_std": result.importances_std,
        }
    )
    positive = table["importance_mean"].clip(lower=0).fillna(0).sum()
    table["share"] = table["importance_mean"].clip(lower=0) / positive if positive > 0 else np.nan
    table = table.sort_values("importance_mean", ascending=False, na_position="last")
    summary = {
        "scoring": scoring,
        "greater_is_better": KNOWN_METRICS[scoring].greater_is_better,
        "rows": len(rows),
        "n_repeats": settings.n_repeats,
        "seed": settings.seed,
        "baseline_score": metric_value(scoring, sampled),
        "total_features": len(table),
        "features": table.head(config.top_k).to_dict("records"),
    }
    return summary, table


def run(ctx: CheckContext, config: Explainability) -> CheckOutcome:
    scored = ctx.scored
    unknown = [f for f in config.thresholds.max_importance if f not in ctx.inputs]
    if unknown:
        raise ValueError(
            "explainability thresholds name features that are not model inputs: "
            + ", ".join(unknown)
        )
    scoring = config.permutation.scoring or default_scoring(scored)
    if reason := unavailable_reason(scoring, scored):
        raise ValueError(f"explainability cannot score with {scoring}: {reason}")
    perm, table = permutation(ctx, config, scoring)
    attachments = [
        write_csv(
            ctx.out_dir,
            "permutation_importance.csv",
            ["feature", "importance_mean", "importance_std", "share"],
            table[["feature", "importance_mean", "importance_std", "share"]].itertuples(
                index=False
            ),
        )
    ]
    items: list[dict[str, Any]] = []
    thresholds = config.thresholds
    if thresholds.max_top_feature_share is not None:
        limit = thresholds.max_top_feature_share
        top = table.iloc[0] if len(table) else None
        share = None if top is None or not np.isfinite(top["share"]) else float(top["share"])
        if share is None:
            items.append(
                item(
                    f"top feature share <= {limit:g}",
                    True,
                    None,
                    limit,
                    "no feature has a positive importance: none dominates",
                )
            )
        else:
            items.append(
                item(
                    f"top feature share <= {limit:g}",
                    share <= limit,
                    share,
                    limit,
                    f"top feature: {top['feature'] if top is not None else ''}",
                )
            )
    by_feature = table.set_index("feature")["importance_mean"]
    for feature, limit in thresholds.max_importance.items():
        value = by_feature.get(feature)
        finite = value is not None and np.isfinite(value)
        items.append(
            item(
                f"importance of {feature} <= {limit:g}",
                bool(finite and value <= limit),
                float(value) if finite else None,
                limit,
                f"permutation importance ({scoring})" if finite else "undefined importance",
            )
        )
    shap: dict[str, Any] | None = None
    shap_plot: list[dict[str, Any]] = []
    if config.shap is not None:
        rows = sample_rows(scored.n, config.shap.max_rows, config.permutation.seed)
        output = scored.predictor.positive_index
        found = shap_values(getattr(ctx.model, "native", None), ctx.X.iloc[rows], output)
        if isinstance(found, str):
            shap = {"available": False, "reason": found, "rows": 0, "features": []}
        else:
            mean_abs = pd.DataFrame(
                {"feature": found.features, "mean_abs": np.abs(found.values).mean(axis=0)}
            ).sort_values("mean_abs", ascending=False)
            attachments.append(
                write_csv(
                    ctx.out_dir,
                    "shap_mean_abs.csv",
                    ["feature", "mean_abs"],
                    mean_abs.itertuples(index=False),
                )
            )
            shap = {
                "available": True,
                "reason": "",
                "method": found.method,
                "units": found.units,
                "rows": len(rows),
                "additivity_max_abs_error": found.additivity_max_abs_error,
                "features": mean_abs.head(config.top_k).to_dict("records"),
            }
            shap_plot = shap["features"]
        if config.shap.required:
            items.append(
                item(
                    "SHAP values available",
                    shap["available"],
                    "yes" if shap["available"] else "no",
                    "required",
                    shap.get("method") or shap["reason"],
                )
            )
    results: dict[str, Any] = {"permutation": perm}
    if shap is not None:
        results["shap"] = shap
    top = ", ".join(
        f"{f['feature']} ({fmt(f['importance_mean'], 3)})" for f in perm["features"][:3]
    )
    summary = f"Permutation importance ({scoring}, {perm['rows']:,} rows): top {top or 'none'}."
    if shap is not None:
        summary += (
            " SHAP " + (f"by {shap['method']}" if shap["available"] else shap["reason"]) + "."
        )
    failed = [i["name"] for i in items if not i["passed"]]
    if failed:
        summary += f" Failed: {', '.join(failed)}."
    record = finalise("explainability", summary, results, items, attachments)
    plots = {
        "permutation": [
            {"feature": f["feature"], "mean": f["importance_mean"], "std": f["importance_std"]}
            for f in perm["features"]
        ],
        "shap": shap_plot,
    }
    return CheckOutcome(record, {"explainability": plots})

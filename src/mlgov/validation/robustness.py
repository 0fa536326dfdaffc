"""The robustness check: how the model's predictions move when its inputs are perturbed.

On a seeded sample of rows (``max_rows``), each perturbation changes the model's inputs and
the model predicts again; the results compare with its predictions on the clean rows:

- ``mean_abs_change`` / ``max_abs_change``: classification with probabilities, the total
  variation distance between the clean and perturbed class probabilities (0.5 x sum of
  |change|, which is |change in P(positive)| for a binary model); regression, |change in the
  prediction| divided by the standard deviation of the label (of the clean predictions when
  the suite has no label);
- ``label_agreement`` (classification): the share of rows whose predicted label is unchanged;
- ``error_rate``: the share of rows where the model raised or returned a non-finite value.
  When the perturbed batch fails, the unchanged and the changed rows are tried apart and a
  failing group is split in halves until the failing rows are found (at most
  ``MAX_ISOLATION_CALLS`` model calls; rows not isolated by then count as errors, and
  ``errors_not_isolated`` says how many).

Change and agreement are measured on the rows that did not fail. Missing values are written as
NaN, the way the dataset's own missing values reach the model. Results::

    {"rows": 10000, "seed": 0, "change_units": "probability",
     "perturbations": [{"name": "noise_10pct", "kind": "gaussian_noise",
                        "features": ["income"], "rows_perturbed": 10000,
                        "mean_abs_change": 0.012, "max_abs_change": 0.2,
                        "label_agreement": 0.98, "error_rate": 0.0, "errors": 0,
                        "first_error": "", "score": {"metric": "roc_auc", "clean": 0.83,
                        "perturbed": 0.81}, "thresholds": {...}}]}
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]

from mlgov.validation.checks import CheckContext, CheckOutcome, finalise, fmt, item, number
from mlgov.validation.explainability import default_scoring
from mlgov.validation.metrics import metric_value
from mlgov.validation.model import FloatArray, ModelError, Predictor, Scored, sample_rows, subset
from mlgov.validation.suite import (
    GaussianNoise,
    Missing,
    OutOfRange,
    Perturbation,
    Robustness,
    RobustnessThresholds,
    UnseenCategory,
)

MAX_ISOLATION_CALLS = 1000
UNSEEN = "__mlgov_unseen_category__"
# Mixed into the perturbations' seeds: default_rng([0, 0]) is default_rng(0), the generator
# that most synthetic datasets come from, and noise drawn from it would copy their columns.
STREAM = 0x6D6C676F76


def _numeric(values: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values))


def _text(values: pd.Series) -> bool:
    return bool(pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values))


def _features(perturbation: Perturbation, X: pd.DataFrame) -> list[str]:
    numeric = isinstance(perturbation, GaussianNoise | OutOfRange)
    text = isinstance(perturbation, UnseenCategory)
    if perturbation.features is None:
        return [
            str(c)
            for c in X.columns
            if (not numeric or _numeric(X[c])) and (not text or _text(X[c]))
        ]
    unknown = [f for f in perturbation.features if f not in X.columns]
    if unknown:
        raise ValueError(
            f"robustness perturbation {perturbation.name!r} names features that are not model "
            f"inputs: {', '.join(unknown)}"
        )
    wrong = [
        f
        for f in perturbation.features
        if (numeric and not _numeric(X[f])) or (text and not _text(X[f]))
    ]
    if wrong:
        need = "numeric" if numeric else "text"
        raise ValueError(
            f"robustness perturbation {perturbation.name!r} ({perturbation.kind}) applies to "
            f"{need} features; not to: {', '.join(wrong)}"
        )
    return list(perturbation.features)


def _restore_integers(original: pd.Series, values: FloatArray) -> pd.Series:
    if pd.api.types.is_integer_dtype(original):
        return pd.Series(np.round(values), index=original.index).astype(original.dtype)
    return pd.Series(values, index=original.index).astype(original.dtype)


def perturb(
    perturbation: Perturbation,
    X: pd.DataFrame,
    features: list[str],
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, np.ndarray]:
    """The perturbed copy of ``X`` and which rows changed."""
    out = X.copy()
    n = len(X)
    touched = np.zeros(n, dtype=bool)
    for column in features:
        values = X[column]
        if isinstance(perturbation, GaussianNoise):
            array = values.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
            spread = float(np.nanstd(array)) if np.isfinite(array).any() else 0.0
            noise = rng.normal(0.0, perturbation.scale * spread, size=n) if spread > 0 else None
            if noise is not None:
                out[column] = _restore_integers(values, array + noise)
                touched |= np.isfinite(array)
            continue
        mask = rng.random(n) < perturbation.fraction
        if not mask.any():
            continue
        touched |= mask
        if isinstance(perturbation, Missing):
            if _numeric(values):
                array = values.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
                array[mask] = np.nan
                out[column] = array
            else:
                changed = values.astype(object).copy()
                changed[mask] = np.nan
                out[column] = changed
        elif isinstance(perturbation, OutOfRange):
            array = values.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
            low, high = float(np.nanmin(array)), float(np.nanmax(array))
            span = high - low if high > low else max(abs(high), 1.0)
            above = rng.random(int(mask.sum())) < 0.5
            array[mask] = np.where(
                above, high + perturbation.factor * span, low - perturbation.factor * span
            )
            out[column] = _restore_integers(values, array)
        else:
            changed = values.astype(object).copy()
            changed[mask] = UNSEEN
            out[column] = changed
    return out, touched


def predict_isolating(
    predictor: Predictor,
    X: pd.DataFrame,
    touched: np.ndarray | None = None,
    *,
    max_calls: int = MAX_ISOLATION_CALLS,
) -> tuple[FloatArray | None, FloatArray, np.ndarray, int, str]:
    """Probabilities, labels/predictions, a mask of the rows that succeeded, how many failed
    rows were not isolated (counted as errors though some may be fine), the first error.

    All rows are predicted at once; when that fails, the rows the perturbation left alone
    (``touched`` false) and the changed ones are tried apart, and a failing group is split in
    halves until single rows are reached or ``max_calls`` model calls are spent."""
    n = len(X)
    width = len(predictor.classes) if predictor.classes is not None else 0
    proba = np.full((n, width), np.nan) if predictor.has_proba else None
    labels = np.full(n, np.nan)
    ok = np.zeros(n, dtype=bool)
    first_error = ""
    pending: list[np.ndarray] = [np.arange(n)]
    calls = 0
    not_isolated = 0
    while pending:
        rows = pending.pop()
        if calls >= max_calls:
            not_isolated += len(rows)
            continue
        calls += 1
        try:
            part_proba, part_labels = predictor.outputs(X.iloc[rows])
        except ModelError as exc:
            first_error = first_error or str(exc)
            if len(rows) == n and touched is not None and 0 < touched.sum() < n:
                pending.extend([rows[touched], rows[~touched]])
            elif len(rows) > 1:
                middle = len(rows) // 2
                pending.extend([rows[middle:], rows[:middle]])
            continue
        finite = np.isfinite(part_labels)
        if part_proba is not None and proba is not None:
            proba[rows] = part_proba
            finite &= np.isfinite(part_proba).all(axis=1)
        labels[rows] = part_labels
        ok[rows] = finite
        if not finite.all() and not first_error:
            first_error = "the model returned non-finite values"
    return proba, labels, ok, not_isolated, first_error


def _effective(
    general: RobustnessThresholds, own: RobustnessThresholds | None
) -> RobustnessThresholds:
    if own is None:
        return general
    merged = general.model_dump()
    merged.update({k: v for k, v in own.model_dump().items() if v is not None})
    return RobustnessThresholds(**merged)


def _changes(
    clean: Scored, proba: FloatArray | None, labels: FloatArray, ok: np.ndarray, y_std: float
) -> tuple[float | None, float | None, float | None, str]:
    """(mean change, max change, label agreement, units) over the rows in ``ok``."""
    if not ok.any():
        return None, None, None, ""
    if clean.task == "regression":
        if y_std <= 0:
            return None, None, None, "prediction / std(label) (undefined: the label is constant)"
        change = np.abs(labels[ok] - np.asarray(clean.pred, dtype=np.float64)[ok]) / y_std
        return float(change.mean()), float(change.max()), None, "prediction / std(label)"
    agreement = float(np.mean(labels[ok] == np.asarray(clean.pred)[ok]))
    if proba is None or clean.proba is None:
        return None, None, agreement, ""
    change = 0.5 * np.abs(proba[ok] - clean.proba[ok]).sum(axis=1)
    return float(change.mean()), float(change.max()), agreement, "probability"


def run(ctx: CheckContext, config: Robustness) -> CheckOutcome:
    rows = sample_rows(ctx.scored.n, config.max_rows, config.seed)
    X = ctx.X.iloc[rows].reset_index(drop=True)
    clean = subset(ctx.scored, rows)
    predictor = ctx.scored.predictor
    y_std = 0.0
    if ctx.scored.task == "regression":  # without a label, the clean predictions' spread
        y_std = float(np.std(ctx.scored.y if ctx.suite.label else ctx.scored.pred))
    scoring = default_scoring(ctx.scored)
    clean_score = metric_value(scoring, clean)
    entries: list[dict[str, Any]] = []
    items: list[dict[str, Any]] = []
    units = ""
    for index, perturbation in enumerate(config.perturbations):
        features = _features(perturbation, X)
        limits = _effective(config.thresholds, perturbation.thresholds)
        entry: dict[str, Any] = {
            "name": perturbation.name,
            "kind": perturbation.kind,
            "features": features,
            "thresholds": limits.model_dump(),
        }
        entries.append(entry)
        if not features:
            entry["note"] = "no model input of the kind this perturbation changes"
            continue
        rng = np.random.default_rng([STREAM, config.seed, index])
        perturbed, touched = perturb(perturbation, X, features, rng)
        proba, labels, ok, not_isolated, first_error = predict_isolating(
            predictor, perturbed, touched
        )
        mean_change, max_change, agreement, units_here = _changes(clean, proba, labels, ok, y_std)
        units = units or units_here
        errors = int((~ok).sum())
        score = None
        if ok.any():
            after = Scored(
                predictor,
                clean.y[ok],
                labels[ok].astype(clean.pred.dtype),
                None if proba is None else proba[ok],
                None if clean.y_bin is None else clean.y_bin[ok],
                None
                if clean.y_bin is None
                else (labels[ok] == predictor.positive_index).astype(np.int64),
                None if proba is None else predictor.p_positive(proba[ok]),
            )
            score = metric_value(scoring, after)
        entry.update(
            {
                "rows_perturbed": int(touched.sum()),
                "mean_abs_change": mean_change,
                "max_abs_change": max_change,
                "label_agreement": agreement,
                "error_rate": errors / len(X),
                "errors": errors,
                "errors_not_isolated": not_isolated,
                "first_error": first_error[:300],
                "score": {"metric": scoring, "clean": clean_score, "perturbed": score},
            }
        )
        name = perturbation.name
        if limits.max_mean_abs_change is not None:
            limit = limits.max_mean_abs_change
            items.append(
                item(
                    f"{name}: mean_abs_change <= {limit:g}",
                    mean_change is not None and mean_change <= limit,
                    mean_change,
                    limit,
                    units_here
                    if mean_change is not None
                    else "undefined: the model gives no probabilities, or every row failed",
                )
            )
        if limits.min_label_agreement is not None:
            limit = limits.min_label_agreement
            items.append(
                item(
                    f"{name}: label_agreement >= {limit:g}",
                    agreement is not None and agreement >= limit,
                    agreement,
                    limit,
                    "" if agreement is not None else "undefined: every row failed",
                )
            )
        if limits.max_error_rate is not None:
            limit = limits.max_error_rate
            rate = entry["error_rate"]
            items.append(
                item(
                    f"{name}: error_rate <= {limit:g}",
                    rate <= limit,
                    rate,
                    limit,
                    f"{errors} of {len(X)} rows failed"
                    + (f" ({not_isolated} not isolated)" if not_isolated else "")
                    + (f": {first_error}" if first_error else ""),
                )
            )
    results = {
        "rows": len(X),
        "seed": config.seed,
        "change_units": units,
        "perturbations": entries,
    }
    failed = [i["name"] for i in items if not i["passed"]]
    parts = [
        f"{e['name']} change {fmt(number(e.get('mean_abs_change')), 3)}"
        + (f", errors {e['errors']}" if e.get("errors") else "")
        for e in entries
        if "rows_perturbed" in e
    ]
    summary = (
        f"{len(entries)} perturbation(s) of {len(X):,} rows: {'; '.join(parts) or 'none applied'}."
    )
    if failed:
        summary += f" Failed: {', '.join(failed)}."
    record = finalise("robustness", summary, results, items)
    plot = [
        {
            "name": e["name"],
            "mean_abs_change": e.get("mean_abs_change"),
            "label_agreement": e.get("label_agreement"),
            "error_rate": e.get("error_rate"),
        }
        for e in entries
    ]
    return CheckOutcome(record, {"robustness": plot})

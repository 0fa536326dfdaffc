"""SHAP values without the shap package: exact attributions for the model types that allow it.

- xgboost (a ``Booster`` or its scikit-learn wrapper): native TreeSHAP,
  ``Booster.predict(pred_contribs=True)``, in margin units (log-odds for binary:logistic);
- lightgbm (a ``Booster`` or its scikit-learn wrapper): native TreeSHAP,
  ``Booster.predict(pred_contrib=True)``, in raw-score units;
- a linear scikit-learn model (``coef_``) at the end of a ``Pipeline`` or on its own: the exact
  interventional linear SHAP ``coef * (x - mean(x))`` on the final step's inputs (the output
  of the preceding steps), with the explained rows as background, in decision-function units.

The underlying object comes from the loader as ``LoadedModel.native``. A model of any other
type gives a reason ("not available for this model type"), which the explainability check
reports without failing (unless the suite says SHAP is required). Classifiers are explained for
``positive_label``'s output (for a binary booster, classes[1]'s margin: |values| are the same
either way). ``additivity_max_abs_error`` is the largest |sum of a row's values + base value -
model output|, a check that the attributions explain the model's own output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]

from mlgov.validation.model import FloatArray


@dataclass
class ShapValues:
    method: str
    features: list[str]
    values: FloatArray  # (rows, features)
    base_values: FloatArray  # (rows,): the expected output; values + base = model output
    additivity_max_abs_error: float | None
    units: str


def _module(obj: Any) -> str:
    return type(obj).__module__.split(".")[0]


def _split_pipeline(native: Any) -> tuple[Any | None, Any]:
    steps = getattr(native, "steps", None)
    if isinstance(steps, list) and steps and _module(native) == "sklearn":
        final = steps[-1][1]
        return (native[:-1] if len(steps) > 1 else None), final
    return None, native


def _transformed(pre: Any | None, X: pd.DataFrame) -> tuple[Any, list[str]]:
    if pre is None:
        return X, [str(c) for c in X.columns]
    data = pre.transform(X)
    if hasattr(data, "toarray"):  # scipy sparse (one-hot encoders)
        data = data.toarray()
    if isinstance(data, pd.DataFrame):
        return data, [str(c) for c in data.columns]
    try:
        names = [str(n) for n in pre.get_feature_names_out()]
    except (AttributeError, ValueError, TypeError):
        names = [f"x{i}" for i in range(np.shape(data)[1])]
    return np.asarray(data), names


def _pick(contribs: np.ndarray, n_features: int, output: int | None) -> np.ndarray:
    """Rows x (features + bias) for one output of a multi-output contribution array."""
    if contribs.ndim == 3:  # xgboost multiclass: (rows, classes, features + 1)
        return contribs[:, output or 0, :]
    if contribs.shape[1] != n_features + 1:  # lightgbm multiclass: classes side by side
        width = n_features + 1
        start = (output or 0) * width
        return contribs[:, start : start + width]
    return contribs


def _margin_pick(margin: np.ndarray, output: int | None) -> np.ndarray:
    margin = np.asarray(margin, dtype=np.float64)
    if margin.ndim == 2 and margin.shape[1] > 1:
        return margin[:, output or 0]
    return margin.reshape(-1)


def _xgboost(final: Any, data: Any, names: list[str], output: int | None) -> ShapValues:
    import xgboost

    booster = final.get_booster() if hasattr(final, "get_booster") else final
    wanted = booster.feature_names
    if isinstance(data, pd.DataFrame):
        if wanted:
            data = data[wanted]
        matrix = xgboost.DMatrix(data, enable_categorical=True)
        names = [str(c) for c in data.columns]
    else:
        matrix = xgboost.DMatrix(data, feature_names=wanted)
        names = list(wanted) if wanted else names
    contribs = np.asarray(booster.predict(matrix, pred_contribs=True), dtype=np.float64)
    margin = booster.predict(matrix, output_margin=True)
    picked = _pick(contribs, len(names), output if contribs.ndim == 3 else None)
    error = float(np.max(np.abs(picked.sum(axis=1) - _margin_pick(margin, output))))
    return ShapValues(
        "xgboost TreeSHAP (pred_contribs)", names, picked[:, :-1], picked[:, -1], error, "margin"
    )


def _lightgbm(final: Any, data: Any, names: list[str], output: int | None) -> ShapValues:
    booster = final.booster_ if hasattr(final, "booster_") else final
    wanted = [str(n) for n in booster.feature_name()]
    if isinstance(data, pd.DataFrame) and set(wanted) <= set(data.columns):
        data = data[wanted]
    names = wanted
    contribs = np.asarray(booster.predict(data, pred_contrib=True), dtype=np.float64)
    raw = booster.predict(data, raw_score=True)
    picked = _pick(contribs, len(names), output)
    error = float(np.max(np.abs(picked.sum(axis=1) - _margin_pick(raw, output))))
    return ShapValues(
        "lightgbm TreeSHAP (pred_contrib)", names, picked[:, :-1], picked[:, -1], error, "raw score"
    )


def _linear(final: Any, data: Any, names: list[str], output: int | None) -> ShapValues:
    x = np.asarray(data, dtype=np.float64)
    coef = np.atleast_2d(np.asarray(final.coef_, dtype=np.float64))
    intercept = np.atleast_1d(np.asarray(getattr(final, "intercept_", 0.0), dtype=np.float64))
    row = 0 if coef.shape[0] == 1 else (output or 0)
    if coef.shape[1] != x.shape[1]:
        raise ValueError(f"coef_ has {coef.shape[1]} columns for {x.shape[1]} inputs")
    centred = x - x.mean(axis=0)
    values = coef[row] * centred
    output_value = x @ coef[row] + intercept[min(row, len(intercept) - 1)]
    error = float(np.max(np.abs(values.sum(axis=1) - (output_value - output_value.mean()))))
    base = np.full(len(x), output_value.mean())
    return ShapValues(
        "exact linear SHAP (coef x centred input)", names, values, base, error, "decision function"
    )


def shap_values(native: Any, X: pd.DataFrame, output: int | None) -> ShapValues | str:
    """The SHAP values of ``native`` on ``X`` for output ``output`` (a class index), or the
    reason they are not available."""
    if native is None:
        return "not available for this model type (the loader exposes no native model)"
    pre, final = _split_pipeline(native)
    module = _module(final)
    if module == "xgboost":
        compute = _xgboost
    elif module == "lightgbm":
        compute = _lightgbm
    elif module == "sklearn" and hasattr(final, "coef_"):
        compute = _linear
    else:
        return f"not available for this model type ({type(final).__name__})"
    try:
        data, names = _transformed(pre, X)
        result = compute(final, data, names, output)
    except Exception as exc:  # noqa: BLE001 - SHAP is best effort; its absence is reported
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"could not be computed: {type(exc).__name__}: {text}"[:300]
    return result

"""The model as the checks see it: a :class:`LoadedModel`, and its predictions on the dataset.

Loaders (:mod:`mlgov.artifacts.loaders`) turn every artifact format into a
:class:`LoadedModel`. :func:`score` predicts once on the evaluation rows and keeps everything
the checks share in a :class:`Scored`: the true labels and the predictions encoded as class
indices (classification) or floats (regression), the probabilities, and the
:class:`Predictor` that makes the same encoding for perturbed or resampled inputs.

Classification conventions (documented for the suite author):

- the model's ``classes`` give the column order of ``predict_proba``; a model that does not
  report them is assumed to follow scikit-learn (the sorted labels of the dataset);
- a binary classifier with probabilities predicts ``positive_label`` when
  P(positive) >= ``threshold``; otherwise the model's own ``predict`` decides;
- labels are matched to classes by value, and by text when the types differ (a CSV's ``1``
  matches an ONNX model's ``"1"``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


class LoadedModel(Protocol):
    """What the checks compute against. Loaders may add ``native``: the underlying object
    (a scikit-learn estimator, an xgboost or lightgbm Booster), used for SHAP values."""

    format: str
    feature_names: list[str] | None
    classes: list[Any] | None

    def predict(self, X: pd.DataFrame) -> np.ndarray: ...

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray | None: ...


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    line = line if len(line) <= 300 else line[:297] + "..."
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


class ModelError(ValueError):
    """The model raised, or answered with something unusable (wrong shape, non-finite)."""


def call_model(what: str, call: Callable[[], Any]) -> Any:
    """Run a model call; whatever it raises becomes a one-line :class:`ModelError`."""
    try:
        return call()
    except ModelError:
        raise
    except Exception as exc:  # the model's own code: whatever it raises is the model's failure
        raise ModelError(f"the model raised on {what}: {_first_line(exc)}") from exc


def _key(value: Any) -> Any:
    """A label's identity across numpy/Python/text types (1, 1.0, np.int64(1), True)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _index_of(classes: Sequence[Any]) -> Callable[[Any], int | None]:
    exact = {_key(c): i for i, c in enumerate(classes)}
    textual = {str(_key(c)): i for i, c in enumerate(classes)}

    def index(value: Any) -> int | None:
        key = _key(value)
        try:
            found = exact.get(key)
        except TypeError:  # unhashable label
            found = None
        return found if found is not None else textual.get(str(key))

    return index


def encode_labels(values: Any, classes: Sequence[Any], what: str) -> IntArray:
    """Class indices of ``values``; a value the classes lack is an error naming it."""
    codes, uniques = pd.factorize(pd.Series(np.asarray(values, dtype=object)), sort=False)
    index = _index_of(classes)
    mapping = np.empty(len(uniques), dtype=np.int64)
    unknown: list[str] = []
    for position, value in enumerate(uniques):
        found = index(value)
        if found is None:
            unknown.append(repr(_key(value)))
            found = -1
        mapping[position] = found
    if unknown:
        listed = ", ".join(unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        known = ", ".join(repr(_key(c)) for c in classes[:10])
        raise ValueError(f"{what} has values that are not classes of the model ({known}): {listed}")
    if (codes < 0).any():
        raise ValueError(f"{what} has missing values")
    out: IntArray = mapping[codes]
    return out


@dataclass
class Predictor:
    """Predicts in the encoding of a :class:`Scored`: class indices or floats."""

    model: LoadedModel
    task: str
    classes: list[Any] | None
    positive_index: int | None
    threshold: float
    has_proba: bool

    @property
    def binary(self) -> bool:
        return self.classes is not None and len(self.classes) == 2

    def proba(self, X: pd.DataFrame) -> FloatArray | None:
        if not self.has_proba:
            return None
        raw = call_model("predict_proba", lambda: self.model.predict_proba(X))
        if raw is None:
            raise ModelError("the model stopped returning probabilities")
        return self._check_proba(np.asarray(raw), len(X))

    def _check_proba(self, raw: np.ndarray, rows: int) -> FloatArray:
        proba = np.asarray(raw, dtype=np.float64)
        if proba.ndim == 1:  # P(classes[1]) of a binary classifier
            proba = np.column_stack([1.0 - proba, proba])
        k = len(self.classes) if self.classes is not None else proba.shape[1]
        if proba.ndim != 2 or proba.shape != (rows, k):
            raise ModelError(
                f"predict_proba returned shape {raw.shape}; expected ({rows}, {k}) for the "
                f"model's {k} classes"
            )
        return proba

    def labels(self, X: pd.DataFrame, proba: FloatArray | None) -> FloatArray:
        """Predicted class indices (classification) or predictions (regression), as floats so
        that a failed row can be NaN."""
        if self.task == "regression":
            raw = call_model("predict", lambda: self.model.predict(X))
            try:
                out = np.asarray(raw, dtype=np.float64).reshape(len(X), -1)
            except (TypeError, ValueError):
                raise ModelError("predict did not return one number per row") from None
            if out.shape[1] != 1:
                raise ModelError(f"predict returned {out.shape[1]} values per row; expected 1")
            return out[:, 0]
        assert self.classes is not None
        if proba is not None and self.binary:
            assert self.positive_index is not None
            positive = proba[:, self.positive_index] >= self.threshold
            return np.where(positive, self.positive_index, 1 - self.positive_index).astype(
                np.float64
            )
        raw = call_model("predict", lambda: self.model.predict(X))
        values = np.asarray(raw)
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        if values.shape != (len(X),):
            raise ModelError(f"predict returned shape {values.shape}; expected ({len(X)},)")
        try:
            return encode_labels(values, self.classes, "the model's predictions").astype(np.float64)
        except ValueError as exc:
            raise ModelError(str(exc)) from None

    def outputs(self, X: pd.DataFrame) -> tuple[FloatArray | None, FloatArray]:
        """(probabilities or None, labels/predictions) for ``X``."""
        proba = self.proba(X)
        return proba, self.labels(X, proba)

    def p_positive(self, proba: FloatArray | None) -> FloatArray | None:
        if proba is None or self.positive_index is None:
            return None
        return proba[:, self.positive_index]


@dataclass
class Scored:
    """True values and predictions on the evaluation rows, in one encoding.

    Classification: ``y`` and ``pred`` are class indices, ``proba`` the probabilities (or
    None), ``y_bin``/``pred_bin`` are 1 for ``positive_label`` and 0 otherwise, ``p_pos`` is
    P(positive). Regression: ``y`` and ``pred`` are floats, the rest None.
    """

    predictor: Predictor
    y: FloatArray | IntArray
    pred: FloatArray | IntArray
    proba: FloatArray | None
    y_bin: IntArray | None
    pred_bin: IntArray | None
    p_pos: FloatArray | None

    @property
    def task(self) -> str:
        return self.predictor.task

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def binary(self) -> bool:
        return self.predictor.binary


def _classes(model: LoadedModel, y: pd.Series, proba: np.ndarray | None) -> list[Any]:
    if model.classes is not None:
        return list(model.classes)
    observed = pd.unique(y.dropna())
    try:
        ordered = sorted(observed, key=_key)
    except TypeError:
        ordered = sorted(observed, key=str)
    if proba is not None:
        width = 2 if np.ndim(proba) == 1 else np.shape(proba)[1]
        if width != len(ordered):
            raise ValueError(
                f"the model does not report its classes and gives {width} probabilities per "
                f"row while the label has {len(ordered)} values"
            )
    return [v.item() if isinstance(v, np.generic) else v for v in ordered]


def _finite_or_fail(values: np.ndarray, what: str) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        rows = int(bad.reshape(len(values), -1).any(axis=1).sum())
        raise ModelError(f"the model returned non-finite {what} for {rows} rows")


def score(
    model: LoadedModel,
    X: pd.DataFrame,
    y: pd.Series,
    *,
    task: str,
    positive_label: Any = 1,
    threshold: float = 0.5,
) -> Scored:
    """Predict once on the evaluation rows; errors the user must fix are ValueErrors."""
    if y.isna().any():
        raise ValueError(
            f"the label column {y.name!r} has {int(y.isna().sum())} missing values; "
            "validation needs a label on every row"
        )
    if task == "regression":
        predictor = Predictor(model, task, None, None, threshold, has_proba=False)
        y_true = pd.to_numeric(y, errors="coerce")
        if y_true.isna().any():
            example = y[y_true.isna()].iloc[0]
            raise ValueError(f"the label column {y.name!r} holds a non-number: {example!r}")
        pred = predictor.labels(X, None)
        _finite_or_fail(pred, "predictions")
        return Scored(predictor, y_true.to_numpy(dtype=np.float64), pred, None, None, None, None)
    raw = call_model("predict_proba", lambda: model.predict_proba(X))
    classes = _classes(model, y, raw)
    index = _index_of(classes)
    positive_index = index(positive_label) if len(classes) >= 2 else None
    if positive_index is None:
        known = ", ".join(repr(_key(c)) for c in classes[:10])
        raise ValueError(
            f"the positive label {positive_label!r} is not a class of the model ({known})"
        )
    predictor = Predictor(model, task, classes, positive_index, threshold, raw is not None)
    proba = None if raw is None else predictor._check_proba(np.asarray(raw), len(X))
    if proba is not None:
        _finite_or_fail(proba, "probabilities")
    y_idx = encode_labels(y.to_numpy(), classes, f"the label column {y.name!r}")
    pred = predictor.labels(X, proba).astype(np.int64)
    return Scored(
        predictor=predictor,
        y=y_idx,
        pred=pred,
        proba=proba,
        y_bin=(y_idx == positive_index).astype(np.int64),
        pred_bin=(pred == positive_index).astype(np.int64),
        p_pos=predictor.p_positive(proba),
    )


def rescore(predictor: Predictor, X: pd.DataFrame, y: FloatArray | IntArray) -> Scored:
    """Predict on ``X`` with ``y`` already encoded (as in a :class:`Scored`)."""
    proba, labels = predictor.outputs(X)
    if proba is not None:
        _finite_or_fail(proba, "probabilities")
    _finite_or_fail(labels, "predictions")
    if predictor.task == "regression":
        return Scored(predictor, y, labels, None, None, None, None)
    pred = labels.astype(np.int64)
    positive = predictor.positive_index
    return Scored(
        predictor,
        y,
        pred,
        proba,
        (np.asarray(y) == positive).astype(np.int64),
        (pred == positive).astype(np.int64),
        predictor.p_positive(proba),
    )


def subset(scored: Scored, rows: IntArray) -> Scored:
    """The same scores restricted to ``rows``."""

    def take(values: Any) -> Any:
        return None if values is None else values[rows]

    return Scored(
        scored.predictor,
        take(scored.y),
        take(scored.pred),
        take(scored.proba),
        take(scored.y_bin),
        take(scored.pred_bin),
        take(scored.p_pos),
    )


def sample_rows(n: int, max_rows: int | None, seed: int) -> IntArray:
    """Row positions of a seeded sample without replacement, in order; all rows when they
    fit. The checks that work on a capped sample (permutation importance, SHAP, robustness)
    all draw it with this."""
    if max_rows is None or n <= max_rows:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=max_rows, replace=False)).astype(np.int64)

"""Loading scanned model artifacts into a common predict interface.

Only ever called inside the sandbox child (:mod:`mlgov.artifacts.sandbox`), never in the API
process. :func:`load_model` scans the artifact again first (defence in depth), then loads it with
the format's own safe loader and wraps it as a :class:`LoadedModel`:

* ``skops``: ``skops.io.load`` trusting only skops' defaults plus the admin's reviewed types;
* ``onnx``: an onnxruntime CPU session, single-threaded;
* ``xgboost`` / ``lightgbm``: a native ``Booster``, classifier or regressor by its objective;
* ``mlflow``: the archive is extracted safely and its flavour loaded by the matching loader above;
* ``pickle``: ``pickle.load``, only when ``ScanPolicy.allow_pickle`` is set.

Inputs are pandas DataFrames. Columns are selected and ordered by the registered signature when
one is given (missing columns raise ValueError naming them), then by the feature names the
model itself knows.
"""

from __future__ import annotations

import json
import pickle
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import yaml

from mlgov.artifacts.archive import open_archive
from mlgov.artifacts.scan import (
    ScanPolicy,
    mlflow_flavours,
    mlflow_root,
    mlflow_signature_names,
    scan_or_raise,
)

if TYPE_CHECKING:
    import numpy
    import pandas  # type: ignore[import-untyped]

__all__ = ["LoadedModel", "load_model", "signature_names"]


class LoadedModel(Protocol):
    format: str
    feature_names: list[str] | None  # input names, if the artifact knows them
    classes: list[Any] | None  # classifier classes (None for regressors)

    def predict(self, X: pandas.DataFrame) -> numpy.ndarray: ...

    def predict_proba(self, X: pandas.DataFrame) -> numpy.ndarray | None: ...


def load_model(
    path: Path,
    format: str,
    policy: ScanPolicy = ScanPolicy(),
    *,
    signature: dict[str, Any] | None = None,
) -> LoadedModel:
    """Scan, then load the artifact at ``path``; raises ``ArtifactRejected`` if the scan fails."""
    fmt = str(format)
    path = Path(path)
    scan_or_raise(path, fmt, policy)
    names = signature_names(signature)
    if fmt == "mlflow":
        return _load_mlflow(path, policy, names)
    if fmt == "other":
        raise ValueError("artifacts of format 'other' are stored but never loaded")
    return _load_native(path, fmt, fmt, policy, names)


def signature_names(signature: Mapping[str, Any] | None) -> list[str] | None:
    """The input names of a registered signature (``{"inputs": [{"name": ...}, ...]}``)."""
    if not signature:
        return None
    inputs = signature.get("inputs") or []
    names = [spec["name"] if isinstance(spec, Mapping) else spec.name for spec in inputs]
    return [str(name) for name in names] or None


# -- dispatch -----------------------------------------------------------------------------------


def _load_native(
    path: Path, rule: str, fmt: str, policy: ScanPolicy, names: list[str] | None
) -> LoadedModel:
    if rule == "skops":
        return _SklearnModel(_load_skops(path, policy), fmt, names)
    if rule == "pickle":
        return _SklearnModel(_load_pickle(path, policy), fmt, names)
    if rule == "onnx":
        return _OnnxModel(path, fmt, names)
    if rule == "xgboost":
        return _XGBoostModel(path, fmt, names)
    if rule == "lightgbm":
        return _LightGBMModel(path, fmt, names)
    raise ValueError(f"no loader for {rule!r}")


def _load_skops(path: Path, policy: ScanPolicy) -> Any:
    import skops.io  # type: ignore[import-untyped]

    # skops always adds its own defaults; the extra trust is exactly the admin's reviewed types
    # that this file uses (the scan has already refused any other untrusted type).
    reviewed = set(policy.trusted_types)
    trusted = [t for t in skops.io.get_untrusted_types(file=path) if t in reviewed]
    return skops.io.load(path, trusted=trusted)


def _load_pickle(path: Path, policy: ScanPolicy) -> Any:
    if not policy.allow_pickle:
        raise ValueError("plain pickle is refused unless an admin policy allows it")
    with path.open("rb") as stream:
        # The one place mlgov unpickles: the stream passed picklescan (no dangerous globals) just
        # now, an admin opted in with artifacts.allow_pickle, and this runs in the sandbox child,
        # a separate, resource-limited process whose only output is JSON.
        return pickle.load(stream)  # noqa: S301


def _load_mlflow(path: Path, policy: ScanPolicy, names: list[str] | None) -> LoadedModel:
    with tempfile.TemporaryDirectory(prefix="mlgov-mlflow-") as tmp:
        with open_archive(path) as archive:
            archive.extract_all(Path(tmp))
            root = mlflow_root(archive.files)
        if root is None:
            raise ValueError("no MLmodel file in the archive")
        model_dir = Path(tmp, *root.split("/")) if root else Path(tmp)
        mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text(encoding="utf-8"))
        flavours, _problems = mlflow_flavours(mlmodel)
        if not flavours:
            raise ValueError("the MLflow model has no flavour mlgov can load")
        flavour = flavours[0]
        data = model_dir.joinpath(*flavour.data.split("/"))
        # Every loader reads its model fully into memory, so the directory can go afterwards.
        return _load_native(
            data, flavour.rule, "mlflow", policy, names or mlflow_signature_names(mlmodel)
        )


# -- models -------------------------------------------------------------------------------------


def _columns(X: pandas.DataFrame, names: Sequence[str]) -> pandas.DataFrame:
    missing = [name for name in names if name not in X.columns]
    if missing:
        raise ValueError(f"columns missing: {', '.join(missing)}")
    return X.loc[:, list(names)]


class _Model:
    def __init__(self, fmt: str, signature: list[str] | None) -> None:
        self.format = fmt
        self.feature_names: list[str] | None = None
        self.classes: list[Any] | None = None
        #: The library object itself (estimator, Booster; None for ONNX): explanations that
        #: the library computes natively (TreeSHAP, linear coefficients) read it.
        self.native: Any = None
        self._signature = signature

    def _frame(self, X: pandas.DataFrame) -> pandas.DataFrame:
        """The registered signature's columns in its order, then the model's own order."""
        if self._signature:
            X = _columns(X, self._signature)
        if self.feature_names:
            X = _columns(X, self.feature_names)
        return X

    def _matrix(self, X: pandas.DataFrame) -> numpy.ndarray:
        import numpy as np

        return np.asarray(self._frame(X).to_numpy(dtype=np.float64))


class _SklearnModel(_Model):
    """A scikit-learn estimator (or anything with ``predict``) from skops or pickle."""

    def __init__(self, estimator: Any, fmt: str, signature: list[str] | None) -> None:
        super().__init__(fmt, signature)
        if not callable(getattr(estimator, "predict", None)):
            raise ValueError(f"the loaded object ({type(estimator).__name__}) has no predict()")
        self._estimator = estimator
        self.native = estimator
        names = getattr(estimator, "feature_names_in_", None)
        self.feature_names = [str(n) for n in names] if names is not None else None
        classes = getattr(estimator, "classes_", None)
        self.classes = list(_plain(classes)) if classes is not None else None

    def _input(self, X: pandas.DataFrame) -> Any:
        frame = self._frame(X)
        return frame if self.feature_names else frame.to_numpy()

    def predict(self, X: pandas.DataFrame) -> numpy.ndarray:
        import numpy as np

        return np.asarray(self._estimator.predict(self._input(X)))

    def predict_proba(self, X: pandas.DataFrame) -> numpy.ndarray | None:
        import numpy as np

        if self.classes is None:
            return None
        try:
            method = self._estimator.predict_proba
        except AttributeError:  # e.g. SVC(probability=False) hides it
            return None
        return np.asarray(method(self._input(X)), dtype=np.float64)


def _plain(values: Any) -> list[Any]:
    """A list of plain Python values (numpy scalars become int/float/str)."""
    return [v.item() if hasattr(v, "item") else v for v in list(values)]


_ONNX_TYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(bool)": "bool",
    "tensor(string)": "object",
}
_CLASS_LABEL_ATTRIBUTES = ("classlabels_ints", "classlabels_int64s", "classlabels_strings")


class _OnnxModel(_Model):
    """An onnxruntime session; skl2onnx classifiers expose a label and a probability output."""

    def __init__(self, path: Path, fmt: str, signature: list[str] | None) -> None:
        import onnx
        import onnxruntime as ort  # type: ignore[import-untyped]

        super().__init__(fmt, signature)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session = ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._inputs = self._session.get_inputs()
        outputs = self._session.get_outputs()
        self._label = outputs[0].name
        self._proba: str | None = None
        if len(outputs) >= 2 and (
            outputs[1].type.startswith("seq(map(")
            or outputs[1].type in ("tensor(float)", "tensor(double)")
        ):
            self._proba = outputs[1].name
        if len(self._inputs) > 1:
            self.feature_names = [i.name for i in self._inputs]
        if self._proba is not None:
            graph = onnx.load(str(path), load_external_data=False).graph
            self.classes = _onnx_class_labels(graph) or _static_width(outputs[1].shape)

    def _feed(self, X: pandas.DataFrame) -> dict[str, Any]:
        import numpy as np

        frame = self._frame(X)
        if len(self._inputs) == 1:
            spec = self._inputs[0]
            dtype = _ONNX_TYPES.get(spec.type, "float32")
            width = spec.shape[1] if len(spec.shape) == 2 else None
            if isinstance(width, int) and width != frame.shape[1]:
                raise ValueError(f"the model expects {width} features, got {frame.shape[1]}")
            values = frame.astype(str) if dtype == "object" else frame
            return {spec.name: np.asarray(values.to_numpy(dtype=dtype))}
        feed: dict[str, Any] = {}
        for spec in self._inputs:
            dtype = _ONNX_TYPES.get(spec.type, "float32")
            column = frame[spec.name].astype(str) if dtype == "object" else frame[spec.name]
            array = np.asarray(column.to_numpy(dtype=dtype))
            feed[spec.name] = array.reshape(-1, 1) if len(spec.shape) == 2 else array
        return feed

    def predict(self, X: pandas.DataFrame) -> numpy.ndarray:
        import numpy as np

        (out,) = self._session.run([self._label], self._feed(X))
        result = np.asarray(out)
        if result.ndim == 2 and result.shape[1] == 1:
            result = result.ravel()
        return result

    def predict_proba(self, X: pandas.DataFrame) -> numpy.ndarray | None:
        import numpy as np

        if self._proba is None:
            return None
        (out,) = self._session.run([self._proba], self._feed(X))
        if isinstance(out, list):  # ZipMap: one {class: probability} dict per row
            if self.classes is None and out:
                self.classes = list(out[0])
            classes = self.classes or []
            return np.array([[row[c] for c in classes] for row in out], dtype=np.float64)
        return np.asarray(out, dtype=np.float64)


def _onnx_class_labels(graph: Any) -> list[Any] | None:
    for node in graph.node:
        for attr in node.attribute:
            if attr.name in _CLASS_LABEL_ATTRIBUTES:
                if attr.strings:
                    return [s.decode("utf-8") for s in attr.strings]
                if attr.ints:
                    return [int(i) for i in attr.ints]
    return None


def _static_width(shape: Any) -> list[Any] | None:
    if isinstance(shape, list) and len(shape) == 2 and isinstance(shape[1], int):
        return list(range(shape[1]))
    return None


def _sigmoid(x: numpy.ndarray) -> numpy.ndarray:
    import numpy as np

    return np.asarray(1.0 / (1.0 + np.exp(-x)))


def _softmax(x: numpy.ndarray) -> numpy.ndarray:
    import numpy as np

    shifted = np.exp(x - x.max(axis=1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=1, keepdims=True))


class _XGBoostModel(_Model):
    """A native xgboost Booster (JSON or UBJSON)."""

    def __init__(self, path: Path, fmt: str, signature: list[str] | None) -> None:
        import xgboost as xgb

        super().__init__(fmt, signature)
        booster = xgb.Booster(params={"nthread": 1})
        # From a buffer: xgboost then tells JSON from UBJSON by content, not file name.
        booster.load_model(bytearray(path.read_bytes()))
        booster.set_param({"nthread": 1})
        self._booster = booster
        self.native = booster
        learner = json.loads(booster.save_config())["learner"]
        self._objective = str(learner["objective"]["name"])
        self.feature_names = list(booster.feature_names) if booster.feature_names else None
        if self._objective.startswith(("binary:", "multi:")):
            n_classes = int(learner["learner_model_param"].get("num_class", "0") or 0)
            self.classes = list(range(max(n_classes, 2)))

    def _dmatrix(self, X: pandas.DataFrame) -> Any:
        import xgboost as xgb

        return xgb.DMatrix(self._matrix(X), feature_names=self.feature_names, nthread=1)

    def predict(self, X: pandas.DataFrame) -> numpy.ndarray:
        import numpy as np

        if self.classes is None:
            return np.asarray(self._booster.predict(self._dmatrix(X)))
        if self._objective in ("binary:hinge", "multi:softmax"):
            return np.asarray(self._booster.predict(self._dmatrix(X))).astype(np.int64)
        proba = self.predict_proba(X)
        assert proba is not None
        return np.asarray(proba.argmax(axis=1)).astype(np.int64)

    def predict_proba(self, X: pandas.DataFrame) -> numpy.ndarray | None:
        import numpy as np

        if self.classes is None or self._objective == "binary:hinge":
            return None
        dm = self._dmatrix(X)
        if self._objective == "binary:logitraw":
            p = _sigmoid(np.asarray(self._booster.predict(dm), dtype=np.float64))
        elif self._objective == "multi:softmax":
            return _softmax(np.asarray(self._booster.predict(dm, output_margin=True)))
        else:
            p = np.asarray(self._booster.predict(dm), dtype=np.float64)
        if p.ndim == 1:
            return np.column_stack([1.0 - p, p])
        return p


_DEFAULT_LGB_NAME = re.compile(r"Column_\d+")


class _LightGBMModel(_Model):
    """A native LightGBM Booster (text model)."""

    def __init__(self, path: Path, fmt: str, signature: list[str] | None) -> None:
        import lightgbm as lgb

        super().__init__(fmt, signature)
        self._booster = lgb.Booster(model_file=str(path))
        self.native = self._booster
        params = self._booster.params
        self._objective = str(params.get("objective", "")).split()[0] if params else ""
        names = self._booster.feature_name()
        if names and not all(_DEFAULT_LGB_NAME.fullmatch(n) for n in names):
            self.feature_names = list(names)
        if self._objective == "binary":
            self.classes = [0, 1]
        elif self._objective in ("multiclass", "multiclassova"):
            self.classes = list(range(int(params.get("num_class", 2))))

    def _raw(self, X: pandas.DataFrame) -> numpy.ndarray:
        import numpy as np

        return np.asarray(self._booster.predict(self._matrix(X), num_threads=1))

    def predict(self, X: pandas.DataFrame) -> numpy.ndarray:
        import numpy as np

        if self.classes is None:
            return self._raw(X)
        proba = self.predict_proba(X)
        assert proba is not None
        return np.asarray(proba.argmax(axis=1)).astype(np.int64)

    def predict_proba(self, X: pandas.DataFrame) -> numpy.ndarray | None:
        import numpy as np

        if self.classes is None:
            return None
        p = np.asarray(self._raw(X), dtype=np.float64)
        if p.ndim == 1:
            return np.column_stack([1.0 - p, p])
        return p

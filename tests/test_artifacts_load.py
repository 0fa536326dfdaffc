"""Each supported format round-trips: a model built here, saved in its native format, scanned,
then loaded and run in a sandbox child, predicts what the in-process model predicts.

The round trips share one sandbox child (``_selftest_predict_many``) so the model libraries are
imported once; the single-model task and its failure modes get their own children.
"""

from __future__ import annotations

import json
import operator
import os
import pickle
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import onnx
import pandas as pd
import pytest
import skops.io
import xgboost as xgb
import yaml
from onnx import TensorProto, helper, numpy_helper
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from mlgov.artifacts import SandboxError, ScanPolicy, load_model, run_in_sandbox, scan_artifact

FIXTURES = Path(__file__).parent / "fixtures" / "artifacts"
COLUMNS = ["age", "income", "debt_ratio"]
SIGNATURE = {"inputs": [{"name": c, "type": "double"} for c in COLUMNS]}
MEMORY_MB = 3072  # address space: sklearn, onnxruntime, xgboost and LightGBM map ~600 MiB
N = 15


@dataclass
class Case:
    path: Path
    format: str
    rows: list[dict[str, Any]]
    predictions: Any = None
    proba: Any = None
    atol: float = 0.0
    payload: dict[str, Any] = field(default_factory=dict)
    classes: Any = "unchecked"
    feature_names: Any = "unchecked"
    error: str | None = None  # expected failure, instead of predictions


Data = tuple[pd.DataFrame, np.ndarray, np.ndarray]


def _data() -> Data:
    rng = np.random.default_rng(3)
    X = pd.DataFrame(
        {
            "age": rng.integers(18, 80, 120).astype(float),
            "income": rng.normal(50.0, 15.0, 120),
            "debt_ratio": rng.uniform(0.0, 1.0, 120),
        }
    )
    y_class = ((X["income"] / 50 - X["debt_ratio"] + rng.normal(0, 0.2, 120)) > 0.5).astype(int)
    y_value = (X["income"] * 0.3 - X["age"] * 0.1 + rng.normal(0, 1, 120)).to_numpy()
    return X, y_class.to_numpy(), y_value


def _rows(X: pd.DataFrame, reverse: bool = False) -> list[dict[str, Any]]:
    rows = X.iloc[:N].to_dict(orient="records")
    return [dict(reversed(list(r.items()))) for r in rows] if reverse else rows


def _to_onnx(model: Any, n_features: int, **options: Any) -> onnx.ModelProto:
    from skl2onnx import to_onnx

    sample = np.zeros((1, n_features), dtype=np.float32)
    return to_onnx(model, sample, target_opset={"": 17, "ai.onnx.ml": 3}, **options)


def _zip_dir(directory: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(directory.rglob("*")):
            zf.write(path, Path(directory.name) / path.relative_to(directory))
    return archive


def _linear_onnx(weights: np.ndarray, bias: float) -> onnx.ModelProto:
    """Y = X @ W + b with its weights as tensors (skl2onnx keeps them in attributes)."""
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["X", "W"], ["XW"]),
            helper.make_node("Add", ["XW", "B"], ["Y"]),
        ],
        "linear",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, len(weights)])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 1])],
        initializer=[
            numpy_helper.from_array(weights.astype(np.float32).reshape(-1, 1), "W"),
            numpy_helper.from_array(np.array([bias], dtype=np.float32), "B"),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


# -- the cases ------------------------------------------------------------------------------------

CASES: dict[str, Callable[[Path, Data], Case]] = {}


def case(fn: Callable[[Path, Data], Case]) -> Callable[[Path, Data], Case]:
    CASES[fn.__name__] = fn
    return fn


@case
def skops_pipeline_with_named_columns(tmp: Path, data: Data) -> Case:
    X, y, _ = data
    model = Pipeline(
        [
            ("scale", ColumnTransformer([("num", StandardScaler(), COLUMNS)])),
            ("clf", LogisticRegression()),
        ]
    ).fit(X, y)
    path = tmp / "pipeline.skops"
    skops.io.dump(model, path)
    sample = X.iloc[:N]
    # Columns arrive reversed: the model's own feature names put them right.
    return Case(
        path,
        "skops",
        _rows(X, reverse=True),
        model.predict(sample),
        model.predict_proba(sample),
        classes=[0, 1],
        feature_names=COLUMNS,
    )


def _neg_pipeline(tmp: Path, data: Data) -> tuple[Path, Any]:
    X, y, _ = data
    model = make_pipeline(FunctionTransformer(operator.neg), LogisticRegression())
    model.fit(X.to_numpy(), y)
    path = tmp / "neg.skops"
    if not path.exists():
        skops.io.dump(model, path)
    return path, model


@case
def skops_with_an_admin_trusted_type(tmp: Path, data: Data) -> Case:
    path, model = _neg_pipeline(tmp, data)
    sample = data[0].iloc[:N].to_numpy()
    return Case(
        path,
        "skops",
        _rows(data[0]),
        model.predict(sample),
        model.predict_proba(sample),
        payload={"trusted_types": ["_operator.neg"]},
        feature_names=None,
    )


@case
def skops_with_an_untrusted_type(tmp: Path, data: Data) -> Case:
    path, _ = _neg_pipeline(tmp, data)
    return Case(
        path,
        "skops",
        _rows(data[0]),
        error="ArtifactRejected: the artifact was rejected: neg.skops: skops type not "
        "trusted: _operator.neg; an admin can trust a reviewed type in artifacts.trusted_types",
    )


@case
def skops_columns_ordered_by_the_signature(tmp: Path, data: Data) -> Case:
    X, y, _ = data
    model = LogisticRegression().fit(X.to_numpy(), y)  # knows no column names
    path = tmp / "unnamed.skops"
    skops.io.dump(model, path)
    shuffled = [{"debt_ratio": r["debt_ratio"], **r} for r in _rows(X)]
    sample = X.iloc[:N].to_numpy()
    return Case(
        path,
        "skops",
        shuffled,
        model.predict(sample),
        model.predict_proba(sample),
        payload={"signature": SIGNATURE},
        feature_names=None,
    )


@case
def pickle_with_the_admin_policy(tmp: Path, data: Data) -> Case:
    X, y, _ = data
    model = LogisticRegression().fit(X, y)
    path = tmp / "model.pkl"
    path.write_bytes(pickle.dumps(model))
    return Case(
        path,
        "pickle",
        _rows(X),
        model.predict(X.iloc[:N]),
        model.predict_proba(X.iloc[:N]),
        payload={"allow_pickle": True},
    )


@case
def pickle_without_the_policy(tmp: Path, data: Data) -> Case:
    return Case(
        tmp / "model.pkl",
        "pickle",
        _rows(data[0]),
        error="ArtifactRejected: the artifact was refused: model.pkl: plain pickle is "
        "refused unless an admin policy allows it (artifacts.allow_pickle)",
    )


@case
def onnx_classifier_tensor_proba(tmp: Path, data: Data) -> Case:
    X, y, _ = data
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X.to_numpy(), y)
    path = tmp / "clf.onnx"
    onnx.save(_to_onnx(model, 3, options={"zipmap": False}), path)
    sample = X.iloc[:N].to_numpy()
    return Case(
        path,
        "onnx",
        _rows(X, reverse=True),
        model.predict(sample),
        model.predict_proba(sample),
        atol=1e-4,
        payload={"signature": SIGNATURE},
        classes=[0, 1],
    )


@case
def onnx_classifier_zipmap(tmp: Path, data: Data) -> Case:
    X, y, _ = data
    model = LogisticRegression().fit(X.to_numpy(), y)
    path = tmp / "zipmap.onnx"
    onnx.save(_to_onnx(model, 3), path)
    sample = X.iloc[:N].to_numpy()
    return Case(
        path,
        "onnx",
        _rows(X),
        model.predict(sample),
        model.predict_proba(sample),
        atol=1e-4,
        classes=[0, 1],
    )


@case
def onnx_regressor(tmp: Path, data: Data) -> Case:
    X, _, y = data
    model = LinearRegression().fit(X.to_numpy(), y)
    path = tmp / "reg.onnx"
    onnx.save(_to_onnx(model, 3), path)
    return Case(
        path, "onnx", _rows(X), model.predict(X.iloc[:N].to_numpy()), atol=1e-3, classes=None
    )


@case
def onnx_one_input_per_column(tmp: Path, data: Data) -> Case:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    X, y, _ = data
    frame = X.assign(region=np.where(X["age"] > 50, "north", "south"))
    prep = ColumnTransformer(
        [
            ("num", StandardScaler(), COLUMNS),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["region"]),
        ]
    )
    model = Pipeline([("prep", prep), ("clf", LogisticRegression())]).fit(frame, y)
    inputs: list[Any] = [(c, FloatTensorType([None, 1])) for c in COLUMNS]
    inputs.append(("region", StringTensorType([None, 1])))
    proto = convert_sklearn(
        model,
        initial_types=inputs,
        options={"zipmap": False},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    path = tmp / "columns.onnx"
    onnx.save(proto, path)
    sample = frame.iloc[:N]
    return Case(
        path,
        "onnx",
        sample.to_dict(orient="records"),
        model.predict(sample),
        model.predict_proba(sample),
        atol=1e-4,
        feature_names=[*COLUMNS, "region"],
    )


@case
def xgboost_json_classifier(tmp: Path, data: Data) -> Case:
    X, y, _ = data
    model = xgb.XGBClassifier(n_estimators=5, max_depth=3, n_jobs=1).fit(X, y)
    path = tmp / "xgb.json"
    model.save_model(path)
    return Case(
        path,
        "xgboost",
        _rows(X, reverse=True),
        model.predict(X.iloc[:N]),
        model.predict_proba(X.iloc[:N]),
        classes=[0, 1],
        feature_names=COLUMNS,
    )


@case
def xgboost_ubj_classifier_stored_without_a_suffix(tmp: Path, data: Data) -> Case:
    X, y, _ = data
    model = xgb.XGBClassifier(n_estimators=5, max_depth=3, n_jobs=1).fit(X, y)
    model.save_model(tmp / "xgb.ubj")
    path = tmp / "sha256-named-blob"  # the artifact store keeps no file suffix
    path.write_bytes((tmp / "xgb.ubj").read_bytes())
    return Case(
        path,
        "xgboost",
        _rows(X),
        model.predict(X.iloc[:N]),
        model.predict_proba(X.iloc[:N]),
        classes=[0, 1],
    )


@case
def xgboost_multiclass(tmp: Path, data: Data) -> Case:
    X, _, _ = data
    y3 = np.digitize(X["income"].to_numpy(), [40, 60])
    model = xgb.XGBClassifier(n_estimators=4, max_depth=2, n_jobs=1).fit(X, y3)
    path = tmp / "xgb3.json"
    model.save_model(path)
    return Case(
        path,
        "xgboost",
        _rows(X),
        model.predict(X.iloc[:N]),
        model.predict_proba(X.iloc[:N]),
        classes=[0, 1, 2],
    )


@case
def xgboost_regressor(tmp: Path, data: Data) -> Case:
    X, _, y = data
    model = xgb.XGBRegressor(n_estimators=4, max_depth=2, n_jobs=1).fit(X.to_numpy(), y)
    path = tmp / "xgbreg.ubj"
    model.save_model(path)
    return Case(
        path,
        "xgboost",
        _rows(X),
        model.predict(X.iloc[:N].to_numpy()),
        classes=None,
        feature_names=None,
    )


@case
def lightgbm_classifier(tmp: Path, data: Data) -> Case:
    X, y, _ = data
    model = lgb.LGBMClassifier(n_estimators=5, num_leaves=4, verbose=-1, n_jobs=1).fit(X, y)
    path = tmp / "lgb.txt"
    model.booster_.save_model(path)
    return Case(
        path,
        "lightgbm",
        _rows(X, reverse=True),
        model.predict(X.iloc[:N]),
        model.predict_proba(X.iloc[:N]),
        classes=[0, 1],
        feature_names=COLUMNS,
    )


@case
def lightgbm_regressor(tmp: Path, data: Data) -> Case:
    X, _, y = data
    model = lgb.LGBMRegressor(n_estimators=5, num_leaves=4, verbose=-1, n_jobs=1)
    model.fit(X.to_numpy(), y)
    path = tmp / "lgbreg.txt"
    model.booster_.save_model(path)
    return Case(
        path,
        "lightgbm",
        _rows(X),
        model.predict(X.iloc[:N].to_numpy()),
        classes=None,
        feature_names=None,
    )


@case
def mlflow_onnx_flavour_with_external_data(tmp: Path, data: Data) -> Case:
    X, _, _ = data
    weights, bias = np.array([0.5, -0.25, 2.0]), 1.5
    model_dir = tmp / "onnx-mlflow" / "model"
    model_dir.mkdir(parents=True)
    onnx.save_model(
        _linear_onnx(weights, bias),
        model_dir / "model.onnx",
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="model.onnx.data",
        size_threshold=0,
    )
    assert (model_dir / "model.onnx.data").stat().st_size > 0
    columns = json.dumps([{"type": "double", "name": c} for c in COLUMNS])
    mlmodel = {
        "flavors": {
            "onnx": {"data": "model.onnx", "onnx_version": onnx.__version__},
            "python_function": {"loader_module": "mlflow.onnx", "data": "model.onnx"},
        },
        "signature": {"inputs": columns},  # as MLflow writes it: a JSON string
    }
    (model_dir / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    archive = _zip_dir(model_dir, tmp / "onnx-mlflow.zip")
    expected = X.iloc[:N].to_numpy() @ weights + bias
    # Reversed columns: the MLmodel signature puts them back in order.
    return Case(archive, "mlflow", _rows(X, reverse=True), expected, atol=1e-4, classes=None)


@case
def mlflow_xgboost_flavour(tmp: Path, data: Data) -> Case:
    X, y, _ = data
    model = xgb.XGBClassifier(n_estimators=3, max_depth=2, n_jobs=1).fit(X, y)
    model_dir = tmp / "xgb-mlflow" / "model"
    model_dir.mkdir(parents=True)
    model.save_model(model_dir / "model.ubj")
    flavour = {
        "data": "model.ubj",
        "model_class": "xgboost.sklearn.XGBClassifier",
        "model_format": "ubj",
    }
    (model_dir / "MLmodel").write_text(yaml.safe_dump({"flavors": {"xgboost": flavour}}))
    archive = _zip_dir(model_dir, tmp / "xgb-mlflow.zip")
    return Case(
        archive, "mlflow", _rows(X), model.predict(X.iloc[:N]), model.predict_proba(X.iloc[:N])
    )


@case
def mlflow_lightgbm_flavour(tmp: Path, data: Data) -> Case:
    X, y, _ = data
    model = lgb.LGBMClassifier(n_estimators=3, verbose=-1, n_jobs=1).fit(X, y)
    model_dir = tmp / "lgb-mlflow" / "model"
    model_dir.mkdir(parents=True)
    model.booster_.save_model(model_dir / "model.lgb")
    flavour = {"data": "model.lgb", "model_class": "lightgbm.basic.Booster"}
    (model_dir / "MLmodel").write_text(yaml.safe_dump({"flavors": {"lightgbm": flavour}}))
    archive = _zip_dir(model_dir, tmp / "lgb-mlflow.zip")
    return Case(
        archive, "mlflow", _rows(X), model.predict(X.iloc[:N]), model.predict_proba(X.iloc[:N])
    )


@case
def mlflow_real_fixture_as_tar_gz_with_the_model_at_the_root(tmp: Path, data: Data) -> Case:
    expected = json.loads((FIXTURES / "mlflow_sklearn_skops.json").read_text())
    tree = tmp / "fixture-tree"
    with zipfile.ZipFile(FIXTURES / "mlflow_sklearn_skops.zip") as zf:
        zf.extractall(tree)
    archive = tmp / "fixture.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(tree / "model", arcname=".")
    return Case(
        archive,
        "mlflow",
        expected["rows"],
        np.asarray(expected["predictions"]),
        expected["proba"],
        classes=expected["classes"],
        feature_names=expected["columns"],
    )


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case]:
    tmp = tmp_path_factory.mktemp("models")
    data = _data()
    return {name: build(tmp, data) for name, build in CASES.items()}


@pytest.fixture(scope="module")
def results(
    cases: dict[str, Case], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, dict[str, Any]]:
    jobs = [
        {"path": str(c.path), "format": c.format, "rows": c.rows, **c.payload}
        for c in cases.values()
    ]
    out = run_in_sandbox(
        "mlgov.artifacts.sandbox:_selftest_predict_many",
        {"jobs": jobs},
        memory_mb=MEMORY_MB,
        timeout_s=300,
        workdir=tmp_path_factory.mktemp("work"),
    )
    return dict(zip(cases, out["results"], strict=True))


@pytest.mark.parametrize("name", list(CASES))
def test_round_trip_in_the_sandbox(
    name: str, cases: dict[str, Case], results: dict[str, dict[str, Any]]
) -> None:
    expected, got = cases[name], results[name]
    if expected.error is not None:
        assert got == {"error": expected.error}
        return
    assert "error" not in got, got["error"]
    assert scan_artifact(expected.path, expected.format, _policy(expected.payload)).passed
    _same(got, expected)


def _policy(payload: dict[str, Any]) -> ScanPolicy:
    return ScanPolicy(
        allow_pickle=payload.get("allow_pickle", False),
        trusted_types=tuple(payload.get("trusted_types", ())),
    )


def _same(got: dict[str, Any], expected: Case) -> None:
    predictions, want = np.asarray(got["predictions"]), np.asarray(expected.predictions)
    assert predictions.shape == want.shape
    if want.dtype.kind in "iub":
        assert predictions.tolist() == want.tolist()
    else:
        assert np.allclose(predictions, want, rtol=1e-5, atol=expected.atol)
    if expected.proba is None:
        assert got["proba"] is None
    else:
        assert np.allclose(got["proba"], expected.proba, rtol=1e-5, atol=expected.atol)
    if expected.classes != "unchecked":
        assert got["classes"] == expected.classes
    if expected.feature_names != "unchecked":
        assert got["feature_names"] == expected.feature_names


# -- one model per child: the product task and its failures ---------------------------------------


def test_real_mlflow3_sklearn_skops_model(tmp_path: Path) -> None:
    """Saved by MLflow 3 itself (see tests/fixtures/artifacts/README.md)."""
    expected = json.loads((FIXTURES / "mlflow_sklearn_skops.json").read_text())
    payload = {
        "path": str(FIXTURES / "mlflow_sklearn_skops.zip"),
        "format": "mlflow",
        "rows": expected["rows"],
    }
    progress: list[tuple[float, str]] = []

    result = run_in_sandbox(
        "mlgov.artifacts.sandbox:_selftest_predict",
        payload,
        memory_mb=MEMORY_MB,
        timeout_s=120,
        workdir=tmp_path,
        on_progress=lambda fraction, message: progress.append((fraction, message)),
    )

    assert result["predictions"] == expected["predictions"]
    assert np.allclose(result["proba"], expected["proba"], rtol=1e-5)
    assert result["classes"] == expected["classes"]
    assert result["feature_names"] == expected["columns"]
    assert progress == [(0.1, "loading the model"), (1.0, "done")]


def test_missing_columns_are_named(tmp_path: Path) -> None:
    path = tmp_path / "linear.onnx"
    onnx.save(_linear_onnx(np.ones(3), 0.0), path)
    payload = {
        "path": str(path),
        "format": "onnx",
        "rows": [{"age": 30.0, "debt_ratio": 0.2}],
        "signature": SIGNATURE,
    }

    with pytest.raises(SandboxError) as caught:
        run_in_sandbox(
            "mlgov.artifacts.sandbox:_selftest_predict",
            payload,
            memory_mb=MEMORY_MB,
            timeout_s=60,
            workdir=tmp_path,
        )

    assert caught.value.kind == "error"
    assert caught.value.message == "ValueError: columns missing: income"
    assert "Traceback" in caught.value.detail


class _System:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_never_runs_in_the_sandbox(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(_System(marker)))
    payload = {"path": str(path), "format": "pickle", "rows": [{"a": 1.0}], "allow_pickle": True}

    with pytest.raises(SandboxError) as caught:
        run_in_sandbox(
            "mlgov.artifacts.sandbox:_selftest_predict",
            payload,
            memory_mb=MEMORY_MB,
            timeout_s=60,
            workdir=tmp_path,
        )

    assert caught.value.kind == "error"
    assert caught.value.message == (
        "ArtifactRejected: the artifact would execute code when loaded: model.pkl imports "
        "posix.system"
    )
    assert not marker.exists()


def test_external_onnx_data_missing_from_an_mlflow_archive_is_refused(tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    onnx.save_model(
        _linear_onnx(np.ones(3), 0.0),
        model_dir / "model.onnx",
        save_as_external_data=True,
        location="w.data",
        size_threshold=0,
    )
    (model_dir / "w.data").unlink()
    mlmodel = {"flavors": {"onnx": {"data": "model.onnx"}}}
    (model_dir / "MLmodel").write_text(yaml.safe_dump(mlmodel))

    report = scan_artifact(_zip_dir(model_dir, tmp_path / "m.zip"), "mlflow")

    assert not report.passed
    assert "external data file 'w.data' is not in the archive" in report.message()


def test_other_is_stored_but_never_loaded(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"\x00\x01")
    with pytest.raises(ValueError, match="stored but never loaded"):
        load_model(path, "other", ScanPolicy())

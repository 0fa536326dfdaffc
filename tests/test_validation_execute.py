"""The validation entry point end to end: a skops artifact through the real loaders, a CSV or
Parquet dataset version, every check, the report; and the dataset reading it relies on."""

from __future__ import annotations

import importlib.util
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlgov.validation.data import check_columns, read_dataset

LOADERS_MISSING = importlib.util.find_spec("mlgov.artifacts.loaders") is None
needs_loaders = pytest.mark.skipif(
    LOADERS_MISSING, reason="mlgov.artifacts.loaders (the model loaders) is not written yet"
)

NUMERIC = ["income", "debt_ratio", "age"]
FEATURES = [*NUMERIC, "sex"]
SIGNATURE = {
    "inputs": [
        {"name": "income", "type": "double"},
        {"name": "debt_ratio", "type": "double"},
        {"name": "age", "type": "long"},
        {"name": "sex", "type": "string"},
    ],
    "outputs": [{"name": "default", "type": "integer"}],
}
RECORDED = {
    "data_hash": "ab" * 32,
    "code_ref": {"repository": "git.example/credit", "commit": "0123abcd"},
    "environment": {"python": "3.11.9", "packages": {"scikit-learn": "1.9.1"}},
}
SUITE: dict[str, Any] = {
    "name": "credit-high-risk",
    "label": "default",
    "task": "classification",
    "checks": {
        "performance": {
            "metrics": {"roc_auc": {"min": 0.7}, "accuracy": {}, "log_loss": {"max": 0.7}},
            "bootstrap": {"samples": 50},
        },
        "fairness": {
            "sensitive_features": ["age_band", "sex"],
            "thresholds": {"demographic_parity_ratio": {"min": 0.0}},
        },
        "explainability": {"permutation": {"n_repeats": 2, "max_rows": 1000}, "shap": {}},
        "robustness": {
            "max_rows": 1000,
            "perturbations": [
                {"name": "noise", "kind": "gaussian_noise", "scale": 0.05},
                {"name": "new_sex", "kind": "unseen_category", "fraction": 0.05},
            ],
            "thresholds": {"max_mean_abs_change": 0.05, "max_error_rate": 0.0},
        },
        "reproducibility": {"sample_rows": 200},
        "champion_challenger": {"metric": "roc_auc", "min_margin": -1.0},
    },
}


def credit_frame(n: int = 2000, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    income = rng.normal(50, 15, n)
    debt = rng.uniform(0, 1, n)
    age = rng.integers(18, 80, n)
    sex = rng.choice(["F", "M"], n)
    band = np.where(age < 30, "young", np.where(age < 55, "middle", "senior"))
    logit = -0.06 * (income - 50) + 3 * (debt - 0.5) + 0.4 * (sex == "M") + rng.normal(0, 1, n)
    return pd.DataFrame(
        {
            "income": income.round(2),
            "debt_ratio": debt.round(4),
            "age": age,
            "sex": sex,
            "age_band": band,
            "default": (logit > 0).astype(int),
        }
    )


def save_model(path: Path, frame: pd.DataFrame, features: list[str] = FEATURES) -> Path:
    numeric = [f for f in features if f in NUMERIC]
    text = [f for f in features if f not in NUMERIC]
    steps: list[Any] = [("num", StandardScaler(), numeric)]
    if text:
        steps.append(("cat", OneHotEncoder(handle_unknown="ignore"), text))
    model = Pipeline([("prep", ColumnTransformer(steps)), ("clf", LogisticRegression())])
    model.fit(frame[features], frame["default"])
    path.write_bytes(skops.io.dumps(model, compression=zipfile.ZIP_DEFLATED))
    return path


def payload(tmp_path: Path, frame: pd.DataFrame, **changes: Any) -> dict[str, Any]:
    data = tmp_path / "applications.csv"
    frame.to_csv(data, index=False)
    out = {
        "suite": SUITE,
        "suite_ref": {"name": "credit-high-risk", "version": 2, "sha256": "cd" * 32},
        "model": {
            "name": "credit",
            "version": 4,
            "path": str(save_model(tmp_path / "model.skops", frame)),
            "format": "skops",
            "signature": SIGNATURE,
            "recorded": RECORDED,
        },
        "champion": None,
        "dataset": {
            "name": "applications",
            "version": 3,
            "path": str(data),
            "format": "csv",
            "sha256": "ef" * 32,
        },
        "scan_policy": {"allow_pickle": False, "trusted_types": []},
        "requested_by": "val",
        "requested_at": "2025-06-01T12:00:00+00:00",
        "out_dir": str(tmp_path / "out"),
    }
    out.update(changes)
    return out


class Progress:
    def __init__(self) -> None:
        self.calls: list[tuple[float, str]] = []

    def __call__(self, fraction: float, message: str) -> None:
        self.calls.append((fraction, message))


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return credit_frame()


@needs_loaders
def test_execute_runs_every_check_and_writes_the_report(tmp_path, frame):
    from mlgov.validation.execute import execute

    champion_path = save_model(tmp_path / "champion.skops", frame, ["age", "sex"])
    champion = {
        "name": "credit",
        "version": 3,
        "path": str(champion_path),
        "format": "skops",
        "signature": {"inputs": [SIGNATURE["inputs"][2], SIGNATURE["inputs"][3]]},
    }
    progress = Progress()
    result = execute(payload(tmp_path, frame, champion=champion), progress)
    json.dumps(result, allow_nan=False)
    kinds = [c["kind"] for c in result["checks"]]
    assert kinds == [
        "performance",
        "fairness",
        "explainability",
        "robustness",
        "reproducibility",
        "champion_challenger",
    ]
    failed = {c["kind"]: [i for i in c["checks"] if not i["passed"]] for c in result["checks"]}
    assert all(c["passed"] for c in result["checks"]), failed
    assert result["passed"] and result["rows"] == len(frame)
    assert result["runtime_seconds"] > 0 and result["peak_memory_mb"] > 0
    report = Path(result["report"]["path"])
    assert report.parent == tmp_path / "out" and result["report"]["name"] == "report.html"
    html = report.read_text(encoding="utf-8")
    assert "http://" not in html and "https://" not in html
    assert "credit-high-risk" in html and "ef" * 32 in html
    for check in result["checks"]:
        assert check["runtime_seconds"] >= 0
        for attachment in check["attachments"]:
            assert Path(attachment["path"]).parent == report.parent
    fractions = [f for f, _ in progress.calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert {"performance", "champion_challenger", "report"} <= {m for _, m in progress.calls}
    champion_result = result["checks"][-1]["results"]
    assert champion_result["champion"]["version"] == 3
    assert champion_result["margin"] > 0  # four features beat two
    # SHAP of a skops pipeline needs the loader's native object; without it, a reason.
    shap = result["checks"][2]["results"]["shap"]
    assert shap["available"] or shap["reason"].startswith("not available")


@needs_loaders
def test_execute_on_parquet_with_a_row_cap(tmp_path, frame):
    from mlgov.validation.execute import execute

    data = tmp_path / "applications.parquet"
    frame.to_parquet(data)
    suite = {
        "label": "default",
        "task": "classification",
        "sample": {"max_rows": 500, "seed": 3},
        "checks": {"performance": {"metrics": {"roc_auc": {"min": 0.99}}}},
    }
    base = payload(tmp_path, frame)
    result = execute(
        {
            **base,
            "suite": suite,
            "dataset": {**base["dataset"], "path": str(data), "format": "parquet"},
        },
        Progress(),
    )
    assert result["rows"] == 500
    assert not result["passed"] and not result["checks"][0]["passed"]


@needs_loaders
def test_execute_names_missing_columns(tmp_path, frame):
    from mlgov.validation.execute import execute

    base = payload(tmp_path, frame)
    frame.drop(columns=["income", "age_band"]).to_csv(base["dataset"]["path"], index=False)
    with pytest.raises(ValueError) as caught:
        execute(base, Progress())
    message = str(caught.value)
    assert "the dataset lacks columns the model signature needs: income" in message
    assert "the dataset lacks columns the suite names: age_band" in message
    assert "\n" not in message


@needs_loaders
def test_execute_reports_a_model_that_raises(tmp_path, frame):
    from mlgov.validation.execute import execute

    # The signature says "sex" is text; this model was fitted on numbers only and cannot take it.
    base = payload(tmp_path, frame)
    numeric_only = save_model(tmp_path / "numeric.skops", frame.assign(sex=0.0), FEATURES[:3])
    signature = {"inputs": [*SIGNATURE["inputs"][:3], {"name": "sex", "type": "string"}]}
    model = {**base["model"], "path": str(numeric_only), "signature": signature}
    # A model fitted on three columns given four fails inside scikit-learn.
    with pytest.raises(ValueError, match=r"^the model raised on predict"):
        execute({**base, "model": model}, Progress())


@needs_loaders
def test_execute_refuses_an_unknown_label_value(tmp_path, frame):
    from mlgov.validation.execute import execute

    odd = frame.copy()
    odd.loc[0, "default"] = 7
    base = payload(tmp_path, frame)
    odd_path = tmp_path / "odd.csv"
    odd.to_csv(odd_path, index=False)
    with pytest.raises(ValueError, match="label column 'default' has values that are not classes"):
        execute({**base, "dataset": {**base["dataset"], "path": str(odd_path)}}, Progress())


@needs_loaders
def test_execute_reports_an_unloadable_artifact(tmp_path, frame):
    from mlgov.validation.execute import execute

    base = payload(tmp_path, frame)
    broken = tmp_path / "broken.skops"
    broken.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"^the model artifact could not be loaded"):
        execute({**base, "model": {**base["model"], "path": str(broken)}}, Progress())


@needs_loaders
def test_execute_without_a_label(tmp_path, frame):
    """Robustness and reproducibility need predictions, not the truth."""
    from mlgov.validation.execute import execute

    suite = {
        "task": "classification",
        "checks": {
            "robustness": {
                "perturbations": [{"name": "noise", "kind": "gaussian_noise", "scale": 0.01}],
                "thresholds": {"min_label_agreement": 0.9},
            },
            "reproducibility": {"sample_rows": 50},
        },
    }
    base = payload(tmp_path, frame)
    frame.drop(columns=["default"]).to_csv(base["dataset"]["path"], index=False)
    result = execute({**base, "suite": suite}, Progress())
    assert result["passed"], result["checks"]
    assert [c["kind"] for c in result["checks"]] == ["robustness", "reproducibility"]


def test_execute_module_imports_without_the_loaders():
    import mlgov.validation.execute as module

    assert callable(module.execute)


# -- reading datasets --------------------------------------------------------------------------


def test_read_dataset_csv_parquet_and_sample(tmp_path, frame):
    csv_path, parquet_path = tmp_path / "d.csv", tmp_path / "d.parquet"
    frame.to_csv(csv_path, index=False)
    frame.to_parquet(parquet_path)
    from_csv = read_dataset(csv_path, "csv", max_rows=None, seed=0)
    from_parquet = read_dataset(parquet_path, "parquet", max_rows=None, seed=0)
    assert len(from_csv) == len(from_parquet) == len(frame)
    assert np.allclose(from_csv["income"], from_parquet["income"])
    first = read_dataset(csv_path, "csv", max_rows=100, seed=4)
    again = read_dataset(csv_path, "csv", max_rows=100, seed=4)
    assert len(first) == 100 and first.equals(again)
    assert list(first.index) == list(range(100))
    assert not first.equals(read_dataset(csv_path, "csv", max_rows=100, seed=5))
    gzipped = tmp_path / "data.csv.gz"  # how the worker names a gzipped CSV dataset version
    frame.to_csv(gzipped, index=False, compression="gzip")
    assert read_dataset(gzipped, "csv", max_rows=None, seed=0).equals(from_csv)


@pytest.mark.parametrize(
    ("content", "fmt", "message"),
    [
        (b"a,b\n1,2\n", "json", "cannot be validated"),
        (b"a,b\n", "csv", "no rows"),
        (b"PAR1 garbage", "parquet", "could not be read as parquet"),
    ],
)
def test_read_dataset_errors(tmp_path, content, fmt, message):
    path = tmp_path / f"data.{fmt}"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        read_dataset(path, fmt, max_rows=None, seed=0)


def test_check_columns_coerces_to_the_signature(tmp_path):
    df = pd.DataFrame(
        {
            "income": ["1.5", "2", None],
            "age": [30.0, 41.0, np.nan],
            "count": [1, 2, 3],
            "flag": ["true", "no", "1"],
            "code": [1, 2, None],
            "label": [0, 1, 0],
        }
    )
    inputs = [
        {"name": "income", "type": "double"},
        {"name": "age", "type": "long"},
        {"name": "count", "type": "integer"},
        {"name": "flag", "type": "boolean"},
        {"name": "code", "type": "string"},
    ]
    check_columns(df, inputs, "label", {"label"})
    assert df["income"].dtype == np.float64 and np.isnan(df["income"][2])
    assert df["age"].dtype == np.float64  # a missing value keeps it float
    assert df["count"].dtype == np.int32
    assert df["flag"].tolist() == [True, False, True]
    assert df["code"].tolist()[:2] == ["1.0", "2.0"] and np.isnan(df["code"][2])


@pytest.mark.parametrize(
    ("column", "values", "kind", "message"),
    [
        ("income", ["1.5", "lots", "3"], "double", "'income' is double .* e.g. 'lots' \\(row 2\\)"),
        ("age", [30, 40.5, 50], "long", "'age' is long .* non-integer values, e.g. 40.5"),
        ("flag", ["yes", "maybe", "no"], "boolean", "'flag' is boolean .* 'maybe'"),
    ],
)
def test_check_columns_names_bad_values(column, values, kind, message):
    df = pd.DataFrame({column: values, "label": [0, 1, 0]})
    with pytest.raises(ValueError, match=message):
        check_columns(df, [{"name": column, "type": kind}], "label", set())


def test_check_columns_names_every_missing_column():
    df = pd.DataFrame({"income": [1.0]})
    inputs = [{"name": n, "type": "double"} for n in ("income", "age", "debt")]
    with pytest.raises(ValueError) as caught:
        check_columns(df, inputs, "default", {"default", "sex"})
    assert str(caught.value) == (
        "the dataset lacks columns the model signature needs: age, debt; "
        "the dataset lacks the label column 'default'; "
        "the dataset lacks columns the suite names: sex"
    )

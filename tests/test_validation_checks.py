"""The validation checks against scikit-learn and fairlearn computed directly, on real models.

Models are real scikit-learn / xgboost / lightgbm estimators behind a tiny adapter with the
``LoadedModel`` interface (the loaders of mlgov.artifacts are tested on their own).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fairlearn import metrics as flm
from sklearn import metrics as skm
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlgov.validation import (
    champion,
    explainability,
    fairness,
    performance,
    reproducibility,
    robustness,
)
from mlgov.validation.attributions import shap_values
from mlgov.validation.checks import ChampionRef, CheckContext
from mlgov.validation.metrics import bootstrap, metric_value, sklearn_weighted, weighted_metric
from mlgov.validation.model import sample_rows, score
from mlgov.validation.report import render_report
from mlgov.validation.suite import KNOWN_METRICS, SuiteDocument

NUMERIC = ["income", "debt_ratio", "age"]
FEATURES = [*NUMERIC, "sex"]


def credit_frame(n: int = 2000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    income = rng.normal(50, 15, n)
    debt = rng.uniform(0, 1, n)
    age = rng.integers(18, 80, n)
    sex = rng.choice(["F", "M"], n)
    band = np.where(age < 30, "young", np.where(age < 55, "middle", "senior"))
    logit = -0.06 * (income - 50) + 3 * (debt - 0.5) + 0.4 * (sex == "M") + rng.normal(0, 1, n)
    return pd.DataFrame(
        {
            "income": income,
            "debt_ratio": debt,
            "age": age,
            "sex": pd.Series(sex, dtype=object),
            "age_band": pd.Series(band, dtype=object),
            "default": (logit > 0).astype(np.int64),
        }
    )


def pipeline(features: list[str] = FEATURES) -> Pipeline:
    numeric = [f for f in features if f in NUMERIC]
    text = [f for f in features if f not in NUMERIC]
    steps = [("num", StandardScaler(), numeric)]
    if text:
        steps.append(("cat", OneHotEncoder(handle_unknown="ignore"), text))
    return Pipeline([("prep", ColumnTransformer(steps)), ("clf", LogisticRegression())])


class Adapter:
    """A fitted estimator as a LoadedModel."""

    def __init__(self, estimator: Any, fmt: str = "skops") -> None:
        self.format = fmt
        self.native = estimator
        names = getattr(estimator, "feature_names_in_", None)
        self.feature_names = [str(n) for n in names] if names is not None else None
        classes = getattr(estimator, "classes_", None)
        self.classes = (
            [getattr(c, "item", lambda c=c: c)() for c in classes] if classes is not None else None
        )

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.native.predict(X))

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray | None:
        if self.classes is None:
            return None
        return np.asarray(self.native.predict_proba(X))


class FunctionModel:
    """P(positive) = f(X) for a binary classifier with classes [0, 1]."""

    format = "test"
    feature_names = None
    classes = [0, 1]

    def __init__(self, f: Any) -> None:
        self.f = f

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = np.asarray(self.f(X), dtype=np.float64)
        return np.column_stack([1 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(np.int64)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return credit_frame()


@pytest.fixture(scope="module")
def fitted(frame: pd.DataFrame) -> Pipeline:
    return pipeline().fit(frame[FEATURES], frame["default"])


def suite(checks: dict[str, Any], **top: Any) -> SuiteDocument:
    return SuiteDocument.model_validate(
        {"label": "default", "task": "classification", **top, "checks": checks}
    )


def context(
    model: Any,
    frame: pd.DataFrame,
    doc: SuiteDocument,
    tmp_path: Path,
    inputs: list[str] = FEATURES,
    **extra: Any,
) -> CheckContext:
    assert doc.label is not None
    scored = score(
        model,
        frame[inputs],
        frame[doc.label],
        task=doc.task,
        positive_label=doc.positive_label,
        threshold=doc.threshold,
    )
    return CheckContext(doc, model, frame, inputs, scored, tmp_path, **extra)


def assert_json(record: dict[str, Any]) -> None:
    json.dumps(record, allow_nan=False)
    assert set(record) == {
        "kind",
        "passed",
        "summary",
        "results",
        "checks",
        "attachments",
        "runtime_seconds",
        "peak_memory_mb",
    }
    for entry in record["checks"]:
        assert set(entry) == {"name", "passed", "value", "threshold", "details"}
        assert len(entry["details"]) <= 512


# -- performance -------------------------------------------------------------------------------

CLASSIFICATION = [m for m, i in KNOWN_METRICS.items() if i.task == "classification"]
REGRESSION = [m for m, i in KNOWN_METRICS.items() if i.task == "regression"]


def test_classification_metrics_equal_sklearn(frame, fitted, tmp_path):
    doc = suite({"performance": {"metrics": {m: {} for m in CLASSIFICATION}}}, threshold=0.4)
    ctx = context(Adapter(fitted), frame, doc, tmp_path)
    record = performance.run(ctx, doc.checks.performance).record
    assert_json(record)
    y = frame["default"].to_numpy()
    p = fitted.predict_proba(frame[FEATURES])[:, 1]
    pred = (p >= 0.4).astype(int)
    expected = {
        "accuracy": skm.accuracy_score(y, pred),
        "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
        "precision": skm.precision_score(y, pred),
        "recall": skm.recall_score(y, pred),
        "f1": skm.f1_score(y, pred),
        "roc_auc": skm.roc_auc_score(y, p),
        "average_precision": skm.average_precision_score(y, p),
        "log_loss": skm.log_loss(y, y_proba=p),
        "brier": skm.brier_score_loss(y, y_proba=p),
    }
    assert set(expected) == set(CLASSIFICATION)
    for name, value in expected.items():
        assert record["results"]["metrics"][name]["value"] == pytest.approx(value, abs=1e-12)
    assert record["passed"] and record["checks"] == []
    counts = record["results"]["confusion_matrix"]["counts"]
    assert counts == skm.confusion_matrix(y, pred).tolist()


def test_positive_label_zero_scores_the_other_class(frame, fitted, tmp_path):
    doc = suite({"performance": {"metrics": {"precision": {}, "roc_auc": {}}}}, positive_label=0)
    record = performance.run(context(Adapter(fitted), frame, doc, tmp_path), doc.checks.performance)
    y = (frame["default"] == 0).astype(int)
    p0 = fitted.predict_proba(frame[FEATURES])[:, 0]
    metrics = record.record["results"]["metrics"]
    assert metrics["roc_auc"]["value"] == pytest.approx(skm.roc_auc_score(y, p0), abs=1e-12)
    expected = skm.precision_score(y, (p0 >= 0.5).astype(int))
    assert metrics["precision"]["value"] == pytest.approx(expected, abs=1e-12)


def test_regression_metrics_equal_sklearn(frame, tmp_path):
    X = frame[NUMERIC]
    target = frame["debt_ratio"] * 10 + frame["age"] + np.random.default_rng(1).normal(0, 3, len(X))
    model = LinearRegression().fit(X, target)
    data = frame.assign(target=target)
    doc = SuiteDocument.model_validate(
        {
            "label": "target",
            "task": "regression",
            "checks": {
                "performance": {"metrics": {m: {} for m in REGRESSION}},
                "fairness": {
                    "sensitive_features": ["sex"],
                    "thresholds": {"mae_ratio": {"min": 0.5}},
                },
                "robustness": {
                    "perturbations": [{"name": "noise", "kind": "gaussian_noise", "scale": 0.1}],
                    "thresholds": {"max_mean_abs_change": 1.0},
                },
            },
        }
    )
    ctx = context(Adapter(model), data, doc, tmp_path, inputs=NUMERIC)
    outcome = performance.run(ctx, doc.checks.performance)
    record = outcome.record
    assert_json(record)
    pred = model.predict(X)
    expected = {
        "rmse": skm.root_mean_squared_error(target, pred),
        "mae": skm.mean_absolute_error(target, pred),
        "r2": skm.r2_score(target, pred),
    }
    for name, value in expected.items():
        assert record["results"]["metrics"][name]["value"] == pytest.approx(value, abs=1e-12)
    fair = fairness.run(ctx, doc.checks.fairness)
    assert fair.record["passed"] and fair.record["checks"][0]["name"] == "mae_ratio[sex] >= 0.5"
    groups = data["sex"]
    mf = flm.MetricFrame(
        metrics={"mae": skm.mean_absolute_error},
        y_true=target,
        y_pred=pred,
        sensitive_features=groups,
    )
    assert fair.record["checks"][0]["value"] == pytest.approx(mf.ratio()["mae"], abs=1e-12)
    robust = robustness.run(ctx, doc.checks.robustness)
    entry = robust.record["results"]["perturbations"][0]
    assert robust.record["results"]["change_units"] == "prediction / std(label)"
    assert 0 < entry["mean_abs_change"] < 1 and entry["label_agreement"] is None
    path = tmp_path / "report.html"
    render_report(
        path,
        {
            "checks": [outcome.record, fair.record, robust.record],
            "plots": {**outcome.plots, **fair.plots, **robust.plots},
        },
    )
    html = path.read_text(encoding="utf-8")
    assert 'alt="Residuals"' in html and 'alt="Groups of sex"' in html


def test_multiclass_metrics_equal_sklearn(frame, tmp_path):
    data = frame.assign(band=frame["age_band"])
    model = pipeline(["income", "debt_ratio", "sex"]).fit(data[FEATURES], data["band"])
    doc = SuiteDocument.model_validate(
        {
            "label": "band",
            "task": "classification",
            "positive_label": "young",
            "checks": {
                "performance": {
                    "metrics": {m: {} for m in CLASSIFICATION},
                    "bootstrap": {"samples": 10},
                }
            },
        }
    )
    record = performance.run(
        context(Adapter(model), data, doc, tmp_path), doc.checks.performance
    ).record
    for entry in record["results"]["metrics"].values():  # scikit-learn with count weights
        assert entry["bootstrap_used"] == 10
        assert entry["ci_low"] <= entry["value"] <= entry["ci_high"]
    y = np.array([model.classes_.tolist().index(v) for v in data["band"]])
    proba = model.predict_proba(data[FEATURES])
    pred = np.array([model.classes_.tolist().index(v) for v in model.predict(data[FEATURES])])
    labels = [0, 1, 2]
    expected = {
        "accuracy": skm.accuracy_score(y, pred),
        "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
        "precision": skm.precision_score(
            y, pred, average="macro", labels=labels, zero_division=np.nan
        ),
        "recall": skm.recall_score(y, pred, average="macro", labels=labels, zero_division=np.nan),
        "f1": skm.f1_score(y, pred, average="macro", labels=labels, zero_division=np.nan),
        "roc_auc": skm.roc_auc_score(y, proba, multi_class="ovr", labels=labels),
        "average_precision": skm.average_precision_score(np.eye(3)[y], proba),
        "log_loss": skm.log_loss(y, y_proba=proba, labels=labels),
        "brier": skm.brier_score_loss(y, y_proba=proba, labels=labels),
    }
    for name, value in expected.items():
        assert record["results"]["metrics"][name]["value"] == pytest.approx(value, abs=1e-12)


@pytest.mark.parametrize("name", CLASSIFICATION + REGRESSION)
def test_fast_weighted_metrics_equal_sklearn_on_the_resample(frame, fitted, tmp_path, name):
    info = KNOWN_METRICS[name]
    if info.task == "classification":
        doc = suite({"performance": {"metrics": {name: {}}}})
        ctx = context(Adapter(fitted), frame, doc, tmp_path)
    else:
        model = LinearRegression().fit(frame[NUMERIC], frame["income"])
        doc = SuiteDocument.model_validate(
            {
                "label": "income",
                "task": "regression",
                "checks": {"performance": {"metrics": {name: {}}}},
            }
        )
        ctx = context(Adapter(model), frame, doc, tmp_path, inputs=NUMERIC)
    scored = ctx.scored
    rng = np.random.default_rng(3)
    for _ in range(3):
        rows = rng.integers(0, scored.n, scored.n)
        weight = np.bincount(rows, minlength=scored.n).astype(float)
        fast = weighted_metric(name, scored, weight)
        resampled = metric_value(name, _subset(scored, rows))
        assert fast == pytest.approx(resampled, rel=1e-9, abs=1e-12)
        assert sklearn_weighted(name, scored, weight) == pytest.approx(fast, rel=1e-9, abs=1e-12)


def _subset(scored: Any, rows: np.ndarray) -> Any:
    from mlgov.validation.model import subset

    return subset(scored, rows)


def test_bootstrap_is_seeded_and_contains_the_estimate(frame, fitted, tmp_path):
    doc = suite({"performance": {"metrics": {"roc_auc": {}, "f1": {}, "log_loss": {}}}})
    scored = context(Adapter(fitted), frame, doc, tmp_path).scored
    names = ["roc_auc", "f1", "log_loss"]
    first = bootstrap(names, scored, samples=100, confidence=0.9, seed=5)
    again = bootstrap(names, scored, samples=100, confidence=0.9, seed=5)
    other = bootstrap(names, scored, samples=100, confidence=0.9, seed=6)
    assert first == again
    assert first != other
    for name in names:
        value = metric_value(name, scored)
        assert value is not None
        interval = first[name]
        assert interval.used == 100
        assert interval.low is not None and interval.high is not None
        assert interval.low <= value <= interval.high


def test_bootstrap_skips_resamples_where_the_metric_is_undefined(tmp_path):
    # Three positives in 40 rows: some resamples have none, and ROC AUC is undefined there.
    data = pd.DataFrame({"x": np.arange(40.0), "default": [1, 1, 1] + [0] * 37})
    model = FunctionModel(lambda X: X["x"].to_numpy() / 40)
    doc = suite({"performance": {"metrics": {"roc_auc": {}}}})
    scored = context(model, data, doc, tmp_path, inputs=["x"]).scored
    interval = bootstrap(["roc_auc"], scored, samples=200, confidence=0.95, seed=0)["roc_auc"]
    assert 150 < interval.used < 200


def test_performance_threshold_pass_and_fail(frame, fitted, tmp_path):
    ctx_doc = suite(
        {"performance": {"metrics": {"roc_auc": {"min": 0.6}, "log_loss": {"max": 0.9}}}}
    )
    ctx = context(Adapter(fitted), frame, ctx_doc, tmp_path)
    passing = performance.run(ctx, ctx_doc.checks.performance).record
    assert passing["passed"]
    assert [c["name"] for c in passing["checks"]] == ["roc_auc >= 0.6", "log_loss <= 0.9"]
    assert all(c["passed"] for c in passing["checks"])
    doc = suite({"performance": {"metrics": {"roc_auc": {"min": 0.999}, "log_loss": {"max": 0.9}}}})
    failing = performance.run(ctx, doc.checks.performance).record
    assert not failing["passed"]
    assert [c["passed"] for c in failing["checks"]] == [False, True]
    assert "roc_auc >= 0.999" in failing["summary"]


def test_gate_on_confidence_bound_is_stricter(frame, fitted, tmp_path):
    doc = suite({"performance": {"metrics": {"roc_auc": {}}}})
    ctx = context(Adapter(fitted), frame, doc, tmp_path)
    value = metric_value("roc_auc", ctx.scored)
    assert value is not None
    bound = {"min": value - 0.001}
    on_estimate = suite({"performance": {"metrics": {"roc_auc": bound}}})
    on_ci = suite({"performance": {"metrics": {"roc_auc": bound}, "gate_on": "confidence_bound"}})
    assert performance.run(ctx, on_estimate.checks.performance).record["passed"]
    record = performance.run(ctx, on_ci.checks.performance).record
    assert not record["passed"]
    assert record["checks"][0]["value"] == record["results"]["metrics"]["roc_auc"]["ci_low"]


def test_metric_needing_probabilities_fails_its_threshold_for_a_label_only_model(frame, tmp_path):
    class LabelsOnly:
        format = "test"
        feature_names = None
        classes = [0, 1]

        def predict(self, X):
            return (X["debt_ratio"].to_numpy() > 0.5).astype(int)

        def predict_proba(self, X):
            return None

    doc = suite({"performance": {"metrics": {"roc_auc": {"min": 0.5}, "accuracy": {"min": 0.5}}}})
    record = performance.run(context(LabelsOnly(), frame, doc, tmp_path), doc.checks.performance)
    checks = record.record["checks"]
    assert [c["passed"] for c in checks] == [False, True]
    assert "probabilities" in checks[0]["details"]
    assert record.record["results"]["metrics"]["roc_auc"]["value"] is None


# -- fairness ----------------------------------------------------------------------------------


def test_fairness_equals_fairlearn(frame, fitted, tmp_path):
    thresholds = {
        "demographic_parity_difference": {"max": 1.0},
        "demographic_parity_ratio": {"min": 0.0},
        "equalized_odds_difference": {"max": 1.0},
        "equalized_odds_ratio": {"min": 0.0},
        "accuracy_difference": {"max": 1.0},
    }
    doc = suite({"fairness": {"sensitive_features": ["sex", "age_band"], "thresholds": thresholds}})
    outcome = fairness.run(context(Adapter(fitted), frame, doc, tmp_path), doc.checks.fairness)
    record = outcome.record
    assert_json(record)
    assert record["passed"] and len(record["checks"]) == 10
    y = frame["default"].to_numpy()
    pred = (fitted.predict_proba(frame[FEATURES])[:, 1] >= 0.5).astype(int)
    functions = {
        "selection_rate": flm.selection_rate,
        "true_positive_rate": flm.true_positive_rate,
        "false_positive_rate": flm.false_positive_rate,
        "accuracy": skm.accuracy_score,
    }
    for feature in record["results"]["features"]:
        name = feature["feature"]
        groups = frame[name]
        mf = flm.MetricFrame(metrics=functions, y_true=y, y_pred=pred, sensitive_features=groups)
        assert {g["group"] for g in feature["groups"]} == set(mf.by_group.index)
        for group in feature["groups"]:
            assert group["count"] == int((groups == group["group"]).sum())
            for metric in functions:
                expected = mf.by_group.loc[group["group"], metric]
                assert group[metric] == pytest.approx(expected, abs=1e-12)
        for metric in functions:
            assert feature["difference"][metric] == pytest.approx(
                mf.difference()[metric], abs=1e-12
            )
            assert feature["ratio"][metric] == pytest.approx(mf.ratio()[metric], abs=1e-12)
        disparities = {
            "demographic_parity_difference": flm.demographic_parity_difference,
            "demographic_parity_ratio": flm.demographic_parity_ratio,
            "equalized_odds_difference": flm.equalized_odds_difference,
            "equalized_odds_ratio": flm.equalized_odds_ratio,
        }
        for metric, function in disparities.items():
            expected = function(y, pred, sensitive_features=groups)
            assert feature["disparities"][metric] == pytest.approx(expected, abs=1e-12)
    attachment = record["attachments"][0]
    assert attachment["name"] == "fairness_by_group.csv"
    assert Path(attachment["path"]).read_text().startswith("feature,group,count,")
    assert [p["feature"] for p in outcome.plots["fairness"]] == ["sex", "age_band"]


def test_fairness_threshold_failure_fails_the_kind(frame, fitted, tmp_path):
    doc = suite(
        {
            "fairness": {
                "sensitive_features": ["sex"],
                "thresholds": {
                    "demographic_parity_difference": {"max": 0.0001},
                    "equalized_odds_ratio": {"min": 0.0},
                },
            }
        }
    )
    record = fairness.run(
        context(Adapter(fitted), frame, doc, tmp_path), doc.checks.fairness
    ).record
    assert not record["passed"]
    assert [c["name"] for c in record["checks"]] == [
        "demographic_parity_difference[sex] <= 0.0001",
        "equalized_odds_ratio[sex] >= 0",
    ]
    assert [c["passed"] for c in record["checks"]] == [False, True]


def test_fairness_intersectional_groups_and_missing_values(frame, fitted, tmp_path):
    data = frame.copy()
    data.loc[:9, "age_band"] = None
    doc = suite(
        {
            "fairness": {
                "sensitive_features": ["sex", "age_band"],
                "intersectional": True,
                "metrics": ["selection_rate", "roc_auc", "count"],
            }
        }
    )
    record = fairness.run(context(Adapter(fitted), data, doc, tmp_path), doc.checks.fairness).record
    features = {f["feature"]: f for f in record["results"]["features"]}
    assert "(missing)" in {g["group"] for g in features["age_band"]["groups"]}
    combined = {g["group"] for g in features["sex & age_band"]["groups"]}
    assert "sex=F, age_band=young" in combined
    assert sum(g["count"] for g in features["sex & age_band"]["groups"]) == len(data)
    p = fitted.predict_proba(data[FEATURES])[:, 1]
    female = (data["sex"] == "F").to_numpy()
    f_group = next(g for g in features["sex"]["groups"] if g["group"] == "F")
    expected = skm.roc_auc_score(data["default"][female], p[female])
    assert f_group["roc_auc"] == pytest.approx(expected, abs=1e-12)


def test_fairness_refuses_an_identifier_column(frame, fitted, tmp_path):
    data = frame.assign(customer=[f"c{i}" for i in range(len(frame))])
    doc = suite({"fairness": {"sensitive_features": ["customer"]}})
    with pytest.raises(ValueError, match=r"customer.*distinct values"):
        fairness.run(context(Adapter(fitted), data, doc, tmp_path), doc.checks.fairness)


# -- explainability ----------------------------------------------------------------------------


@pytest.mark.parametrize("max_rows", [5000, 700])
def test_permutation_importance_equals_sklearn(frame, fitted, tmp_path, max_rows):
    doc = suite(
        {
            "explainability": {
                "permutation": {
                    "n_repeats": 3,
                    "max_rows": max_rows,
                    "seed": 7,
                    "scoring": "roc_auc",
                }
            }
        }
    )
    outcome = explainability.run(
        context(Adapter(fitted), frame, doc, tmp_path), doc.checks.explainability
    )
    record = outcome.record
    assert_json(record)
    rows = sample_rows(len(frame), max_rows, 7)
    X = frame[FEATURES].iloc[rows].reset_index(drop=True)
    y = frame["default"].iloc[rows].to_numpy()
    expected = permutation_importance(fitted, X, y, scoring="roc_auc", n_repeats=3, random_state=7)
    found = {f["feature"]: f for f in record["results"]["permutation"]["features"]}
    for index, feature in enumerate(FEATURES):
        assert found[feature]["importance_mean"] == pytest.approx(
            expected.importances_mean[index], abs=1e-12
        )
        assert found[feature]["importance_std"] == pytest.approx(
            expected.importances_std[index], abs=1e-12
        )
    assert record["results"]["permutation"]["rows"] == min(max_rows, len(frame))
    table = pd.read_csv(record["attachments"][0]["path"])
    assert list(table.columns) == ["feature", "importance_mean", "importance_std", "share"]
    assert table["share"].sum() == pytest.approx(1.0)


def test_explainability_thresholds(frame, fitted, tmp_path):
    ctx = context(Adapter(fitted), frame, suite({"explainability": {}}), tmp_path)
    lenient = suite(
        {
            "explainability": {
                "permutation": {"n_repeats": 2},
                "thresholds": {"max_top_feature_share": 1.0, "max_importance": {"age": 0.5}},
            }
        }
    )
    record = explainability.run(ctx, lenient.checks.explainability).record
    assert record["passed"] and len(record["checks"]) == 2
    strict = suite(
        {
            "explainability": {
                "permutation": {"n_repeats": 2},
                "thresholds": {"max_top_feature_share": 0.01, "max_importance": {"debt_ratio": 0}},
            }
        }
    )
    record = explainability.run(ctx, strict.checks.explainability).record
    assert not record["passed"]
    assert [c["passed"] for c in record["checks"]] == [False, False]
    assert record["checks"][1]["name"] == "importance of debt_ratio <= 0"


def test_linear_shap_is_exact_and_explains_the_decision_function(frame, fitted, tmp_path):
    X = frame[FEATURES].iloc[:300]
    found = shap_values(fitted, X, 1)
    assert not isinstance(found, str)
    decision = fitted.decision_function(X)
    assert np.allclose(found.values.sum(axis=1) + found.base_values, decision, atol=1e-10)
    assert found.features[0].startswith("num__")
    doc = suite({"explainability": {"permutation": {"n_repeats": 1}, "shap": {"required": True}}})
    record = explainability.run(
        context(Adapter(fitted), frame, doc, tmp_path), doc.checks.explainability
    ).record
    shap = record["results"]["shap"]
    assert shap["available"] and shap["method"].startswith("exact linear SHAP")
    assert shap["additivity_max_abs_error"] < 1e-9
    assert record["passed"]
    assert {a["name"] for a in record["attachments"]} == {
        "permutation_importance.csv",
        "shap_mean_abs.csv",
    }


def test_xgboost_tree_shap_sums_to_the_margin(frame, tmp_path):
    xgboost = pytest.importorskip("xgboost")
    model = xgboost.XGBClassifier(n_estimators=30, max_depth=3, n_jobs=1)
    model.fit(frame[NUMERIC], frame["default"])
    X = frame[NUMERIC].iloc[:500]
    found = shap_values(model, X, 1)
    assert not isinstance(found, str)
    margin = model.get_booster().predict(xgboost.DMatrix(X), output_margin=True)
    assert np.allclose(found.values.sum(axis=1) + found.base_values, margin, atol=1e-4)
    assert found.additivity_max_abs_error is not None and found.additivity_max_abs_error < 1e-4
    doc = suite({"explainability": {"permutation": {"n_repeats": 1}, "shap": {"max_rows": 200}}})
    record = explainability.run(
        context(Adapter(model), frame, doc, tmp_path, inputs=NUMERIC), doc.checks.explainability
    ).record
    assert record["results"]["shap"]["method"].startswith("xgboost TreeSHAP")
    assert record["results"]["shap"]["rows"] == 200


def test_lightgbm_tree_shap_sums_to_the_raw_score(frame):
    lightgbm = pytest.importorskip("lightgbm")
    model = lightgbm.LGBMClassifier(n_estimators=20, verbose=-1, n_jobs=1)
    model.fit(frame[NUMERIC], frame["default"])
    X = frame[NUMERIC].iloc[:300]
    found = shap_values(model, X, 1)
    assert not isinstance(found, str)
    raw = model.booster_.predict(X, raw_score=True)
    assert np.allclose(found.values.sum(axis=1) + found.base_values, raw, atol=1e-9)


def test_shap_not_available_is_reported_not_failed(frame, tmp_path):
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(
        frame[NUMERIC], frame["default"]
    )
    doc = suite({"explainability": {"permutation": {"n_repeats": 1}, "shap": {}}})
    ctx = context(Adapter(forest), frame, doc, tmp_path, inputs=NUMERIC)
    record = explainability.run(ctx, doc.checks.explainability).record
    assert record["passed"]
    shap = record["results"]["shap"]
    assert not shap["available"]
    assert shap["reason"] == "not available for this model type (RandomForestClassifier)"
    required = suite(
        {"explainability": {"permutation": {"n_repeats": 1}, "shap": {"required": True}}}
    )
    record = explainability.run(ctx, required.checks.explainability).record
    assert not record["passed"]
    assert record["checks"][0]["name"] == "SHAP values available"


# -- robustness --------------------------------------------------------------------------------

PERTURBATIONS = [
    {"name": "noise", "kind": "gaussian_noise", "scale": 0.5},
    {"name": "missing", "kind": "missing", "fraction": 0.1},
    {"name": "out_of_range", "kind": "out_of_range", "fraction": 0.1, "factor": 3.0},
    {"name": "unseen", "kind": "unseen_category", "fraction": 0.1},
]
STRICT = {"max_mean_abs_change": 0.0, "min_label_agreement": 1.0, "max_error_rate": 0.0}


def test_a_constant_model_is_perfectly_robust(frame, tmp_path):
    model = FunctionModel(lambda X: np.full(len(X), 0.3))
    doc = suite({"robustness": {"perturbations": PERTURBATIONS, "thresholds": STRICT}})
    outcome = robustness.run(context(model, frame, doc, tmp_path), doc.checks.robustness)
    record = outcome.record
    assert_json(record)
    assert record["passed"] and len(record["checks"]) == 12
    for entry in record["results"]["perturbations"]:
        assert entry["mean_abs_change"] == 0.0
        assert entry["label_agreement"] == 1.0
        assert entry["error_rate"] == 0.0
        assert entry["rows_perturbed"] > 0
    assert record["results"]["perturbations"][3]["features"] == ["sex"]


def test_a_model_that_depends_on_a_noised_feature_fails(frame, tmp_path):
    model = FunctionModel(lambda X: 1 / (1 + np.exp(-(X["income"].to_numpy() - 50) / 5)))
    doc = suite(
        {
            "robustness": {
                "perturbations": [
                    {
                        "name": "income_noise",
                        "kind": "gaussian_noise",
                        "scale": 1.0,
                        "features": ["income"],
                    },
                    {
                        "name": "debt_noise",
                        "kind": "gaussian_noise",
                        "scale": 1.0,
                        "features": ["debt_ratio"],
                    },
                ],
                "thresholds": {"max_mean_abs_change": 0.05, "min_label_agreement": 0.95},
            }
        }
    )
    record = robustness.run(context(model, frame, doc, tmp_path), doc.checks.robustness).record
    assert not record["passed"]
    by_name = {c["name"]: c for c in record["checks"]}
    assert not by_name["income_noise: mean_abs_change <= 0.05"]["passed"]
    assert not by_name["income_noise: label_agreement >= 0.95"]["passed"]
    assert by_name["debt_noise: mean_abs_change <= 0.05"]["passed"]
    assert by_name["debt_noise: mean_abs_change <= 0.05"]["value"] == 0.0


def test_rows_where_the_model_raises_are_isolated_and_counted(frame, fitted, tmp_path):
    doc = suite(
        {
            "robustness": {
                "max_rows": 1000,
                "perturbations": [
                    {
                        "name": "missing_income",
                        "kind": "missing",
                        "fraction": 0.05,
                        "features": ["income"],
                        "thresholds": {"max_error_rate": 0.0},
                    },
                    {
                        "name": "missing_sex",
                        "kind": "missing",
                        "fraction": 0.05,
                        "features": ["sex"],
                    },
                ],
                "thresholds": {"max_error_rate": 0.5},
            }
        }
    )
    record = robustness.run(context(Adapter(fitted), frame, doc, tmp_path), doc.checks.robustness)
    income, sex = record.record["results"]["perturbations"]
    # LogisticRegression refuses NaN: exactly the blanked rows fail, and only those.
    assert income["errors"] == income["rows_perturbed"] > 0
    assert income["errors_not_isolated"] == 0
    assert "the model raised on predict_proba" in income["first_error"]
    assert income["label_agreement"] == 1.0  # the other rows are untouched
    # The one-hot encoder ignores an unknown (missing) category: no errors.
    assert sex["errors"] == 0 and sex["rows_perturbed"] > 0
    names = [(c["name"], c["passed"]) for c in record.record["checks"]]
    assert names == [
        ("missing_income: error_rate <= 0", False),
        ("missing_sex: error_rate <= 0.5", True),
    ]


def test_perturbing_a_non_input_is_an_error(frame, fitted, tmp_path):
    doc = suite(
        {
            "robustness": {
                "perturbations": [
                    {"name": "n", "kind": "gaussian_noise", "scale": 0.1, "features": ["salary"]}
                ]
            }
        }
    )
    with pytest.raises(ValueError, match="not model inputs: salary"):
        robustness.run(context(Adapter(fitted), frame, doc, tmp_path), doc.checks.robustness)


# -- reproducibility ---------------------------------------------------------------------------

RECORDED = {
    "data_hash": "ab" * 32,
    "code_ref": {"repository": "https://git.example/credit", "commit": "0123abcd"},
    "environment": {"python": "3.11.9", "packages": {"scikit-learn": "1.9.1"}},
}


def test_a_deterministic_model_is_reproducible(frame, fitted, tmp_path):
    doc = suite({"reproducibility": {"sample_rows": 300}})
    ctx = context(
        Adapter(fitted), frame, doc, tmp_path, load=lambda: Adapter(fitted), recorded=RECORDED
    )
    record = reproducibility.run(ctx, doc.checks.reproducibility).record
    assert_json(record)
    assert record["passed"], record["checks"]
    assert [c["name"] for c in record["checks"]] == [
        "recorded data_hash",
        "recorded code_ref",
        "recorded environment",
        "identical predictions across two loads",
    ]
    assert record["results"]["determinism"]["rows"] == 300


def test_a_model_whose_loads_disagree_is_not_reproducible(frame, tmp_path):
    loads = iter(range(100))

    def load() -> FunctionModel:
        rng = np.random.default_rng(next(loads))
        return FunctionModel(lambda X: rng.random(len(X)))

    doc = suite({"reproducibility": {}})
    ctx = context(load(), frame, doc, tmp_path, load=load, recorded=RECORDED)
    record = reproducibility.run(ctx, doc.checks.reproducibility).record
    assert not record["passed"]
    last = record["checks"][-1]
    assert last["name"] == "identical predictions across two loads" and not last["passed"]
    assert record["results"]["determinism"]["differing_rows"] > 0


def test_missing_code_ref_fails_naming_it(frame, fitted, tmp_path):
    recorded = {**RECORDED, "code_ref": None}
    doc = suite({"reproducibility": {}})
    ctx = context(
        Adapter(fitted), frame, doc, tmp_path, load=lambda: Adapter(fitted), recorded=recorded
    )
    record = reproducibility.run(ctx, doc.checks.reproducibility).record
    assert not record["passed"]
    failed = [c for c in record["checks"] if not c["passed"]]
    assert [c["name"] for c in failed] == ["recorded code_ref"]
    assert "code_ref missing" in failed[0]["details"]
    assert "code_ref missing" in record["summary"]
    only_data = suite({"reproducibility": {"require": ["data_hash"]}})
    assert reproducibility.run(ctx, only_data.checks.reproducibility).record["passed"]


# -- champion / challenger ---------------------------------------------------------------------


def _champion(model: Any, features: list[str], version: int = 3) -> ChampionRef:
    return ChampionRef(
        "credit",
        version,
        {"inputs": [{"name": f, "type": "double" if f in NUMERIC else "string"} for f in features]},
        lambda: Adapter(model),
    )


def test_champion_challenger(frame, fitted, tmp_path):
    weak = pipeline(["age"]).fit(frame[["age"]], frame["default"])
    doc = suite({"champion_challenger": {"metric": "roc_auc", "min_margin": 0.01}})
    ctx = context(
        Adapter(fitted),
        frame,
        doc,
        tmp_path,
        champion=_champion(weak, ["age"]),
        model_name="credit",
        model_version=4,
    )
    outcome = champion.run(ctx, doc.checks.champion_challenger)
    record = outcome.record
    assert_json(record)
    y = frame["default"]
    strong_auc = skm.roc_auc_score(y, fitted.predict_proba(frame[FEATURES])[:, 1])
    weak_auc = skm.roc_auc_score(y, weak.predict_proba(frame[["age"]])[:, 1])
    results = record["results"]
    assert results["challenger"]["value"] == pytest.approx(strong_auc, abs=1e-12)
    assert results["champion"] == {"name": "credit", "version": 3, "value": pytest.approx(weak_auc)}
    assert results["margin"] == pytest.approx(strong_auc - weak_auc, abs=1e-12)
    assert record["passed"] and record["checks"][0]["name"] == "roc_auc margin >= 0.01"
    # The other way round the challenger is worse: fail.
    reverse = context(
        Adapter(weak), frame, doc, tmp_path, inputs=["age"], champion=_champion(fitted, FEATURES)
    )
    assert not champion.run(reverse, doc.checks.champion_challenger).record["passed"]
    # Lower is better for log loss: the margin is mirrored, so the strong model still wins.
    loss = suite({"champion_challenger": {"metric": "log_loss"}})
    record = champion.run(ctx, loss.checks.champion_challenger).record
    assert record["passed"] and record["results"]["margin"] > 0


def test_no_champion_passes(frame, fitted, tmp_path):
    doc = suite({"champion_challenger": {"metric": "accuracy"}})
    record = champion.run(
        context(Adapter(fitted), frame, doc, tmp_path), doc.checks.champion_challenger
    ).record
    assert record["passed"]
    assert record["summary"] == "no production version to compare against"
    assert record["results"]["champion"] is None


def test_a_champion_that_cannot_be_scored_fails_the_comparison(frame, fitted, tmp_path):
    doc = suite({"champion_challenger": {"metric": "accuracy"}})
    ctx = context(Adapter(fitted), frame, doc, tmp_path, champion=_champion(fitted, ["salary"]))
    record = champion.run(ctx, doc.checks.champion_challenger).record
    assert not record["passed"]
    assert "lacks columns the champion needs: salary" in record["checks"][0]["details"]


# -- non-finite values and the report ----------------------------------------------------------


def test_undefined_values_are_null_and_said_so(tmp_path):
    data = pd.DataFrame({"x": np.linspace(0, 1, 50), "default": [0] * 50})
    model = FunctionModel(lambda X: X["x"].to_numpy())
    doc = suite(
        {
            "performance": {
                "metrics": {"roc_auc": {"min": 0.5}, "accuracy": {}},
                "bootstrap": {"samples": 0},
            }
        }
    )
    record = performance.run(
        context(model, data, doc, tmp_path, inputs=["x"]), doc.checks.performance
    ).record
    assert_json(record)
    assert record["results"]["metrics"]["roc_auc"]["value"] is None
    assert "undefined" in record["results"]["metrics"]["roc_auc"]["note"]
    assert not record["passed"] and record["checks"][0]["value"] is None


def test_report_is_offline_escaped_and_complete(frame, fitted, tmp_path):
    doc = suite(
        {
            "performance": {"metrics": {"roc_auc": {"min": 0.5}}, "bootstrap": {"samples": 20}},
            "fairness": {"sensitive_features": ["sex"]},
            "explainability": {"permutation": {"n_repeats": 1}, "shap": {}},
            "robustness": {"perturbations": PERTURBATIONS[:2], "max_rows": 300},
            "reproducibility": {},
            "champion_challenger": {"metric": "roc_auc"},
        }
    )
    recorded = {**RECORDED, "code_ref": {"repository": "git.example/credit", "commit": "0123abcd"}}
    ctx = context(
        Adapter(fitted),
        frame,
        doc,
        tmp_path,
        load=lambda: Adapter(fitted),
        recorded=recorded,
        champion=_champion(fitted, FEATURES),
    )
    runners = [performance, fairness, explainability, robustness, reproducibility, champion]
    outcomes = [
        m.run(ctx, getattr(doc.checks, kind))
        for m, kind in zip(runners, doc.checks.configured(), strict=True)
    ]
    plots: dict[str, Any] = {}
    for outcome in outcomes:
        plots.update(outcome.plots)
    path = tmp_path / "report.html"
    render_report(
        path,
        {
            "model": {"name": "<script>alert(1)</script>", "version": 2},
            "suite": {"name": "credit-suite", "version": 1, "sha256": "cd" * 32},
            "dataset": {"name": "applications", "version": 3, "sha256": "ef" * 32},
            "requested_by": "val & co",
            "requested_at": "2025-01-01T00:00:00Z",
            "runtime_seconds": 1.5,
            "rows": len(frame),
            "checks": [o.record for o in outcomes],
            "plots": plots,
        },
    )
    html = path.read_text(encoding="utf-8")
    assert "http://" not in html and "https://" not in html
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "val &amp; co" in html
    for kind in doc.checks.configured():
        assert f'<section id="{kind}"' in html
    assert html.count("data:image/png;base64,") >= 7
    assert "ef" * 32 in html
    assert 'src="http' not in html and "<link" not in html


def test_report_renders_with_a_minimal_context(tmp_path):
    path = tmp_path / "report.html"
    render_report(
        path,
        {
            "checks": [
                {
                    "kind": "performance",
                    "passed": False,
                    "summary": "x",
                    "results": {},
                    "checks": [],
                    "attachments": [],
                }
            ]
        },
    )
    html = path.read_text(encoding="utf-8")
    assert "FAILED" in html and math.isfinite(len(html))

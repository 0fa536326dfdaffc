"""Validation benchmark: a full suite on a 100,000-row dataset for a gradient-boosted model.

The data: ``--rows`` (default 100,000) credit applications with 20 numeric features, a
categorical sensitive feature (``age_band``, four groups) and a binary label drawn from a
logistic model of the features. The model: a LightGBM classifier (200 trees, 31 leaves),
trained on a separate 100,000 rows and saved in LightGBM's native text format, as a user would
register it. The dataset is written as CSV, as the worker reads it.

What is timed is the product's own path: the worker's sandboxed child process
(:func:`mlgov.artifacts.sandbox.run_in_sandbox` running
``mlgov.validation.execute:execute``, the task a validation job runs) with the product's
default limits (4 GiB address space, 1 hour). It scans and loads the model, reads and checks the
CSV, predicts, runs the six checks (performance with 200 bootstrap resamples, fairness over
``age_band``, permutation importance on 5,000 rows x 5 repeats and native TreeSHAP on 1,000
rows, robustness under three perturbations of 10,000 rows, reproducibility with a second load,
champion/challenger against a second LightGBM model) and renders the HTML report.

Printed per check: seconds (measured by the check itself) and peak memory. Peak memory per check
is measured in a child process of its own that runs only that check, so each figure is the
whole process's peak resident set size with that check (model load, CSV read and prediction
included), not a difference. Then the full suite in one child: wall time (including the child's
start and imports) and peak RSS.

As a reference (no peer is named for this), the same performance and fairness numbers computed
the plain way in this process: predict, then scikit-learn's metric functions (200 bootstrap
resamples as 200 calls of each) and fairlearn's MetricFrame and disparity functions.

    .venv/bin/python bench/validation_bench.py              # 100,000 rows
    .venv/bin/python bench/validation_bench.py --rows 20000 # quicker
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from mlgov.artifacts.sandbox import run_in_sandbox
from mlgov.validation.suite import CHECK_KINDS

N_FEATURES = 20

SUITE: dict[str, Any] = {
    "label": "default",
    "task": "classification",
    "checks": {
        "performance": {
            "metrics": {
                "roc_auc": {"min": 0.6},
                "accuracy": {},
                "precision": {},
                "recall": {},
                "f1": {},
                "log_loss": {"max": 0.7},
                "brier": {},
            },
            "bootstrap": {"samples": 200, "confidence": 0.95, "seed": 0},
        },
        "fairness": {
            "sensitive_features": ["age_band"],
            "metrics": ["selection_rate", "true_positive_rate", "false_positive_rate"],
            "thresholds": {
                "demographic_parity_difference": {"max": 0.5},
                "equalized_odds_difference": {"max": 0.5},
            },
        },
        "explainability": {
            "permutation": {"n_repeats": 5, "max_rows": 5000, "seed": 0, "scoring": "roc_auc"},
            "shap": {"max_rows": 1000},
            "top_k": 10,
        },
        "robustness": {
            "max_rows": 10000,
            "seed": 0,
            "perturbations": [
                {"name": "noise_10pct", "kind": "gaussian_noise", "scale": 0.1},
                {"name": "missing_5pct", "kind": "missing", "fraction": 0.05},
                {"name": "out_of_range", "kind": "out_of_range", "fraction": 0.02, "factor": 3.0},
            ],
            "thresholds": {"max_mean_abs_change": 0.5, "min_label_agreement": 0.5},
        },
        "reproducibility": {"sample_rows": 500},
        "champion_challenger": {"metric": "roc_auc", "min_margin": -1.0},
    },
}


def make_data(rows: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, N_FEATURES))
    weights = np.linspace(1.0, -1.0, N_FEATURES) / 3
    logit = X @ weights + 0.5 * X[:, 0] * X[:, 1] - 0.5
    y = (rng.uniform(size=rows) < 1 / (1 + np.exp(-logit))).astype(int)
    age = rng.integers(18, 80, rows)
    band = np.select([age < 30, age < 45, age < 60], ["18-29", "30-44", "45-59"], "60+")
    data = {f"x{i}": X[:, i] for i in range(N_FEATURES)}
    data["age_band"] = band
    data["default"] = y
    return data


def write_csv(path: Path, data: dict[str, np.ndarray]) -> str:
    import pandas as pd

    pd.DataFrame(data).to_csv(path, index=False)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def train(data: dict[str, np.ndarray], path: Path, trees: int) -> None:
    import lightgbm as lgb

    X = np.column_stack([data[f"x{i}"] for i in range(N_FEATURES)])
    model = lgb.LGBMClassifier(n_estimators=trees, num_leaves=31, verbose=-1, n_jobs=1)
    model.fit(X, data["default"], feature_name=[f"x{i}" for i in range(N_FEATURES)])
    model.booster_.save_model(str(path))


def payload(work: Path, suite: dict[str, Any], data_sha: str, out: Path) -> dict[str, Any]:
    signature = {"inputs": [{"name": f"x{i}", "type": "double"} for i in range(N_FEATURES)]}
    return {
        "suite": suite,
        "suite_ref": {"name": "bench", "version": 1, "sha256": "0" * 64},
        "model": {
            "name": "bench-gbm",
            "version": 2,
            "path": str(work / "candidate.txt"),
            "format": "lightgbm",
            "signature": signature,
            "recorded": {
                "data_hash": "1" * 64,
                "code_ref": {"repository": "https://git.example.com/bench", "commit": "abc1234"},
                "environment": {"python": "3.11", "packages": {"lightgbm": "4"}},
            },
        },
        "champion": {
            "name": "bench-gbm",
            "version": 1,
            "path": str(work / "champion.txt"),
            "format": "lightgbm",
            "signature": signature,
        },
        "dataset": {
            "name": "bench-data",
            "version": 1,
            "path": str(work / "data.csv"),
            "format": "csv",
            "sha256": data_sha,
        },
        "scan_policy": {"allow_pickle": False, "trusted_types": []},
        "requested_by": "bench",
        "requested_at": "2026-12-05T00:00:00+00:00",
        "out_dir": str(out),
    }


def run(
    work: Path, suite: dict[str, Any], data_sha: str, label: str
) -> tuple[dict[str, Any], float]:
    out = work / f"out-{label}"
    out.mkdir()
    started = time.perf_counter()
    result = run_in_sandbox(
        "mlgov.validation.execute:execute",
        payload(work, suite, data_sha, out),
        memory_mb=4096,
        timeout_s=3600,
        workdir=work / f"sandbox-{label}",
    )
    return result, time.perf_counter() - started


def library_reference(data: dict[str, np.ndarray], model_path: Path) -> float:
    """Performance and fairness numbers straight from scikit-learn and fairlearn (predictions
    included), in this process: the libraries' own time."""
    import lightgbm as lgb
    from fairlearn.metrics import (
        MetricFrame,
        demographic_parity_difference,
        equalized_odds_difference,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )
    from sklearn import metrics

    booster = lgb.Booster(model_file=str(model_path))
    X = np.column_stack([data[f"x{i}"] for i in range(N_FEATURES)])
    y = data["default"]
    started = time.perf_counter()
    p = booster.predict(X, num_threads=1)
    labels = (p >= 0.5).astype(int)
    metrics.roc_auc_score(y, p)
    metrics.accuracy_score(y, labels)
    metrics.precision_score(y, labels)
    metrics.recall_score(y, labels)
    metrics.f1_score(y, labels)
    metrics.log_loss(y, p)
    metrics.brier_score_loss(y, p)
    rng = np.random.default_rng(0)
    for _ in range(200):
        idx = rng.integers(0, len(y), len(y))
        metrics.roc_auc_score(y[idx], p[idx])
        metrics.accuracy_score(y[idx], labels[idx])
    MetricFrame(
        metrics={
            "selection_rate": selection_rate,
            "true_positive_rate": true_positive_rate,
            "false_positive_rate": false_positive_rate,
        },
        y_true=y,
        y_pred=labels,
        sensitive_features=data["age_band"],
    )
    demographic_parity_difference(y, labels, sensitive_features=data["age_band"])
    equalized_odds_difference(y, labels, sensitive_features=data["age_band"])
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--trees", type=int, default=200)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mlgov-validation-bench-") as tmp:
        work = Path(tmp)
        print(f"data: {args.rows:,} rows x {N_FEATURES} features + age_band; LightGBM, "
              f"{args.trees} trees")  # fmt: skip
        started = time.perf_counter()
        train(make_data(args.rows, 1), work / "candidate.txt", args.trees)
        train(make_data(args.rows, 2), work / "champion.txt", args.trees // 2)
        data = make_data(args.rows, 3)
        data_sha = write_csv(work / "data.csv", data)
        size = (work / "data.csv").stat().st_size
        print(f"set-up (training, CSV {size / 1e6:.1f} MB): {time.perf_counter() - started:.1f} s")

        # Peak memory per check: one child per check, and one with no check at all.
        base_suite = {k: v for k, v in SUITE.items() if k != "checks"}
        peaks: dict[str, float] = {}
        for kind in CHECK_KINDS:
            suite = {**base_suite, "checks": {kind: SUITE["checks"][kind]}}
            result, _ = run(work, suite, data_sha, f"only-{kind}")
            peaks[kind] = float(result["peak_memory_mb"])

        result, wall = run(work, SUITE, data_sha, "full")
        print()
        print(f"{'check':<22}{'passed':>8}{'seconds':>10}{'peak RSS MiB':>15}")
        for check in result["checks"]:
            kind = check["kind"]
            print(
                f"{kind:<22}{check['passed']!s:>8}{check['runtime_seconds']:>10.2f}"
                f"{peaks.get(kind, float('nan')):>15.0f}"
            )
        checks_total = sum(c["runtime_seconds"] for c in result["checks"])
        print()
        print(f"checks (sum of the six):            {checks_total:8.2f} s")
        print(f"execute (load, read, checks, report): {result['runtime_seconds']:8.2f} s")
        print(f"wall, child start and imports incl.:  {wall:8.2f} s")
        print(f"peak RSS of the full run:             {result['peak_memory_mb']:8.0f} MiB")
        reference = library_reference(data, work / "candidate.txt")
        perf = next(c for c in result["checks"] if c["kind"] == "performance")
        fair = next(c for c in result["checks"] if c["kind"] == "fairness")
        ours = perf["runtime_seconds"] + fair["runtime_seconds"]
        print(
            f"reference: performance + fairness with scikit-learn/fairlearn directly "
            f"(predict included): {reference:.2f} s; mlgov's two checks: {ours:.2f} s "
            f"(ratio {ours / reference:.2f})"
        )
        print(json.dumps({"rows": args.rows, "wall_seconds": round(wall, 2)}))


if __name__ == "__main__":
    main()

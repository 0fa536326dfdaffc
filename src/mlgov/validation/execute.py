"""The entry point of a validation run: ``mlgov.validation.execute:execute``.

The worker runs it in a sandboxed child process (:mod:`mlgov.artifacts.sandbox`), so it sees
only its JSON ``payload`` and returns JSON: it loads the model (scan first, then the format's
safe loader), reads the dataset version's file, checks that the columns match the model's
signature and the suite, predicts once, runs every configured check in order (performance,
fairness, explainability, robustness, reproducibility, champion_challenger), reporting
progress after each, and writes the HTML report and the attachments into ``out_dir``.

Problems the user must fix (columns that do not match, a label the model does not know, an
artifact that cannot be loaded, a model that raises on predict) raise :class:`ValueError` with
a one-line message; anything else is a bug and propagates as is.

The payload::

    {"suite": {...SuiteDocument...}, "suite_ref": {"name", "version", "sha256"},
     "model": {"name", "version", "path", "format", "signature": {"inputs", "outputs"},
               "recorded": {"data_hash", "code_ref", "environment"}},
     "champion": None | {"name", "version", "path", "format", "signature"},
     "dataset": {"name", "version", "path", "format": "csv" | "parquet", "sha256"},
     "scan_policy": {"allow_pickle": bool, "trusted_types": [str]},
     "requested_by": str, "requested_at": iso str, "out_dir": str}

The result::

    {"passed": bool, "checks": [<check record>, ...],       # see mlgov.validation.checks
     "report": {"name": "report.html", "path": "/abs/out_dir/report.html",
                "media_type": "text/html"},
     "rows": 2000, "runtime_seconds": 12.3,
     "peak_memory_mb": 812.0}    # the worker process's peak resident set size
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mlgov.validation.checks import (
    ChampionRef,
    CheckContext,
    CheckOutcome,
    measured,
    peak_rss_mb,
)
from mlgov.validation.data import check_columns, read_dataset
from mlgov.validation.model import LoadedModel, score
from mlgov.validation.suite import SuiteDocument, referenced_columns, validation_problem

Progress = Callable[[float, str], None]


def _runners() -> dict[str, Callable[[CheckContext, Any], CheckOutcome]]:
    from mlgov.validation import (
        champion,
        explainability,
        fairness,
        performance,
        reproducibility,
        robustness,
    )

    return {
        "performance": performance.run,
        "fairness": fairness.run,
        "explainability": explainability.run,
        "robustness": robustness.run,
        "reproducibility": reproducibility.run,
        "champion_challenger": champion.run,
    }


def _loader(spec: dict[str, Any], policy: Any) -> Callable[[], LoadedModel]:
    """Loads the artifact of ``spec`` afresh on every call."""
    from mlgov.artifacts.loaders import load_model

    path, fmt, signature = Path(spec["path"]), str(spec["format"]), spec.get("signature")

    def load() -> LoadedModel:
        try:
            return load_model(path, fmt, policy, signature=signature)
        except Exception as exc:  # scan refusals and loader errors alike: the artifact's fault
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"the model artifact could not be loaded: {text}") from exc

    return load


def _suite(data: dict[str, Any]) -> SuiteDocument:
    try:
        return SuiteDocument.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"the suite is not valid: {validation_problem(exc).detail}") from None


def execute(payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Run the payload's suite on its model and dataset; the checks and the report."""
    from mlgov.artifacts.scan import ScanPolicy
    from mlgov.validation.report import render_report

    started = time.perf_counter()
    suite = _suite(payload["suite"])
    out_dir = Path(payload["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    scan = payload.get("scan_policy") or {}
    policy = ScanPolicy(
        allow_pickle=bool(scan.get("allow_pickle", False)),
        trusted_types=tuple(str(t) for t in scan.get("trusted_types") or ()),
    )
    model_spec = payload["model"]
    progress(0.0, "loading the model")
    load = _loader(model_spec, policy)
    model = load()

    progress(0.05, "reading the dataset")
    dataset = payload["dataset"]
    sample = suite.sample
    frame = read_dataset(
        Path(dataset["path"]), str(dataset["format"]), max_rows=sample.max_rows, seed=sample.seed
    )
    signature_inputs = list((model_spec.get("signature") or {}).get("inputs") or [])
    check_columns(frame, signature_inputs, suite.label, referenced_columns(suite))
    inputs = [str(spec["name"]) for spec in signature_inputs]
    own = list(model.feature_names or [])
    if own:
        missing = [name for name in own if name not in frame.columns]
        if missing:
            raise ValueError(f"the dataset lacks columns the model needs: {', '.join(missing)}")
        inputs = own
    if not inputs:
        raise ValueError("the model version has no input signature to select its columns by")

    progress(0.1, "predicting")
    if suite.label is not None:
        scored = score(
            model,
            frame[inputs],
            frame[suite.label],
            task=suite.task,
            positive_label=suite.positive_label,
            threshold=suite.threshold,
        )
    else:  # robustness and reproducibility only: predictions, no truth
        scored = _unlabelled(model, frame[inputs], suite)

    champion_spec = payload.get("champion")
    champion = None
    if champion_spec:
        champion = ChampionRef(
            name=str(champion_spec["name"]),
            version=int(champion_spec["version"]),
            signature=dict(champion_spec.get("signature") or {}),
            load=_loader(champion_spec, policy),
        )
    ctx = CheckContext(
        suite=suite,
        model=model,
        frame=frame,
        inputs=inputs,
        scored=scored,
        out_dir=out_dir,
        model_name=str(model_spec.get("name", "")),
        model_version=int(model_spec.get("version", 0)),
        load=load,
        recorded=dict(model_spec.get("recorded") or {}),
        champion=champion,
    )

    runners = _runners()
    kinds = suite.checks.configured()
    outcomes: list[CheckOutcome] = []
    for index, kind in enumerate(kinds):
        progress(0.15 + 0.8 * index / len(kinds), kind)
        run = functools.partial(runners[kind], ctx, getattr(suite.checks, kind))
        outcomes.append(measured(run))

    progress(0.95, "report")
    records = [outcome.record for outcome in outcomes]
    plots: dict[str, Any] = {}
    for outcome in outcomes:
        plots.update(outcome.plots)
    report_path = (out_dir / "report.html").resolve()
    suite_ref = payload.get("suite_ref") or {}
    runtime = time.perf_counter() - started
    render_report(
        report_path,
        {
            "model": {"name": model_spec.get("name"), "version": model_spec.get("version")},
            "suite": {
                "name": suite_ref.get("name") or suite.name or "",
                "version": suite_ref.get("version"),
                "sha256": suite_ref.get("sha256", ""),
            },
            "dataset": {
                "name": dataset.get("name"),
                "version": dataset.get("version"),
                "sha256": dataset.get("sha256", ""),
            },
            "requested_by": payload.get("requested_by", ""),
            "requested_at": payload.get("requested_at", ""),
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "runtime_seconds": round(runtime, 3),
            "rows": len(frame),
            "checks": records,
            "plots": plots,
        },
    )
    progress(1.0, "done")
    return {
        "passed": all(record["passed"] for record in records),
        "checks": records,
        "report": {"name": "report.html", "path": str(report_path), "media_type": "text/html"},
        "rows": len(frame),
        "runtime_seconds": round(time.perf_counter() - started, 6),
        "peak_memory_mb": round(peak_rss_mb(), 3),
    }


def _unlabelled(model: LoadedModel, X: Any, suite: SuiteDocument) -> Any:
    """Predictions without a label column: the model's own classes (or, for a classifier that
    does not report them, its distinct predictions) stand in for the label's values."""
    import numpy as np
    import pandas as pd  # type: ignore[import-untyped]

    from mlgov.validation.model import call_model

    if suite.task == "regression":
        stand_in = pd.Series(np.zeros(len(X)), name="(no label)")
    elif model.classes is not None:
        stand_in = pd.Series([model.classes[0]] * len(X), name="(no label)")
    else:
        predicted = np.asarray(call_model("predict", lambda: model.predict(X)))
        stand_in = pd.Series(predicted, name="(no label)")
    return score(
        model,
        X,
        stand_in,
        task=suite.task,
        positive_label=suite.positive_label,
        threshold=suite.threshold,
    )

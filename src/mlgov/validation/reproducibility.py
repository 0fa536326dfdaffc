"""The reproducibility check: is the version's provenance recorded, and is it deterministic?

1. Recorded metadata (each field the suite ``require``\\ s is one item): ``data_hash`` (the
   content sha256 of the training dataset version, through lineage), ``code_ref`` (repository
   and commit) and ``environment`` (Python version and a non-empty package list).
2. Determinism: the artifact is loaded twice, afresh, and both copies predict on the same
   fixed rows (the first ``sample_rows`` of the evaluation data); their predictions (and
   probabilities) must be bit-identical: same dtype, same shape, same bytes.

Results::

    {"recorded": {"data_hash": "ab12...", "code_ref": {...}, "environment": {"python": "3.11",
                  "packages": 14}},
     "determinism": {"rows": 500, "loads": 2, "predictions_identical": true,
                     "probabilities_identical": true, "differing_rows": 0, "error": ""}}
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from mlgov.validation.checks import CheckContext, CheckOutcome, finalise, item
from mlgov.validation.model import LoadedModel, call_model
from mlgov.validation.suite import Reproducibility


def _present(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def recorded_items(recorded: dict[str, Any], require: list[str]) -> list[dict[str, Any]]:
    items = []
    for name in require:
        if name == "data_hash":
            value = recorded.get("data_hash")
            ok = _present(value)
            items.append(
                item(
                    "recorded data_hash",
                    ok,
                    value if ok else None,
                    "required",
                    "content sha256 of the training dataset version"
                    if ok
                    else "data_hash missing: no training dataset version with a content hash "
                    "is linked (lineage)",
                )
            )
        elif name == "code_ref":
            ref = recorded.get("code_ref") or {}
            lacking = [k for k in ("repository", "commit") if not _present(ref.get(k))]
            ok = not lacking
            items.append(
                item(
                    "recorded code_ref",
                    ok,
                    f"{ref.get('repository')}@{ref.get('commit')}" if ok else None,
                    "required",
                    "repository and commit recorded"
                    if ok
                    else f"code_ref missing: no {' and no '.join(lacking)} recorded",
                )
            )
        else:
            env = recorded.get("environment") or {}
            packages = env.get("packages") or {}
            lacking = []
            if not _present(env.get("python")):
                lacking.append("Python version")
            if not packages:
                lacking.append("package versions")
            ok = not lacking
            items.append(
                item(
                    "recorded environment",
                    ok,
                    f"python {env.get('python')}, {len(packages)} packages" if ok else None,
                    "required",
                    "Python and package versions recorded"
                    if ok
                    else f"environment missing: no {' and no '.join(lacking)} recorded",
                )
            )
    return items


def identical(a: Any, b: Any) -> bool:
    """Bit-identical arrays (object arrays: equal element by element, same types)."""
    if a is None or b is None:
        return a is None and b is None
    left, right = np.asarray(a), np.asarray(b)
    if left.dtype != right.dtype or left.shape != right.shape:
        return False
    if left.dtype.hasobject:
        return all(
            type(x) is type(y) and bool(x == y)
            for x, y in zip(left.ravel(), right.ravel(), strict=True)
        )
    return left.tobytes() == right.tobytes()


def _differing_rows(a: Any, b: Any) -> int:
    try:
        left = np.asarray(a).reshape(len(a), -1)
        right = np.asarray(b).reshape(len(b), -1)
        if left.shape != right.shape:
            return len(a)
        if left.dtype.hasobject or right.dtype.hasobject:
            return int(sum(list(x) != list(y) for x, y in zip(left, right, strict=True)))
        same = (
            (left == right) | (np.isnan(left) & np.isnan(right))
            if left.dtype.kind == "f"
            else left == right
        )
        return int((~same.all(axis=1)).sum())
    except (TypeError, ValueError):
        return len(a)


def _predict_fresh(load: Callable[[], LoadedModel], sample: Any) -> tuple[Any, Any]:
    model: LoadedModel = call_model("load", load)
    prediction = call_model("predict", lambda: model.predict(sample))
    probability = call_model("predict_proba", lambda: model.predict_proba(sample))
    return prediction, probability


def run(ctx: CheckContext, config: Reproducibility) -> CheckOutcome:
    items = recorded_items(ctx.recorded, list(config.require))
    sample = ctx.X.iloc[: config.sample_rows]
    determinism: dict[str, Any] = {"rows": len(sample), "loads": 2, "error": ""}
    if ctx.load is None:
        determinism["error"] = "the artifact could not be reloaded (no loader given)"
        items.append(
            item(
                "identical predictions across two loads",
                False,
                None,
                "identical",
                determinism["error"],
            )
        )
    else:
        try:
            outputs = [_predict_fresh(ctx.load, sample) for _ in range(2)]
        except ValueError as exc:
            determinism["error"] = str(exc)[:500]
            items.append(
                item(
                    "identical predictions across two loads",
                    False,
                    None,
                    "identical",
                    determinism["error"],
                )
            )
        else:
            (p1, q1), (p2, q2) = outputs
            same_pred = identical(p1, p2)
            same_proba = identical(q1, q2)
            differing = (
                0
                if same_pred and same_proba
                else max(
                    _differing_rows(p1, p2),
                    _differing_rows(q1, q2) if q1 is not None and q2 is not None else 0,
                )
            )
            determinism.update(
                {
                    "predictions_identical": same_pred,
                    "probabilities_identical": same_proba
                    if q1 is not None or q2 is not None
                    else None,
                    "differing_rows": differing,
                }
            )
            ok = same_pred and same_proba
            items.append(
                item(
                    "identical predictions across two loads",
                    ok,
                    "identical" if ok else "different",
                    "identical",
                    f"{len(sample)} rows predicted by two fresh loads"
                    + ("" if ok else f"; {differing} rows differ"),
                )
            )
    env = ctx.recorded.get("environment") or {}
    results = {
        "recorded": {
            "data_hash": ctx.recorded.get("data_hash"),
            "code_ref": ctx.recorded.get("code_ref"),
            "environment": {
                "python": env.get("python"),
                "packages": len(env.get("packages") or {}),
            },
        },
        "required": list(config.require),
        "determinism": determinism,
    }
    failed = [i for i in items if not i["passed"]]
    if failed:
        summary = "Not reproducible: " + "; ".join(i["details"] for i in failed) + "."
    else:
        summary = (
            f"Provenance recorded ({', '.join(config.require) or 'nothing required'}); two fresh "
            f"loads give bit-identical predictions on {len(sample)} rows."
        )
    return CheckOutcome(finalise("reproducibility", summary, results, items))

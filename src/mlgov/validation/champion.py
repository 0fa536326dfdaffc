"""The champion/challenger check: the candidate against the version in production.

Both models are scored with the same metric on the same rows (each fed the inputs its own
signature names). The margin is challenger - champion when greater is better, champion -
challenger otherwise, so a positive margin always means the challenger is better; the check
passes when margin >= ``min_margin``. Without a production version it passes and says so.

Results::

    {"metric": "roc_auc", "greater_is_better": true, "rows": 2000, "min_margin": 0.0,
     "champion": {"name": "credit", "version": 3, "value": 0.81} | null,
     "challenger": {"name": "credit", "version": 4, "value": 0.83},
     "margin": 0.02}
"""

from __future__ import annotations

from typing import Any

from mlgov.validation.checks import CheckContext, CheckOutcome, finalise, fmt, item
from mlgov.validation.data import check_columns
from mlgov.validation.metrics import metric_value, unavailable_reason
from mlgov.validation.model import call_model, score
from mlgov.validation.suite import KNOWN_METRICS, ChampionChallenger


def _fail(
    ctx: CheckContext, config: ChampionChallenger, results: dict[str, Any], why: str
) -> CheckOutcome:
    items = [
        item(
            f"{config.metric} margin >= {config.min_margin:g}", False, None, config.min_margin, why
        )
    ]
    return CheckOutcome(
        finalise("champion_challenger", f"No comparison: {why}.", results, items),
        {"champion_challenger": results},
    )


def run(ctx: CheckContext, config: ChampionChallenger) -> CheckOutcome:
    metric = config.metric
    info = KNOWN_METRICS[metric]
    challenger_value = metric_value(metric, ctx.scored)
    results: dict[str, Any] = {
        "metric": metric,
        "greater_is_better": info.greater_is_better,
        "rows": ctx.scored.n,
        "min_margin": config.min_margin,
        "champion": None,
        "challenger": {
            "name": ctx.model_name,
            "version": ctx.model_version,
            "value": challenger_value,
        },
        "margin": None,
    }
    if ctx.champion is None:
        summary = "no production version to compare against"
        record = finalise("champion_challenger", summary, results, [], say_ungated=False)
        return CheckOutcome(record, {})
    champion = ctx.champion
    results["champion"] = {"name": champion.name, "version": champion.version, "value": None}
    if reason := unavailable_reason(metric, ctx.scored):
        return _fail(ctx, config, results, f"the challenger cannot be scored: {reason}")
    inputs = [str(spec["name"]) for spec in champion.signature.get("inputs", [])]
    missing = [c for c in inputs if c not in ctx.frame.columns]
    if missing:
        return _fail(
            ctx,
            config,
            results,
            f"the dataset lacks columns the champion needs: {', '.join(missing)}",
        )
    suite = ctx.suite
    assert suite.label is not None
    try:
        frame = ctx.frame[inputs].copy()
        check_columns(frame, list(champion.signature.get("inputs", [])), None, set())
        model = call_model("load", champion.load)
        names = getattr(model, "feature_names", None) or inputs
        scored = score(
            model,
            frame[list(names)],
            ctx.frame[suite.label],
            task=suite.task,
            positive_label=suite.positive_label,
            threshold=suite.threshold,
        )
    except (ValueError, KeyError) as exc:
        return _fail(ctx, config, results, f"the champion could not be scored: {exc}")
    if reason := unavailable_reason(metric, scored):
        return _fail(ctx, config, results, f"the champion cannot be scored: {reason}")
    champion_value = metric_value(metric, scored)
    results["champion"]["value"] = champion_value
    if champion_value is None or challenger_value is None:
        return _fail(ctx, config, results, f"{metric} is undefined on these rows")
    margin = challenger_value - champion_value
    if not info.greater_is_better:
        margin = -margin
    results["margin"] = margin
    passed = margin >= config.min_margin
    direction = "higher" if info.greater_is_better else "lower"
    items = [
        item(
            f"{metric} margin >= {config.min_margin:g}",
            passed,
            margin,
            config.min_margin,
            f"challenger {fmt(challenger_value)} vs champion v{champion.version} "
            f"{fmt(champion_value)} ({direction} is better)",
        )
    ]
    summary = (
        f"{metric}: challenger v{ctx.model_version} {fmt(challenger_value)}, champion "
        f"v{champion.version} {fmt(champion_value)}; margin {fmt(margin, 3)} "
        f"{'meets' if passed else 'misses'} the required {config.min_margin:g}."
    )
    return CheckOutcome(
        finalise("champion_challenger", summary, results, items), {"champion_challenger": results}
    )

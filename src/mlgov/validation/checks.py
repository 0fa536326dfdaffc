"""What every check returns, and the helpers that build it.

A check kind (``performance``, ``fairness``, ...) is a module with a ``run`` function taking
a :class:`CheckContext` and its section of the suite, and returning a :class:`CheckOutcome`:
the JSON-able record that becomes an evidence record, plus the data its report plots need
(kept out of the record so evidence stays small). The record::

    {"kind": "performance", "passed": bool, "summary": "one or two sentences",
     "results": {...},                  # kind-specific, see each module
     "checks": [{"name": "roc_auc >= 0.7", "passed": bool, "value": float | str | None,
                 "threshold": float | str | None, "details": "<= 512 characters"}],
     "attachments": [{"name": "permutation_importance.csv", "media_type": "text/csv",
                      "path": "/abs/path/in/out_dir"}],
     "runtime_seconds": float, "peak_memory_mb": float}

A kind passes when every item of ``checks`` passes (none configured: it passes and says so).
Non-finite numbers never reach a record: :func:`finalise` replaces them by ``null`` and lists
where under ``results["non_finite"]``.

``peak_memory_mb`` is how far the check raised the worker process's peak resident set size
(``getrusage(RUSAGE_SELF).ru_maxrss``): 0 when the check stayed under an earlier peak. It is
cheap and counts numpy and native model memory (tracemalloc would slow numpy down and miss
native allocations), but it is a lower bound on what the check needed, not an exact figure.
"""

from __future__ import annotations

import csv
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]

from mlgov.validation.model import LoadedModel, Scored
from mlgov.validation.suite import Bound, SuiteDocument

MAX_DETAILS = 512


@dataclass
class ChampionRef:
    """The production version a challenger is compared with, loaded on demand."""

    name: str
    version: int
    signature: dict[str, Any]
    load: Callable[[], LoadedModel]


@dataclass
class CheckContext:
    """Everything a check may use; built once per run by :func:`mlgov.validation.execute`."""

    suite: SuiteDocument
    model: LoadedModel
    frame: pd.DataFrame  # the whole evaluation frame (inputs, label, sensitive features, ...)
    inputs: list[str]  # the model's input columns, in the order it takes them
    scored: Scored  # the model's predictions on every row
    out_dir: Path
    model_name: str = ""
    model_version: int = 0
    load: Callable[[], LoadedModel] | None = None  # loads the artifact afresh
    recorded: dict[str, Any] = field(default_factory=dict)
    champion: ChampionRef | None = None

    @property
    def X(self) -> pd.DataFrame:
        return self.frame[self.inputs]


@dataclass
class CheckOutcome:
    record: dict[str, Any]
    plots: dict[str, Any] = field(default_factory=dict)


def clip(text: str, limit: int = MAX_DETAILS) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def item(
    name: str,
    passed: bool,
    value: float | str | None = None,
    threshold: float | str | None = None,
    details: str = "",
) -> dict[str, Any]:
    """One line of a check's ``checks`` table."""
    return {
        "name": clip(name, 256),
        "passed": bool(passed),
        "value": value,
        "threshold": threshold,
        "details": clip(details),
    }


def bound_items(
    name: str,
    value: float | None,
    bound: Bound,
    *,
    why_missing: str = "",
    low: float | None = None,
    high: float | None = None,
    against: str = "",
) -> list[dict[str, Any]]:
    """The items of a ``{min, max}`` bound: ``name >= min`` and ``name <= max``. ``low`` and
    ``high`` replace ``value`` for the min and max comparisons (confidence bounds)."""
    items = []
    for op, limit, compared in (
        (">=", bound.min, value if low is None else low),
        ("<=", bound.max, value if high is None else high),
    ):
        if limit is None:
            continue
        label = f"{name} >= {limit:g}" if op == ">=" else f"{name} <= {limit:g}"
        if compared is None or not math.isfinite(compared):
            items.append(item(label, False, None, limit, why_missing or f"{name} is undefined"))
            continue
        ok = compared >= limit if op == ">=" else compared <= limit
        details = f"{against} {compared:.6g}".strip() if against else ""
        items.append(item(label, ok, float(compared), float(limit), details))
    return items


def number(value: Any) -> float | None:
    """A finite float, or None."""
    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _plain(value: Any, path: str, bad: list[str]) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v, f"{path}.{k}" if path else str(k), bad) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, f"{path}[{i}]", bad) for i, v in enumerate(value)]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist(), path, bad)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        bad.append(path)
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def finalise(
    kind: str,
    summary: str,
    results: dict[str, Any],
    items: list[dict[str, Any]],
    attachments: Sequence[dict[str, Any]] = (),
    *,
    say_ungated: bool = True,
) -> dict[str, Any]:
    """The record of a check, JSON-able and free of NaN/Infinity. Without items the check
    passes, and (unless ``say_ungated`` is false) its summary says nothing was gated."""
    bad: list[str] = []
    clean_results = _plain(results, "", bad)
    clean_items = []
    for index, entry in enumerate(items):
        clean = _plain(entry, f"checks[{index}]", bad)
        if entry.get("value") is not None and clean["value"] is None:
            clean["details"] = clip((clean["details"] + " (the value was not finite)").strip())
        clean_items.append(clean)
    if bad:
        clean_results["non_finite"] = bad[:50]
        summary += f" {len(bad)} non-finite value(s) are reported as null."
    passed = all(entry["passed"] for entry in clean_items)
    if not clean_items and say_ungated:
        summary += " No thresholds are configured: results are reported, nothing is gated."
    return {
        "kind": kind,
        "passed": passed,
        "summary": clip(summary.strip(), 1000),
        "results": clean_results,
        "checks": clean_items,
        "attachments": list(attachments),
        "runtime_seconds": 0.0,
        "peak_memory_mb": 0.0,
    }


def peak_rss_mb() -> float:
    """The process's peak resident set size so far, in MiB (0 where unsupported)."""
    try:
        import resource
    except ImportError:  # Windows
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def measured(run: Callable[[], CheckOutcome]) -> CheckOutcome:
    """Run a check, filling in its runtime and how far it raised the peak RSS."""
    before = peak_rss_mb()
    started = time.perf_counter()
    outcome = run()
    outcome.record["runtime_seconds"] = round(time.perf_counter() - started, 6)
    outcome.record["peak_memory_mb"] = round(max(0.0, peak_rss_mb() - before), 3)
    return outcome


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value  # a spreadsheet would run it as a formula
    return value


def write_csv(
    out_dir: Path, name: str, header: Sequence[str], rows: Iterator[Sequence[Any]] | list[Any]
) -> dict[str, Any]:
    """Write a CSV attachment into ``out_dir``; its attachment entry."""
    path = (out_dir / name).resolve()
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row in rows:
            writer.writerow([_cell(v) for v in row])
    return {"name": name, "media_type": "text/csv", "path": str(path)}


def fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}g}"

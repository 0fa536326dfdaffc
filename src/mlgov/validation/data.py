"""Reading a dataset version's file for a validation run, and matching it to the model.

:func:`read_dataset` reads CSV or Parquet (optionally a seeded random sample of rows);
:func:`check_columns` makes sure every column the model's signature and the suite name is
there, and coerces the model's inputs to the types of its signature, naming the column and an
offending value when the data cannot be (text in a numeric column, fractions in an integer
one). Both raise :class:`ValueError` with a one-line message the user can act on.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]

FORMATS = ("csv", "parquet")
_NUMERIC = {"double": "float64", "float": "float32", "integer": "int32", "long": "int64"}
_TRUE = {"true", "t", "yes", "y", "1", "1.0"}
_FALSE = {"false", "f", "no", "n", "0", "0.0"}


def read_dataset(path: Path, fmt: str, *, max_rows: int | None, seed: int) -> pd.DataFrame:
    """The dataset as a frame with a fresh 0..n-1 index; at most ``max_rows`` rows, drawn
    at random without replacement (seeded) and kept in file order."""
    if fmt not in FORMATS:
        raise ValueError(f"datasets in {fmt!r} format cannot be validated; use csv or parquet")
    try:
        frame = pd.read_csv(path, low_memory=False) if fmt == "csv" else pd.read_parquet(path)
    except FileNotFoundError:
        raise ValueError(f"the dataset file is missing: {path.name}") from None
    except (ValueError, OSError, UnicodeDecodeError) as exc:  # pandas and pyarrow parse errors
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"the dataset could not be read as {fmt}: {first}") from None
    if len(frame) == 0:
        raise ValueError("the dataset has no rows")
    if max_rows is not None and len(frame) > max_rows:
        rows = np.sort(np.random.default_rng(seed).choice(len(frame), size=max_rows, replace=False))
        frame = frame.iloc[rows]
    return frame.reset_index(drop=True)


def _names(columns: Iterable[str]) -> str:
    return ", ".join(columns)


def _example(values: pd.Series, bad: pd.Series) -> str:
    row = int(np.flatnonzero(bad.to_numpy())[0])
    value = values.iloc[row]
    if isinstance(value, np.generic):
        value = value.item()
    return f"{value!r} (row {row + 1})"


def _to_numeric(name: str, kind: str, values: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        numbers = values.astype("float64")
    else:
        numbers = pd.to_numeric(values, errors="coerce")
        bad = values.notna() & numbers.isna()
        if bad.any():
            raise ValueError(
                f"column {name!r} is {kind} in the model signature but holds text that is not a "
                f"number, e.g. {_example(values, bad)}"
            )
        numbers = numbers.astype("float64")
    if kind in ("integer", "long"):
        array = numbers.to_numpy(dtype="float64")
        fractional = np.isfinite(array) & (array != np.round(array))
        if fractional.any():
            raise ValueError(
                f"column {name!r} is {kind} in the model signature but holds non-integer "
                f"values, e.g. {_example(numbers, pd.Series(fractional))}"
            )
        if numbers.isna().any():  # missing values: keep them as NaN in a float column
            return numbers
    return numbers.astype(_NUMERIC[kind])


def _to_boolean(name: str, values: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(values):
        return values.astype("bool")

    def convert(value: Any) -> Any:
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return None
        if isinstance(value, bool | np.bool_):
            return bool(value)
        text = str(value).strip().lower()
        return True if text in _TRUE else False if text in _FALSE else value

    converted = values.map(convert)
    bad = converted.map(lambda v: v is not None and not isinstance(v, bool))
    if bad.any():
        raise ValueError(
            f"column {name!r} is boolean in the model signature but holds {_example(values, bad)}"
        )
    if converted.isna().any():
        return converted.astype(object)
    return converted.astype("bool")


def _to_string(values: pd.Series) -> pd.Series:
    """Text as Python ``str`` objects in an object column, missing values as NaN (what
    scikit-learn's encoders were trained on from pandas)."""
    present = values.notna()
    out = values.astype(object).where(present, np.nan)
    if pd.api.types.infer_dtype(values, skipna=True) not in ("string", "empty"):
        out = out.where(~present, out.map(str))
    return out


def _to_datetime(name: str, values: pd.Series) -> pd.Series:
    converted = pd.to_datetime(values, errors="coerce", utc=True)
    bad = values.notna() & converted.isna()
    if bad.any():
        raise ValueError(
            f"column {name!r} is datetime in the model signature but holds {_example(values, bad)}"
        )
    return converted


def check_columns(
    df: pd.DataFrame,
    signature_inputs: list[dict[str, Any]],
    label: str | None,
    referenced: set[str],
) -> None:
    """Refuse a dataset that lacks a column the model or the suite needs, and coerce the
    model's inputs (in place) to the types of its signature."""
    present = set(df.columns)
    inputs = [str(spec["name"]) for spec in signature_inputs]
    problems: list[str] = []
    missing_inputs = [name for name in inputs if name not in present]
    if missing_inputs:
        problems.append(
            f"the dataset lacks columns the model signature needs: {_names(missing_inputs)}"
        )
    if label is not None and label not in present:
        problems.append(f"the dataset lacks the label column {label!r}")
    missing = sorted(referenced - present - {label} - set(inputs))
    if missing:
        problems.append(f"the dataset lacks columns the suite names: {_names(missing)}")
    if problems:
        raise ValueError("; ".join(problems))
    for spec in signature_inputs:
        name, kind = str(spec["name"]), str(spec.get("type", ""))
        values = df[name]
        if kind in _NUMERIC:
            df[name] = _to_numeric(name, kind, values)
        elif kind == "boolean":
            df[name] = _to_boolean(name, values)
        elif kind == "string":
            df[name] = _to_string(values)
        elif kind == "datetime":
            df[name] = _to_datetime(name, values)

"""Validation: suites of checks run on a model version and a dataset version.

The pure computation lives here, with no database and no HTTP:

- :mod:`~mlgov.validation.suite`: the suite YAML schema and parser (imported by the server);
- :mod:`~mlgov.validation.execute`: the entry point the worker's sandboxed child calls
  (``mlgov.validation.execute:execute``): load, read, predict, check, report;
- :mod:`~mlgov.validation.data`: reading the dataset and matching it to the signature;
- :mod:`~mlgov.validation.model`: the loaded-model protocol and shared predictions;
- :mod:`~mlgov.validation.checks`: the record every check returns; one module per kind:
  :mod:`~mlgov.validation.performance` (with :mod:`~mlgov.validation.metrics`),
  :mod:`~mlgov.validation.fairness`, :mod:`~mlgov.validation.explainability` (with
  :mod:`~mlgov.validation.attributions` for SHAP), :mod:`~mlgov.validation.robustness`,
  :mod:`~mlgov.validation.reproducibility`, :mod:`~mlgov.validation.champion`;
- :mod:`~mlgov.validation.report`: the offline HTML report.

Only the suite schema is imported here, so the server can import this package without
loading pandas, scikit-learn or matplotlib.
"""

from mlgov.validation.suite import (
    KNOWN_METRICS,
    MAX_SUITE_BYTES,
    SuiteDocument,
    parse_suite,
    referenced_columns,
)

__all__ = [
    "KNOWN_METRICS",
    "MAX_SUITE_BYTES",
    "SuiteDocument",
    "parse_suite",
    "referenced_columns",
]

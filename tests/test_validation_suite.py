"""The validation-suite document: a full example parses, every mistake names its field."""

from __future__ import annotations

import textwrap
from typing import get_args

import pytest

import mlgov.validation
from mlgov.errors import InvalidInput
from mlgov.validation.fairness import DISPARITY_FUNCTIONS, GROUP_FUNCTIONS
from mlgov.validation.suite import (
    DISPARITY_METRICS,
    GROUP_METRICS,
    KNOWN_METRICS,
    MAX_SUITE_BYTES,
    PERTURBATION_KINDS,
    Perturbation,
    SuiteDocument,
    parse_suite,
    referenced_columns,
)

FULL = """
name: credit-high-risk
description: Gates for the credit model.
label: default
task: classification
positive_label: 1
threshold: 0.4
sample: {max_rows: 200000, seed: 0}
checks:
  performance:
    metrics:
      roc_auc: {min: 0.70}
      log_loss: {max: 0.60}
      accuracy: {}
    bootstrap: {samples: 200, confidence: 0.95, seed: 0}
  fairness:
    sensitive_features: [age_band, sex]
    metrics: [selection_rate, true_positive_rate, false_positive_rate, accuracy]
    thresholds:
      demographic_parity_difference: {max: 0.10}
      demographic_parity_ratio: {min: 0.80}
      equalized_odds_difference: {max: 0.10}
      equalized_odds_ratio: {min: 0.70}
      true_positive_rate_difference: {max: 0.1}
  explainability:
    permutation: {n_repeats: 5, max_rows: 5000, seed: 0, scoring: roc_auc}
    shap: {max_rows: 1000}
    top_k: 10
    thresholds: {max_top_feature_share: 0.8, max_importance: {zip_code: 0.01}}
  robustness:
    perturbations:
      - {name: noise_10pct, kind: gaussian_noise, scale: 0.1, features: [income, debt_ratio]}
      - {name: missing_5pct, kind: missing, fraction: 0.05}
      - {name: out_of_range, kind: out_of_range, fraction: 0.02, factor: 3.0}
      - {name: unseen, kind: unseen_category, fraction: 0.02,
         thresholds: {max_error_rate: 0.01}}
    thresholds:
      max_mean_abs_change: 0.05
      min_label_agreement: 0.95
      max_error_rate: 0.0
    seed: 0
  reproducibility:
    sample_rows: 500
    require: [data_hash, code_ref, environment]
  champion_challenger:
    metric: roc_auc
    min_margin: 0.0
"""


def test_the_full_example_parses():
    doc = parse_suite(FULL)
    assert doc.checks.configured() == [
        "performance",
        "fairness",
        "explainability",
        "robustness",
        "reproducibility",
        "champion_challenger",
    ]
    assert doc.checks.performance is not None
    assert doc.checks.performance.metrics["roc_auc"].min == 0.70
    assert doc.checks.robustness is not None
    assert [p.kind for p in doc.checks.robustness.perturbations] == list(PERTURBATION_KINDS)
    assert referenced_columns(doc) == {
        "default",
        "age_band",
        "sex",
        "income",
        "debt_ratio",
        "zip_code",
    }


def test_the_dumped_document_validates_again():
    """The worker receives ``model_dump()``: it must round-trip, in Python and JSON modes."""
    doc = parse_suite(FULL)
    assert SuiteDocument.model_validate(doc.model_dump()) == doc
    assert SuiteDocument.model_validate(doc.model_dump(mode="json")) == doc
    regression = parse_suite(
        "label: y\ntask: regression\nchecks: {performance: {metrics: {rmse: {}}}}"
    )
    assert SuiteDocument.model_validate(regression.model_dump()) == regression


def test_defaults():
    doc = parse_suite("label: y\ntask: classification\nchecks: {performance: {metrics: {f1: {}}}}")
    assert doc.positive_label == 1 and doc.threshold == 0.5
    assert doc.sample.max_rows is None
    assert doc.checks.performance is not None
    assert doc.checks.performance.bootstrap.samples == 200
    only_robust = parse_suite(
        "task: regression\nchecks: {robustness: {perturbations: [{name: m, kind: missing, "
        "fraction: 0.1}]}}"
    )
    assert only_robust.label is None  # robustness needs no label
    assert referenced_columns(only_robust) == set()


def test_the_tables_agree_with_the_implementations():
    assert set(GROUP_FUNCTIONS) == set(GROUP_METRICS)
    assert set(DISPARITY_FUNCTIONS) == set(DISPARITY_METRICS)
    assert {info.task for info in KNOWN_METRICS.values()} == {"classification", "regression"}
    union = get_args(get_args(Perturbation)[0])
    assert tuple(kind.model_fields["kind"].annotation.__args__[0] for kind in union) == (
        PERTURBATION_KINDS
    )
    assert set(mlgov.validation.__all__) == {
        "KNOWN_METRICS",
        "MAX_SUITE_BYTES",
        "SuiteDocument",
        "parse_suite",
        "referenced_columns",
    }


def _checks(body: str, task: str = "classification", label: str = "label: y\n") -> str:
    return f"{label}task: {task}\nchecks:\n" + textwrap.indent(textwrap.dedent(body), "  ") + "\n"


BAD = [
    (
        "unknown metric",
        _checks("performance: {metrics: {roc_aucc: {min: 0.7}}}"),
        "definition.checks.performance.metrics.roc_aucc",
        "unknown metric 'roc_aucc'",
    ),
    (
        "regression metric, classification task",
        _checks("performance: {metrics: {rmse: {}}}"),
        "definition.checks.performance.metrics.rmse",
        "regression metric",
    ),
    (
        "classification metric, regression task",
        _checks("performance: {metrics: {roc_auc: {}}}", task="regression"),
        "definition.checks.performance.metrics.roc_auc",
        "classification metric",
    ),
    (
        "min above max",
        _checks("performance: {metrics: {roc_auc: {min: 0.9, max: 0.1}}}"),
        "definition.checks.performance.metrics.roc_auc.min",
        "greater than max",
    ),
    (
        "no metrics",
        _checks("performance: {metrics: {}}"),
        "definition.checks.performance.metrics",
        "at least 1",
    ),
    (
        "unknown bound key",
        _checks("performance: {metrics: {roc_auc: {minimum: 0.9}}}"),
        "definition.checks.performance.metrics.roc_auc.minimum",
        "unknown key",
    ),
    (
        "infinite bound",
        _checks("performance: {metrics: {roc_auc: {min: .inf}}}"),
        "definition.checks.performance.metrics.roc_auc.min",
        "finite",
    ),
    (
        "negative bootstrap",
        _checks("performance: {metrics: {f1: {}}, bootstrap: {samples: -1}}"),
        "definition.checks.performance.bootstrap.samples",
        "greater than or equal to 0",
    ),
    (
        "confidence of 1",
        _checks("performance: {metrics: {f1: {}}, bootstrap: {confidence: 1}}"),
        "definition.checks.performance.bootstrap.confidence",
        "less than 1",
    ),
    (
        "confidence bound without bootstrap",
        _checks(
            "performance: {metrics: {f1: {}}, bootstrap: {samples: 0}, gate_on: confidence_bound}"
        ),
        "definition.checks.performance.gate_on",
        "bootstrap samples",
    ),
    (
        "unknown check",
        _checks("performanc: {metrics: {f1: {}}}"),
        "definition.checks.performanc",
        "unknown key",
    ),
    (
        "no checks",
        "label: y\ntask: classification\nchecks: {}",
        "definition.checks",
        "at least one check",
    ),
    (
        "unknown task",
        "label: y\ntask: ranking\nchecks: {reproducibility: {}}",
        "definition.task",
        "classification",
    ),
    (
        "threshold out of range",
        _checks("reproducibility: {}") + "threshold: 1.5\n",
        "definition.threshold",
        "less than 1",
    ),
    (
        "missing label",
        _checks("performance: {metrics: {f1: {}}}", label=""),
        "definition.label",
        "required by performance",
    ),
    (
        "positive label in regression",
        _checks("reproducibility: {}", task="regression") + "positive_label: yes_it_is\n",
        "definition.positive_label",
        "classification only",
    ),
    (
        "unknown top-level key",
        _checks("reproducibility: {}") + "labels: z\n",
        "definition.labels",
        "unknown key",
    ),
    (
        "negative sample",
        _checks("reproducibility: {}") + "sample: {max_rows: 0}\n",
        "definition.sample.max_rows",
        "greater than or equal to 1",
    ),
    (
        "unknown group metric",
        _checks("fairness: {sensitive_features: [sex], metrics: [selection_rate, parity]}"),
        "definition.checks.fairness.metrics[1]",
        "unknown group metric 'parity'",
    ),
    (
        "regression group metric",
        _checks("fairness: {sensitive_features: [sex], metrics: [rmse]}"),
        "definition.checks.fairness.metrics[0]",
        "not a classification metric",
    ),
    (
        "unknown fairness threshold",
        _checks("fairness: {sensitive_features: [sex], thresholds: {parity: {max: 0.1}}}"),
        "definition.checks.fairness.thresholds.parity",
        "unknown fairness threshold",
    ),
    (
        "disparity in regression",
        _checks(
            "fairness: {sensitive_features: [s], thresholds: "
            "{demographic_parity_ratio: {min: 0.8}}}",
            task="regression",
        ),
        "definition.checks.fairness.thresholds.demographic_parity_ratio",
        "classification only",
    ),
    (
        "no sensitive features",
        _checks("fairness: {sensitive_features: []}"),
        "definition.checks.fairness.sensitive_features",
        "at least 1",
    ),
    (
        "duplicate sensitive feature",
        _checks("fairness: {sensitive_features: [sex, sex]}"),
        "definition.checks.fairness.sensitive_features[1]",
        "listed twice",
    ),
    (
        "permutation scoring",
        _checks("explainability: {permutation: {scoring: r2}}"),
        "definition.checks.explainability.permutation.scoring",
        "regression metric",
    ),
    (
        "zero repeats",
        _checks("explainability: {permutation: {n_repeats: 0}}"),
        "definition.checks.explainability.permutation.n_repeats",
        "greater than or equal to 1",
    ),
    (
        "top feature share above 1",
        _checks("explainability: {thresholds: {max_top_feature_share: 2}}"),
        "definition.checks.explainability.thresholds.max_top_feature_share",
        "less than or equal",
    ),
    (
        "unknown perturbation kind",
        _checks("robustness: {perturbations: [{name: a, kind: blur}]}"),
        "definition.checks.robustness.perturbations[0].kind",
        "unknown perturbation kind",
    ),
    (
        "perturbation without kind",
        _checks("robustness: {perturbations: [{name: a}]}"),
        "definition.checks.robustness.perturbations[0].kind",
        "kind is required",
    ),
    (
        "negative scale",
        _checks("robustness: {perturbations: [{name: a, kind: gaussian_noise, scale: -1}]}"),
        "definition.checks.robustness.perturbations[0].scale",
        "greater than 0",
    ),
    (
        "fraction above 1",
        _checks("robustness: {perturbations: [{name: a, kind: missing, fraction: 1.5}]}"),
        "definition.checks.robustness.perturbations[0].fraction",
        "less than or equal to 1",
    ),
    (
        "key of another kind",
        _checks("robustness: {perturbations: [{name: a, kind: missing, fraction: 0.1, scale: 2}]}"),
        "definition.checks.robustness.perturbations[0].scale",
        "unknown key",
    ),
    (
        "duplicate perturbation name",
        _checks(
            "robustness: {perturbations: [{name: a, kind: missing, fraction: 0.1}, "
            "{name: a, kind: missing, fraction: 0.2}]}"
        ),
        "definition.checks.robustness.perturbations[1].name",
        "used twice",
    ),
    (
        "bad perturbation name",
        _checks("robustness: {perturbations: [{name: 'a b', kind: missing, fraction: 0.1}]}"),
        "definition.checks.robustness.perturbations[0].name",
        "pattern",
    ),
    (
        "label agreement in regression",
        _checks(
            "robustness: {perturbations: [{name: a, kind: missing, fraction: 0.1}], "
            "thresholds: {min_label_agreement: 0.9}}",
            task="regression",
        ),
        "definition.checks.robustness.thresholds.min_label_agreement",
        "classification only",
    ),
    (
        "negative change threshold",
        _checks(
            "robustness: {perturbations: [{name: a, kind: missing, fraction: 0.1}], "
            "thresholds: {max_mean_abs_change: -0.1}}"
        ),
        "definition.checks.robustness.thresholds.max_mean_abs_change",
        "greater than or equal",
    ),
    (
        "unknown recorded field",
        _checks("reproducibility: {require: [data_hash, git]}"),
        "definition.checks.reproducibility.require[1]",
        "code_ref",
    ),
    (
        "champion metric",
        _checks("champion_challenger: {metric: auc}"),
        "definition.checks.champion_challenger.metric",
        "unknown metric 'auc'",
    ),
]


@pytest.mark.parametrize(
    ("text", "field", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_bad_input_names_the_field(text, field, message):
    with pytest.raises(InvalidInput) as caught:
        parse_suite(text)
    assert caught.value.field == field
    assert message in caught.value.detail
    assert caught.value.detail.startswith(field + ": ")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("checks: [", "not valid YAML (line 1, column 10)"),
        ("a: 1\n  b: 2\n", "not valid YAML (line 2, column 4)"),
        ("a: 1\na: 2\n", "the key 'a' appears twice"),
        ("base: &b {x: 1}\nother: *b\n", "aliases"),
        ("- a\n- b\n", "a YAML mapping"),
        ("", "a YAML mapping"),
        ("just text", "a YAML mapping"),
    ],
)
def test_documents_that_are_not_mappings_name_definition(text, message):
    with pytest.raises(InvalidInput) as caught:
        parse_suite(text)
    assert caught.value.field == "definition"
    assert message in caught.value.detail


def test_size_limit():
    text = FULL + "#" * MAX_SUITE_BYTES
    with pytest.raises(InvalidInput, match="at most") as caught:
        parse_suite(text)
    assert caught.value.field == "definition"


def test_field_prefix_can_be_changed():
    with pytest.raises(InvalidInput) as caught:
        parse_suite("task: x\nchecks: {reproducibility: {}}", field_name="document")
    assert caught.value.field == "document.task"

"""The validation-suite document: a YAML schema, its parser and the names it may use.

A suite says which checks a validation run computes on a model version and a dataset version,
and the thresholds that decide pass or fail. The server stores each published version of it
(see :mod:`mlgov.validation.models`); :func:`parse_suite` validates the YAML when it is
published, and the worker revalidates the stored definition (``SuiteDocument.model_validate``)
before it runs. Every key is checked: a typo is an error naming the field
(``definition.checks.performance.metrics.roc_aucc``), never a silently ignored setting.

The document (every section of ``checks`` is optional, at least one is required)::

    name: credit-high-risk        # optional; the name the suite is published under wins
    description: ...
    label: default                # target column (required by every check but robustness
                                  # and reproducibility)
    task: classification          # classification | regression
    positive_label: 1             # classification: the class whose probability is scored
    threshold: 0.5                # binary classifiers with probabilities: label = P >= t
    sample: {max_rows: 200000, seed: 0}    # optional random row cap (seeded)
    checks:
      performance:
        metrics:                  # name -> {min, max}; {} reports without a threshold
          roc_auc: {min: 0.70}
          log_loss: {max: 0.60}
          accuracy: {}
        bootstrap: {samples: 200, confidence: 0.95, seed: 0}   # percentile CIs; 0 disables
        gate_on: estimate         # estimate | confidence_bound (min against the CI's low
                                  # end, max against its high end)
      fairness:
        sensitive_features: [age_band, sex]   # each evaluated on its own
        intersectional: false                 # also all of them combined
        metrics: [selection_rate, true_positive_rate, false_positive_rate, accuracy]
        thresholds:               # fairlearn's four disparities, or <metric>_difference /
          demographic_parity_difference: {max: 0.10}    # <metric>_ratio of a group metric
          demographic_parity_ratio: {min: 0.80}
          equalized_odds_difference: {max: 0.10}
          equalized_odds_ratio: {min: 0.70}
      explainability:
        permutation: {n_repeats: 5, max_rows: 5000, seed: 0, scoring: roc_auc}
        shap: {max_rows: 1000, required: false}   # native TreeSHAP / exact linear SHAP
        top_k: 10
        thresholds:
          max_top_feature_share: 0.6  # the top feature's share of the total importance
          max_importance: {age: 0.01} # permutation importance a feature may reach at most
      robustness:
        max_rows: 10000           # rows perturbed (seeded sample)
        seed: 0
        perturbations:
          - {name: noise_10pct, kind: gaussian_noise, scale: 0.1, features: [income]}
          - {name: missing_5pct, kind: missing, fraction: 0.05}
          - {name: out_of_range, kind: out_of_range, fraction: 0.02, factor: 3.0}
          - {name: new_category, kind: unseen_category, fraction: 0.05}
        thresholds:               # apply to every perturbation; one may override them
          max_mean_abs_change: 0.05
          min_label_agreement: 0.95
          max_error_rate: 0.0
      reproducibility:
        sample_rows: 500
        require: [data_hash, code_ref, environment]
      champion_challenger:
        metric: roc_auc
        min_margin: 0.0           # challenger - champion (mirrored when lower is better)

Perturbation features default to every numeric model input (``gaussian_noise``,
``out_of_range``), every input (``missing``) or every text input (``unseen_category``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal, NamedTuple

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from mlgov.errors import InvalidInput, field_path

MAX_SUITE_BYTES = 64 * 1024

Task = Literal["classification", "regression"]
CHECK_KINDS = (
    "performance",
    "fairness",
    "explainability",
    "robustness",
    "reproducibility",
    "champion_challenger",
)


class MetricInfo(NamedTuple):
    task: Task
    greater_is_better: bool
    needs_proba: bool
    description: str


#: Model-level metrics (scikit-learn's definitions). Binary classification scores the positive
#: label; multiclass averages precision/recall/F1 and ROC AUC (one-vs-rest) over classes (macro).
KNOWN_METRICS: dict[str, MetricInfo] = {
    "accuracy": MetricInfo("classification", True, False, "share of correct labels"),
    "balanced_accuracy": MetricInfo("classification", True, False, "mean recall per class"),
    "precision": MetricInfo("classification", True, False, "TP / (TP + FP)"),
    "recall": MetricInfo("classification", True, False, "TP / (TP + FN)"),
    "f1": MetricInfo("classification", True, False, "harmonic mean of precision and recall"),
    "roc_auc": MetricInfo("classification", True, True, "area under the ROC curve"),
    "average_precision": MetricInfo("classification", True, True, "area under the PR curve"),
    "log_loss": MetricInfo("classification", False, True, "cross-entropy of probabilities"),
    "brier": MetricInfo("classification", False, True, "mean squared probability error"),
    "rmse": MetricInfo("regression", False, False, "root mean squared error"),
    "mae": MetricInfo("regression", False, False, "mean absolute error"),
    "r2": MetricInfo("regression", True, False, "coefficient of determination"),
}

#: Per-group metrics of the fairness check -> the tasks they apply to. ``roc_auc`` and
#: ``mean_score`` are computed on P(positive) and need a model with probabilities.
GROUP_METRICS: dict[str, tuple[Task, ...]] = {
    "selection_rate": ("classification",),
    "true_positive_rate": ("classification",),
    "false_positive_rate": ("classification",),
    "false_negative_rate": ("classification",),
    "true_negative_rate": ("classification",),
    "accuracy": ("classification",),
    "balanced_accuracy": ("classification",),
    "precision": ("classification",),
    "recall": ("classification",),
    "f1": ("classification",),
    "roc_auc": ("classification",),
    "mean_score": ("classification",),
    "rmse": ("regression",),
    "mae": ("regression",),
    "r2": ("regression",),
    "mean_prediction": ("regression",),
    "count": ("classification", "regression"),
}

#: fairlearn's disparity metrics (classification) and the group metric each one compares.
DISPARITY_METRICS: dict[str, str] = {
    "demographic_parity_difference": "selection rate, largest gap between groups",
    "demographic_parity_ratio": "selection rate, smallest / largest group",
    "equalized_odds_difference": "max of the TPR and FPR gaps between groups",
    "equalized_odds_ratio": "min of the TPR and FPR ratios between groups",
}

DEFAULT_GROUP_METRICS: dict[Task, list[str]] = {
    "classification": [
        "selection_rate",
        "true_positive_rate",
        "false_positive_rate",
        "accuracy",
    ],
    "regression": ["mean_prediction", "rmse", "mae"],
}

Recorded = Literal["data_hash", "code_ref", "environment"]
RECORDED_FIELDS: tuple[Recorded, ...] = ("data_hash", "code_ref", "environment")

Column = Annotated[str, StringConstraints(min_length=1, max_length=256)]
PerturbationName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
Fraction = Annotated[float, Field(gt=0, le=1)]
Share = Annotated[float, Field(ge=0, le=1)]
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]


def _problem(loc: tuple[str | int, ...], message: str) -> PydanticCustomError:
    """An error at ``loc`` below the model that raises it (see :func:`parse_suite`)."""
    return PydanticCustomError("suite", "{message}", {"message": message, "loc": loc})


def _duplicates(items: list[str]) -> Iterator[tuple[int, str]]:
    seen: set[str] = set()
    for index, item in enumerate(items):
        if item in seen:
            yield index, item
        seen.add(item)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Bound(_Strict):
    """Pass when ``min <= value <= max`` (either may be left out; ``{}`` only reports)."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Bound:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise _problem(("min",), f"min ({self.min}) is greater than max ({self.max})")
        return self


class Sample(_Strict):
    max_rows: int | None = Field(default=None, ge=1)
    seed: Seed = 0


class Bootstrap(_Strict):
    samples: int = Field(default=200, ge=0, le=10_000)
    confidence: float = Field(default=0.95, gt=0, lt=1)
    seed: Seed = 0


class Performance(_Strict):
    metrics: dict[str, Bound] = Field(min_length=1, max_length=len(KNOWN_METRICS))
    bootstrap: Bootstrap = Field(default_factory=Bootstrap)
    gate_on: Literal["estimate", "confidence_bound"] = "estimate"

    @model_validator(mode="after")
    def _bootstrap_for_bounds(self) -> Performance:
        if self.gate_on == "confidence_bound" and self.bootstrap.samples == 0:
            raise _problem(("gate_on",), "confidence_bound needs bootstrap samples > 0")
        return self


class Fairness(_Strict):
    sensitive_features: list[Column] = Field(min_length=1, max_length=20)
    intersectional: bool = False
    metrics: list[str] | None = Field(default=None, min_length=1, max_length=len(GROUP_METRICS))
    thresholds: dict[str, Bound] = Field(default_factory=dict, max_length=100)

    @model_validator(mode="after")
    def _unique(self) -> Fairness:
        for index, name in _duplicates(self.sensitive_features):
            raise _problem(("sensitive_features", index), f"{name!r} is listed twice")
        for index, name in _duplicates(self.metrics or []):
            raise _problem(("metrics", index), f"{name!r} is listed twice")
        return self


class Permutation(_Strict):
    n_repeats: int = Field(default=5, ge=1, le=100)
    max_rows: int = Field(default=5000, ge=1)
    seed: Seed = 0
    scoring: str | None = None


class Shap(_Strict):
    max_rows: int = Field(default=1000, ge=1)
    required: bool = False


class ExplainabilityThresholds(_Strict):
    max_top_feature_share: float | None = Field(default=None, gt=0, le=1)
    max_importance: dict[Column, float] = Field(default_factory=dict, max_length=1000)


class Explainability(_Strict):
    permutation: Permutation = Field(default_factory=Permutation)
    shap: Shap | None = None
    top_k: int = Field(default=10, ge=1, le=1000)
    thresholds: ExplainabilityThresholds = Field(default_factory=ExplainabilityThresholds)


class RobustnessThresholds(_Strict):
    max_mean_abs_change: float | None = Field(default=None, ge=0)
    min_label_agreement: Share | None = None
    max_error_rate: Share | None = None


class _PerturbationBase(_Strict):
    name: PerturbationName
    features: list[Column] | None = Field(default=None, min_length=1, max_length=10_000)
    thresholds: RobustnessThresholds | None = None


class GaussianNoise(_PerturbationBase):
    """Adds N(0, (scale x column std)^2) noise to numeric features."""

    kind: Literal["gaussian_noise"]
    scale: float = Field(gt=0, le=1000)


class Missing(_PerturbationBase):
    """Blanks a random ``fraction`` of each feature's values (NaN / None)."""

    kind: Literal["missing"]
    fraction: Fraction


class OutOfRange(_PerturbationBase):
    """Moves a random ``fraction`` of each numeric feature's values ``factor`` x its observed
    range beyond the observed minimum or maximum."""

    kind: Literal["out_of_range"]
    fraction: Fraction
    factor: float = Field(default=1.0, gt=0, le=1e6)


class UnseenCategory(_PerturbationBase):
    """Replaces a random ``fraction`` of each text feature's values by a category the model
    never saw."""

    kind: Literal["unseen_category"]
    fraction: Fraction


Perturbation = Annotated[
    GaussianNoise | Missing | OutOfRange | UnseenCategory, Field(discriminator="kind")
]
PERTURBATION_KINDS = ("gaussian_noise", "missing", "out_of_range", "unseen_category")


class Robustness(_Strict):
    perturbations: list[Perturbation] = Field(min_length=1, max_length=50)
    thresholds: RobustnessThresholds = Field(default_factory=RobustnessThresholds)
    max_rows: int = Field(default=10_000, ge=1)
    seed: Seed = 0

    @model_validator(mode="after")
    def _unique(self) -> Robustness:
        for index, name in _duplicates([p.name for p in self.perturbations]):
            raise _problem(("perturbations", index, "name"), f"{name!r} is used twice")
        return self


class Reproducibility(_Strict):
    sample_rows: int = Field(default=500, ge=1, le=1_000_000)
    require: list[Recorded] = Field(default_factory=lambda: list(RECORDED_FIELDS))


class ChampionChallenger(_Strict):
    metric: str
    min_margin: float = 0.0


class Checks(_Strict):
    performance: Performance | None = None
    fairness: Fairness | None = None
    explainability: Explainability | None = None
    robustness: Robustness | None = None
    reproducibility: Reproducibility | None = None
    champion_challenger: ChampionChallenger | None = None

    def configured(self) -> list[str]:
        """The kinds configured, in the order they run."""
        return [kind for kind in CHECK_KINDS if getattr(self, kind) is not None]


class SuiteDocument(_Strict):
    name: Annotated[str, StringConstraints(max_length=128)] | None = None
    description: Annotated[str, StringConstraints(max_length=20_000)] = ""
    label: Column | None = None
    task: Task
    positive_label: bool | int | str = 1
    threshold: float = Field(default=0.5, gt=0, lt=1)
    sample: Sample = Field(default_factory=Sample)
    checks: Checks

    @model_validator(mode="after")
    def _consistent(self) -> SuiteDocument:
        for loc, message in _semantic_problems(self):
            raise _problem(loc, message)
        return self


def _metric_problem(name: str, task: Task) -> str | None:
    info = KNOWN_METRICS.get(name)
    if info is None:
        known = ", ".join(m for m, i in KNOWN_METRICS.items() if i.task == task)
        return f"unknown metric {name!r}; {task} metrics are: {known}"
    if info.task != task:
        return f"{name} is a {info.task} metric but the suite's task is {task}"
    return None


_DIFF_RATIO = re.compile(r"^(?P<metric>[a-z0-9_]+)_(?P<agg>difference|ratio)$")


def _fairness_threshold_problem(name: str, task: Task) -> str | None:
    if name in DISPARITY_METRICS:
        if task != "classification":
            return f"{name} applies to classification only"
        return None
    match = _DIFF_RATIO.match(name)
    if match and match["metric"] in GROUP_METRICS and match["metric"] != "count":
        if task not in GROUP_METRICS[match["metric"]]:
            return f"{match['metric']} is not a {task} group metric"
        return None
    return (
        f"unknown fairness threshold {name!r}; use one of {', '.join(DISPARITY_METRICS)} "
        "or <group metric>_difference / <group metric>_ratio"
    )


def _semantic_problems(doc: SuiteDocument) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Rules that span sections: metric names against the task, labels where needed."""
    checks = doc.checks
    if not checks.configured():
        yield ("checks",), f"configure at least one check: {', '.join(CHECK_KINDS)}"
    needs_label = [
        kind
        for kind in ("performance", "fairness", "explainability", "champion_challenger")
        if getattr(checks, kind) is not None
    ]
    if needs_label and doc.label is None:
        yield ("label",), f"the label column is required by {', '.join(needs_label)}"
    if doc.task == "regression" and doc.positive_label != 1:  # 1: the default, as dumped
        yield ("positive_label",), "positive_label applies to classification only"
    if checks.performance is not None:
        for name in checks.performance.metrics:
            if problem := _metric_problem(name, doc.task):
                yield ("checks", "performance", "metrics", name), problem
    if checks.fairness is not None:
        for index, name in enumerate(checks.fairness.metrics or []):
            if name not in GROUP_METRICS:
                known = ", ".join(m for m, t in GROUP_METRICS.items() if doc.task in t)
                yield (
                    ("checks", "fairness", "metrics", index),
                    f"unknown group metric {name!r}; {doc.task} group metrics are: {known}",
                )
            elif doc.task not in GROUP_METRICS[name]:
                yield ("checks", "fairness", "metrics", index), f"{name} is not a {doc.task} metric"
        for name in checks.fairness.thresholds:
            if problem := _fairness_threshold_problem(name, doc.task):
                yield ("checks", "fairness", "thresholds", name), problem
    if checks.explainability is not None and checks.explainability.permutation.scoring:
        scoring = checks.explainability.permutation.scoring
        if problem := _metric_problem(scoring, doc.task):
            yield ("checks", "explainability", "permutation", "scoring"), problem
    if checks.robustness is not None and doc.task == "regression":
        for index, perturbation in enumerate(checks.robustness.perturbations):
            for where, thresholds in (
                (("checks", "robustness"), checks.robustness.thresholds),
                (("checks", "robustness", "perturbations", index), perturbation.thresholds),
            ):
                if thresholds is not None and thresholds.min_label_agreement is not None:
                    yield (
                        (*where, "thresholds", "min_label_agreement"),
                        "label agreement applies to classification only",
                    )
    champion = checks.champion_challenger
    if champion is not None and (problem := _metric_problem(champion.metric, doc.task)):
        yield ("checks", "champion_challenger", "metric"), problem


class _SuiteLoader(yaml.SafeLoader):
    """Safe YAML without aliases (no expansion bombs) or duplicate keys (no silent overrides)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed in a suite", event.start_mark
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} appears twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _yaml_error(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is not None:
        where = f"line {mark.line + 1}, column {mark.column + 1}"
        return f"the suite is not valid YAML ({where}): {problem}"
    return f"the suite is not valid YAML: {problem}"


def _error_loc(error: Any) -> tuple[Any, ...]:
    loc: tuple[Any, ...] = tuple(error["loc"])
    # A tagged union puts the tag in the location: perturbations[0].gaussian_noise.scale.
    cleaned: list[Any] = []
    for index, part in enumerate(loc):
        if part in PERTURBATION_KINDS and index > 0 and isinstance(loc[index - 1], int):
            continue
        cleaned.append(part)
    extra = (error.get("ctx") or {}).get("loc", ())
    return (*cleaned, *extra)


def _message(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] == "union_tag_invalid":
        return f"unknown perturbation kind; use one of {', '.join(PERTURBATION_KINDS)}"
    if error["type"] == "union_tag_not_found":
        return f"the perturbation kind is required: one of {', '.join(PERTURBATION_KINDS)}"
    return str(error["msg"])


def validation_problem(exc: ValidationError, field_name: str = "definition") -> InvalidInput:
    """The first problem of a failed validation as :class:`InvalidInput` naming its field."""
    error = exc.errors()[0]
    loc = _error_loc(error)
    if error["type"] == "union_tag_invalid" or (
        error["type"] == "union_tag_not_found" and loc and loc[-1] != "kind"
    ):
        loc = (*loc, "kind")
    where = field_path((field_name, *loc))
    return InvalidInput(f"{where}: {_message(error)}", field=where)


def parse_suite(text: str, *, field_name: str = "definition") -> SuiteDocument:
    """Parse and validate a suite's YAML; every error names the offending field."""
    if len(text.encode()) > MAX_SUITE_BYTES:
        raise InvalidInput(f"a suite is at most {MAX_SUITE_BYTES} bytes", field=field_name)
    try:
        raw = yaml.load(text, Loader=_SuiteLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise InvalidInput(_yaml_error(exc), field=field_name) from None
    if not isinstance(raw, dict):
        raise InvalidInput("a suite is a YAML mapping (key: value lines)", field=field_name)
    try:
        return SuiteDocument.model_validate(raw)
    except ValidationError as exc:
        raise validation_problem(exc, field_name) from None


def referenced_columns(doc: SuiteDocument) -> set[str]:
    """Every dataset column the suite names: the label, sensitive features, perturbed features
    and the features explainability thresholds name."""
    columns: set[str] = set()
    if doc.label is not None:
        columns.add(doc.label)
    checks = doc.checks
    if checks.fairness is not None:
        columns.update(checks.fairness.sensitive_features)
    if checks.explainability is not None:
        columns.update(checks.explainability.thresholds.max_importance)
    if checks.robustness is not None:
        for perturbation in checks.robustness.perturbations:
            columns.update(perturbation.features or [])
    return columns

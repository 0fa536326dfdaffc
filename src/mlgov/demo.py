"""The demo behind ``make demo`` / ``mlgov demo``: a server on a data directory, seeded with a
believable governance story, then served.

:func:`seed` tells the story the way real people would, through the services and with their
own identities: the bootstrap ``admin`` onboards the team (one user per role and the
``ci-pipeline`` service account, each with an API token); ``dana`` (data engineer) registers
the ``credit-applications`` dataset with a training and a held-out validation version,
generated deterministically as CSV files under ``<data dir>/demo-data/`` and described by full
datasheets (each row carries an ``age_band``, not a model input, kept for fairness testing);
``sam`` (data scientist) registers the high-risk ``credit-default-risk`` model and its first
version, a real scikit-learn pipeline trained on the training CSV, serialised with skops, with
the metrics sam measured on the validation CSV and lineage to both dataset versions. The server
scans every uploaded artifact at registration (never loading it) and records the result as the
version's ``security_scan`` evidence (``source: scan``, by ``system``). A second, smaller model
(``fraud-alerts``, a gradient-boosted pipeline trained on ``card-transactions@1`` and measured
on the hold-out ``@2``) is registered by the ``ci-pipeline`` service account; its artifact
holds a type skops does not trust by default, so before the pipeline registers it the ``admin``
publishes a new version of the ``limited`` policy whose ``artifacts.trusted_types`` lists that
type, reviewed by the validation team (:data:`REVIEWED_TYPES`). Every change carries a reason
and lands in the audit trail under the actor who made it.

Then the lifecycle, under each model's risk-tier policy, on evidence the server computes.
``val`` (validator) publishes two validation suites: ``credit-high-risk`` (performance with
bootstrap intervals, fairness across age bands, permutation importance, robustness to input
noise and unseen categories, reproducibility, and champion/challenger against the version in
production) and the lighter ``fraud-triage`` (performance and robustness). For each version
``val`` requests a validation run on the held-out dataset version; the demo runs the queue
synchronously with a worker (each run loads the model in a sandboxed child process and records
one evidence record per check kind, ``source: validation``, with an HTML report). ``erin``
(ethics reviewer) records the ethics review by hand, quoting the fairness results the run
recorded. ``sam`` asks for staging and ``val`` signs it off; ``morgan`` (model manager) asks
for production and two approvers, ``avery`` and ``noor``, sign: version 1 of the credit model
is in production. A regularised challenger (version 2) goes through the same validation, now
compared with version 1 in production, and waits in the approvals inbox with one of its two
signatures. ``fraud-alerts`` reaches production under the ``limited`` policy: ``sam``'s staging
request waits for evidence until the validation run records it, and then applies itself; one
approver signs production. Nobody records evidence on or approves a version they created, nor
approves a request they made.

scikit-learn and skops are imported when the demo is seeded, not when this module is, so
commands that merely import it stay quick. Seeding takes some seconds: each validation run is
a child process that imports scikit-learn.

:func:`main` builds the server, seeds it on the first start, prints the URL, the admin token
(shown once) and the demo users' tokens, and runs uvicorn. Seeding is skipped when the demo
model exists already: tokens cannot be shown again then (only their hashes are stored).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import importlib.metadata
import io
import ipaddress
import platform
import tempfile
import time
import uuid
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel

from mlgov.artifacts.scan import ScanReport
from mlgov.config import Settings
from mlgov.context import Actor, Context
from mlgov.errors import InvalidInput, NotFound
from mlgov.identity.permissions import Role
from mlgov.identity.service import actor_of
from mlgov.lifecycle.policy import builtin_pack
from mlgov.lifecycle.schemas import (
    Check,
    DatasetRef,
    DecisionCreate,
    EvidenceCreate,
    PolicyPublish,
    SuiteRef,
    TransitionCreate,
)
from mlgov.lifecycle.service import TransitionView
from mlgov.registry.schemas import (
    ArtifactFormat,
    CodeRef,
    ColumnSpec,
    DatasetCreate,
    DatasetVersionCreate,
    Datasheet,
    Environment,
    FeatureSpec,
    LineageRef,
    ModelCreate,
    PersonalData,
    RiskTier,
    Signature,
    Stage,
    VersionMetadata,
)
from mlgov.server import Server, build_server, freeze_startup_objects, validation_runner
from mlgov.storage import StoredArtifact
from mlgov.validation.schemas import SuitePublish, ValidationCreate
from mlgov.validation.service import JobView

__all__ = [
    "CREDIT_DATASET",
    "CREDIT_FEATURES",
    "CREDIT_MODEL",
    "CREDIT_SUITE",
    "DEMO_USERS",
    "FRAUD_DATASET",
    "FRAUD_MODEL",
    "FRAUD_SUITE",
    "REVIEWED_TYPES",
    "DemoError",
    "DemoSummary",
    "DemoUser",
    "generate_card_transactions",
    "generate_credit_applications",
    "is_seeded",
    "main",
    "seed",
    "write_csv",
]

CREDIT_MODEL = "credit-default-risk"
CREDIT_DATASET = "credit-applications"
FRAUD_MODEL = "fraud-alerts"
FRAUD_DATASET = "card-transactions"
DATA_SEED = 20240917  # every generated file is the same on every machine and every run
CLIENT_ADDR = "127.0.0.1"
CREDIT_THRESHOLD = 0.5  # probability of default above which the underwriter sees a decline hint
CHALLENGER_C = 0.1  # the credit challenger (v2): stronger L2 regularisation than v1's C=1
FRAUD_THRESHOLD = 0.15  # fraud probability above which an alert is opened
#: Types skops does not trust by default that the validation team reviewed: plain data
#: holders of scikit-learn that execute no code when loaded. The admin lists them in the
#: limited policy's ``artifacts.trusted_types`` so the scan at registration accepts them.
REVIEWED_TYPES = frozenset({"sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"})
CODE_REPOSITORY = "https://git.example.com/retail-credit/credit-default-risk"
FRAUD_REPOSITORY = "https://git.example.com/payments/fraud-alerts"
PACKAGES = ("scikit-learn", "numpy", "scipy", "skops")
FRESH_START_HINT = (
    "Tokens are shown only when they are created: the admin token on the first start, the demo "
    "users' tokens when the demo is seeded. For a fresh demo, stop the server and delete the "
    "data directory ({data_dir})."
)


class DemoError(RuntimeError):
    """The demo cannot be seeded on this data directory (e.g. an interrupted earlier seed, or
    a validation run that could not read the demo's data)."""


# -- who is in the story -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Person:
    name: str
    roles: tuple[str, ...]
    display_name: str
    email: str
    reason: str
    kind: str = "user"


_PEOPLE: tuple[_Person, ...] = (
    _Person(
        "dana",
        (Role.DATA_ENGINEER,),
        "Dana Fischer",
        "dana@retail-credit.example",
        "Onboarding Dana Fischer (data engineering, retail credit): maintains the credit "
        "application extracts and their datasheets. Access request GOV-101.",
    ),
    _Person(
        "sam",
        (Role.DATA_SCIENTIST,),
        "Sam Okafor",
        "sam@retail-credit.example",
        "Onboarding Sam Okafor (data science, retail credit): develops the credit default "
        "model. Access request GOV-102.",
    ),
    _Person(
        "val",
        (Role.VALIDATOR,),
        "Valentina Rossi",
        "val@model-risk.example",
        "Onboarding Valentina Rossi (independent model validation, second line): validates "
        "credit models before they reach customers. Access request GOV-103.",
    ),
    _Person(
        "avery",
        (Role.APPROVER,),
        "Avery Chen",
        "avery@model-risk.example",
        "Onboarding Avery Chen (head of model risk): signs off stage transitions of retail "
        "credit models. Access request GOV-104.",
    ),
    _Person(
        "noor",
        (Role.APPROVER,),
        "Noor Haddad",
        "noor@model-risk.example",
        "Onboarding Noor Haddad (chief risk officer): the second signature high-risk models "
        "need before production. Access request GOV-109.",
    ),
    _Person(
        "erin",
        (Role.ETHICS_REVIEWER,),
        "Erin Walsh",
        "erin@ethics.example",
        "Onboarding Erin Walsh (AI ethics board): performs the ethics and fundamental-rights "
        "impact review high-risk models need. Access request GOV-105.",
    ),
    _Person(
        "morgan",
        (Role.MODEL_MANAGER,),
        "Morgan Dubois",
        "morgan@retail-credit.example",
        "Onboarding Morgan Dubois (ML platform, retail credit): owns production deployments "
        "and monitoring of credit models. Access request GOV-106.",
    ),
    _Person(
        "audrey",
        (Role.AUDITOR,),
        "Audrey Novak",
        "audrey@internal-audit.example",
        "Onboarding Audrey Novak (internal audit, third line): read access to the audit trail "
        "and evidence for the annual model-risk audit. Access request GOV-107.",
    ),
    _Person(
        "vic",
        (Role.VIEWER,),
        "Victor Lind",
        "vic@retail-credit.example",
        "Onboarding Victor Lind (credit product owner): read access to the model catalog. "
        "Access request GOV-108.",
    ),
    _Person(
        "ci-pipeline",
        (Role.DATA_SCIENTIST,),
        "CI training pipeline",
        "",
        "Service account for the CI training pipeline: registers the versions produced by "
        "scheduled retraining jobs. Platform change CHG-2211.",
        kind="service_account",
    ),
)

#: Name, roles and kind of every demo user, in the order they are created.
DEMO_USERS: tuple[tuple[str, tuple[str, ...], str], ...] = tuple(
    (p.name, tuple(str(r) for r in p.roles), p.kind) for p in _PEOPLE
)


@dataclass(frozen=True)
class DemoUser:
    name: str
    kind: str
    roles: tuple[str, ...]
    display_name: str
    token: str | None  # None when the demo was seeded on an earlier start


@dataclass(frozen=True)
class DemoSummary:
    """What :func:`seed` did (or found)."""

    seeded: bool  # False: the demo existed already and nothing was changed
    message: str
    model: str
    version: int | None
    dataset: str
    dataset_versions: tuple[int, ...]
    users: tuple[DemoUser, ...]
    data_files: tuple[Path, ...] = ()
    metrics: dict[str, float] = field(default_factory=dict)
    other_models: tuple[str, ...] = ()
    #: Model -> the version the seed put in production.
    production: dict[str, int] = field(default_factory=dict)
    #: The transition request left waiting in the approvals inbox, and its version.
    pending_transition: int | None = None
    pending_version: int | None = None
    seconds: float = 0.0  # how long seeding took


# -- generated data ----------------------------------------------------------------------------

Columns = dict[str, NDArray[Any]]

EMPLOYMENT = ("permanent", "temporary", "self_employed", "unemployed", "retired")
HOUSING = ("own", "rent", "free")
PURPOSE = (
    "car",
    "home_improvement",
    "debt_consolidation",
    "education",
    "business",
    "appliances",
    "vacation",
    "other",
)

#: The credit model's inputs, in the column order the pipeline expects: (name, type, meaning).
CREDIT_FEATURES: tuple[tuple[str, str, str], ...] = (
    ("age", "integer", "Applicant's age in years at application"),
    ("income", "integer", "Declared gross annual income, EUR"),
    ("loan_amount", "integer", "Requested principal, EUR"),
    ("loan_term_months", "integer", "Requested term in months"),
    ("credit_history_length", "integer", "Years since the applicant's first credit line"),
    ("num_existing_loans", "integer", "Open loans at other lenders (credit bureau)"),
    ("employment_type", "string", "Employment status: " + ", ".join(EMPLOYMENT)),
    ("housing", "string", "Housing situation: " + ", ".join(HOUSING)),
    ("purpose", "string", "Stated purpose of the loan: " + ", ".join(PURPOSE)),
)
#: Age bands of the fairness tests: (label, lowest age, highest age).
AGE_BANDS = (("18-29", 18, 29), ("30-44", 30, 44), ("45-59", 45, 59), ("60+", 60, 200))
_CREDIT_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("application_id", "string", "Pseudonymous application key (not a model input)"),
    *CREDIT_FEATURES,
    (
        "age_band",
        "string",
        "Age band of the applicant ("
        + ", ".join(band for band, _, _ in AGE_BANDS)
        + "), derived from age for fairness testing (not a model input)",
    ),
    ("default", "integer", "Label: 1 if the loan defaulted (90+ days past due) within 12 months"),
)

MERCHANTS = (
    "grocery",
    "fuel",
    "restaurants",
    "electronics",
    "travel",
    "online_gaming",
    "cash_withdrawal",
)
FRAUD_FEATURES: tuple[tuple[str, str, str], ...] = (
    ("amount", "double", "Transaction amount, EUR"),
    ("hour_of_day", "integer", "Local hour of the transaction (0-23)"),
    ("card_present", "integer", "1 if the card was physically present"),
    ("distance_from_home_km", "double", "Distance between merchant and cardholder address, km"),
    ("transactions_last_24h", "integer", "Transactions on the card in the preceding 24 hours"),
    ("merchant_category", "string", "Merchant category: " + ", ".join(MERCHANTS)),
)
_FRAUD_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("transaction_id", "string", "Pseudonymous transaction key (not a model input)"),
    *FRAUD_FEATURES,
    ("is_fraud", "integer", "Label: 1 if the transaction was confirmed fraudulent"),
)


def _sigmoid(x: NDArray[np.float64]) -> NDArray[np.float64]:
    return 1.0 / (1.0 + np.exp(-x))


def _pick(rng: np.random.Generator, options: Sequence[str], p: Sequence[float], n: int) -> Any:
    return rng.choice(np.array(options, dtype=object), size=n, p=np.asarray(p) / np.sum(p))


def generate_credit_applications(n: int, stream: int, *, prefix: str = "APP") -> Columns:
    """``n`` synthetic loan applications with a ``default`` outcome; the same for the same
    ``(n, stream)`` everywhere (stream 1 is the training extract, stream 2 the validation one).

    The label comes from a logistic model of affordability (instalment / income), credit
    history, existing debt, age, employment, housing and purpose, plus unobserved noise, so a
    model can learn it but not perfectly."""
    rng = np.random.default_rng([DATA_SEED, stream])
    age = np.clip(rng.normal(41.0, 12.0, n), 18, 80).round().astype(np.int64)
    retired = (age >= 63) & (rng.random(n) < 0.75)
    employment = _pick(rng, EMPLOYMENT[:4], [0.62, 0.15, 0.15, 0.08], n)
    employment[retired] = "retired"
    base_income = {
        "permanent": 44_000,
        "temporary": 29_000,
        "self_employed": 47_000,
        "unemployed": 12_000,
        "retired": 25_000,
    }
    spread = np.where(employment == "self_employed", 0.6, 0.35)
    income_base = np.array([base_income[e] for e in employment], dtype=np.float64)
    career = 1.0 + 0.012 * (np.minimum(age, 55) - 30)
    raw_income = income_base * career * rng.lognormal(0.0, spread)
    income = (np.clip(raw_income, 6_000, 400_000) / 100).round().astype(np.int64) * 100
    own_p = np.clip(0.12 + 0.013 * (age - 18), 0.1, 0.75)
    u = rng.random(n)
    housing = np.where(u < own_p, "own", np.where(u < own_p + 0.08, "free", "rent")).astype(object)
    purpose = _pick(rng, PURPOSE, [0.25, 0.15, 0.2, 0.08, 0.07, 0.12, 0.05, 0.08], n)
    typical = {
        "car": 16_000,
        "home_improvement": 20_000,
        "debt_consolidation": 12_000,
        "education": 9_000,
        "business": 30_000,
        "appliances": 3_000,
        "vacation": 4_000,
        "other": 6_000,
    }
    amount = np.array([typical[p] for p in purpose], dtype=np.float64)
    amount *= rng.lognormal(0.0, 0.5, n) * (income / 40_000) ** 0.3
    loan_amount = (np.clip(amount, 500, 150_000) / 100).round().astype(np.int64) * 100
    terms = np.array([12, 24, 36, 48, 60, 72, 84], dtype=np.int64)
    term = rng.choice(terms, size=n, p=[0.12, 0.2, 0.22, 0.16, 0.18, 0.07, 0.05])
    term = np.where(loan_amount > 20_000, np.maximum(term, 36), term)
    history = np.floor(rng.random(n) * (age - 18) * 0.9 + rng.normal(0.0, 1.0, n))
    history = np.clip(history, 0, age - 18).astype(np.int64)
    existing = rng.poisson(0.5 + 0.9 * (purpose == "debt_consolidation"), n)
    existing = np.minimum(existing, 8).astype(np.int64)

    burden = np.minimum(loan_amount * 1.08 / term * 12 / income, 1.5)
    effect_employment = {
        "permanent": -0.3,
        "temporary": 0.4,
        "self_employed": 0.3,
        "unemployed": 1.1,
        "retired": 0.0,
    }
    effect_housing = {"own": -0.3, "rent": 0.15, "free": 0.1}
    effect_purpose = {
        "car": -0.1,
        "home_improvement": -0.2,
        "debt_consolidation": 0.4,
        "education": 0.1,
        "business": 0.5,
        "appliances": 0.0,
        "vacation": 0.3,
        "other": 0.1,
    }
    logit = (
        -2.1
        + 5.0 * (burden - 0.15)
        - 0.05 * (history - 8)
        + 0.35 * existing
        - 0.015 * (age - 40)
        + np.array([effect_employment[e] for e in employment])
        + np.array([effect_housing[h] for h in housing])
        + np.array([effect_purpose[p] for p in purpose])
        + rng.normal(0.0, 0.4, n)
    )
    default = (rng.random(n) < _sigmoid(logit)).astype(np.int64)
    ids = np.array([f"{prefix}-{stream:02d}-{i:07d}" for i in range(1, n + 1)], dtype=object)
    return {
        "application_id": ids,
        "age": age,
        "income": income,
        "loan_amount": loan_amount,
        "loan_term_months": term,
        "credit_history_length": history,
        "num_existing_loans": existing,
        "employment_type": employment,
        "housing": housing,
        "purpose": purpose,
        "age_band": _age_bands(age),
        "default": default,
    }


def _age_bands(age: NDArray[np.int64]) -> NDArray[Any]:
    bands = np.empty(len(age), dtype=object)
    for band, low, high in AGE_BANDS:
        bands[(age >= low) & (age <= high)] = band
    return bands


def generate_card_transactions(n: int, stream: int) -> Columns:
    """``n`` synthetic card transactions with an ``is_fraud`` label (about 4 % fraud)."""
    rng = np.random.default_rng([DATA_SEED, 100 + stream])
    merchant = _pick(rng, MERCHANTS, [0.3, 0.15, 0.2, 0.1, 0.08, 0.05, 0.12], n)
    typical = {
        "grocery": 45.0,
        "fuel": 60.0,
        "restaurants": 38.0,
        "electronics": 320.0,
        "travel": 450.0,
        "online_gaming": 25.0,
        "cash_withdrawal": 120.0,
    }
    amount = np.array([typical[m] for m in merchant]) * rng.lognormal(0.0, 0.8, n)
    amount = np.clip(amount, 1.0, 20_000.0).round(2)
    hour = np.clip(rng.normal(14.0, 4.5, n), 0, 23).round().astype(np.int64)
    present = rng.random(n) < np.where(np.isin(merchant, ["online_gaming", "travel"]), 0.1, 0.8)
    distance = rng.exponential(12.0, n).round(1)
    recent = rng.poisson(2.5, n).astype(np.int64)
    risky = np.isin(merchant, ["electronics", "online_gaming", "cash_withdrawal"])
    logit = (
        -4.7
        + 0.6 * np.log1p(amount / 100)
        + 1.6 * ((hour <= 5) | (hour >= 23))
        - 1.4 * present
        + 0.03 * np.minimum(distance, 200)
        + 0.25 * recent
        + 1.2 * risky
        + rng.normal(0.0, 0.3, n)
    )
    fraud = (rng.random(n) < _sigmoid(logit)).astype(np.int64)
    ids = np.array([f"TXN-{stream:02d}-{i:08d}" for i in range(1, n + 1)], dtype=object)
    return {
        "transaction_id": ids,
        "amount": amount,
        "hour_of_day": hour,
        "card_present": present.astype(np.int64),
        "distance_from_home_km": distance,
        "transactions_last_24h": recent,
        "merchant_category": merchant,
        "is_fraud": fraud,
    }


def write_csv(path: Path, columns: Columns) -> str:
    """Write ``columns`` as CSV (header, ``\\n`` line ends) and return the file's sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(columns)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(names)
    writer.writerows(zip(*(columns[c].tolist() for c in names), strict=True))
    data = buffer.getvalue().encode()
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def _matrix(columns: Columns, features: Sequence[tuple[str, str, str]]) -> NDArray[Any]:
    """The model input: a 2-D object array, one column per feature in signature order."""
    n = len(next(iter(columns.values())))
    X = np.empty((n, len(features)), dtype=object)
    for j, (name, _kind, _desc) in enumerate(features):
        X[:, j] = columns[name].tolist()
    return X


def _schema(specs: Sequence[tuple[str, str, str]]) -> list[ColumnSpec]:
    return [ColumnSpec(name=name, type=kind, description=desc) for name, kind, desc in specs]


def _signature(
    columns: Columns, features: Sequence[tuple[str, str, str]], output: FeatureSpec
) -> Signature:
    inputs = []
    for name, kind, desc in features:
        values = columns[name]
        if kind == "string":
            cats: list[str | int] = sorted({str(v) for v in values.tolist()})
            inputs.append(FeatureSpec(name=name, type="string", description=desc, categories=cats))
        else:
            inputs.append(
                FeatureSpec(
                    name=name,
                    type="integer" if kind == "integer" else "double",
                    description=desc,
                    min=float(np.min(values)),
                    max=float(np.max(values)),
                )
            )
    return Signature(inputs=inputs, outputs=[output])


# -- models ------------------------------------------------------------------------------------


def _pipeline(features: Sequence[tuple[str, str, str]], classifier: Any) -> Any:
    """Scale the numeric features, one-hot encode the categorical ones, then ``classifier``;
    the input is a 2-D array with the columns in ``features`` order."""
    from sklearn.compose import ColumnTransformer  # type: ignore[import-untyped]
    from sklearn.pipeline import Pipeline  # type: ignore[import-untyped]
    from sklearn.preprocessing import (  # type: ignore[import-untyped]
        OneHotEncoder,
        StandardScaler,
    )

    numeric = [i for i, (_, kind, _d) in enumerate(features) if kind != "string"]
    categorical = [i for i, (_, kind, _d) in enumerate(features) if kind == "string"]
    prep = ColumnTransformer(
        [
            ("numeric", StandardScaler(), numeric),
            ("categorical", OneHotEncoder(handle_unknown="ignore"), categorical),
        ]
    )
    return Pipeline([("preprocess", prep), ("classifier", classifier)])


def _metrics(y: NDArray[Any], p: NDArray[np.float64], threshold: float) -> dict[str, float]:
    """Ranking and calibration metrics, and accuracy/F1 at the decision ``threshold``."""
    from sklearn.metrics import (  # type: ignore[import-untyped]
        accuracy_score,
        brier_score_loss,
        f1_score,
        log_loss,
        roc_auc_score,
    )

    predicted = (p >= threshold).astype(np.int64)
    return {
        "roc_auc": round(float(roc_auc_score(y, p)), 6),
        "accuracy": round(float(accuracy_score(y, predicted)), 6),
        "f1": round(float(f1_score(y, predicted, zero_division=0)), 6),
        "log_loss": round(float(log_loss(y, p, labels=[0, 1])), 6),
        "brier": round(float(brier_score_loss(y, p)), 6),
    }


def _json_params(estimator: Any) -> dict[str, Any]:
    """The estimator's hyperparameters that mean something (JSON-safe, no deprecation stubs)."""
    params: dict[str, Any] = {}
    for key, value in sorted(estimator.get_params(deep=False).items()):
        if isinstance(value, str) and value == "deprecated":
            continue
        if value is None or isinstance(value, bool | int | float | str):
            params[key] = value
        else:
            params[key] = repr(value)
    return params


def _serialise(model: Any) -> bytes:
    import skops.io  # type: ignore[import-untyped]

    # skops' schema.json is verbose; deflate keeps a small pipeline in the tens of KiB.
    blob: bytes = skops.io.dumps(model, compression=zipfile.ZIP_DEFLATED)
    return blob


def _environment() -> Environment:
    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return Environment(python=platform.python_version(), packages=packages)


def _commit(label: str) -> str:
    """A stable, plausible 40-hex commit id for the demo's (fictional) training code."""
    return hashlib.sha1(label.encode(), usedforsecurity=False).hexdigest()


# -- the seed ----------------------------------------------------------------------------------


def is_seeded(server: Server) -> bool:
    """True when the demo model is registered already."""
    try:
        server.services.registry.get_model(CREDIT_MODEL)
    except NotFound:
        return False
    return True


def _ctx(actor: Actor) -> Context:
    return Context(actor=actor, request_id=f"demo-{uuid.uuid4().hex}", client_addr=CLIENT_ADDR)


def _upload(server: Server, model: str, blob: bytes, filename: str) -> _Upload:
    """What the API does with an uploaded artifact: scan a private copy (never loading it),
    refusing what the model's policy does not accept, then store the bytes."""
    services = server.services
    scan_dir = services.settings.scan_dir
    scan_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="demo-", dir=scan_dir) as private:
        copy = Path(private) / filename
        copy.write_bytes(blob)
        try:
            scan = services.lifecycle.scan_upload(model, copy, ArtifactFormat.SKOPS.value)
        except InvalidInput as exc:
            raise DemoError(f"the scan refused {filename}: {exc.detail}") from None
    with services.store.writer(services.settings.max_artifact_bytes) as writer:
        writer.write(blob)
        return _Upload(writer.commit(), scan)


def _credit_datasheet(extract: str, rows: int, window: str) -> Datasheet:
    return Datasheet(
        motivation=(
            "Created to develop and validate probability-of-default models for unsecured retail "
            "loans, replacing the 2019 application scorecard. Commissioned by retail-credit risk "
            "(project CR-2024-12); the demo generates it synthetically, so it describes no real "
            "person."
        ),
        composition=(
            f"{rows} loan applications ({extract}), one row per application: age, declared "
            "income, requested amount and term, credit-history length and existing loans from "
            "the credit bureau, employment type, housing and loan purpose, and the 12-month "
            "default outcome (90+ days past due). No names, addresses or national ids; the "
            "application_id is a pseudonymous key. Protected attributes other than age are not "
            "present; age is a legitimate affordability factor, and its band (age_band, not a "
            "model input) is kept for fairness testing."
        ),
        collection=(
            f"Extracted from the loan origination system and joined with bureau data for "
            f"applications decided {window}; outcomes observed 12 months after disbursement. "
            "Only approved and disbursed loans have outcomes (reject inference is out of scope)."
        ),
        preprocessing=(
            "Incomes and amounts rounded to EUR 100; ages clipped to 18-80; applications with "
            "missing bureau data removed (0.4 %); no imputation; categories normalised to "
            "lower-case snake_case."
        ),
        uses=(
            "Training and validation of retail credit default models. Not to be used for "
            "marketing, for pricing insurance, or to profile individuals outside a credit "
            "application."
        ),
        distribution=(
            "Internal only: retail-credit data science, model validation and internal audit. "
            "Never shared with third parties; stored in the EU."
        ),
        maintenance=(
            "Owned by retail-credit data engineering (dana). A new version is cut every "
            "quarter; versions are immutable and kept 10 years after the last model that used "
            "them is retired (CRR record keeping)."
        ),
        personal_data=PersonalData(
            present=True,
            legal_basis="GDPR Art. 6(1)(b) — contract",
            categories=["age", "financial situation", "employment status", "credit history"],
        ),
    )


def _fraud_datasheet(extract: str, rows: int) -> Datasheet:
    return Datasheet(
        motivation="Created to train and validate the card-fraud alerting model of the payments "
        "team.",
        composition=(
            f"{rows} card transactions ({extract}) with amount, time, card-present flag, "
            "distance from the cardholder's address, recent activity, merchant category and the "
            "confirmed fraud label (chargebacks and cardholder disputes). Pseudonymous "
            "transaction keys only."
        ),
        collection="Card authorisation logs joined with confirmed-fraud cases after 90 days.",
        preprocessing="Amounts in EUR; distances rounded to 100 m; no imputation.",
        uses="Fraud detection models only; not for credit decisions or marketing.",
        distribution="Internal only: payments data science and fraud operations.",
        maintenance="Owned by payments data engineering; refreshed monthly.",
        personal_data=PersonalData(
            present=True,
            legal_basis="GDPR Art. 6(1)(f) — legitimate interest (fraud prevention)",
            categories=["transaction history", "location"],
        ),
    )


@dataclass(frozen=True)
class _Upload:
    """An artifact as the API would have it: stored, with the scan it passed."""

    artifact: StoredArtifact
    scan: ScanReport


@dataclass(frozen=True)
class _DataFile:
    path: Path
    sha256: str
    rows: int
    columns: Columns


@dataclass(frozen=True)
class _Trained:
    """A fitted model, serialised with skops, with what its version metadata needs."""

    blob: bytes
    hyperparameters: dict[str, Any]
    metrics: dict[str, float]
    fit_columns: Columns  # the rows it was fitted on: the signature's ranges and categories


def _data_file(path: Path, columns: Columns) -> _DataFile:
    rows = len(next(iter(columns.values())))
    return _DataFile(path=path, sha256=write_csv(path, columns), rows=rows, columns=columns)


def _credit_classifier(c: float, max_iter: int = 1_000) -> Any:
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

    return LogisticRegression(C=c, max_iter=max_iter)


def _train_credit(train: _DataFile, valid: _DataFile, *, c: float = 1.0) -> _Trained:
    classifier = _credit_classifier(c)
    model = _pipeline(CREDIT_FEATURES, classifier)
    model.fit(_matrix(train.columns, CREDIT_FEATURES), train.columns["default"])
    p_valid = model.predict_proba(_matrix(valid.columns, CREDIT_FEATURES))[:, 1]
    return _Trained(
        blob=_serialise(model),
        hyperparameters={
            **_json_params(classifier),
            "numeric_scaling": "StandardScaler",
            "categorical_encoding": "OneHotEncoder(handle_unknown='ignore')",
            "decision_threshold": CREDIT_THRESHOLD,
        },
        metrics=_metrics(valid.columns["default"], p_valid, CREDIT_THRESHOLD),
        fit_columns=train.columns,
    )


def _train_fraud(train: _DataFile, holdout: _DataFile) -> _Trained:
    from sklearn.ensemble import HistGradientBoostingClassifier  # type: ignore[import-untyped]

    booster = HistGradientBoostingClassifier(
        max_iter=30, max_depth=3, min_samples_leaf=40, early_stopping=False, random_state=7
    )
    model = _pipeline(FRAUD_FEATURES, booster)
    model.fit(_matrix(train.columns, FRAUD_FEATURES), train.columns["is_fraud"])
    p_hold = model.predict_proba(_matrix(holdout.columns, FRAUD_FEATURES))[:, 1]
    return _Trained(
        blob=_serialise(model),
        hyperparameters={**_json_params(booster), "alert_threshold": FRAUD_THRESHOLD},
        metrics=_metrics(holdout.columns["is_fraud"], p_hold, FRAUD_THRESHOLD),
        fit_columns=train.columns,
    )


def _onboard(server: Server) -> tuple[list[DemoUser], dict[str, Actor]]:
    """The bootstrap admin creates every demo user and hands each an API token."""
    identity = server.services.identity
    admin = actor_of(identity.get_user("admin"))
    users: list[DemoUser] = []
    actors: dict[str, Actor] = {}
    for person in _PEOPLE:
        user = identity.create_user(
            _ctx(admin),
            name=person.name,
            roles=list(person.roles),
            reason=person.reason,
            kind=person.kind,
            display_name=person.display_name,
            email=person.email,
        )
        issued = identity.issue_token(
            _ctx(admin),
            user_name=person.name,
            name="demo",
            reason=f"Initial API token for {person.display_name} ({person.name}), "
            "handed over with the onboarding pack.",
        )
        actors[person.name] = actor_of(user)
        users.append(
            DemoUser(
                person.name, person.kind, tuple(user.roles), person.display_name, issued.secret
            )
        )
    return users, actors


def _register_credit(
    server: Server,
    actors: dict[str, Actor],
    train: _DataFile,
    valid: _DataFile,
    trained: _Trained,
) -> tuple[int, int, int]:
    """dana registers the data, sam the model and its first version; returns the numbers of
    the training and validation dataset versions and of the model version."""
    registry = server.services.registry
    dana, sam = actors["dana"], actors["sam"]
    registry.create_dataset(
        _ctx(dana),
        DatasetCreate(
            name=CREDIT_DATASET,
            description=(
                "Retail loan applications with bureau attributes and the 12-month default "
                "outcome; the reference data of the retail credit default models."
            ),
            owner_team="retail-credit",
            reason="Register the credit application extracts for the new PD model (CR-2024-12); "
            "DPIA-2024-07 approved the processing.",
        ),
    )
    train_dv = registry.create_dataset_version(
        _ctx(dana),
        CREDIT_DATASET,
        DatasetVersionCreate(
            content_sha256=train.sha256,
            uri=train.path.resolve().as_uri(),
            schema=_schema(_CREDIT_COLUMNS),
            row_count=train.rows,
            datasheet=_credit_datasheet("training extract", train.rows, "2021-01 to 2023-06"),
            reason="Training extract: applications decided 2021-01 to 2023-06 with observed "
            "12-month outcomes.",
        ),
    ).version
    valid_dv = registry.create_dataset_version(
        _ctx(dana),
        CREDIT_DATASET,
        DatasetVersionCreate(
            content_sha256=valid.sha256,
            uri=valid.path.resolve().as_uri(),
            schema=_schema(_CREDIT_COLUMNS),
            row_count=valid.rows,
            datasheet=_credit_datasheet(
                "held-out validation extract", valid.rows, "2023-07 to 2023-12"
            ),
            reason="Held-out validation extract (out-of-time: 2023-07 to 2023-12), never used "
            "for training, for independent validation.",
        ),
    ).version

    registry.create_model(
        _ctx(sam),
        ModelCreate(
            name=CREDIT_MODEL,
            description=(
                "Probability that a retail loan applicant defaults (90+ days past due) within "
                "12 months of disbursement. Input: one application, as the nine features of the "
                "signature in that order; output: default_probability."
            ),
            owner_team="retail-credit",
            risk_tier=RiskTier.HIGH,
            domain="Credit scoring (EU AI Act Annex III 5(b))",
            intended_use=(
                "Decision support for underwriters deciding unsecured consumer loans of EUR 500 "
                "to 150,000 in the EU retail portfolio; the credit officer makes the decision "
                "and can override the score. Also used for IFRS 9 staging inputs."
            ),
            out_of_scope_uses=[
                "Fully automated rejection without human review (GDPR Art. 22)",
                "Mortgages, business loans or credit cards",
                "Pricing, marketing or collections prioritisation",
                "Applicants outside the EU or younger than 18",
            ],
            tags=["credit", "retail", "probability-of-default", "annex-iii", "gdpr"],
            reason="New probability-of-default model to replace the 2019 application "
            "scorecard (project CR-2024-12).",
        ),
    )
    version = _register_credit_version(
        server,
        sam,
        trained,
        train_dv,
        valid_dv,
        filename=f"{CREDIT_MODEL}-v1.skops",
        commit_label="credit-default-risk: baseline logistic regression",
        changelog=(
            "First candidate: a transparent logistic-regression baseline on nine "
            "application and bureau features. Metrics (roc_auc, accuracy, f1, log_loss, "
            f"brier) measured on the held-out validation extract {CREDIT_DATASET}@"
            f"{valid_dv} ({valid.rows} applications)."
        ),
        reason="First candidate for validation: logistic regression baseline trained on "
        f"{CREDIT_DATASET}@{train_dv}, validated on @{valid_dv}.",
    )
    return train_dv, valid_dv, version


def _register_credit_version(
    server: Server,
    sam: Actor,
    trained: _Trained,
    train_dv: int,
    valid_dv: int,
    *,
    filename: str,
    commit_label: str,
    changelog: str,
    reason: str,
) -> int:
    """sam uploads a version of the credit model (the server scans it and records the scan as
    its security_scan evidence); returns its number."""
    upload = _upload(server, CREDIT_MODEL, trained.blob, filename)
    version = server.services.registry.create_version(
        _ctx(sam),
        CREDIT_MODEL,
        VersionMetadata(
            format=ArtifactFormat.SKOPS,
            signature=_signature(
                trained.fit_columns,
                CREDIT_FEATURES,
                FeatureSpec(
                    name="default_probability",
                    type="double",
                    description="Probability of default within 12 months",
                    min=0.0,
                    max=1.0,
                ),
            ),
            algorithm="LogisticRegression (scikit-learn Pipeline: StandardScaler on numeric "
            "features, OneHotEncoder on categorical features)",
            hyperparameters=trained.hyperparameters,
            metrics=trained.metrics,
            code_ref=CodeRef(
                repository=CODE_REPOSITORY, commit=_commit(commit_label), path="training/train.py"
            ),
            environment=_environment(),
            changelog=changelog,
            datasets=[
                LineageRef(dataset=CREDIT_DATASET, version=train_dv, role="training"),
                LineageRef(dataset=CREDIT_DATASET, version=valid_dv, role="validation"),
            ],
            reason=reason,
        ),
        upload.artifact,
        filename,
        upload.scan,
    )
    return version.version


def _register_challenger(
    server: Server, actors: dict[str, Actor], trained: _Trained, train_dv: int, valid_dv: int
) -> int:
    """sam registers a challenger: the same pipeline with stronger regularisation."""
    c = trained.hyperparameters["C"]
    return _register_credit_version(
        server,
        actors["sam"],
        trained,
        train_dv,
        valid_dv,
        filename=f"{CREDIT_MODEL}-v2.skops",
        commit_label="credit-default-risk: stronger L2 regularisation",
        changelog=(
            f"Challenger: the same nine features and pipeline with stronger L2 regularisation "
            f"(C={c}) for more stable coefficients across retrainings. Metrics measured on "
            f"{CREDIT_DATASET}@{valid_dv}."
        ),
        reason=f"Challenger for v1 (CR-2024-19): regularised logistic regression, C={c}.",
    )


def _register_fraud(
    server: Server,
    actors: dict[str, Actor],
    train: _DataFile,
    holdout: _DataFile,
    trained: _Trained,
) -> tuple[int, int]:
    """A second, smaller model whose version comes from automation (the service account);
    returns the numbers of its training and hold-out dataset versions."""
    registry = server.services.registry
    dana, sam, ci = actors["dana"], actors["sam"], actors["ci-pipeline"]
    registry.create_dataset(
        _ctx(dana),
        DatasetCreate(
            name=FRAUD_DATASET,
            description="Card authorisations with confirmed-fraud labels.",
            owner_team="payments",
            reason="Register the card transaction extracts the fraud team trains and validates "
            "on (PAY-311).",
        ),
    )
    train_dv, holdout_dv = (
        registry.create_dataset_version(
            _ctx(dana),
            FRAUD_DATASET,
            DatasetVersionCreate(
                content_sha256=data.sha256,
                uri=data.path.resolve().as_uri(),
                schema=_schema(_FRAUD_COLUMNS),
                row_count=data.rows,
                datasheet=_fraud_datasheet(extract, data.rows),
                reason=reason,
            ),
        ).version
        for data, extract, reason in (
            (
                train,
                "training extract",
                "Monthly extract of card authorisations with confirmed fraud labels.",
            ),
            (
                holdout,
                "hold-out extract",
                "Hold-out extract (the following month), never used for training, for "
                "validating the nightly retraining runs.",
            ),
        )
    )
    registry.create_model(
        _ctx(sam),
        ModelCreate(
            name=FRAUD_MODEL,
            description="Scores card transactions for fraud review; high scores open an alert "
            "for the fraud operations team.",
            owner_team="payments",
            risk_tier=RiskTier.LIMITED,
            domain="Payments fraud detection",
            intended_use="Prioritising card transactions for human fraud review.",
            out_of_scope_uses=["Blocking cards without human review", "Credit decisions"],
            tags=["fraud", "payments", "cards"],
            reason="Register the fraud alerting model so its versions are governed (PAY-311).",
        ),
    )
    _trust_reviewed_types(server)
    filename = f"{FRAUD_MODEL}-v1.skops"
    upload = _upload(server, FRAUD_MODEL, trained.blob, filename)
    registry.create_version(
        _ctx(ci),
        FRAUD_MODEL,
        VersionMetadata(
            format=ArtifactFormat.SKOPS,
            signature=_signature(
                trained.fit_columns,
                FRAUD_FEATURES,
                FeatureSpec(
                    name="fraud_probability",
                    type="double",
                    description="Probability that the transaction is fraudulent",
                    min=0.0,
                    max=1.0,
                ),
            ),
            algorithm="HistGradientBoostingClassifier (scikit-learn Pipeline with one-hot "
            "merchant category)",
            hyperparameters=trained.hyperparameters,
            metrics=trained.metrics,
            code_ref=CodeRef(
                repository=FRAUD_REPOSITORY,
                commit=_commit("fraud-alerts: nightly retraining"),
                path="pipelines/train.py",
            ),
            environment=_environment(),
            changelog=(
                f"Nightly retraining on {FRAUD_DATASET}@{train_dv}; metrics on the hold-out "
                f"extract @{holdout_dv}, accuracy and f1 at the alert threshold "
                f"{FRAUD_THRESHOLD}."
            ),
            datasets=[
                LineageRef(dataset=FRAUD_DATASET, version=train_dv, role="training"),
                LineageRef(dataset=FRAUD_DATASET, version=holdout_dv, role="validation"),
            ],
            reason=f"Scheduled retraining run on {FRAUD_DATASET}@{train_dv} (pipeline run 1842).",
        ),
        upload.artifact,
        filename,
        upload.scan,
    )
    return train_dv, holdout_dv


def _trust_reviewed_types(server: Server) -> None:
    """The admin publishes a new version of the limited policy: the built-in pack, plus the
    skops types the validation team reviewed (a gradient-boosted model's trees are held by a
    type skops does not trust by default; the scan refuses the artifact without this)."""
    admin = actor_of(server.services.identity.get_user("admin"))
    listed = "".join(f"    - {name}\n" for name in sorted(REVIEWED_TYPES))
    document = (
        builtin_pack(RiskTier.LIMITED).rstrip("\n")
        + "\n# Reviewed by model validation (VAL-2024-17): plain data holders of scikit-learn"
        + " that\n# execute no code when loaded.\n"
        + f"artifacts:\n  allow_pickle: false\n  trusted_types:\n{listed}"
    )
    server.services.lifecycle.publish_policy(
        _ctx(admin),
        RiskTier.LIMITED.value,
        PolicyPublish(
            document=document,
            reason="Trust the skops types the validation team reviewed (VAL-2024-17: "
            "HistGradientBoosting's TreePredictor holds tree arrays and runs no code when "
            "loaded) so the fraud team's boosted models pass the scan at registration.",
        ),
    )


# -- validation -------------------------------------------------------------------------------

#: The validation team's standard for high-risk credit models, published as a suite: the
#: server computes each check on the held-out data and records it as evidence.
CREDIT_SUITE = "credit-high-risk"
CREDIT_SUITE_YAML = """\
description: >-
  Independent validation of high-risk retail credit models (model risk standard MRS-4):
  discrimination on held-out data, fairness across age bands, a global explanation, stability
  under input noise, reproducibility, and no loss against the version in production.
label: default
task: classification
positive_label: 1               # a default: the model scores P(default)
threshold: 0.5                  # above it the underwriter sees a decline hint
checks:
  performance:
    metrics:
      roc_auc: {min: 0.70}      # a PD model ranking barely better than 0.7 is not released
      brier: {max: 0.15}
      log_loss: {}
      accuracy: {}
    bootstrap: {samples: 50, confidence: 0.95, seed: 0}
  fairness:
    sensitive_features: [age_band]
    metrics: [selection_rate, true_positive_rate, false_positive_rate, true_negative_rate, roc_auc]
    thresholds:
      demographic_parity_difference: {max: 0.20}   # decline rates within 20 points
      true_negative_rate_ratio: {min: 0.80}        # four-fifths rule for applicants who repay
      roc_auc_ratio: {min: 0.70}                   # the model ranks within every band too
  explainability:
    permutation: {n_repeats: 3, max_rows: 1000, seed: 0, scoring: roc_auc}
    top_k: 9
    thresholds:
      max_top_feature_share: 0.6                   # no single input decides
      max_importance: {age: 0.05}                  # age informs, never dominates
  robustness:
    max_rows: 1000
    perturbations:
      - {name: noise_1pct, kind: gaussian_noise, scale: 0.01}
      - name: unseen_category_2pct
        kind: unseen_category
        fraction: 0.02
        thresholds: {max_mean_abs_change: 0.02, min_label_agreement: 0.98}
    thresholds:
      max_mean_abs_change: 0.01
      min_label_agreement: 0.99
      max_error_rate: 0.0
  reproducibility:
    sample_rows: 500
    require: [data_hash, code_ref, environment]
  champion_challenger:
    metric: roc_auc
    min_margin: -0.01           # a challenger may trade at most 0.01 AUC for stability
"""

#: The lighter standard of limited-risk triage models (a human reviews every alert).
FRAUD_SUITE = "fraud-triage"
FRAUD_SUITE_YAML = """\
description: >-
  Validation of limited-risk fraud triage models (payments model standard PMS-2): ranking on
  the hold-out month, and stability under noisy and missing inputs.
label: is_fraud
task: classification
positive_label: 1               # a confirmed fraud
threshold: 0.15                 # the alert threshold: above it a human reviews the transaction
checks:
  performance:
    metrics:
      roc_auc: {min: 0.65}      # a triage model only orders transactions for review
      average_precision: {}
    bootstrap: {samples: 50, confidence: 0.95, seed: 0}
  robustness:
    max_rows: 1000
    perturbations:
      - name: noise_5pct
        kind: gaussian_noise
        scale: 0.05
        features: [amount, distance_from_home_km]
      - {name: missing_5pct, kind: missing, fraction: 0.05}
    thresholds:
      max_mean_abs_change: 0.02
      min_label_agreement: 0.97
      max_error_rate: 0.0
"""


def _publish_suites(server: Server, actors: dict[str, Actor]) -> None:
    """val publishes the validation team's standards as suites (versioned in the server)."""
    validation = server.services.validation
    val = actors["val"]
    validation.publish_suite(
        _ctx(val),
        CREDIT_SUITE,
        SuitePublish(
            document=CREDIT_SUITE_YAML,
            reason="Model risk standard MRS-4 for high-risk credit models, as a validation "
            "suite the server runs (validation plan VP-2024-12).",
        ),
    )
    validation.publish_suite(
        _ctx(val),
        FRAUD_SUITE,
        SuitePublish(
            document=FRAUD_SUITE_YAML,
            reason="Payments model standard PMS-2 for limited-risk triage models, as a "
            "validation suite the server runs.",
        ),
    )


def _validate(
    server: Server,
    actor: Actor,
    model: str,
    number: int,
    suite: str,
    dataset: DatasetRef,
    reason: str,
) -> JobView:
    """``actor`` requests a validation run; a worker runs the queue (each run in a sandboxed
    child process) until it is empty. Returns the finished run; raises when it failed."""
    services = server.services
    requested = services.validation.request_run(
        _ctx(actor),
        model,
        number,
        ValidationCreate(suite=suite, dataset=dataset, reason=reason),
    )
    worker = validation_runner(services, name="demo-worker")
    while worker.run_once():
        pass
    job = services.validation.get_job(requested.job.id)
    if job.job.status != "succeeded":
        raise DemoError(
            f"validation run #{job.job.id} of {model} v{number} ({suite} on {job.dataset}) "
            f"ended {job.job.status}: {job.job.error or 'no error recorded'}"
        )
    if not job.job.passed:
        failed = "; ".join(
            f"{o['kind']}: {o['summary']}" for o in job.job.outcome if not o["passed"]
        )
        raise DemoError(f"validation run #{job.job.id} of {model} v{number} failed: {failed}")
    return job


def _ethics_review(server: Server, number: int) -> EvidenceCreate:
    """erin's review, after reading the fairness results the validation run recorded."""
    computed = [
        view.evidence
        for view in server.services.lifecycle.list_evidence(CREDIT_MODEL, number, "fairness")
        if view.evidence.source == "validation"
    ]
    if not computed:
        raise DemoError(f"{CREDIT_MODEL} v{number} has no fairness evidence to review")
    fairness = computed[-1]  # the latest run's
    (by_band,) = fairness.results["features"]
    disparities = by_band["disparities"]
    gap = disparities["demographic_parity_difference"]
    tnr = by_band["ratio"]["true_negative_rate"]
    checks = [
        Check(
            name="human_oversight",
            passed=True,
            details="decision support only: the credit officer decides and can override "
            "(intended use; GDPR Art. 22 is listed as out of scope)",
        ),
        Check(
            name="fairness_evidence_reviewed",
            passed=fairness.passed,
            value=f"evidence #{fairness.id}",
            details=f"validation run #{fairness.validation_job_id} across age bands: decline "
            f"rates within {gap:.2f}, repayers' approval-rate ratio {tnr:.2f}",
        ),
        Check(
            name="applicant_information",
            passed=True,
            details="adverse-action notices name the main factors (permutation importance)",
        ),
        Check(
            name="fundamental_rights_impact_assessment",
            passed=True,
            details="FRIA-2024-07 completed with the DPO; age used as an affordability factor",
        ),
    ]
    return EvidenceCreate(
        kind="ethics_review",
        passed=all(ch.passed for ch in checks),
        summary="Ethics board review: human oversight in place; across age bands decline "
        f"rates differ by {gap:.2f} and applicants who repay are approved at a ratio of "
        f"{tnr:.2f} (validation run #{fairness.validation_job_id}); applicants informed; "
        "approved for use as decision support.",
        suite=SuiteRef(
            name="ai-ethics-board-review",
            version="2024.3",
            definition={"template": "EB-T3 high-risk credit"},
        ),
        results={
            "board_meeting": "EB-2024-11",
            "outcome": "approved",
            "conditions": [],
            "fairness_evidence": fairness.id,
            "validation_run": fairness.validation_job_id,
        },
        checks=checks,
        reason=f"Ethics and fundamental-rights review of {CREDIT_MODEL} v{number} "
        "(ethics board meeting EB-2024-11).",
    )


# -- the lifecycle -----------------------------------------------------------------------------


def _record(server: Server, actor: Actor, model: str, number: int, body: EvidenceCreate) -> None:
    services = server.services
    services.lifecycle.add_evidence(
        _ctx(actor), model, number, body, services.settings.max_request_bytes
    )


def _request(
    server: Server, actor: Actor, model: str, number: int, stage: Stage, reason: str
) -> TransitionView:
    return server.services.lifecycle.request_transition(
        _ctx(actor), TransitionCreate(model=model, version=number, to_stage=stage, reason=reason)
    )


def _approve(server: Server, actor: Actor, transition: int, comment: str) -> TransitionView:
    return server.services.lifecycle.decide(
        _ctx(actor), transition, DecisionCreate(decision="approve", comment=comment)
    )


def _expect(view: TransitionView, status: str) -> TransitionView:
    if view.request.status != status:
        unmet = "; ".join(view.request.evaluation.get("unmet", []))
        raise DemoError(
            f"{view.model} v{view.version} to {view.request.to_stage} is "
            f"{view.request.status}, expected {status}: {unmet}"
        )
    return view


def _validate_credit(
    server: Server, actors: dict[str, Actor], number: int, valid_dv: int, reference: str
) -> JobView:
    """val has the server validate a credit model version on the held-out extract, sam asks
    for staging and val signs it off; erin records the ethics review."""
    val, sam, erin = actors["val"], actors["sam"], actors["erin"]
    job = _validate(
        server,
        val,
        CREDIT_MODEL,
        number,
        CREDIT_SUITE,
        DatasetRef(dataset=CREDIT_DATASET, version=valid_dv),
        f"Independent validation {reference} of {CREDIT_MODEL} v{number} on the held-out "
        "extract (validation plan VP-2024-12).",
    )
    staging = _expect(
        _request(
            server,
            sam,
            CREDIT_MODEL,
            number,
            Stage.STAGING,
            f"v{number} is ready for independent validation in staging (CR-2024-12).",
        ),
        "pending",
    )
    _expect(
        _approve(
            server,
            val,
            staging.request.id,
            f"Validation report {reference} (run #{job.job.id}): performance, reproducibility "
            "and the scan at registration pass; cleared for staging.",
        ),
        "applied",
    )
    _record(server, erin, CREDIT_MODEL, number, _ethics_review(server, number))
    return job


def _govern_credit(server: Server, actors: dict[str, Actor], valid_dv: int, challenger: int) -> int:
    """Version 1 to production with two approvers' signatures; the challenger validated
    against it, in staging, with a production request one approver has signed. Returns the id
    of that pending request."""
    morgan, avery, noor = actors["morgan"], actors["avery"], actors["noor"]
    _validate_credit(server, actors, 1, valid_dv, "VR-2024-31")
    release = _expect(
        _request(
            server,
            morgan,
            CREDIT_MODEL,
            1,
            Stage.PRODUCTION,
            "Release v1 to the retail underwriting workbench, replacing the 2019 scorecard "
            "(CR-2024-12, go-live window W47).",
        ),
        "pending",
    )
    _approve(
        server,
        avery,
        release.request.id,
        "Model risk sign-off: validation VR-2024-31 and the ethics review EB-2024-11 reviewed; "
        "approved for production.",
    )
    _expect(
        _approve(
            server,
            noor,
            release.request.id,
            "Second signature (CRO): approved for production; monitoring plan MP-2024-09 applies.",
        ),
        "applied",
    )

    # Validated now that v1 is in production: the suite's champion/challenger compares them.
    reference = f"VR-2024-3{challenger}"
    _validate_credit(server, actors, challenger, valid_dv, reference)
    pending = _expect(
        _request(
            server,
            morgan,
            CREDIT_MODEL,
            challenger,
            Stage.PRODUCTION,
            f"Replace v1 with the regularised challenger v{challenger} (CR-2024-19).",
        ),
        "pending",
    )
    _expect(
        _approve(
            server,
            avery,
            pending.request.id,
            f"Model risk sign-off for v{challenger}: validation {reference} reviewed, no loss "
            "against v1; the second signature is the CRO's.",
        ),
        "pending",
    )
    return pending.request.id


def _govern_fraud(server: Server, actors: dict[str, Actor], holdout_dv: int) -> None:
    """The fraud model through its own (limited) tier: staging needs evidence only, so sam's
    request waits until the validation run records it and then applies itself; production
    needs one approver."""
    val, sam, morgan, avery = actors["val"], actors["sam"], actors["morgan"], actors["avery"]
    staging = _expect(
        _request(
            server,
            sam,
            FRAUD_MODEL,
            1,
            Stage.STAGING,
            "Nightly run 1842 passed its checks; stage it for the fraud operations pilot.",
        ),
        "pending",
    )
    _validate(
        server,
        val,
        FRAUD_MODEL,
        1,
        FRAUD_SUITE,
        DatasetRef(dataset=FRAUD_DATASET, version=holdout_dv),
        "Validation of nightly run 1842 on the hold-out month before the fraud operations "
        "pilot (PAY-318).",
    )
    _expect(server.services.lifecycle.get_transition(staging.request.id), "applied")
    release = _expect(
        _request(
            server,
            morgan,
            FRAUD_MODEL,
            1,
            Stage.PRODUCTION,
            "Pilot in staging went well (PAY-318); release to fraud operations.",
        ),
        "pending",
    )
    _expect(
        _approve(
            server,
            avery,
            release.request.id,
            "Approved: limited-risk triage model with human review of every alert.",
        ),
        "applied",
    )


def seed(server: Server, *, train_rows: int = 5_000, validation_rows: int = 1_500) -> DemoSummary:
    """Seed the demo story through the services (see the module docstring).

    Safe to call again: when the demo model exists it changes nothing and says so. Raises
    :class:`DemoError` when demo users exist without the demo model (an interrupted seed, or a
    data directory holding other data)."""
    services = server.services
    data_dir = services.settings.data_dir
    if is_seeded(server):
        return DemoSummary(
            seeded=False,
            message="The demo is seeded already. " + FRESH_START_HINT.format(data_dir=data_dir),
            model=CREDIT_MODEL,
            version=None,
            dataset=CREDIT_DATASET,
            dataset_versions=(),
            users=tuple(
                DemoUser(p.name, p.kind, tuple(str(r) for r in p.roles), p.display_name, None)
                for p in _PEOPLE
            ),
        )
    clash = sorted({u.name for u in services.identity.list_users()} & {p.name for p in _PEOPLE})
    if clash:
        raise DemoError(
            f"users {', '.join(clash)} exist already but the demo model does not: an earlier "
            "demo seed was interrupted, or this data directory holds other data. "
            + FRESH_START_HINT.format(data_dir=data_dir)
        )

    # Everything slow or fallible happens before the first change: data and training.
    started = time.perf_counter()
    demo_data = data_dir / "demo-data"
    train = _data_file(
        demo_data / f"{CREDIT_DATASET}-train.csv",
        generate_credit_applications(train_rows, stream=1),
    )
    valid = _data_file(
        demo_data / f"{CREDIT_DATASET}-validation.csv",
        generate_credit_applications(validation_rows, stream=2),
    )
    txns = _data_file(
        demo_data / f"{FRAUD_DATASET}-train.csv",
        generate_card_transactions(max(800, train_rows * 2 // 3), stream=1),
    )
    txns_holdout = _data_file(
        demo_data / f"{FRAUD_DATASET}-holdout.csv",
        generate_card_transactions(max(600, validation_rows), stream=2),
    )
    credit = _train_credit(train, valid)
    challenger = _train_credit(train, valid, c=CHALLENGER_C)
    fraud = _train_fraud(txns, txns_holdout)

    # The story, one actor at a time; the server scans every artifact it is given.
    users, actors = _onboard(server)
    train_dv, valid_dv, version = _register_credit(server, actors, train, valid, credit)
    _, fraud_holdout_dv = _register_fraud(server, actors, txns, txns_holdout, fraud)
    v2 = _register_challenger(server, actors, challenger, train_dv, valid_dv)
    # The lifecycle: the server computes the evidence (validation runs on the held-out data);
    # the policies of each model's risk tier decide what moves when.
    _publish_suites(server, actors)
    pending = _govern_credit(server, actors, valid_dv, v2)
    _govern_fraud(server, actors, fraud_holdout_dv)
    seconds = time.perf_counter() - started
    return DemoSummary(
        seeded=True,
        message=f"Seeded the demo in {seconds:.1f} s: {CREDIT_MODEL} v{version} trained on "
        f"{CREDIT_DATASET}@{train_dv}, validated by the server on @{valid_dv}, in production "
        f"after two approvals; v{v2} awaits its second approval (transition #{pending}); "
        f"{FRAUD_MODEL} v1 in production.",
        model=CREDIT_MODEL,
        version=version,
        dataset=CREDIT_DATASET,
        dataset_versions=(train_dv, valid_dv),
        users=tuple(users),
        data_files=(train.path, valid.path, txns.path, txns_holdout.path),
        metrics=credit.metrics,
        other_models=(FRAUD_MODEL,),
        production={CREDIT_MODEL: version, FRAUD_MODEL: 1},
        pending_transition=pending,
        pending_version=v2,
        seconds=seconds,
    )


# -- the command -------------------------------------------------------------------------------


def _base_url(host: str, port: int) -> str:
    shown = host or "127.0.0.1"
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(shown).is_unspecified:  # bound to every interface
            shown = "127.0.0.1"
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def _welcome(
    console: Console, summary: DemoSummary, admin_token: str | None, url: str, data_dir: Path
) -> None:
    lines = [
        f"[bold]mlgov demo[/] at [link={url}]{url}[/]  ·  API docs: {url}/docs",
        f"Data directory: {escape(str(data_dir))}",
        escape(summary.message),
    ]
    if summary.metrics:
        shown = ", ".join(f"{k} {v:.3f}" for k, v in summary.metrics.items())
        lines.append(
            f"Metrics of {summary.model} v{summary.version} on the validation extract: {shown}"
        )
    console.print(Panel("\n".join(lines), title="Welcome", expand=False))
    # Secrets are printed unwrapped (soft_wrap, a table at least as wide as its rows) so a
    # narrow terminal never splits a token and copy-paste keeps working.
    if admin_token:
        console.print(
            f"[bold]Admin token[/] (shown once, keep it): [green]{admin_token}[/]", soft_wrap=True
        )
    else:
        console.print("The admin token was shown on the first start of this data directory.")

    # A plain aligned table rather than a rich.Table: that would shorten the tokens with "…"
    # in a narrow terminal; these lines soft-wrap instead and copy-paste stays intact.
    rows = [("user", "kind", "roles", "token")]
    rows += [(u.name, u.kind, ", ".join(u.roles), u.token or "-") for u in summary.users]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    console.print("[bold]Demo users[/] (their tokens are shown once, now):")
    for i, row in enumerate(rows):
        line = "  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False))
        line += "  " + row[3]
        console.print(
            line, soft_wrap=True, highlight=False, markup=False, style="bold" if i == 0 else None
        )

    tokens = {u.name: u.token for u in summary.users}
    viewer = tokens.get("vic") or "<token>"
    scientist = tokens.get("sam") or "<token>"
    console.print("[bold]Try[/] (as vic, the viewer, then as sam, the data scientist):")
    for command in (
        f'curl -H "Authorization: Bearer {viewer}" {url}/api/v1/models',
        f"mlgov login --url {url} --token {scientist}",
        "mlgov models list",
    ):
        console.print(f"  {command}", soft_wrap=True, highlight=False, markup=False)
    if summary.pending_transition is not None:
        console.print(
            f"[bold]The lifecycle[/]: {summary.model} v{summary.version} is in production; "
            f"v{summary.pending_version} waits in the approvals inbox for a second approver "
            "(noor):"
        )
    for command in (
        "mlgov transitions --status pending",
        f"mlgov history {summary.model}",
        f"mlgov evidence list {summary.model} {summary.version or 1}",
        "mlgov validations",
    ):
        console.print(f"  {command}", soft_wrap=True, highlight=False, markup=False)


def main(data_dir: Path, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Build the server on ``data_dir``, seed the demo on its first start, print how to use
    it, and serve it with uvicorn until interrupted."""
    import uvicorn  # only the serving command needs it

    console = Console()
    # One machine, one process: the server also delivers governance webhooks.
    settings = dataclasses.replace(Settings.from_env(data_dir), embedded_worker=True)
    server = build_server(settings)
    url = _base_url(host, port)
    try:
        if is_seeded(server):
            console.print(
                Panel(
                    f"[bold]mlgov demo[/] at {url}  ·  API docs: {url}/docs\n"
                    "The demo is seeded already; the admin token and the demo users' tokens "
                    "were shown on the first start.\n"
                    + escape(FRESH_START_HINT.format(data_dir=settings.data_dir)),
                    title="Welcome back",
                    expand=False,
                )
            )
        else:
            try:
                with console.status(
                    "Seeding the demo: generating data, training the models, running the "
                    "validation suites (about half a minute)…"
                ):
                    summary = seed(server)
            except DemoError as exc:
                console.print(f"[red]Cannot seed the demo:[/] {escape(str(exc))}")
                raise SystemExit(1) from None
            _welcome(console, summary, server.bootstrap_token, url, settings.data_dir)
        freeze_startup_objects()
        uvicorn.run(server.app, host=host, port=port)
    finally:
        server.services.db.dispose()

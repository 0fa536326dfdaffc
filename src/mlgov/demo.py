"""The demo behind ``make demo`` / ``mlgov demo``: a server on a data directory, seeded with a
believable governance story, then served.

:func:`seed` tells the story the way real people would, through the services and with their
own identities: the bootstrap ``admin`` onboards the team (one user per role and the
``ci-pipeline`` service account, each with an API token); ``dana`` (data engineer) registers
the ``credit-applications`` dataset with a training and a held-out validation version,
generated deterministically as CSV files under ``<data dir>/demo-data/`` and described by full
datasheets; ``sam`` (data scientist) registers the high-risk ``credit-default-risk`` model and
its first version, a real scikit-learn pipeline trained on the training CSV, serialised with
skops, with metrics measured on the validation CSV and lineage to both dataset versions. A
second, smaller model (``fraud-alerts``) is registered by the ``ci-pipeline`` service account
so the catalog has more than one entry. Every change carries a reason and lands in the audit
trail under the actor who made it.

Then the lifecycle, under each model's risk-tier policy. ``val`` (validator) loads each stored
artifact back from the registry and records evidence computed on the registered data: a skops
security scan, performance (ROC AUC on the validation extract), reproducibility (the training
file's hash against its dataset version, retraining with the recorded hyperparameters gives
identical predictions), fairness across age bands (four-fifths rule), permutation importance
and robustness to input noise; ``erin`` (ethics reviewer) records the ethics review. ``sam``
asks for staging and ``val`` signs it off; ``morgan`` (model manager) asks for production and
two approvers, ``avery`` and ``noor``, sign: version 1 of the credit model is in production.
A regularised challenger (version 2) goes through the same validation and waits in the
approvals inbox with one of its two signatures. ``fraud-alerts`` reaches production under the
``limited`` policy (evidence only for staging, one approver for production). Nobody records
evidence on or approves a version they created, nor approves a request they made.

scikit-learn and skops are imported when the demo is seeded, not when this module is, so
commands that merely import it stay quick.

:func:`main` builds the server, seeds it on the first start, prints the URL, the admin token
(shown once) and the demo users' tokens, and runs uvicorn. Seeding is skipped when the demo
model exists already: tokens cannot be shown again then (only their hashes are stored).
"""

from __future__ import annotations

import base64
import contextlib
import csv
import dataclasses
import hashlib
import importlib.metadata
import io
import ipaddress
import platform
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

from mlgov.config import Settings
from mlgov.context import Actor, Context
from mlgov.errors import NotFound
from mlgov.identity.permissions import Role
from mlgov.identity.service import actor_of
from mlgov.lifecycle.schemas import (
    AttachmentIn,
    Check,
    DatasetRef,
    DecisionCreate,
    EvidenceCreate,
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
from mlgov.server import Server, build_server, freeze_startup_objects
from mlgov.storage import StoredArtifact

__all__ = [
    "CREDIT_DATASET",
    "CREDIT_FEATURES",
    "CREDIT_MODEL",
    "DEMO_USERS",
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
CODE_REPOSITORY = "https://git.example.com/retail-credit/credit-default-risk"
FRAUD_REPOSITORY = "https://git.example.com/payments/fraud-alerts"
PACKAGES = ("scikit-learn", "numpy", "scipy", "skops")
FRESH_START_HINT = (
    "Tokens are shown only when they are created: the admin token on the first start, the demo "
    "users' tokens when the demo is seeded. For a fresh demo, stop the server and delete the "
    "data directory ({data_dir})."
)


class DemoError(RuntimeError):
    """The demo cannot be seeded on this data directory (e.g. an interrupted earlier seed)."""


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
_CREDIT_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("application_id", "string", "Pseudonymous application key (not a model input)"),
    *CREDIT_FEATURES,
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
        "default": default,
    }


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


def _store(server: Server, blob: bytes) -> StoredArtifact:
    services = server.services
    with services.store.writer(services.settings.max_artifact_bytes) as writer:
        writer.write(blob)
        return writer.commit()


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
            "present; age is kept for fairness testing and is a legitimate affordability factor."
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


def _fraud_datasheet(rows: int) -> Datasheet:
    return Datasheet(
        motivation="Created to train the card-fraud alerting model of the payments team.",
        composition=(
            f"{rows} card transactions with amount, time, card-present flag, distance from the "
            "cardholder's address, recent activity, merchant category and the confirmed fraud "
            "label (chargebacks and cardholder disputes). Pseudonymous transaction keys only."
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
class _DataFile:
    path: Path
    sha256: str
    rows: int
    columns: Columns


@dataclass(frozen=True)
class _Trained:
    """A fitted model, stored, with what its version metadata needs."""

    artifact: StoredArtifact
    hyperparameters: dict[str, Any]
    metrics: dict[str, float]
    fit_columns: Columns  # the rows it was fitted on: the signature's ranges and categories


def _data_file(path: Path, columns: Columns) -> _DataFile:
    rows = len(next(iter(columns.values())))
    return _DataFile(path=path, sha256=write_csv(path, columns), rows=rows, columns=columns)


def _credit_classifier(c: float, max_iter: int = 1_000) -> Any:
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

    return LogisticRegression(C=c, max_iter=max_iter)


def _train_credit(
    server: Server, train: _DataFile, valid: _DataFile, *, c: float = 1.0
) -> _Trained:
    classifier = _credit_classifier(c)
    model = _pipeline(CREDIT_FEATURES, classifier)
    model.fit(_matrix(train.columns, CREDIT_FEATURES), train.columns["default"])
    p_valid = model.predict_proba(_matrix(valid.columns, CREDIT_FEATURES))[:, 1]
    return _Trained(
        artifact=_store(server, _serialise(model)),
        hyperparameters={
            **_json_params(classifier),
            "numeric_scaling": "StandardScaler",
            "categorical_encoding": "OneHotEncoder(handle_unknown='ignore')",
            "decision_threshold": CREDIT_THRESHOLD,
        },
        metrics=_metrics(valid.columns["default"], p_valid, CREDIT_THRESHOLD),
        fit_columns=train.columns,
    )


def _train_fraud(server: Server, txns: _DataFile) -> _Trained:
    from sklearn.ensemble import HistGradientBoostingClassifier  # type: ignore[import-untyped]

    cut = txns.rows * 3 // 4  # rows are i.i.d.: the last quarter is the hold-out
    fit = {k: v[:cut] for k, v in txns.columns.items()}
    hold = {k: v[cut:] for k, v in txns.columns.items()}
    booster = HistGradientBoostingClassifier(
        max_iter=30, max_depth=3, min_samples_leaf=40, early_stopping=False, random_state=7
    )
    model = _pipeline(FRAUD_FEATURES, booster)
    model.fit(_matrix(fit, FRAUD_FEATURES), fit["is_fraud"])
    p_hold = model.predict_proba(_matrix(hold, FRAUD_FEATURES))[:, 1]
    return _Trained(
        artifact=_store(server, _serialise(model)),
        hyperparameters={**_json_params(booster), "alert_threshold": FRAUD_THRESHOLD},
        metrics=_metrics(hold["is_fraud"], p_hold, FRAUD_THRESHOLD),
        fit_columns=fit,
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
    """sam registers a version of the credit model; returns its number."""
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
        trained.artifact,
        filename,
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
    server: Server, actors: dict[str, Actor], txns: _DataFile, trained: _Trained
) -> None:
    """A second, smaller model whose version comes from automation (the service account)."""
    registry = server.services.registry
    dana, sam, ci = actors["dana"], actors["sam"], actors["ci-pipeline"]
    registry.create_dataset(
        _ctx(dana),
        DatasetCreate(
            name=FRAUD_DATASET,
            description="Card authorisations with confirmed-fraud labels.",
            owner_team="payments",
            reason="Register the card transaction extract the fraud team trains on (PAY-311).",
        ),
    )
    dv = registry.create_dataset_version(
        _ctx(dana),
        FRAUD_DATASET,
        DatasetVersionCreate(
            content_sha256=txns.sha256,
            uri=txns.path.resolve().as_uri(),
            schema=_schema(_FRAUD_COLUMNS),
            row_count=txns.rows,
            datasheet=_fraud_datasheet(txns.rows),
            reason="Monthly extract of card authorisations with confirmed fraud labels.",
        ),
    ).version
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
                f"Nightly retraining on the first 75 % of {FRAUD_DATASET}@{dv}; metrics on the "
                "remaining 25 % (hold-out), accuracy and f1 at the alert threshold "
                f"{FRAUD_THRESHOLD}."
            ),
            datasets=[LineageRef(dataset=FRAUD_DATASET, version=dv, role="training")],
            reason=f"Scheduled retraining run on {FRAUD_DATASET}@{dv} (pipeline run 1842).",
        ),
        trained.artifact,
        f"{FRAUD_MODEL}-v1.skops",
    )


# -- validation evidence -----------------------------------------------------------------------

#: Acceptance criteria of the model validation team, fixed before anything is measured.
CREDIT_MIN_AUC = 0.70  # a PD model ranking applicants barely better than 0.7 is not released
FRAUD_MIN_AUC = 0.65  # a triage model that only orders transactions for human review
FOUR_FIFTHS = 0.8  # lowest approval rate of an age band over the highest (four-fifths rule)
MIN_GROUP_AUC = 0.6  # the model must rank within each age band too, not only across them
NOISE_SCALE = 0.01  # robustness: Gaussian noise of 1 % of each numeric feature's std
MAX_FLIP_RATE = 0.01  # decisions that flip at the threshold under that noise
MAX_MEAN_SHIFT = 0.01  # mean absolute change of the predicted probability
AGE_BANDS = (("18-29", 18, 29), ("30-44", 30, 44), ("45-59", 45, 59), ("60+", 60, 200))
#: Types skops does not trust by default that the validation team reviewed: plain data
#: holders of scikit-learn that execute no code when loaded.
REVIEWED_TYPES = frozenset({"sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"})


@dataclass(frozen=True)
class _Candidate:
    """A registered version as its validator sees it: the stored artifact, loaded with skops
    from the bytes the registry serves, and the data it is judged on (read back from the
    registered files)."""

    model: str
    version: int
    blob: bytes
    untrusted: list[str]
    estimator: Any
    features: Sequence[tuple[str, str, str]]
    threshold: float
    columns: Columns  # the evaluation rows
    y: NDArray[Any]
    dataset: DatasetRef  # where the evaluation rows come from
    proba: NDArray[np.float64]

    @property
    def X(self) -> NDArray[Any]:
        return _matrix(self.columns, self.features)


def _read_csv(path: Path, specs: Sequence[tuple[str, str, str]]) -> Columns:
    """A CSV written by :func:`write_csv`, typed by its columns' specs."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    dtypes = {"integer": np.int64, "double": np.float64}
    return {
        name: np.array([row[name] for row in rows], dtype=dtypes.get(kind, object))
        for name, kind, _ in specs
    }


def _candidate(
    server: Server,
    model: str,
    number: int,
    features: Sequence[tuple[str, str, str]],
    label: str,
    threshold: float,
    columns: Columns,
    dataset: DatasetRef,
) -> _Candidate:
    import skops.io

    version = server.services.registry.get_version(model, number)
    blob = b"".join(server.services.store.open(version.artifact_sha256))
    untrusted = list(skops.io.get_untrusted_types(data=blob))
    reviewed = [t for t in untrusted if t in REVIEWED_TYPES]
    estimator = skops.io.loads(blob, trusted=reviewed)  # refuses anything unreviewed
    proba = estimator.predict_proba(_matrix(columns, features))[:, 1]
    return _Candidate(
        model=model,
        version=number,
        blob=blob,
        untrusted=untrusted,
        estimator=estimator,
        features=features,
        threshold=threshold,
        columns=columns,
        y=columns[label],
        dataset=dataset,
        proba=proba,
    )


def _csv_attachment(
    name: str, header: Sequence[str], rows: Sequence[Sequence[Any]]
) -> AttachmentIn:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return AttachmentIn(
        name=name,
        media_type="text/csv",
        content_base64=base64.b64encode(buffer.getvalue().encode()).decode(),
    )


def _suite(name: str, **definition: Any) -> SuiteRef:
    return SuiteRef(name=name, version="2024.3", definition=definition)


def _security_scan(c: _Candidate, sha256: str) -> EvidenceCreate:
    unreviewed = sorted(set(c.untrusted) - REVIEWED_TYPES)
    digest = hashlib.sha256(c.blob).hexdigest()
    checks = [
        Check(
            name="artifact_sha256_matches",
            passed=digest == sha256,
            value=digest,
            details="the bytes served equal the registered hash",
        ),
        Check(
            name="unreviewed_untrusted_types",
            passed=not unreviewed,
            value=len(unreviewed),
            threshold=0,
            details="skops.io.get_untrusted_types: types whose loading could run code",
        ),
    ]
    passed = all(ch.passed for ch in checks)
    if not c.untrusted:
        summary = "skops scan: no untrusted types; the artifact loads without trusting anything"
    else:
        summary = (
            f"skops scan: {len(c.untrusted)} type(s) skops does not trust by default, "
            f"{len(unreviewed)} of them not on the reviewed list"
        )
    return EvidenceCreate(
        kind="security_scan",
        passed=passed,
        summary=summary,
        suite=_suite("skops-untrusted-types", tool="skops.io.get_untrusted_types"),
        results={
            "untrusted_types": c.untrusted,
            "reviewed_types": sorted(set(c.untrusted) & REVIEWED_TYPES),
            "artifact_bytes": len(c.blob),
        },
        checks=checks,
        reason=f"Security scan of the {c.model} v{c.version} artifact before it is loaded "
        "anywhere else (validation plan step 1).",
    )


def _performance(c: _Candidate, recorded: dict[str, float], minimum: float) -> EvidenceCreate:
    measured = _metrics(c.y, c.proba, c.threshold)
    auc = measured["roc_auc"]
    checks = [
        Check(name="roc_auc", passed=auc >= minimum, value=auc, threshold=minimum),
        Check(
            name="roc_auc_matches_recorded",
            passed=abs(auc - recorded.get("roc_auc", -1.0)) <= 1e-6,
            value=recorded.get("roc_auc"),
            details="the developer's reported figure, reproduced from the stored artifact",
        ),
    ]
    passed = all(ch.passed for ch in checks)
    return EvidenceCreate(
        kind="performance",
        passed=passed,
        summary=f"ROC AUC {auc:.3f} on {len(c.y)} rows of {c.dataset.dataset}@"
        f"{c.dataset.version} (minimum {minimum}); brier {measured['brier']:.3f}",
        suite=_suite("holdout-performance", metrics=sorted(measured), threshold=c.threshold),
        dataset=c.dataset,
        results={**measured, "rows": len(c.y), "positives": int(np.sum(c.y))},
        checks=checks,
        reason=f"Independent performance test of {c.model} v{c.version} on held-out data "
        "(validation plan step 2).",
    )


def _fairness(c: _Candidate) -> EvidenceCreate:
    from sklearn.metrics import roc_auc_score

    age = c.columns["age"]
    approved = c.proba < c.threshold  # below the threshold no decline hint is shown
    groups: dict[str, dict[str, Any]] = {}
    for band, low, high in AGE_BANDS:
        g = (age >= low) & (age <= high)
        y, p = c.y[g], c.proba[g]
        declined = p >= c.threshold
        groups[band] = {
            "rows": int(g.sum()),
            "default_rate": round(float(y.mean()), 4),
            "approval_rate": round(float(approved[g].mean()), 4),
            "roc_auc": round(float(roc_auc_score(y, p)), 4) if 0 < y.sum() < len(y) else None,
            "decline_rate_of_defaulters": round(float(declined[y == 1].mean()), 4)
            if (y == 1).any()
            else None,
            "decline_rate_of_repayers": round(float(declined[y == 0].mean()), 4)
            if (y == 0).any()
            else None,
        }
    rates = [g["approval_rate"] for g in groups.values() if g["rows"]]
    ratio = round(min(rates) / max(rates), 4)
    aucs = [g["roc_auc"] for g in groups.values() if g["roc_auc"] is not None]
    checks = [
        Check(
            name="approval_rate_ratio",
            passed=ratio >= FOUR_FIFTHS,
            value=ratio,
            threshold=FOUR_FIFTHS,
            details="lowest over highest approval rate across age bands (four-fifths rule)",
        ),
        Check(
            name="min_group_roc_auc",
            passed=min(aucs) >= MIN_GROUP_AUC,
            value=min(aucs),
            threshold=MIN_GROUP_AUC,
        ),
    ]
    passed = all(ch.passed for ch in checks)
    header = ["age_band", *next(iter(groups.values()))]
    shown = ", ".join(f"{band} {g['approval_rate']:.2f}" for band, g in groups.items())
    return EvidenceCreate(
        kind="fairness",
        passed=passed,
        summary=f"Approval rates by age band: {shown}; ratio {ratio:.2f} (four-fifths rule: "
        f"at least {FOUR_FIFTHS})",
        suite=_suite("group-fairness", sensitive_attribute="age", bands=[b for b, *_ in AGE_BANDS]),
        dataset=c.dataset,
        results={"sensitive_attribute": "age", "groups": groups, "approval_rate_ratio": ratio},
        checks=checks,
        attachments=[
            _csv_attachment(
                "fairness_by_age_band.csv",
                header,
                [[band, *g.values()] for band, g in groups.items()],
            )
        ],
        reason=f"Fairness assessment of {c.model} v{c.version} across age bands, the one "
        "protected attribute the data holds (validation plan step 3).",
    )


def _explainability(c: _Candidate, sensitive: str | None) -> EvidenceCreate:
    from sklearn.inspection import permutation_importance  # type: ignore[import-untyped]

    found = permutation_importance(
        c.estimator, c.X, c.y, scoring="roc_auc", n_repeats=5, random_state=0
    )
    names = [name for name, _, _ in c.features]
    mean = {n: round(float(v), 5) for n, v in zip(names, found.importances_mean, strict=True)}
    std = {n: round(float(v), 5) for n, v in zip(names, found.importances_std, strict=True)}
    ranked = sorted(names, key=lambda n: -mean[n])
    checks = [
        Check(
            name="importance_of_every_input",
            passed=len(mean) == len(c.features),
            value=len(mean),
            threshold=len(c.features),
        ),
        Check(
            name="relies_on_its_inputs",
            passed=mean[ranked[0]] > 0.01,
            value=mean[ranked[0]],
            threshold=0.01,
            details="the top input's AUC drop when permuted",
        ),
    ]
    if sensitive is not None:
        checks.append(
            Check(
                name="sensitive_attribute_not_dominant",
                passed=ranked[0] != sensitive,
                value=ranked.index(sensitive) + 1,
                details=f"rank of {sensitive} among the inputs",
            )
        )
    passed = all(ch.passed for ch in checks)
    top = ", ".join(f"{n} {mean[n]:.3f}" for n in ranked[:3])
    return EvidenceCreate(
        kind="explainability",
        passed=passed,
        summary=f"Permutation importance (ROC AUC drop, 5 repeats): {top}",
        suite=_suite("permutation-importance", scoring="roc_auc", n_repeats=5, random_state=0),
        dataset=c.dataset,
        results={"importances_mean": mean, "importances_std": std, "ranking": ranked},
        checks=checks,
        attachments=[
            _csv_attachment(
                "permutation_importance.csv",
                ["feature", "importance_mean", "importance_std"],
                [[n, mean[n], std[n]] for n in ranked],
            )
        ],
        reason=f"Global explanation of {c.model} v{c.version} for the model card and the "
        "adverse-action reasons (validation plan step 4).",
    )


def _robustness(c: _Candidate) -> EvidenceCreate:
    rng = np.random.default_rng([DATA_SEED, c.version])
    noisy = dict(c.columns)
    perturbed = []
    for name, kind, _ in c.features:
        values = c.columns[name]
        if kind == "string" or len(np.unique(values)) <= 2:  # categories and flags stay
            continue
        values = values.astype(np.float64)
        noisy[name] = values + rng.normal(0.0, NOISE_SCALE * float(values.std()), len(values))
        perturbed.append(name)
    p = c.estimator.predict_proba(_matrix(noisy, c.features))[:, 1]
    shift = np.abs(p - c.proba)
    flips = float(np.mean((p >= c.threshold) != (c.proba >= c.threshold)))
    checks = [
        Check(
            name="decision_flip_rate",
            passed=flips <= MAX_FLIP_RATE,
            value=round(flips, 5),
            threshold=MAX_FLIP_RATE,
        ),
        Check(
            name="mean_probability_shift",
            passed=float(shift.mean()) <= MAX_MEAN_SHIFT,
            value=round(float(shift.mean()), 6),
            threshold=MAX_MEAN_SHIFT,
        ),
    ]
    passed = all(ch.passed for ch in checks)
    return EvidenceCreate(
        kind="robustness",
        passed=passed,
        summary=f"Gaussian noise of {NOISE_SCALE:.0%} of each numeric input's std: "
        f"{flips:.2%} of decisions flip, mean probability shift {shift.mean():.4f}",
        suite=_suite("input-noise-stability", noise_scale=NOISE_SCALE, perturbed=perturbed),
        dataset=c.dataset,
        results={
            "perturbed_inputs": perturbed,
            "decision_flip_rate": round(flips, 5),
            "mean_probability_shift": round(float(shift.mean()), 6),
            "max_probability_shift": round(float(shift.max()), 6),
        },
        checks=checks,
        reason=f"Stability of {c.model} v{c.version} under small input perturbations "
        "(validation plan step 5).",
    )


def _reproducibility(
    server: Server, c: _Candidate, train: _DataFile, train_ref: DatasetRef
) -> EvidenceCreate:
    """Retrain a credit model version from the registered training file with its recorded
    hyperparameters and compare: the same data (hash), code and environment recorded,
    identical predictions."""
    registry = server.services.registry
    version = registry.get_version(c.model, c.version)
    registered = registry.get_dataset_version(train_ref.dataset, train_ref.version)
    on_disk = hashlib.sha256(train.path.read_bytes()).hexdigest()
    columns = _read_csv(train.path, _CREDIT_COLUMNS)
    hyper = version.hyperparameters
    again = _pipeline(c.features, _credit_classifier(hyper["C"], hyper["max_iter"]))
    again.fit(_matrix(columns, c.features), columns["default"])
    retrained = again.predict_proba(c.X)[:, 1]
    twice = c.estimator.predict_proba(c.X)[:, 1]
    difference = float(np.max(np.abs(retrained - c.proba)))
    recorded_sklearn = version.environment.get("packages", {}).get("scikit-learn")
    checks = [
        Check(
            name="training_data_hash_matches",
            passed=on_disk == registered.content_sha256,
            value=on_disk,
            details=f"sha256 of {train.path.name} against {train_ref.dataset}@{train_ref.version}",
        ),
        Check(
            name="code_ref_recorded",
            passed=bool(version.code_ref.get("repository") and version.code_ref.get("commit")),
            value=version.code_ref.get("commit"),
        ),
        Check(
            name="environment_recorded",
            passed=recorded_sklearn == importlib.metadata.version("scikit-learn"),
            value=recorded_sklearn,
            details="scikit-learn of the recorded environment, the one retraining ran on",
        ),
        Check(
            name="retrained_predictions_identical",
            passed=difference <= 1e-9,
            value=difference,
            threshold=1e-9,
            details="max |p_retrained - p_artifact| on the validation rows",
        ),
        Check(
            name="repeated_predictions_identical",
            passed=bool(np.array_equal(twice, c.proba)),
            value=bool(np.array_equal(twice, c.proba)),
        ),
    ]
    passed = all(ch.passed for ch in checks)
    return EvidenceCreate(
        kind="reproducibility",
        passed=passed,
        summary=f"Retrained from {train_ref.dataset}@{train_ref.version} (hash verified) with "
        f"the recorded hyperparameters: predictions differ by at most {difference:.1e}",
        suite=_suite("retrain-and-compare", tolerance=1e-9),
        dataset=train_ref,
        results={
            "training_sha256": on_disk,
            "code_ref": version.code_ref,
            "environment": version.environment,
            "max_abs_difference": difference,
            "rows_compared": len(c.y),
        },
        checks=checks,
        reason=f"Reproduction of {c.model} v{c.version} from its recorded data, code and "
        "environment (validation plan step 6).",
    )


def _ethics_review(c: _Candidate, fairness: EvidenceCreate) -> EvidenceCreate:
    ratio = fairness.results["approval_rate_ratio"]
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
            value=ratio,
            details="approval-rate ratio across age bands from the validator's fairness test",
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
        summary="Ethics board review: human oversight in place, age-band approval rates "
        f"within the four-fifths rule (ratio {ratio:.2f}), applicants informed; approved for "
        "use as decision support.",
        suite=_suite("ai-ethics-board-review", template="EB-T3 high-risk credit"),
        results={"board_meeting": "EB-2024-11", "outcome": "approved", "conditions": []},
        checks=checks,
        reason=f"Ethics and fundamental-rights review of {c.model} v{c.version} "
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
    server: Server,
    actors: dict[str, Actor],
    number: int,
    train: _DataFile,
    valid: _DataFile,
    train_dv: int,
    valid_dv: int,
) -> None:
    """val validates a credit model version from its stored artifact and the registered data,
    staging's evidence first; sam asks for staging and val signs it off; then the rest of
    production's evidence, and erin's ethics review."""
    val, sam, erin = actors["val"], actors["sam"], actors["erin"]
    version = server.services.registry.get_version(CREDIT_MODEL, number)
    c = _candidate(
        server,
        CREDIT_MODEL,
        number,
        CREDIT_FEATURES,
        "default",
        CREDIT_THRESHOLD,
        _read_csv(valid.path, _CREDIT_COLUMNS),
        DatasetRef(dataset=CREDIT_DATASET, version=valid_dv),
    )
    train_ref = DatasetRef(dataset=CREDIT_DATASET, version=train_dv)
    for body in (
        _security_scan(c, version.artifact_sha256),
        _performance(c, version.metrics, CREDIT_MIN_AUC),
        _reproducibility(server, c, train, train_ref),
    ):
        _record(server, val, CREDIT_MODEL, number, body)
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
            f"Validation report VR-2024-{30 + number}: performance, reproducibility and the "
            "security scan pass; cleared for staging.",
        ),
        "applied",
    )
    fairness = _fairness(c)
    for body in (fairness, _explainability(c, "age"), _robustness(c)):
        _record(server, val, CREDIT_MODEL, number, body)
    _record(server, erin, CREDIT_MODEL, number, _ethics_review(c, fairness))


def _govern_credit(
    server: Server,
    actors: dict[str, Actor],
    train: _DataFile,
    valid: _DataFile,
    train_dv: int,
    valid_dv: int,
    challenger: int,
) -> int:
    """Version 1 to production with two approvers' signatures; the challenger validated,
    in staging, with a production request one approver has signed. Returns the id of that
    pending request."""
    morgan, avery, noor = actors["morgan"], actors["avery"], actors["noor"]
    _validate_credit(server, actors, 1, train, valid, train_dv, valid_dv)
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

    _validate_credit(server, actors, challenger, train, valid, train_dv, valid_dv)
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
            f"Model risk sign-off for v{challenger}: validation VR-2024-3{challenger} "
            "reviewed; the second signature is the CRO's.",
        ),
        "pending",
    )
    return pending.request.id


def _govern_fraud(server: Server, actors: dict[str, Actor], txns: _DataFile) -> None:
    """The fraud model through its own (limited) tier: staging needs evidence only,
    production one approver."""
    val, sam, morgan, avery = actors["val"], actors["sam"], actors["morgan"], actors["avery"]
    version = server.services.registry.get_version(FRAUD_MODEL, 1)
    columns = _read_csv(txns.path, _FRAUD_COLUMNS)
    cut = txns.rows * 3 // 4  # the hold-out quarter the version's metrics were measured on
    c = _candidate(
        server,
        FRAUD_MODEL,
        1,
        FRAUD_FEATURES,
        "is_fraud",
        FRAUD_THRESHOLD,
        {k: v[cut:] for k, v in columns.items()},
        DatasetRef(dataset=FRAUD_DATASET, version=1),
    )
    for body in (
        _security_scan(c, version.artifact_sha256),
        _performance(c, version.metrics, FRAUD_MIN_AUC),
    ):
        _record(server, val, FRAUD_MODEL, 1, body)
    _expect(
        _request(
            server,
            sam,
            FRAUD_MODEL,
            1,
            Stage.STAGING,
            "Nightly run 1842 passed its checks; stage it for the fraud operations pilot.",
        ),
        "applied",
    )
    _record(server, val, FRAUD_MODEL, 1, _robustness(c))
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

    # Everything slow or fallible happens before the first change: data, training, storage.
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
        demo_data / f"{FRAUD_DATASET}.csv",
        generate_card_transactions(max(800, (train_rows + validation_rows) * 2 // 3), stream=1),
    )
    credit = _train_credit(server, train, valid)
    challenger = _train_credit(server, train, valid, c=CHALLENGER_C)
    fraud = _train_fraud(server, txns)

    # The story, one actor at a time.
    users, actors = _onboard(server)
    train_dv, valid_dv, version = _register_credit(server, actors, train, valid, credit)
    _register_fraud(server, actors, txns, fraud)
    v2 = _register_challenger(server, actors, challenger, train_dv, valid_dv)
    # The lifecycle: validators record evidence computed from the stored artifacts and the
    # registered data; the policies of each model's risk tier decide what moves when.
    pending = _govern_credit(server, actors, train, valid, train_dv, valid_dv, v2)
    _govern_fraud(server, actors, txns)
    seconds = time.perf_counter() - started
    return DemoSummary(
        seeded=True,
        message=f"Seeded the demo in {seconds:.1f} s: {CREDIT_MODEL} v{version} trained on "
        f"{CREDIT_DATASET}@{train_dv}, validated on @{valid_dv}, in production after "
        f"validation and two approvals; v{v2} awaits its second approval (transition "
        f"#{pending}); {FRAUD_MODEL} v1 in production.",
        model=CREDIT_MODEL,
        version=version,
        dataset=CREDIT_DATASET,
        dataset_versions=(train_dv, valid_dv),
        users=tuple(users),
        data_files=(train.path, valid.path, txns.path),
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
        lines.append(f"Validation metrics of {summary.model} v{summary.version}: {shown}")
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
                    "Seeding the demo: generating data, training and validating the models…"
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

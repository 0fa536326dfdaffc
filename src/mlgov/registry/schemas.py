"""Validated inputs of the registry (used by the API as request bodies and by the SDK's docs)."""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, field_validator, model_validator

from mlgov.schemas import Input, LongText, Name, Reasoned, ShortText, Tag


class RiskTier(StrEnum):
    UNACCEPTABLE = "unacceptable"
    HIGH = "high"
    LIMITED = "limited"
    MINIMAL = "minimal"


RISK_ORDER = {
    RiskTier.MINIMAL: 0,
    RiskTier.LIMITED: 1,
    RiskTier.HIGH: 2,
    RiskTier.UNACCEPTABLE: 3,
}


class Stage(StrEnum):
    DEVELOPMENT = "development"
    STAGING = "staging"
    PRODUCTION = "production"
    ARCHIVED = "archived"


class ArtifactFormat(StrEnum):
    SKOPS = "skops"
    ONNX = "onnx"
    XGBOOST = "xgboost"
    LIGHTGBM = "lightgbm"
    MLFLOW = "mlflow"
    PICKLE = "pickle"
    OTHER = "other"


Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
# Stored in a 256-character column (see registry.models): ShortText's 512 would not fit.
Text256 = Annotated[str, StringConstraints(max_length=256)]
# JSON has no NaN or Infinity (Python's parser takes them, PostgreSQL's JSON refuses them).
Finite = Annotated[float, Field(allow_inf_nan=False)]


class ModelCreate(Reasoned):
    name: Name
    description: LongText = ""
    owner_team: Name
    risk_tier: RiskTier
    domain: Text256 = ""
    intended_use: LongText = ""
    out_of_scope_uses: list[ShortText] = Field(default_factory=list, max_length=100)
    tags: list[Tag] = Field(default_factory=list, max_length=50)


class ModelUpdate(Reasoned):
    description: LongText | None = None
    owner_team: Name | None = None
    risk_tier: RiskTier | None = None
    domain: Text256 | None = None
    intended_use: LongText | None = None
    out_of_scope_uses: list[ShortText] | None = Field(default=None, max_length=100)
    tags: list[Tag] | None = Field(default=None, max_length=50)


class FeatureSpec(Input):
    name: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    type: Literal["double", "float", "integer", "long", "boolean", "string", "datetime", "tensor"]
    description: ShortText = ""
    nullable: bool = False
    min: Finite | None = None
    max: Finite | None = None
    categories: list[str | int] | None = Field(default=None, max_length=10_000)
    shape: list[int] | None = None

    @model_validator(mode="after")
    def _range(self) -> FeatureSpec:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class Signature(Input):
    inputs: list[FeatureSpec] = Field(min_length=1, max_length=10_000)
    outputs: list[FeatureSpec] = Field(default_factory=list, max_length=10_000)

    @field_validator("inputs", "outputs")
    @classmethod
    def _unique(cls, specs: list[FeatureSpec]) -> list[FeatureSpec]:
        seen: set[str] = set()
        for spec in specs:
            if spec.name in seen:
                raise ValueError(f"feature {spec.name!r} is listed twice")
            seen.add(spec.name)
        return specs


class CodeRef(Input):
    repository: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    commit: Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{7,64}$")]
    path: ShortText = ""


class Environment(Input):
    python: Annotated[str, StringConstraints(max_length=64)] = ""
    packages: dict[Annotated[str, StringConstraints(max_length=128)], ShortText] = Field(
        default_factory=dict, max_length=2000
    )


class LineageRef(Input):
    dataset: Name
    version: int = Field(ge=1, le=2**31 - 1)  # a version number, as in the URL
    role: Literal["training", "validation", "test"] = "training"


class VersionMetadata(Reasoned):
    """The ``metadata`` part of a version upload."""

    format: ArtifactFormat
    signature: Signature
    algorithm: Text256 = ""
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Finite] = Field(default_factory=dict)
    code_ref: CodeRef | None = None
    environment: Environment = Field(default_factory=Environment)
    changelog: LongText = ""
    datasets: list[LineageRef] = Field(default_factory=list, max_length=100)

    @field_validator("hyperparameters")
    @classmethod
    def _finite(cls, value: dict[str, Any]) -> dict[str, Any]:
        def check(item: Any) -> None:
            if isinstance(item, float) and not math.isfinite(item):
                raise ValueError("NaN and Infinity are not JSON numbers")
            if isinstance(item, dict | list):
                for inner in item.values() if isinstance(item, dict) else item:
                    check(inner)

        check(value)
        return value


class DatasetCreate(Reasoned):
    name: Name
    description: LongText = ""
    owner_team: Name


class ColumnSpec(Input):
    name: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    type: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    description: ShortText = ""


class PersonalData(Input):
    present: bool
    legal_basis: ShortText = ""
    categories: list[ShortText] = Field(default_factory=list)

    @model_validator(mode="after")
    def _basis(self) -> PersonalData:
        if self.present and not self.legal_basis.strip():
            raise ValueError("legal_basis is required when personal data is present")
        return self


class Datasheet(Input):
    """Datasheet answers after Gebru et al., "Datasheets for Datasets"."""

    motivation: LongText = ""
    composition: LongText = ""
    collection: LongText = ""
    preprocessing: LongText = ""
    uses: LongText = ""
    distribution: LongText = ""
    maintenance: LongText = ""
    personal_data: PersonalData | None = None


class DatasetVersionCreate(Reasoned):
    content_sha256: Sha256
    uri: Annotated[str, StringConstraints(min_length=1, max_length=2048)]
    schema_: list[ColumnSpec] = Field(alias="schema", min_length=1, max_length=10_000)
    row_count: int = Field(ge=0, le=2**63 - 1)  # a 64-bit column
    datasheet: Datasheet = Field(default_factory=Datasheet)

    model_config = Reasoned.model_config | {"populate_by_name": True}

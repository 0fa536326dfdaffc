"""Validated inputs of the lifecycle (request bodies of the API, documented for the SDK)."""

from __future__ import annotations

import base64
import binascii
import math
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, field_validator, model_validator

from mlgov.lifecycle.policy import MAX_POLICY_BYTES, EvidenceKind
from mlgov.registry.schemas import Finite, Stage
from mlgov.schemas import Input, LongText, Name, Reason, Reasoned, ShortText

MAX_ATTACHMENTS = 20
FILE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
FileName = Annotated[str, StringConstraints(pattern=FILE_NAME_PATTERN)]
MediaType = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9.+-]+/[a-z0-9.+-]+$", max_length=128)
]


def _check_finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("NaN and Infinity are not JSON numbers")
    if isinstance(value, dict):
        for inner in value.values():
            _check_finite(inner)
    elif isinstance(value, list):
        for inner in value:
            _check_finite(inner)
    return value


class TransitionCreate(Reasoned):
    model: Name
    version: int = Field(ge=1, le=2**31 - 1)
    to_stage: Stage


class DecisionCreate(Input):
    decision: Literal["approve", "reject"]
    comment: Reason = Field(description="Why; recorded as the reason of the decision.")


class PolicyPublish(Reasoned):
    document: Annotated[str, StringConstraints(min_length=1, max_length=MAX_POLICY_BYTES)] = Field(
        description="The policy as YAML (see docs/lifecycle.md)."
    )


class SuiteRef(Input):
    name: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    version: Annotated[str, StringConstraints(max_length=64)] = ""
    definition: dict[str, Any] = Field(default_factory=dict)

    @field_validator("definition")
    @classmethod
    def _finite(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _check_finite(value)  # type: ignore[no-any-return]


class DatasetRef(Input):
    dataset: Name
    version: int = Field(ge=1, le=2**31 - 1)


class Check(Input):
    name: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    passed: bool
    value: Finite | str | bool | None = None
    threshold: Finite | str | None = None
    details: ShortText = ""


class AttachmentIn(Input):
    name: FileName
    media_type: MediaType = "application/octet-stream"
    content_base64: str = Field(description="The file's bytes, base64-encoded.")

    @field_validator("content_base64")
    @classmethod
    def _base64(cls, value: str) -> str:
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("not valid base64") from None
        return value

    def content(self) -> bytes:
        return base64.b64decode(self.content_base64, validate=True)


class EvidenceCreate(Reasoned):
    kind: EvidenceKind
    passed: bool
    summary: LongText = ""
    suite: SuiteRef | None = None
    dataset: DatasetRef | None = None
    results: dict[str, Any] = Field(default_factory=dict)
    checks: list[Check] = Field(default_factory=list, max_length=1000)
    attachments: list[AttachmentIn] = Field(default_factory=list, max_length=MAX_ATTACHMENTS)

    @field_validator("results")
    @classmethod
    def _finite(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _check_finite(value)  # type: ignore[no-any-return]

    @model_validator(mode="after")
    def _consistent(self) -> EvidenceCreate:
        failed = [c.name for c in self.checks if not c.passed]
        if self.passed and failed:
            raise ValueError(f"passed is true but check {failed[0]!r} failed")
        names = [a.name for a in self.attachments]
        if len(set(names)) != len(names):
            raise ValueError("two attachments have the same name")
        return self

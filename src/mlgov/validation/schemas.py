"""Validated inputs of validation (request bodies of the API, documented for the SDK)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from mlgov.lifecycle.schemas import DatasetRef
from mlgov.schemas import Name, Reasoned
from mlgov.validation.suite import MAX_SUITE_BYTES


class SuitePublish(Reasoned):
    document: Annotated[str, StringConstraints(min_length=1, max_length=MAX_SUITE_BYTES)] = Field(
        description="The suite as YAML (see docs/validation.md)."
    )


class ValidationCreate(Reasoned):
    suite: Name = Field(description="The suite's name.")
    suite_version: int | None = Field(
        default=None, ge=1, le=2**31 - 1, description="A version of the suite (default: latest)."
    )
    dataset: DatasetRef = Field(description="The dataset version the suite runs on.")

"""Shared field types for inputs: names, reasons and bounded text, validated once."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from mlgov.audit.service import MAX_REASON_CHARS
from mlgov.names import NAME_PATTERN

Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
Reason = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_REASON_CHARS)
]
ShortText = Annotated[str, StringConstraints(max_length=512)]
LongText = Annotated[str, StringConstraints(max_length=20_000)]
Tag = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")]


class Input(BaseModel):
    """Base of every request body: unknown fields are refused, not ignored."""

    model_config = ConfigDict(extra="forbid")


class Reasoned(Input):
    reason: Reason = Field(description="Why this change is made; recorded in the audit trail.")

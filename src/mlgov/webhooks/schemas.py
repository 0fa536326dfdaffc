"""Validated inputs of governance webhooks (request bodies of the API)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints, field_validator

from mlgov.schemas import Name, Reasoned, ShortText
from mlgov.webhooks.events import GovernanceEvent

#: The receiver's address: http or https with a host (checked by the service, which every
#: caller goes through); stored in a 2048-character column.
WebhookUrl = Annotated[str, StringConstraints(min_length=1, max_length=2048)]


class WebhookCreate(Reasoned):
    name: Name
    url: WebhookUrl = Field(description="http:// or https:// address that receives the events.")
    events: list[GovernanceEvent] = Field(
        min_length=1, max_length=20, description="The event types to deliver (no duplicates)."
    )
    description: ShortText = ""

    @field_validator("events")
    @classmethod
    def _unique(cls, value: list[GovernanceEvent]) -> list[GovernanceEvent]:
        if len(set(value)) != len(value):
            raise ValueError("each event type may be named once")
        return value

"""The governance events a webhook can subscribe to: one documented enum (docs/webhooks.md)."""

from __future__ import annotations

from enum import StrEnum


class GovernanceEvent(StrEnum):
    TRANSITION_REQUESTED = "transition.requested"
    TRANSITION_APPROVED = "transition.approved"
    TRANSITION_REJECTED = "transition.rejected"
    TRANSITION_CANCELLED = "transition.cancelled"
    TRANSITION_APPLIED = "transition.applied"
    EVIDENCE_ADDED = "evidence.added"


DESCRIPTIONS: dict[GovernanceEvent, str] = {
    GovernanceEvent.TRANSITION_REQUESTED: "A stage transition of a model version was requested.",
    GovernanceEvent.TRANSITION_APPROVED: "A transition request received an approval.",
    GovernanceEvent.TRANSITION_REJECTED: "A transition request was rejected (which closes it).",
    GovernanceEvent.TRANSITION_CANCELLED: "A pending transition request was cancelled.",
    GovernanceEvent.TRANSITION_APPLIED: "A model version changed stage.",
    GovernanceEvent.EVIDENCE_ADDED: "Evidence was recorded on a model version.",
}

assert set(DESCRIPTIONS) == set(GovernanceEvent), "every governance event needs a description"

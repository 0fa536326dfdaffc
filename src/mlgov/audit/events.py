"""Every audit action name, in one place. docs/audit.md lists them all; a test keeps it so.

Names are ``<object>.<verb>``; the object is what the event's ``target`` points at.
"""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    USER_CREATE = "user.create"
    USER_UPDATE = "user.update"
    USER_ROLE_GRANT = "user.role_grant"
    USER_ROLE_REVOKE = "user.role_revoke"
    TOKEN_CREATE = "token.create"
    TOKEN_REVOKE = "token.revoke"
    MODEL_CREATE = "model.create"
    MODEL_UPDATE = "model.update"
    MODEL_VERSION_CREATE = "model_version.create"
    DATASET_CREATE = "dataset.create"
    DATASET_VERSION_CREATE = "dataset_version.create"
    POLICY_CREATE = "policy.create"
    TRANSITION_REQUEST = "transition.request"
    TRANSITION_APPROVE = "transition.approve"
    TRANSITION_REJECT = "transition.reject"
    TRANSITION_CANCEL = "transition.cancel"
    TRANSITION_APPLY = "transition.apply"
    MODEL_VERSION_ARCHIVE = "model_version.archive"
    EVIDENCE_CREATE = "evidence.create"
    WEBHOOK_CREATE = "webhook.create"
    WEBHOOK_DELETE = "webhook.delete"
    DATASET_VERSION_DATA_UPLOAD = "dataset_version.data_upload"
    SUITE_CREATE = "suite.create"
    VALIDATION_REQUEST = "validation.request"
    VALIDATION_COMPLETE = "validation.complete"
    VALIDATION_FAIL = "validation.fail"


DESCRIPTIONS: dict[Action, str] = {
    Action.USER_CREATE: "A user or service account was created (with its initial roles).",
    Action.USER_UPDATE: "A user's profile, password or disabled flag changed.",
    Action.USER_ROLE_GRANT: "A role was granted to a user or service account.",
    Action.USER_ROLE_REVOKE: "A role was taken from a user or service account.",
    Action.TOKEN_CREATE: "An API token was issued (its secret is never recorded).",
    Action.TOKEN_REVOKE: "An API token was revoked.",
    Action.MODEL_CREATE: "A model was registered.",
    Action.MODEL_UPDATE: "A model's descriptive metadata or tags changed (old and new values).",
    Action.MODEL_VERSION_CREATE: "A model version was registered with its artifact and lineage.",
    Action.DATASET_CREATE: "A dataset was registered.",
    Action.DATASET_VERSION_CREATE: "A dataset version was registered with its datasheet.",
    Action.POLICY_CREATE: "A new version of a risk tier's policy was published (its YAML hash).",
    Action.TRANSITION_REQUEST: (
        "A stage transition was requested (with the policy evaluation and unmet requirements)."
    ),
    Action.TRANSITION_APPROVE: "A transition request was approved (role counted, comment).",
    Action.TRANSITION_REJECT: "A transition request was rejected, which closes it.",
    Action.TRANSITION_CANCEL: "A pending transition request was cancelled or superseded.",
    Action.TRANSITION_APPLY: (
        "A version changed stage: its request's requirements were all met (applied atomically)."
    ),
    Action.MODEL_VERSION_ARCHIVE: (
        "A production version was archived because another version replaced it."
    ),
    Action.EVIDENCE_CREATE: "Evidence was recorded on a model version (kind, result, hash).",
    Action.WEBHOOK_CREATE: "A governance webhook subscription was created (never its secret).",
    Action.WEBHOOK_DELETE: "A governance webhook subscription was removed.",
    Action.DATASET_VERSION_DATA_UPLOAD: (
        "The data of a dataset version was uploaded (its bytes match the registered hash)."
    ),
    Action.SUITE_CREATE: "A new version of a validation suite was published (its YAML hash).",
    Action.VALIDATION_REQUEST: (
        "A validation run was queued: model version, suite version and dataset version."
    ),
    Action.VALIDATION_COMPLETE: (
        "A validation run finished (by the system, for its requester): the evidence records "
        "it produced, the report's hash, the worker."
    ),
    Action.VALIDATION_FAIL: (
        "A validation run stopped on an error (stored on the job); nothing else changed."
    ),
}

assert set(DESCRIPTIONS) == set(Action), "every action needs a description"

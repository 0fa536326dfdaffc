"""The permission table: the single source of truth for who may do what.

Enforcement (API dependencies and the change path), the API docs (every route's description
and docs/permissions.md) and the RBAC test matrix are all derived from :data:`GRANTS`.
Anything not granted here is denied.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    MODEL_MANAGER = "model_manager"
    DATA_SCIENTIST = "data_scientist"
    DATA_ENGINEER = "data_engineer"
    VALIDATOR = "validator"
    APPROVER = "approver"
    ETHICS_REVIEWER = "ethics_reviewer"
    AUDITOR = "auditor"
    VIEWER = "viewer"


class Permission(StrEnum):
    CATALOG_READ = "catalog:read"
    ARTIFACT_READ = "artifact:read"
    MODEL_CREATE = "model:create"
    MODEL_UPDATE = "model:update"
    MODEL_RISK_TIER_LOWER = "model:risk_tier_lower"
    MODEL_VERSION_CREATE = "model_version:create"
    DATASET_CREATE = "dataset:create"
    DATASET_VERSION_CREATE = "dataset_version:create"
    TRANSITION_REQUEST = "transition:request"
    TRANSITION_REQUEST_PRODUCTION = "transition:request_production"
    TRANSITION_DECIDE = "transition:decide"
    EVIDENCE_CREATE = "evidence:create"
    EVIDENCE_ETHICS_REVIEW = "evidence:ethics_review"
    POLICY_MANAGE = "policy:manage"
    POLICY_SOD_SWITCH_OFF = "policy:sod_switch_off"
    SUITE_MANAGE = "suite:manage"
    VALIDATION_RUN = "validation:run"
    WEBHOOK_READ = "webhook:read"
    WEBHOOK_MANAGE = "webhook:manage"
    AUDIT_READ = "audit:read"
    AUDIT_CHECKPOINT = "audit:checkpoint"
    USER_READ = "user:read"
    USER_MANAGE = "user:manage"
    TOKEN_CREATE_OWN = "token:create_own"
    TOKEN_MANAGE = "token:manage"
    SELF_READ = "self:read"


#: What each permission allows, for the docs.
DESCRIPTIONS: dict[Permission, str] = {
    Permission.CATALOG_READ: "Read models, versions, datasets and lineage in the catalog.",
    Permission.ARTIFACT_READ: "Download model artifacts.",
    Permission.MODEL_CREATE: "Register a new model.",
    Permission.MODEL_UPDATE: "Change a model's descriptive metadata, tags and raise its risk tier.",
    Permission.MODEL_RISK_TIER_LOWER: "Lower a model's risk tier (loosens every gate).",
    Permission.MODEL_VERSION_CREATE: "Register a model version and upload its artifact.",
    Permission.DATASET_CREATE: "Register a dataset.",
    Permission.DATASET_VERSION_CREATE: "Register a dataset version with its datasheet.",
    Permission.TRANSITION_REQUEST: (
        "Request a stage transition (to staging or back to development); cancel one's own."
    ),
    Permission.TRANSITION_REQUEST_PRODUCTION: (
        "Request a transition to production or archived, and rollbacks."
    ),
    Permission.TRANSITION_DECIDE: (
        "Approve or reject a transition request (counted only for roles its policy names)."
    ),
    Permission.EVIDENCE_CREATE: "Record evidence on a model version.",
    Permission.EVIDENCE_ETHICS_REVIEW: "Record ethics_review evidence (with evidence:create).",
    Permission.POLICY_MANAGE: "Publish a new version of a risk tier's policy.",
    Permission.POLICY_SOD_SWITCH_OFF: (
        "Publish a policy version that switches a separation of duties rule off."
    ),
    Permission.SUITE_MANAGE: "Publish a new version of a validation suite.",
    Permission.VALIDATION_RUN: (
        "Run a validation suite on a model version and dataset version (the server computes "
        "the evidence)."
    ),
    Permission.WEBHOOK_READ: "List governance webhooks and their delivery attempts.",
    Permission.WEBHOOK_MANAGE: "Subscribe and remove governance webhooks.",
    Permission.AUDIT_READ: "Read the audit trail, its checkpoints and proofs; export it.",
    Permission.AUDIT_CHECKPOINT: "Have the server sign a checkpoint of the audit log now.",
    Permission.USER_READ: "List users, service accounts and their roles.",
    Permission.USER_MANAGE: "Create users and service accounts, grant and revoke roles, disable.",
    Permission.TOKEN_CREATE_OWN: "Create and revoke one's own API tokens.",
    Permission.TOKEN_MANAGE: "Create and revoke API tokens for any user or service account.",
    Permission.SELF_READ: "Read one's own identity and roles.",
}

_EVERY_ROLE = frozenset(Role)
_READERS = _EVERY_ROLE  # every person's role reads the catalog

GRANTS: dict[Permission, frozenset[Role]] = {
    Permission.CATALOG_READ: _READERS,
    Permission.ARTIFACT_READ: frozenset(
        {
            Role.ADMIN,
            Role.MODEL_MANAGER,
            Role.DATA_SCIENTIST,
            Role.VALIDATOR,
            Role.APPROVER,
            Role.ETHICS_REVIEWER,
            Role.AUDITOR,
        }
    ),
    Permission.MODEL_CREATE: frozenset({Role.ADMIN, Role.DATA_SCIENTIST}),
    Permission.MODEL_UPDATE: frozenset({Role.ADMIN, Role.DATA_SCIENTIST, Role.MODEL_MANAGER}),
    Permission.MODEL_RISK_TIER_LOWER: frozenset({Role.ADMIN}),
    Permission.MODEL_VERSION_CREATE: frozenset({Role.ADMIN, Role.DATA_SCIENTIST}),
    Permission.DATASET_CREATE: frozenset({Role.ADMIN, Role.DATA_ENGINEER}),
    Permission.DATASET_VERSION_CREATE: frozenset({Role.ADMIN, Role.DATA_ENGINEER}),
    Permission.TRANSITION_REQUEST: frozenset({Role.ADMIN, Role.MODEL_MANAGER, Role.DATA_SCIENTIST}),
    Permission.TRANSITION_REQUEST_PRODUCTION: frozenset({Role.ADMIN, Role.MODEL_MANAGER}),
    Permission.TRANSITION_DECIDE: frozenset(
        {Role.ADMIN, Role.APPROVER, Role.VALIDATOR, Role.ETHICS_REVIEWER}
    ),
    Permission.EVIDENCE_CREATE: frozenset({Role.ADMIN, Role.VALIDATOR, Role.ETHICS_REVIEWER}),
    Permission.EVIDENCE_ETHICS_REVIEW: frozenset({Role.ETHICS_REVIEWER}),
    Permission.POLICY_MANAGE: frozenset({Role.ADMIN}),
    Permission.POLICY_SOD_SWITCH_OFF: frozenset({Role.ADMIN}),
    Permission.SUITE_MANAGE: frozenset({Role.ADMIN, Role.VALIDATOR}),
    Permission.VALIDATION_RUN: frozenset({Role.ADMIN, Role.VALIDATOR}),
    Permission.WEBHOOK_READ: frozenset({Role.ADMIN, Role.AUDITOR}),
    Permission.WEBHOOK_MANAGE: frozenset({Role.ADMIN}),
    Permission.AUDIT_READ: frozenset({Role.ADMIN, Role.AUDITOR}),
    Permission.AUDIT_CHECKPOINT: frozenset({Role.ADMIN, Role.AUDITOR}),
    Permission.USER_READ: frozenset({Role.ADMIN, Role.AUDITOR}),
    Permission.USER_MANAGE: frozenset({Role.ADMIN}),
    Permission.TOKEN_CREATE_OWN: _EVERY_ROLE,
    Permission.TOKEN_MANAGE: frozenset({Role.ADMIN}),
    Permission.SELF_READ: _EVERY_ROLE,
}

assert set(GRANTS) == set(Permission), "every permission needs a row in GRANTS"
assert set(DESCRIPTIONS) == set(Permission), "every permission needs a description"


def allowed(roles: frozenset[str] | set[str], permission: Permission) -> bool:
    return not GRANTS[permission].isdisjoint(roles)


def roles_for(permission: Permission) -> list[str]:
    return sorted(GRANTS[permission])

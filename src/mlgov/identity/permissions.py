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

"""Every URL the API answers, with the permission that guards it: the one routing table.

The RBAC test matrix, the OpenAPI descriptions and docs/permissions.md are derived from
:data:`ROUTES` and the permission table; a route without a permission must say ``PUBLIC``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlgov.api import audit, health, identity, lifecycle, registry, validation, webhooks
from mlgov.identity.permissions import Permission


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    endpoint: Callable[..., Any]
    permission: Permission | None  # None: public (no token needed)
    summary: str
    status: int = 200
    tag: str = "registry"
    upload: bool = False  # body limit is the artifact limit, not the JSON one
    #: The body is a file as it is (application/octet-stream), not multipart.
    raw_body: bool = False
    #: A write that records no audit event (signing a checkpoint attests the log, changes
    #: nothing in it). Every other non-GET route writes exactly one event.
    unaudited_write: bool = False
    #: Answers beyond the usual ones, for the OpenAPI document: (status, description).
    extra_responses: tuple[tuple[int, str], ...] = ()


PUBLIC = None
P = Permission
V1 = "/api/v1"

ROUTES: tuple[Route, ...] = (
    Route("GET", "/healthz", health.healthz, PUBLIC, "Liveness probe", tag="operations"),
    Route("GET", "/readyz", health.readyz, PUBLIC, "Readiness probe", tag="operations"),
    # registry: models and versions
    Route("POST", f"{V1}/models", registry.create_model, P.MODEL_CREATE, "Register a model", 201),
    Route("GET", f"{V1}/models", registry.search_models, P.CATALOG_READ, "Search the catalog"),
    Route("GET", f"{V1}/models/{{name}}", registry.get_model, P.CATALOG_READ, "Show a model"),
    Route(
        "PATCH",
        f"{V1}/models/{{name}}",
        registry.update_model,
        P.MODEL_UPDATE,
        "Change a model's metadata",
    ),
    Route(
        "POST",
        f"{V1}/models/{{name}}/versions",
        registry.create_version,
        P.MODEL_VERSION_CREATE,
        "Register a version (multipart: artifact + metadata)",
        201,
        upload=True,
    ),
    Route(
        "GET",
        f"{V1}/models/{{name}}/versions",
        registry.list_versions,
        P.CATALOG_READ,
        "List a model's versions",
    ),
    Route(
        "GET",
        f"{V1}/models/{{name}}/versions/{{version}}",
        registry.get_version,
        P.CATALOG_READ,
        "Show a version",
    ),
    Route(
        "GET",
        f"{V1}/models/{{name}}/versions/{{version}}/artifact",
        registry.download_artifact,
        P.ARTIFACT_READ,
        "Download a version's artifact",
    ),
    # lifecycle: evidence and stage history
    Route(
        "POST",
        f"{V1}/models/{{name}}/versions/{{version}}/evidence",
        lifecycle.add_evidence,
        P.EVIDENCE_CREATE,
        "Record evidence on a version (immutable, hashed)",
        201,
        tag="lifecycle",
    ),
    Route(
        "GET",
        f"{V1}/models/{{name}}/versions/{{version}}/evidence",
        lifecycle.list_evidence,
        P.CATALOG_READ,
        "List a version's evidence",
        tag="lifecycle",
    ),
    Route(
        "GET",
        f"{V1}/models/{{name}}/versions/{{version}}/evidence/{{evidence_id}}/attachments/{{filename}}",
        lifecycle.download_attachment,
        P.ARTIFACT_READ,
        "Download an evidence attachment",
        tag="lifecycle",
    ),
    Route(
        "GET",
        f"{V1}/models/{{name}}/stage-history",
        lifecycle.stage_history,
        P.CATALOG_READ,
        "Stage changes of a model's versions; ?at= which version was in which stage then",
        tag="lifecycle",
    ),
    # lifecycle: transitions and policies
    Route(
        "POST",
        f"{V1}/transitions",
        lifecycle.request_transition,
        P.TRANSITION_REQUEST,
        "Request a stage transition (applied at once when every requirement is met)",
        201,
        tag="lifecycle",
    ),
    Route(
        "GET",
        f"{V1}/transitions",
        lifecycle.list_transitions,
        P.CATALOG_READ,
        "List transition requests (?status=pending: the approvals inbox)",
        tag="lifecycle",
    ),
    Route(
        "GET",
        f"{V1}/transitions/{{transition_id}}",
        lifecycle.get_transition,
        P.CATALOG_READ,
        "Show a transition request with its evaluation and decisions",
        tag="lifecycle",
    ),
    Route(
        "POST",
        f"{V1}/transitions/{{transition_id}}/decisions",
        lifecycle.decide,
        P.TRANSITION_DECIDE,
        "Approve or reject a transition request",
        201,
        tag="lifecycle",
    ),
    Route(
        "POST",
        f"{V1}/transitions/{{transition_id}}/cancel",
        lifecycle.cancel_transition,
        P.TRANSITION_REQUEST,
        "Cancel one's own pending transition request",
        tag="lifecycle",
    ),
    Route(
        "GET",
        f"{V1}/policies",
        lifecycle.list_policies,
        P.CATALOG_READ,
        "The current policy of each risk tier",
        tag="lifecycle",
    ),
    Route(
        "GET",
        f"{V1}/policies/{{name}}",
        lifecycle.get_policy,
        P.CATALOG_READ,
        "Show a risk tier's policy (?version= an earlier one)",
        tag="lifecycle",
    ),
    Route(
        "POST",
        f"{V1}/policies/{{name}}/versions",
        lifecycle.publish_policy,
        P.POLICY_MANAGE,
        "Publish a new version of a risk tier's policy (YAML)",
        201,
        tag="lifecycle",
    ),
    # validation: suites, runs, reports, dataset data
    Route(
        "GET",
        f"{V1}/suites",
        validation.list_suites,
        P.CATALOG_READ,
        "The latest version of each validation suite",
        tag="validation",
    ),
    Route(
        "GET",
        f"{V1}/suites/{{name}}",
        validation.get_suite,
        P.CATALOG_READ,
        "Show a validation suite (?version= an earlier one)",
        tag="validation",
    ),
    Route(
        "POST",
        f"{V1}/suites/{{name}}/versions",
        validation.publish_suite,
        P.SUITE_MANAGE,
        "Publish a new version of a validation suite (YAML)",
        201,
        tag="validation",
    ),
    Route(
        "POST",
        f"{V1}/models/{{name}}/versions/{{version}}/validations",
        validation.request_validation,
        P.VALIDATION_RUN,
        "Queue a validation run of a suite on a dataset version",
        202,
        tag="validation",
    ),
    Route(
        "GET",
        f"{V1}/validations",
        validation.list_validations,
        P.CATALOG_READ,
        "List validation runs (?status=, ?model=, ?version=)",
        tag="validation",
    ),
    Route(
        "GET",
        f"{V1}/validations/{{job_id}}",
        validation.get_validation,
        P.CATALOG_READ,
        "Show a validation run: status, progress, outcome, error",
        tag="validation",
    ),
    Route(
        "GET",
        f"{V1}/validations/{{job_id}}/report",
        validation.download_report,
        P.ARTIFACT_READ,
        "Download a validation run's HTML report",
        tag="validation",
    ),
    Route(
        "PUT",
        f"{V1}/datasets/{{name}}/versions/{{version}}/data",
        validation.upload_dataset_data,
        P.DATASET_VERSION_CREATE,
        "Upload a dataset version's data (its bytes must match the registered sha256)",
        upload=True,
        raw_body=True,
    ),
    # webhooks
    Route(
        "POST",
        f"{V1}/webhooks",
        webhooks.create_webhook,
        P.WEBHOOK_MANAGE,
        "Subscribe a webhook to governance events; its signing secret is shown once",
        201,
        tag="webhooks",
    ),
    Route(
        "GET",
        f"{V1}/webhooks",
        webhooks.list_webhooks,
        P.WEBHOOK_READ,
        "List webhooks",
        tag="webhooks",
    ),
    Route(
        "GET",
        f"{V1}/webhooks/{{name}}",
        webhooks.get_webhook,
        P.WEBHOOK_READ,
        "Show a webhook",
        tag="webhooks",
    ),
    Route(
        "DELETE",
        f"{V1}/webhooks/{{name}}",
        webhooks.delete_webhook,
        P.WEBHOOK_MANAGE,
        "Remove a webhook subscription (its delivery history is kept)",
        tag="webhooks",
    ),
    Route(
        "GET",
        f"{V1}/webhooks/{{name}}/deliveries",
        webhooks.list_deliveries,
        P.WEBHOOK_READ,
        "A webhook's deliveries and their attempts",
        tag="webhooks",
    ),
    # registry: datasets
    Route(
        "POST",
        f"{V1}/datasets",
        registry.create_dataset,
        P.DATASET_CREATE,
        "Register a dataset",
        201,
    ),
    Route("GET", f"{V1}/datasets", registry.search_datasets, P.CATALOG_READ, "Search datasets"),
    Route("GET", f"{V1}/datasets/{{name}}", registry.get_dataset, P.CATALOG_READ, "Show a dataset"),
    Route(
        "POST",
        f"{V1}/datasets/{{name}}/versions",
        registry.create_dataset_version,
        P.DATASET_VERSION_CREATE,
        "Register a dataset version",
        201,
    ),
    Route(
        "GET",
        f"{V1}/datasets/{{name}}/versions",
        registry.list_dataset_versions,
        P.CATALOG_READ,
        "List a dataset's versions",
    ),
    Route(
        "GET",
        f"{V1}/datasets/{{name}}/versions/{{version}}",
        registry.get_dataset_version,
        P.CATALOG_READ,
        "Show a dataset version and the model versions built on it",
    ),
    # identity
    Route(
        "POST",
        f"{V1}/login",
        identity.login,
        PUBLIC,
        "Exchange a password for an expiring API token",
        201,
        tag="identity",
    ),
    Route("GET", f"{V1}/me", identity.me, P.SELF_READ, "Who am I", tag="identity"),
    Route(
        "POST",
        f"{V1}/users",
        identity.create_user,
        P.USER_MANAGE,
        "Create a user or service account",
        201,
        tag="identity",
    ),
    Route("GET", f"{V1}/users", identity.list_users, P.USER_READ, "List users", tag="identity"),
    Route(
        "GET", f"{V1}/users/{{name}}", identity.get_user, P.USER_READ, "Show a user", tag="identity"
    ),
    Route(
        "PATCH",
        f"{V1}/users/{{name}}",
        identity.update_user,
        P.USER_MANAGE,
        "Change a user (disable, password, profile)",
        tag="identity",
    ),
    Route(
        "POST",
        f"{V1}/users/{{name}}/roles",
        identity.grant_role,
        P.USER_MANAGE,
        "Grant a role",
        tag="identity",
    ),
    Route(
        "DELETE",
        f"{V1}/users/{{name}}/roles/{{role}}",
        identity.revoke_role,
        P.USER_MANAGE,
        "Revoke a role",
        tag="identity",
    ),
    Route(
        "GET",
        f"{V1}/users/{{name}}/tokens",
        identity.list_tokens,
        P.TOKEN_CREATE_OWN,
        "List a user's tokens (own, or any with token:manage)",
        tag="identity",
    ),
    Route(
        "POST",
        f"{V1}/tokens",
        identity.create_token,
        P.TOKEN_CREATE_OWN,
        "Issue an API token (own, or any with token:manage); the secret is shown once",
        201,
        tag="identity",
    ),
    Route(
        "DELETE",
        f"{V1}/tokens/{{token_id}}",
        identity.revoke_token,
        P.TOKEN_CREATE_OWN,
        "Revoke an API token (own, or any with token:manage)",
        tag="identity",
    ),
    # audit
    Route(
        "GET",
        f"{V1}/audit/events",
        audit.list_events,
        P.AUDIT_READ,
        "Read the audit trail",
        tag="audit",
    ),
    Route(
        "GET",
        f"{V1}/audit/public-key",
        audit.public_key,
        PUBLIC,
        "The audit log's checkpoint-signing public key",
        tag="audit",
    ),
    Route(
        "GET",
        f"{V1}/audit/checkpoint",
        audit.latest_checkpoint,
        P.AUDIT_READ,
        "The latest signed checkpoint",
        tag="audit",
        extra_responses=((404, "No checkpoint has been signed yet"),),
    ),
    Route(
        "GET",
        f"{V1}/audit/checkpoints",
        audit.list_checkpoints,
        P.AUDIT_READ,
        "List signed checkpoints",
        tag="audit",
    ),
    Route(
        "POST",
        f"{V1}/audit/checkpoints",
        audit.create_checkpoint,
        P.AUDIT_CHECKPOINT,
        "Sign a checkpoint now",
        201,
        tag="audit",
        unaudited_write=True,
        extra_responses=((200, "Nothing was logged since the latest checkpoint: that one"),),
    ),
    Route(
        "GET",
        f"{V1}/audit/proofs/inclusion",
        audit.inclusion_proof,
        P.AUDIT_READ,
        "Inclusion proof of an entry",
        tag="audit",
    ),
    Route(
        "GET",
        f"{V1}/audit/proofs/consistency",
        audit.consistency_proof,
        P.AUDIT_READ,
        "Consistency proof between two tree sizes",
        tag="audit",
    ),
    Route(
        "GET",
        f"{V1}/audit/export",
        audit.export,
        P.AUDIT_READ,
        "Export the log for offline verification",
        tag="audit",
    ),
)

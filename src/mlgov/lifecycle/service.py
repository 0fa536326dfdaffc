"""The lifecycle service: policies, transition requests, decisions, evidence and stage history.

Knows nothing of HTTP. Every change goes through :meth:`AuditTrail.change`. Every change that
touches a model's versions or requests first locks the model's row (``SELECT … FOR UPDATE``;
on SQLite the write transaction is already exclusive), so decisions racing on one request are
applied one after the other and a request is applied exactly once. A request is applied in the
very transaction whose change meets its last requirement: a decision, new evidence, a new
policy version or a risk tier change.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, lazyload

import mlgov
from mlgov.artifacts.scan import ArtifactRejected, ScanPolicy, ScanReport, scan_or_raise
from mlgov.audit.events import Action
from mlgov.audit.service import authorize
from mlgov.audit.trail import AuditTrail, ChangeSet
from mlgov.context import SYSTEM, Context
from mlgov.db import latest_of_each, utcnow
from mlgov.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from mlgov.identity.permissions import Permission
from mlgov.lifecycle.models import (
    Evidence,
    Policy,
    StageChange,
    TransitionDecision,
    TransitionRequest,
)
from mlgov.lifecycle.policy import (
    TRANSITIONS,
    DecisionFact,
    EvidenceFact,
    Facts,
    PolicyDocument,
    builtin_pack,
    document_sha256,
    evaluate,
    parse_policy,
)
from mlgov.lifecycle.schemas import DecisionCreate, EvidenceCreate, PolicyPublish, TransitionCreate
from mlgov.names import check_name
from mlgov.registry.models import Dataset, DatasetVersion, Lineage, Model, ModelVersion
from mlgov.registry.schemas import RiskTier, Stage
from mlgov.registry.service import (
    MAX_PAGE,
    Page,
    decode_number_cursor,
    encode_cursor,
    find_dataset_version,
)
from mlgov.storage import ArtifactStore
from mlgov.tlog import canonical
from mlgov.webhooks.events import GovernanceEvent

PENDING, APPLIED, REJECTED, CANCELLED = "pending", "applied", "rejected", "cancelled"
STATUSES = (PENDING, APPLIED, REJECTED, CANCELLED)
#: Moves that take a version out of development's sandbox or retire it: model managers' call.
PRODUCTION_SIDE = {Stage.PRODUCTION.value, Stage.ARCHIVED.value}
EVIDENCE_FORMAT = "mlgov.evidence.v1"
#: The suite name of the scan's security_scan evidence.
SCAN_SUITE = "mlgov-artifact-scan"

log = logging.getLogger("mlgov.lifecycle")

#: Called inside a change's transaction to queue a governance event for webhook subscribers.
Notifier = Callable[[Session, GovernanceEvent, dict[str, Any]], object]


def _no_subscribers(session: Session, event: GovernanceEvent, data: dict[str, Any]) -> int:
    return 0


@dataclass(frozen=True)
class TransitionView:
    request: TransitionRequest
    model: str
    version: int
    decisions: Sequence[TransitionDecision]


@dataclass(frozen=True)
class EvidenceView:
    evidence: Evidence
    model: str
    version: int
    dataset: str | None  # "name@version"


@dataclass(frozen=True)
class StageAt:
    version: int
    stage: str
    since: datetime


def evidence_document(
    *,
    model: str,
    version: int,
    kind: str,
    passed: bool,
    summary: str,
    suite: dict[str, Any],
    dataset: str | None,
    results: dict[str, Any],
    checks: list[Any],
    attachments: list[Any],
    created_by: str,
    created_at: datetime,
    source: str = "api",
) -> bytes:
    """The canonical (RFC 8785) JSON an evidence record's ``content_sha256`` is the hash of."""
    return canonical.dumps(
        {
            "type": EVIDENCE_FORMAT,
            "model": model,
            "version": version,
            "kind": kind,
            "passed": passed,
            "summary": summary,
            "suite": suite,
            "dataset": dataset,
            "results": results,
            "checks": checks,
            "attachments": attachments,
            "created_by": created_by,
            "created_at": created_at.isoformat().replace("+00:00", "Z"),
            # Only when the server computed it: records through the API hash as they always
            # did (this key came with validation runs).
            **({"source": source} if source != "api" else {}),
        }
    )


def version_target(model: str, version: int) -> str:
    return f"model/{model}/versions/{version}"


class LifecycleService:
    def __init__(
        self, trail: AuditTrail, store: ArtifactStore, notify: Notifier | None = None
    ) -> None:
        self.trail = trail
        self.db = trail.db
        self.store = store
        self.notify: Notifier = notify or _no_subscribers
        self._parsed: dict[tuple[str, int], PolicyDocument] = {}  # versions never change

    # -- policies ----------------------------------------------------------------------

    def install_builtin_policies(self, ctx: Context) -> list[str]:
        """On first start, publish version 1 of each tier's built-in pack (audited)."""
        with self.db.read() as session:
            present = set(session.execute(select(Policy.name).distinct()).scalars())
        missing = [tier for tier in RiskTier if tier.value not in present]
        if not missing:
            return []
        reason = "first start: built-in policy packs installed"
        with self.trail.change(ctx, Permission.POLICY_MANAGE, reason) as cs:
            installed = []
            for tier in missing:
                if self._current_policy_row(cs.session, tier.value) is not None:
                    continue  # another replica installed it meanwhile
                self._publish(cs, tier.value, builtin_pack(tier))
                installed.append(tier.value)
            if not installed:
                return []
        return installed

    def publish_policy(self, ctx: Context, name: str, data: PolicyPublish) -> Policy:
        with self.trail.change(ctx, Permission.POLICY_MANAGE, data.reason) as cs:
            return self._publish(cs, name, data.document)

    def _publish(self, cs: ChangeSet, name: str, text: str) -> Policy:
        try:
            tier = RiskTier(name)
        except ValueError:
            raise NotFound(
                f"no policy named {name!r}: policies are named after the risk tiers "
                f"({', '.join(t.value for t in RiskTier)})"
            ) from None
        document = parse_policy(text)
        if document.policy is not tier:
            raise InvalidInput(
                f"the document is the {document.policy.value!r} policy, not {name!r}",
                field="document.policy",
            )
        session = cs.session
        current = self._current_policy_row(session, name, lock=True)
        sha = document_sha256(text)
        if current is not None and current.sha256 == sha:
            raise Conflict(
                f"this is the current {name!r} policy (version {current.version}) already",
                field="document",
            )
        switched_off: list[str] = []
        if current is not None:
            before = PolicyDocument.model_validate(current.rules).separation_of_duties
            switched_off = [
                rule
                for rule, on in before.model_dump().items()
                if on and not getattr(document.separation_of_duties, rule)
            ]
            if switched_off:
                authorize(cs.ctx, Permission.POLICY_SOD_SWITCH_OFF)
        policy = Policy(
            name=name,
            version=(current.version + 1) if current else 1,
            document=text,
            rules=document.model_dump(mode="json"),
            sha256=sha,
            created_at=utcnow(),
            created_by=cs.ctx.actor.name,
        )
        session.add(policy)
        session.flush()
        session.info.get("mlgov.policies", {}).pop(name, None)
        cs.record(
            Action.POLICY_CREATE,
            f"policy/{name}/versions/{policy.version}",
            {
                "sha256": sha,
                "previous_version": current.version if current else None,
                "separation_of_duties": document.separation_of_duties.model_dump(),
                "separation_of_duties_switched_off": switched_off,
            },
        )
        if current is not None:
            models = session.execute(
                select(Model).where(Model.risk_tier == name).with_for_update()
            ).scalars()
            for model in models:
                self._reevaluate(cs, model, self._pending(session, model_id=model.id))
        return policy

    def get_policy(self, name: str, version: int | None = None) -> Policy:
        with self.db.read() as session:
            stmt = select(Policy).where(Policy.name == name)
            if version is None:
                stmt = stmt.order_by(Policy.version.desc()).limit(1)
            else:
                stmt = stmt.where(Policy.version == version)
            policy = session.execute(stmt).scalar_one_or_none()
        if policy is None:
            suffix = f" version {version}" if version is not None else ""
            raise NotFound(f"no policy {name!r}{suffix}")
        return policy

    def policy_versions(self, name: str) -> list[Policy]:
        with self.db.read() as session:
            rows = list(
                session.execute(
                    select(Policy).where(Policy.name == name).order_by(Policy.version)
                ).scalars()
            )
        if not rows:
            raise NotFound(f"no policy {name!r}")
        return rows

    def list_policies(self) -> list[Policy]:
        """The current version of each tier's policy."""
        with self.db.read() as session:
            return latest_of_each(session, Policy)

    def _current_policy_row(
        self, session: Session, name: str, *, lock: bool = False
    ) -> Policy | None:
        stmt = select(Policy).where(Policy.name == name).order_by(Policy.version.desc()).limit(1)
        if lock:
            stmt = stmt.with_for_update()
        return session.execute(stmt).scalar_one_or_none()

    def _policy_for(self, session: Session, model: Model) -> tuple[PolicyDocument, dict[str, Any]]:
        """The current policy of the model's tier (parsed once per policy version: versions
        never change; looked up once per tier and transaction)."""
        memo: dict[str, tuple[PolicyDocument, dict[str, Any]]] = session.info.setdefault(
            "mlgov.policies", {}
        )
        if model.risk_tier in memo:
            return memo[model.risk_tier]
        row = session.execute(
            select(Policy.id, Policy.name, Policy.version, Policy.sha256)
            .where(Policy.name == model.risk_tier)
            .order_by(Policy.version.desc())
            .limit(1)
        ).first()
        if row is None:
            raise Conflict(
                f"no policy is installed for risk tier {model.risk_tier!r}: "
                "restart the server to install the built-in packs"
            )
        key = (row.name, row.version)
        document = self._parsed.get(key)
        if document is None:
            rules = session.execute(select(Policy.rules).where(Policy.id == row.id)).scalar_one()
            document = self._parsed[key] = PolicyDocument.model_validate(rules)
        found = (document, {"name": row.name, "version": row.version, "sha256": row.sha256})
        memo[model.risk_tier] = found
        return found

    # -- transitions -------------------------------------------------------------------

    def request_transition(self, ctx: Context, data: TransitionCreate) -> TransitionView:
        to_stage = data.to_stage.value
        with self.trail.change(ctx, Permission.TRANSITION_REQUEST, data.reason) as cs:
            if to_stage in PRODUCTION_SIDE:
                authorize(ctx, Permission.TRANSITION_REQUEST_PRODUCTION)
            session = cs.session
            model = self._lock_model(session, data.model)
            version = self._version(session, model, data.version)
            if version.stage == to_stage:
                raise Conflict(f"version {data.version} is in {to_stage} already", field="to_stage")
            if (version.stage, to_stage) not in TRANSITIONS:
                raise Conflict(
                    f"a version in {version.stage} cannot move to {to_stage} "
                    f"(allowed: {_allowed_from(version.stage)})",
                    field="to_stage",
                )
            rollback = version.stage == Stage.ARCHIVED.value
            if rollback and not self._was_in_production(session, version):
                raise Conflict(
                    f"version {data.version} was never in production: an archived version only "
                    "returns to production by rollback",
                    field="to_stage",
                )
            policy, ref = self._policy_for(session, model)
            rules = policy.rules_for("rollback" if rollback else to_stage)
            if not rules.allowed:
                raise PermissionDenied(
                    rules.blocked_reason
                    or f"the {ref['name']} policy never allows a move to {to_stage}"
                )
            pending = self._pending(session, version_id=version.id)
            if pending:
                raise Conflict(
                    f"version {data.version} has a pending transition request already "
                    f"(#{pending[0].id}, to {pending[0].to_stage}): decide or cancel it first"
                )
            now = utcnow()
            request = TransitionRequest(
                model_id=model.id,
                model_version_id=version.id,
                from_stage=version.stage,
                to_stage=to_stage,
                rollback=rollback,
                status=PENDING,
                requested_by=ctx.actor.name,
                reason=cs.reason,
                created_at=now,
                evaluation_at_request={},
                evaluation={},
            )
            session.add(request)
            session.flush()
            evaluation = self._evaluate(session, model, version, request)
            request.evaluation_at_request = evaluation
            request.evaluation = evaluation
            cs.record(
                Action.TRANSITION_REQUEST,
                self._target(model, version, request),
                {
                    "from_stage": request.from_stage,
                    "to_stage": to_stage,
                    "rollback": rollback,
                    "policy": evaluation["policy"],
                    "unmet": [r["id"] for r in evaluation["requirements"] if not r["met"]],
                },
            )
            self._notify(session, GovernanceEvent.TRANSITION_REQUESTED, model, version, request)
            if evaluation["met"]:
                self._apply(cs, model, version, request, evaluation)
            return self._view(session, request, model, version)

    def decide(self, ctx: Context, transition_id: int, data: DecisionCreate) -> TransitionView:
        with self.trail.change(ctx, Permission.TRANSITION_DECIDE, data.comment) as cs:
            session = cs.session
            request, model, version = self._lock_request(session, transition_id)
            if request.status != PENDING:
                raise Conflict(f"transition request #{transition_id} is {request.status}")
            policy, ref = self._policy_for(session, model)
            stage_key = _stage_key(request)
            rules = policy.rules_for(stage_key)
            sod = policy.separation_of_duties
            actor = ctx.actor.name
            where = f"the {ref['name']} policy (version {ref['version']}) for {stage_key}"
            if data.decision == "approve":
                if not rules.approvals:
                    raise Conflict(f"{where} needs no approvals: there is nothing to approve")
                if sod.no_self_approval and actor == request.requested_by:
                    raise PermissionDenied(
                        f"separation of duties: {actor} requested this transition and cannot "
                        "approve it"
                    )
                if sod.no_approving_own_version and actor == version.created_by:
                    raise PermissionDenied(
                        f"separation of duties: {actor} created version {version.version} and "
                        "cannot approve its transitions"
                    )
            elif actor == request.requested_by:
                raise Conflict(
                    f"{actor} requested this transition: cancel it instead of rejecting it"
                )
            named = rules.roles()
            if named and not ctx.actor.is_system and not (ctx.actor.roles & named):
                raise PermissionDenied(
                    f"{where} takes decisions from {', '.join(sorted(named))}; {actor} holds "
                    f"{', '.join(sorted(ctx.actor.roles)) or 'no role'}"
                )
            decisions = self._decisions(session, request)
            earlier = next((d.decision for d in decisions if d.actor == actor), None)
            if earlier is not None:
                raise Conflict(
                    f"{actor} has decided on this request already ({earlier}): one person "
                    "counts once, whatever roles they hold"
                )
            decision = TransitionDecision(
                transition_id=request.id,
                decision=data.decision,
                actor=actor,
                actor_roles=sorted(ctx.actor.roles),
                comment=cs.reason,
                created_at=utcnow(),
            )
            session.add(decision)
            decisions.append(decision)
            approve = data.decision == "approve"
            cs.record(
                Action.TRANSITION_APPROVE if approve else Action.TRANSITION_REJECT,
                self._target(model, version, request),
                {"decision": data.decision, "roles": decision.actor_roles, "policy": ref},
            )
            event = (
                GovernanceEvent.TRANSITION_APPROVED
                if approve
                else GovernanceEvent.TRANSITION_REJECTED
            )
            self._notify(
                session, event, model, version, request, {"by": actor, "comment": cs.reason}
            )
            if approve:
                self._reevaluate(cs, model, [request], decisions)
            else:
                self._close(request, REJECTED, actor, f"rejected by {actor}: {cs.reason}")
            return TransitionView(request, model.name, version.version, decisions)

    def cancel(self, ctx: Context, transition_id: int, reason: str) -> TransitionView:
        with self.trail.change(ctx, Permission.TRANSITION_REQUEST, reason) as cs:
            session = cs.session
            request, model, version = self._lock_request(session, transition_id)
            if request.requested_by != ctx.actor.name:
                raise PermissionDenied(
                    f"only the requester ({request.requested_by}) may cancel request "
                    f"#{transition_id}"
                )
            if request.status != PENDING:
                raise Conflict(f"transition request #{transition_id} is {request.status}")
            self._close(request, CANCELLED, ctx.actor.name, f"cancelled: {cs.reason}")
            cs.record(
                Action.TRANSITION_CANCEL,
                self._target(model, version, request),
                {"status": CANCELLED, "by_requester": True},
            )
            self._notify(session, GovernanceEvent.TRANSITION_CANCELLED, model, version, request)
            return self._view(session, request, model, version)

    def get_transition(self, transition_id: int) -> TransitionView:
        with self.db.read() as session:
            request = session.get(TransitionRequest, transition_id)
            if request is None:
                raise NotFound(f"no transition request #{transition_id}")
            return self._views(session, [request])[0]

    def list_transitions(
        self,
        status: str | None = None,
        model: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[TransitionView]:
        limit = max(1, min(limit, MAX_PAGE))
        stmt = select(TransitionRequest).order_by(TransitionRequest.id.desc()).limit(limit + 1)
        with self.db.read() as session:
            if status:
                stmt = stmt.where(TransitionRequest.status == status)
            if model:
                model_id = session.execute(
                    select(Model.id).where(Model.name == model)
                ).scalar_one_or_none()
                if model_id is None:  # a filter matching nothing, like any other filter
                    return Page([], None)
                stmt = stmt.where(TransitionRequest.model_id == model_id)
            if cursor:
                stmt = stmt.where(TransitionRequest.id < decode_number_cursor(cursor))
            rows = list(session.execute(stmt).scalars())
            more = len(rows) > limit
            rows = rows[:limit]
            views = self._views(session, rows)
        return Page(views, encode_cursor(str(rows[-1].id)) if more else None)

    # -- evidence ----------------------------------------------------------------------

    def add_evidence(
        self, ctx: Context, model_name: str, number: int, data: EvidenceCreate, max_bytes: int
    ) -> EvidenceView:
        authorize(ctx, Permission.EVIDENCE_CREATE)
        if data.kind == "ethics_review":
            authorize(ctx, Permission.EVIDENCE_ETHICS_REVIEW)
        # Refusals that need no write come first: nothing is stored for a refused record.
        self._check_evidence_author(ctx, model_name, number)
        attachments = self._store_attachments(data, max_bytes)
        with self.trail.change(ctx, Permission.EVIDENCE_CREATE, data.reason) as cs:
            session = cs.session
            model = self._lock_model(session, model_name)
            version = self._version(session, model, number)
            policy, _ = self._policy_for(session, model)
            if (
                policy.separation_of_duties.no_evidence_for_own_version
                and version.created_by == ctx.actor.name
            ):
                raise _own_version_evidence(ctx.actor.name, number)
            dv = None
            if data.dataset is not None:
                ref = data.dataset
                dv = find_dataset_version(session, ref.dataset, ref.version, field="dataset")
            return self.write_evidence(
                cs,
                model,
                version,
                kind=data.kind,
                passed=data.passed,
                summary=data.summary,
                suite=data.suite.model_dump() if data.suite else {},
                results=data.results,
                checks=[c.model_dump() for c in data.checks],
                attachments=attachments,
                dataset=dv,
                created_by=ctx.actor.name,
            )

    def write_evidence(
        self,
        cs: ChangeSet,
        model: Model,
        version: ModelVersion,
        *,
        kind: str,
        passed: bool,
        summary: str,
        suite: dict[str, Any],
        results: dict[str, Any],
        checks: list[dict[str, Any]],
        attachments: list[dict[str, Any]],
        dataset: DatasetVersion | None,
        created_by: str,
        source: str = "api",
        job_id: int | None = None,
        audit: bool = True,
    ) -> EvidenceView:
        """Write one evidence record in the change ``cs`` (the model row locked by the caller):
        the row with its content hash, its audit event, the governance event, and the
        re-evaluation of the version's pending transition requests. Used for evidence recorded
        through the API, the scan at registration (``audit=False``: the registration's own
        event records it) and validation jobs."""
        session = cs.session
        dataset_label = f"{dataset.dataset.name}@{dataset.version}" if dataset is not None else None
        fields: dict[str, Any] = {
            "kind": kind,
            "passed": passed,
            "summary": summary,
            "suite": suite,
            "results": results,
            "checks": checks,
            "attachments": attachments,
            "created_by": created_by,
            "created_at": utcnow(),
        }
        content = evidence_document(
            model=model.name,
            version=version.version,
            dataset=dataset_label,
            source=source,
            **fields,
        )
        evidence = Evidence(
            model_version_id=version.id,
            dataset_version_id=dataset.id if dataset is not None else None,
            content_sha256=hashlib.sha256(content).hexdigest(),
            source=source,
            validation_job_id=job_id,
            **fields,
        )
        session.add(evidence)
        session.flush()
        if audit:
            cs.record(
                Action.EVIDENCE_CREATE,
                f"{version_target(model.name, version.version)}/evidence/{evidence.id}",
                {
                    "kind": kind,
                    "passed": passed,
                    "content_sha256": evidence.content_sha256,
                    "suite": suite.get("name"),
                    "dataset": dataset_label,
                    "attachments": [a["sha256"] for a in attachments],
                    "source": source,
                    "recorded_by": created_by,
                    **({"validation_job": job_id} if job_id is not None else {}),
                },
            )
        self.notify(
            session,
            GovernanceEvent.EVIDENCE_ADDED,
            {
                "model": model.name,
                "version": version.version,
                "evidence_id": evidence.id,
                "kind": kind,
                "passed": passed,
                "content_sha256": evidence.content_sha256,
                "recorded_by": created_by,
                "source": source,
            },
        )
        self._reevaluate(cs, model, self._pending(session, version_id=version.id))
        return EvidenceView(evidence, model.name, version.version, dataset_label)

    # -- for services that record evidence in their own changes (validation runs) -----------

    def lock_model(self, session: Session, name: str) -> Model:
        """The model's row, locked for the change (as every lifecycle change locks it)."""
        return self._lock_model(session, name)

    def version_of(self, session: Session, model: Model, number: int) -> ModelVersion:
        return self._version(session, model, number)

    def policy_of(self, session: Session, model: Model) -> PolicyDocument:
        """The current policy of the model's risk tier."""
        return self._policy_for(session, model)[0]

    # -- the artifact scan at registration -------------------------------------------------

    def scan_policy(self, model_name: str) -> ScanPolicy:
        """What the scan accepts for a model: its risk tier's policy's ``artifacts`` rules."""
        with self.db.read() as session:
            model = self._model(session, model_name)
            policy, _ = self._policy_for(session, model)
        return ScanPolicy(
            allow_pickle=policy.artifacts.allow_pickle,
            trusted_types=tuple(policy.artifacts.trusted_types),
        )

    def scan_upload(self, model_name: str, path: Path, fmt: str) -> ScanReport:
        """Scan an uploaded artifact (never loading it); refuse one that would run code when
        loaded or that the model's policy does not accept, naming the reason."""
        try:
            return scan_or_raise(path, fmt, self.scan_policy(model_name))
        except ArtifactRejected as exc:
            log.warning("artifact for %s refused by the scan: %s", model_name, exc.report.message())
            raise InvalidInput(exc.report.message(), field="artifact") from None

    def record_scan(
        self, cs: ChangeSet, model: Model, version: ModelVersion, scan: ScanReport
    ) -> dict[str, Any]:
        """The scan's result as the version's first ``security_scan`` evidence, in the change
        that registers the version (recorded by the server, not by the uploader). Its audit
        record is the version's ``model_version.create`` event: returns what that event says
        of it."""
        policy, _ = self._policy_for(cs.session, model)
        # An artifact no scanner understands is stored, but its scan is no evidence of safety:
        # recorded as not passed, so gates needing a security scan wait for one.
        passed = scan.passed and scan.conclusive
        view = self.write_evidence(
            cs,
            model,
            version,
            kind="security_scan",
            passed=passed,
            summary=scan.message(),
            suite={
                "name": SCAN_SUITE,
                "version": mlgov.__version__,
                "definition": {
                    "format": scan.format,
                    "tools": scan.tools,
                    "allow_pickle": policy.artifacts.allow_pickle,
                    "trusted_types": list(policy.artifacts.trusted_types),
                },
            },
            results=scan.results(),
            checks=scan.checks()
            + (
                []
                if scan.conclusive
                else [
                    {
                        "name": f"a scanner for format {scan.format}",
                        "passed": False,
                        "value": None,
                        "threshold": None,
                        "details": "no scanner reads this format: the content was not examined",
                    }
                ]
            ),
            attachments=[],
            dataset=None,
            created_by=SYSTEM.name,
            source="scan",
            audit=False,
        )
        return {
            "evidence_id": view.evidence.id,
            "passed": passed,
            "content_sha256": view.evidence.content_sha256,
            "tools": scan.tools,
        }

    def _check_evidence_author(self, ctx: Context, model_name: str, number: int) -> None:
        with self.db.read() as session:
            model = session.execute(
                select(Model).where(Model.name == check_name(model_name))
            ).scalar_one_or_none()
            if model is None:
                raise NotFound(f"no model named {model_name!r}")
            version = self._version(session, model, number)
            policy, _ = self._policy_for(session, model)
        if (
            policy.separation_of_duties.no_evidence_for_own_version
            and version.created_by == ctx.actor.name
        ):
            raise _own_version_evidence(ctx.actor.name, number)

    def _store_attachments(self, data: EvidenceCreate, max_bytes: int) -> list[dict[str, Any]]:
        stored = []
        for item in data.attachments:
            with self.store.writer(max_bytes) as writer:
                writer.write(item.content())
                artifact = writer.commit()
            stored.append(
                {
                    "name": item.name,
                    "media_type": item.media_type,
                    "size": artifact.size,
                    "sha256": artifact.sha256,
                }
            )
        return stored

    def list_evidence(
        self, model_name: str, number: int, kind: str | None = None
    ) -> list[EvidenceView]:
        with self.db.read() as session:
            model = session.execute(
                select(Model).where(Model.name == model_name)
            ).scalar_one_or_none()
            if model is None:
                raise NotFound(f"no model named {model_name!r}")
            version = self._version(session, model, number)
            stmt = (
                select(Evidence, Dataset.name, DatasetVersion.version)
                .outerjoin(DatasetVersion, Evidence.dataset_version_id == DatasetVersion.id)
                .outerjoin(Dataset, DatasetVersion.dataset_id == Dataset.id)
                .where(Evidence.model_version_id == version.id)
                .order_by(Evidence.id)
            )
            if kind:
                stmt = stmt.where(Evidence.kind == kind)
            rows = session.execute(stmt).all()
        return [
            EvidenceView(ev, model_name, number, f"{ds}@{dv}" if ds is not None else None)
            for ev, ds, dv in rows
        ]

    def attachment(
        self, model_name: str, number: int, evidence_id: int, name: str
    ) -> tuple[dict[str, Any], Iterator[bytes]]:
        for view in self.list_evidence(model_name, number):
            if view.evidence.id != evidence_id:
                continue
            for item in view.evidence.attachments:
                if item["name"] == name:
                    return item, self.store.open(item["sha256"])
            raise NotFound(f"evidence #{evidence_id} has no attachment named {name!r}")
        raise NotFound(f"version {number} of {model_name!r} has no evidence #{evidence_id}")

    # -- history -----------------------------------------------------------------------

    def stage_history(self, model_name: str) -> list[tuple[StageChange, str]]:
        """Every stage change of the model's versions, oldest first."""
        with self.db.read() as session:
            model = self._model(session, model_name)
            rows = session.execute(
                select(StageChange)
                .where(StageChange.model_id == model.id)
                .order_by(StageChange.time, StageChange.id)
            ).scalars()
            return [(row, model_name) for row in rows]

    def stages_at(self, model_name: str, at: datetime) -> list[StageAt]:
        """Which version was in which stage at the instant ``at``: for each version existing
        then, the stage it last entered at or before ``at``."""
        with self.db.read() as session:
            model = self._model(session, model_name)
            rows = session.execute(
                select(StageChange)
                .where(StageChange.model_id == model.id, StageChange.time <= at)
                .order_by(StageChange.time, StageChange.id)
            ).scalars()
            last: dict[int, StageAt] = {}
            for row in rows:
                last[row.version] = StageAt(row.version, row.to_stage, row.time)
        return [last[v] for v in sorted(last)]

    def previous_production(self, model_name: str) -> int | None:
        """The version a rollback would bring back: the newest version that was in production
        and is not any more."""
        with self.db.read() as session:
            model = self._model(session, model_name)
            rows = session.execute(
                select(StageChange.version, ModelVersion.stage)
                .join(ModelVersion, StageChange.model_version_id == ModelVersion.id)
                .where(
                    StageChange.model_id == model.id,
                    StageChange.to_stage == Stage.PRODUCTION.value,
                )
                .order_by(StageChange.time.desc(), StageChange.id.desc())
            ).all()
        for number, stage in rows:
            if stage == Stage.ARCHIVED.value:
                return int(number)
        return None

    # -- hooks of the registry ---------------------------------------------------------

    def on_model_change(self, cs: ChangeSet, model: Model) -> None:
        """A model's risk tier or documentation changed in ``cs``: its pending requests are
        evaluated again (against the new tier's policy) and applied if now met."""
        self._reevaluate(cs, model, self._pending(cs.session, model_id=model.id))

    # -- internals ---------------------------------------------------------------------

    def _reevaluate(
        self,
        cs: ChangeSet,
        model: Model,
        requests: Sequence[TransitionRequest],
        decisions: Sequence[TransitionDecision] | None = None,
    ) -> None:
        """``decisions``: those of the one request given, when the caller has them already."""
        for request in requests:
            version = cs.session.get(
                ModelVersion,
                request.model_version_id,
                options=[lazyload(ModelVersion.model), lazyload(ModelVersion.lineage)],
            )
            assert version is not None
            evaluation = self._evaluate(cs.session, model, version, request, decisions)
            if evaluation["met"]:
                self._apply(cs, model, version, request, evaluation)  # sets it with the rest
            else:
                request.evaluation = evaluation

    def _evaluate(
        self,
        session: Session,
        model: Model,
        version: ModelVersion,
        request: TransitionRequest,
        decisions: Sequence[TransitionDecision] | None = None,
    ) -> dict[str, Any]:
        policy, ref = self._policy_for(session, model)
        stage_key = _stage_key(request)
        rules = policy.rules_for(stage_key)
        evidence: dict[str, EvidenceFact] = {}
        if rules.evidence:
            rows = session.execute(
                select(
                    Evidence.id,
                    Evidence.kind,
                    Evidence.passed,
                    Evidence.created_at,
                    Evidence.created_by,
                    Evidence.dataset_version_id,
                    Evidence.source,
                )
                .where(
                    Evidence.model_version_id == version.id,
                    Evidence.kind.in_(rules.evidence),
                )
                .order_by(Evidence.id.desc())
            ).all()
            for row in rows:
                if row.kind not in evidence:
                    evidence[row.kind] = EvidenceFact(*row)
        if decisions is None:
            decisions = self._decisions(session, request)
        lineage = []
        if rules.lineage or rules.documentation:
            lineage = [
                (role, f"{name}@{number}", sheet)
                for role, name, number, sheet in session.execute(
                    select(
                        Lineage.role, Dataset.name, DatasetVersion.version, DatasetVersion.datasheet
                    )
                    .join(DatasetVersion, Lineage.dataset_version_id == DatasetVersion.id)
                    .join(Dataset, DatasetVersion.dataset_id == Dataset.id)
                    .where(Lineage.model_version_id == version.id)
                    .order_by(Lineage.id)
                )
            ]
        facts = Facts(
            model={
                "description": model.description,
                "intended_use": model.intended_use,
                "out_of_scope_uses": model.out_of_scope_uses,
                "domain": model.domain,
            },
            version={
                "algorithm": version.algorithm,
                "hyperparameters": version.hyperparameters,
                "metrics": version.metrics,
                "code_ref": version.code_ref,
                "environment": version.environment,
                "changelog": version.changelog,
            },
            version_created_by=version.created_by,
            lineage=lineage,
            evidence=evidence,
            requested_by=request.requested_by,
            decisions=[
                DecisionFact(d.actor, d.decision, frozenset(d.actor_roles)) for d in decisions
            ],
            now=utcnow(),
        )
        return evaluate(policy, ref, stage_key, facts)

    def _apply(
        self,
        cs: ChangeSet,
        model: Model,
        version: ModelVersion,
        request: TransitionRequest,
        evaluation: dict[str, Any],
    ) -> None:
        session = cs.session
        now = utcnow()
        actor = cs.ctx.actor.name
        replaced: list[ModelVersion] = []
        if request.to_stage == Stage.PRODUCTION.value:
            replaced = list(
                session.execute(
                    select(ModelVersion).where(
                        ModelVersion.model_id == model.id,
                        ModelVersion.stage == Stage.PRODUCTION.value,
                        ModelVersion.id != version.id,
                    )
                ).scalars()
            )
            for old in replaced:
                old.stage = Stage.ARCHIVED.value
                session.add(
                    StageChange(
                        model_id=model.id,
                        model_version_id=old.id,
                        version=old.version,
                        from_stage=Stage.PRODUCTION.value,
                        to_stage=Stage.ARCHIVED.value,
                        time=now,
                        actor=actor,
                        transition_id=request.id,
                        reason=f"replaced in production by version {version.version}",
                    )
                )
            session.flush()  # one production version at a time (a unique index checks it)
        version.stage = request.to_stage
        session.add(
            StageChange(
                model_id=model.id,
                model_version_id=version.id,
                version=version.version,
                from_stage=request.from_stage,
                to_stage=request.to_stage,
                time=now,
                actor=actor,
                transition_id=request.id,
                reason=request.reason,
            )
        )
        request.evaluation = evaluation
        self._close(request, APPLIED, actor, "applied: every requirement was met", now)
        session.flush()
        cs.record(
            Action.TRANSITION_APPLY,
            version_target(model.name, version.version),
            {
                "transition": request.id,
                "from_stage": request.from_stage,
                "to_stage": request.to_stage,
                "rollback": request.rollback,
                "requested_by": request.requested_by,
                "policy": evaluation["policy"],
                "archived_versions": [old.version for old in replaced],
            },
        )
        self._notify(
            session,
            GovernanceEvent.TRANSITION_APPLIED,
            model,
            version,
            request,
            {"archived_versions": [old.version for old in replaced]},
        )
        for old in replaced:
            cs.record(
                Action.MODEL_VERSION_ARCHIVE,
                version_target(model.name, old.version),
                {"replaced_by": version.version, "transition": request.id},
            )
            for stale in self._pending(session, version_id=old.id):
                self._close(
                    stale,
                    CANCELLED,
                    actor,
                    f"superseded: version {old.version} was archived when version "
                    f"{version.version} replaced it in production",
                    now,
                )
                cs.record(
                    Action.TRANSITION_CANCEL,
                    self._target(model, old, stale),
                    {"status": CANCELLED, "superseded_by": request.id},
                )
                self._notify(session, GovernanceEvent.TRANSITION_CANCELLED, model, old, stale)

    @staticmethod
    def _close(
        request: TransitionRequest,
        status: str,
        actor: str,
        outcome: str,
        when: datetime | None = None,
    ) -> None:
        request.status = status
        request.closed_at = when or utcnow()
        request.closed_by = actor
        request.outcome = outcome

    def _notify(
        self,
        session: Session,
        event: GovernanceEvent,
        model: Model,
        version: ModelVersion,
        request: TransitionRequest,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.notify(
            session,
            event,
            {
                "transition_id": request.id,
                "model": model.name,
                "version": version.version,
                "from_stage": request.from_stage,
                "to_stage": request.to_stage,
                "rollback": request.rollback,
                "status": request.status,
                "requested_by": request.requested_by,
                "unmet": list(request.evaluation.get("unmet", [])),
                **(extra or {}),
            },
        )

    @staticmethod
    def _target(model: Model, version: ModelVersion, request: TransitionRequest) -> str:
        return f"{version_target(model.name, version.version)}/transitions/{request.id}"

    @staticmethod
    def _pending(
        session: Session, *, model_id: int | None = None, version_id: int | None = None
    ) -> list[TransitionRequest]:
        stmt = select(TransitionRequest).where(TransitionRequest.status == PENDING)
        if model_id is not None:
            stmt = stmt.where(TransitionRequest.model_id == model_id)
        if version_id is not None:
            stmt = stmt.where(TransitionRequest.model_version_id == version_id)
        return list(session.execute(stmt.order_by(TransitionRequest.id)).scalars())

    @staticmethod
    def _lock_model(session: Session, name: str) -> Model:
        model = session.execute(
            select(Model)
            .options(lazyload(Model.tag_rows))  # the gates never read tags
            .where(Model.name == check_name(name, "model"))
            .with_for_update()
            .execution_options(populate_existing=True)
        ).scalar_one_or_none()
        if model is None:
            raise NotFound(f"no model named {name!r}")
        return model

    def _lock_request(
        self, session: Session, transition_id: int
    ) -> tuple[TransitionRequest, Model, ModelVersion]:
        model = session.execute(
            select(Model)
            .options(lazyload(Model.tag_rows))
            .where(
                Model.id
                == select(TransitionRequest.model_id)
                .where(TransitionRequest.id == transition_id)
                .scalar_subquery()
            )
            .with_for_update()
            .execution_options(populate_existing=True)
        ).scalar_one_or_none()
        if model is None:
            raise NotFound(f"no transition request #{transition_id}")
        # Read after the lock: a decision that committed meanwhile is seen.
        request = session.execute(
            select(TransitionRequest)
            .where(TransitionRequest.id == transition_id)
            .execution_options(populate_existing=True)
        ).scalar_one()
        version = session.execute(
            select(ModelVersion)
            .options(lazyload(ModelVersion.model), lazyload(ModelVersion.lineage))
            .where(ModelVersion.id == request.model_version_id)
            .execution_options(populate_existing=True)
        ).scalar_one()
        return request, model, version

    @staticmethod
    def _version(session: Session, model: Model, number: int) -> ModelVersion:
        version = session.execute(
            select(ModelVersion)
            .options(lazyload(ModelVersion.model), lazyload(ModelVersion.lineage))
            .where(ModelVersion.model_id == model.id, ModelVersion.version == number)
            .execution_options(populate_existing=True)
        ).scalar_one_or_none()
        if version is None:
            raise NotFound(f"model {model.name!r} has no version {number}")
        return version

    @staticmethod
    def _model(session: Session, name: str) -> Model:
        model = session.execute(select(Model).where(Model.name == name)).scalar_one_or_none()
        if model is None:
            raise NotFound(f"no model named {name!r}")
        return model

    @staticmethod
    def _was_in_production(session: Session, version: ModelVersion) -> bool:
        return (
            session.execute(
                select(StageChange.id)
                .where(
                    StageChange.model_version_id == version.id,
                    StageChange.to_stage == Stage.PRODUCTION.value,
                )
                .limit(1)
            ).first()
            is not None
        )

    @staticmethod
    def _decisions(session: Session, request: TransitionRequest) -> list[TransitionDecision]:
        return list(
            session.execute(
                select(TransitionDecision)
                .where(TransitionDecision.transition_id == request.id)
                .order_by(TransitionDecision.id)
            ).scalars()
        )

    def _view(
        self, session: Session, request: TransitionRequest, model: Model, version: ModelVersion
    ) -> TransitionView:
        return TransitionView(
            request, model.name, version.version, self._decisions(session, request)
        )

    @staticmethod
    def _views(session: Session, requests: Sequence[TransitionRequest]) -> list[TransitionView]:
        if not requests:
            return []
        ids = [r.id for r in requests]
        labels = {
            vid: (name, number)
            for vid, name, number in session.execute(
                select(ModelVersion.id, Model.name, ModelVersion.version)
                .join(Model, ModelVersion.model_id == Model.id)
                .where(ModelVersion.id.in_({r.model_version_id for r in requests}))
            ).all()
        }
        decisions: dict[int, list[TransitionDecision]] = {i: [] for i in ids}
        for d in session.execute(
            select(TransitionDecision)
            .where(TransitionDecision.transition_id.in_(ids))
            .order_by(TransitionDecision.id)
        ).scalars():
            decisions[d.transition_id].append(d)
        return [TransitionView(r, *labels[r.model_version_id], decisions[r.id]) for r in requests]


def _stage_key(request: TransitionRequest) -> str:
    return "rollback" if request.rollback else request.to_stage


def _allowed_from(stage: str) -> str:
    targets = sorted(to for frm, to in TRANSITIONS if frm == stage)
    return ", ".join(targets) or "none"


def _own_version_evidence(actor: str, number: int) -> PermissionDenied:
    return PermissionDenied(
        f"separation of duties: {actor} created version {number} and cannot record evidence for it"
    )

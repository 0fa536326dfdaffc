"""Policies: the declarative rules a transition must meet, and their evaluation.

A policy is a YAML document, one per risk tier (its ``policy`` key names the tier), published
in versions. Per target stage it lists the evidence kinds that must exist and have passed, the
approvals needed (how many, from which roles), the documentation fields that must be filled and
extra rules; its ``separation_of_duties`` section holds the switches of the four separation of
duties rules (all on unless an admin publishes a version that turns one off).

:func:`evaluate` is pure: given the facts about a version and a request it says, requirement by
requirement, what is met and what is not, in words and as data.
"""

from __future__ import annotations

import hashlib
import importlib.resources
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, StringConstraints, ValidationError, field_validator

from mlgov.errors import InvalidInput, field_path
from mlgov.identity.permissions import Role
from mlgov.registry.schemas import RiskTier, Stage
from mlgov.schemas import Input, LongText

MAX_POLICY_BYTES = 64 * 1024

#: Evidence kinds the product knows (SPEC §2); policies may also name custom kinds.
KNOWN_EVIDENCE_KINDS = (
    "performance",
    "fairness",
    "explainability",
    "robustness",
    "reproducibility",
    "security_scan",
    "ethics_review",
    "documentation",
)
EvidenceKind = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]

DATASHEET_FIELDS = (
    "motivation",
    "composition",
    "collection",
    "preprocessing",
    "uses",
    "distribution",
    "maintenance",
    "personal_data",
)
#: Documentation fields a policy may require, and what each means.
DOCUMENTATION_FIELDS: dict[str, str] = {
    "model.description": "the model's description",
    "model.intended_use": "the model's intended use",
    "model.out_of_scope_uses": "at least one out-of-scope use of the model",
    "model.domain": "the model's domain",
    "version.algorithm": "the version's algorithm",
    "version.hyperparameters": "the version's hyperparameters",
    "version.metrics": "the version's training metrics",
    "version.code_ref": "the version's code reference (repository and commit)",
    "version.environment": "the version's environment (Python and packages)",
    "version.changelog": "the version's changelog",
    **{
        f"datasheet.{name}": f"the '{name}' answer of every linked dataset version's datasheet"
        for name in DATASHEET_FIELDS
    },
}
DocumentationField = Literal[
    "model.description",
    "model.intended_use",
    "model.out_of_scope_uses",
    "model.domain",
    "version.algorithm",
    "version.hyperparameters",
    "version.metrics",
    "version.code_ref",
    "version.environment",
    "version.changelog",
    "datasheet.motivation",
    "datasheet.composition",
    "datasheet.collection",
    "datasheet.preprocessing",
    "datasheet.uses",
    "datasheet.distribution",
    "datasheet.maintenance",
    "datasheet.personal_data",
]
assert set(DOCUMENTATION_FIELDS) == set(DocumentationField.__args__)  # type: ignore[attr-defined]

#: A policy's stage keys: the four stages and ``rollback`` (a move back to production of a
#: version that was there before; without its own key it meets the ``production`` rules).
StageKey = Literal["development", "staging", "production", "archived", "rollback"]


class ApprovalRule(Input):
    count: int = Field(ge=1, le=10)
    roles: list[Role] = Field(min_length=1, max_length=len(Role))


class StageRules(Input):
    allowed: bool = True
    blocked_reason: LongText = ""
    evidence: list[EvidenceKind] = Field(default_factory=list, max_length=50)
    approvals: list[ApprovalRule] = Field(default_factory=list, max_length=10)
    documentation: list[DocumentationField] = Field(default_factory=list)
    #: Lineage roles that must be linked (e.g. a training dataset version).
    lineage: list[Literal["training", "validation", "test"]] = Field(default_factory=list)
    #: Required evidence must be at most this old.
    evidence_max_age_days: int | None = Field(default=None, ge=1, le=36_500)
    #: Required evidence (except ethics reviews and security scans) must name a dataset version.
    evidence_on_dataset: bool = False
    #: Required evidence must have been computed by the server (the scan at registration, a
    #: validation run), not recorded through the API; people's judgements (the kinds in
    #: ``JUDGEMENT_KINDS``) are exempt.
    evidence_computed: bool = False

    @field_validator("evidence", "documentation", "lineage")
    @classmethod
    def _unique(cls, items: list[str]) -> list[str]:
        if len(set(items)) != len(items):
            raise ValueError("an item is listed twice")
        return items

    def roles(self) -> set[str]:
        return {role.value for rule in self.approvals for role in rule.roles}


class SeparationOfDuties(Input):
    no_self_approval: bool = True
    no_approving_own_version: bool = True
    no_evidence_for_own_version: bool = True
    one_person_counts_once: bool = True


#: A dotted Python name (ASCII: a Unicode ``\w`` repeated 255 times compiles to a huge regex).
TypeName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.]{0,255}$")]


class ArtifactRules(Input):
    """What the scan at registration accepts for models of this tier."""

    #: Plain pickle (and MLflow flavours saved with pickle) can run code when loaded; refused
    #: unless an administrator allows it here. Dangerous imports are refused regardless.
    allow_pickle: bool = False
    #: Types a skops file may contain beyond those skops trusts by default (reviewed by the
    #: organisation), e.g. ``numpy.dtype``.
    trusted_types: list[TypeName] = Field(default_factory=list, max_length=500)


class PolicyDocument(Input):
    policy: RiskTier
    description: LongText = ""
    separation_of_duties: SeparationOfDuties = Field(default_factory=SeparationOfDuties)
    artifacts: ArtifactRules = Field(default_factory=ArtifactRules)
    stages: dict[StageKey, StageRules] = Field(default_factory=dict)

    def rules_for(self, key: str) -> StageRules:
        if key == "rollback" and "rollback" not in self.stages:
            key = "production"
        return self.stages.get(key, StageRules())  # type: ignore[call-overload, no-any-return]


def parse_policy(text: str, *, field_name: str = "document") -> PolicyDocument:
    """Parse and validate a policy's YAML; errors name the offending key."""
    if len(text.encode()) > MAX_POLICY_BYTES:
        raise InvalidInput(f"a policy is at most {MAX_POLICY_BYTES} bytes", field=field_name)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"the policy is not valid YAML: {exc}", field=field_name) from None
    if not isinstance(raw, dict):
        raise InvalidInput("a policy is a YAML mapping", field=field_name)
    try:
        return PolicyDocument.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = field_path((field_name, *error["loc"]))
        raise InvalidInput(f"{where}: {error['msg']}", field=where) from None


def document_sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def builtin_pack(tier: RiskTier) -> str:
    """The YAML of a built-in policy pack (``minimal``, ``limited``, ``high``,
    ``unacceptable``), shipped with the package."""
    return (
        importlib.resources.files("mlgov.lifecycle") / "packs" / f"{tier.value}.yaml"
    ).read_text(encoding="utf-8")


# -- evaluation ----------------------------------------------------------------------------

#: Allowed moves: (from, to). Archived versions only come back to production by rollback.
TRANSITIONS: frozenset[tuple[str, str]] = frozenset(
    {
        (Stage.DEVELOPMENT, Stage.STAGING),
        (Stage.DEVELOPMENT, Stage.ARCHIVED),
        (Stage.STAGING, Stage.PRODUCTION),
        (Stage.STAGING, Stage.DEVELOPMENT),
        (Stage.STAGING, Stage.ARCHIVED),
        (Stage.PRODUCTION, Stage.ARCHIVED),
        (Stage.ARCHIVED, Stage.PRODUCTION),  # rollback
    }
)


#: Evidence that records a person's judgement: never computed, so ``evidence_computed`` does
#: not apply to it.
JUDGEMENT_KINDS = frozenset({"ethics_review", "documentation"})
#: Evidence sources that mean "computed by the server".
COMPUTED_SOURCES = frozenset({"scan", "validation"})


@dataclass(frozen=True)
class EvidenceFact:
    id: int
    kind: str
    passed: bool
    created_at: datetime
    created_by: str
    dataset_version_id: int | None
    source: str = "api"  # api | scan | validation


@dataclass(frozen=True)
class DecisionFact:
    actor: str
    decision: str
    roles: frozenset[str]


@dataclass(frozen=True)
class Facts:
    """What an evaluation looks at, read in the deciding transaction."""

    model: Mapping[str, Any]
    version: Mapping[str, Any]
    version_created_by: str
    #: (role, "dataset@version", datasheet answers) per linked dataset version.
    lineage: Sequence[tuple[str, str, Mapping[str, Any]]]
    #: The newest evidence record of each kind.
    evidence: Mapping[str, EvidenceFact]
    requested_by: str | None
    decisions: Sequence[DecisionFact]
    now: datetime


@dataclass(frozen=True)
class Requirement:
    id: str
    kind: str  # stage | evidence | approvals | documentation | lineage
    met: bool
    message: str
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "met": self.met,
            "message": self.message,
            "data": self.data,
        }


def evaluate(
    policy: PolicyDocument,
    policy_ref: Mapping[str, Any],
    stage_key: str,
    facts: Facts,
) -> dict[str, Any]:
    """Every requirement of ``policy`` for ``stage_key``, met or not, as stored and shown."""
    rules = policy.rules_for(stage_key)
    sod = policy.separation_of_duties
    items: list[Requirement] = []
    if not rules.allowed:
        items.append(
            Requirement(
                "stage.allowed",
                "stage",
                False,
                rules.blocked_reason
                or f"the {policy.policy.value} policy never allows a move to {stage_key}",
                {"stage": stage_key},
            )
        )
    items += _evidence(rules, sod, facts)
    items += _documentation(rules, facts)
    items += _lineage(rules, facts)
    items += _approvals(rules, sod, facts)
    return {
        "policy": dict(policy_ref),
        "stage": stage_key,
        "evaluated_at": facts.now.isoformat().replace("+00:00", "Z"),
        "met": all(item.met for item in items),
        "requirements": [item.as_dict() for item in items],
        "unmet": [item.message for item in items if not item.met],
    }


def _evidence(rules: StageRules, sod: SeparationOfDuties, facts: Facts) -> list[Requirement]:
    out = []
    for kind in rules.evidence:
        rid = f"evidence.{kind}"
        fact = facts.evidence.get(kind)
        data: dict[str, Any] = {"evidence_kind": kind, "evidence_id": fact.id if fact else None}
        if fact is None:
            out.append(Requirement(rid, "evidence", False, f"no {kind} evidence recorded", data))
            continue
        data["passed"] = fact.passed
        problem = None
        if not fact.passed:
            problem = f"the latest {kind} evidence (#{fact.id}) failed"
        elif sod.no_evidence_for_own_version and fact.created_by == facts.version_created_by:
            problem = (
                f"the latest {kind} evidence (#{fact.id}) was recorded by the version's "
                f"creator {fact.created_by}, which separation of duties does not count"
            )
        elif rules.evidence_max_age_days is not None and fact.created_at < facts.now - timedelta(
            days=rules.evidence_max_age_days
        ):
            problem = (
                f"the latest {kind} evidence (#{fact.id}) is older than "
                f"{rules.evidence_max_age_days} days"
            )
        elif (
            rules.evidence_on_dataset
            and kind not in {"ethics_review", "security_scan"}
            and fact.dataset_version_id is None
        ):
            problem = f"the latest {kind} evidence (#{fact.id}) names no dataset version"
        elif (
            rules.evidence_computed
            and kind not in JUDGEMENT_KINDS
            and fact.source not in COMPUTED_SOURCES
        ):
            problem = (
                f"the latest {kind} evidence (#{fact.id}) was recorded through the API; "
                "the policy requires evidence computed by the server (a validation run)"
            )
        if problem:
            out.append(Requirement(rid, "evidence", False, problem, data))
        else:
            out.append(
                Requirement(rid, "evidence", True, f"{kind} evidence #{fact.id} passed", data)
            )
    return out


def _filled(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, Mapping):
        return any(_filled(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_filled(v) for v in value)
    return True


def _documentation(rules: StageRules, facts: Facts) -> list[Requirement]:
    out = []
    for name in rules.documentation:
        rid = f"documentation.{name}"
        scope, key = name.split(".", 1)
        label = DOCUMENTATION_FIELDS[name]
        if scope in {"model", "version"}:
            source = facts.model if scope == "model" else facts.version
            ok = _filled(source.get(key))
            message = f"{label} is filled" if ok else f"{label} is missing ({name})"
            out.append(Requirement(rid, "documentation", ok, message, {"field": name}))
            continue
        if not facts.lineage:
            out.append(
                Requirement(
                    rid,
                    "documentation",
                    False,
                    f"{label} is missing: no dataset version is linked",
                    {"field": name, "missing_in": []},
                )
            )
            continue
        missing = sorted(
            {label_ for _, label_, sheet in facts.lineage if not _filled(sheet.get(key))}
        )
        ok = not missing
        message = (
            f"{label} is filled"
            if ok
            else f"datasheet answer '{key}' is missing for {', '.join(missing)}"
        )
        out.append(
            Requirement(rid, "documentation", ok, message, {"field": name, "missing_in": missing})
        )
    return out


def _lineage(rules: StageRules, facts: Facts) -> list[Requirement]:
    out = []
    for role in rules.lineage:
        linked = sorted(label for r, label, _ in facts.lineage if r == role)
        ok = bool(linked)
        message = (
            f"{role} dataset version linked: {', '.join(linked)}"
            if ok
            else f"no {role} dataset version is linked to the version"
        )
        out.append(
            Requirement(
                f"lineage.{role}", "lineage", ok, message, {"role": role, "datasets": linked}
            )
        )
    return out


def counted_approvals(
    rules: StageRules, sod: SeparationOfDuties, facts: Facts
) -> tuple[list[list[str]], list[dict[str, str]]]:
    """Which approvers fill which approval rule, and the approvals that do not count (why).

    With ``one_person_counts_once`` a person fills at most one place in all the rules together,
    whatever roles they hold: places are assigned by maximum bipartite matching, so the count
    never depends on the order of approvals. Without it, an approval counts for every rule
    naming one of the person's roles.
    """
    ignored: list[dict[str, str]] = []
    eligible: list[DecisionFact] = []
    for d in facts.decisions:
        if d.decision != "approve":
            continue
        if sod.no_self_approval and d.actor == facts.requested_by:
            ignored.append({"actor": d.actor, "why": "requested the transition"})
        elif sod.no_approving_own_version and d.actor == facts.version_created_by:
            ignored.append({"actor": d.actor, "why": "created the version"})
        elif not d.roles & rules.roles():
            ignored.append({"actor": d.actor, "why": "holds none of the roles the policy names"})
        else:
            eligible.append(d)
    filled: list[list[str]] = [[] for _ in rules.approvals]
    if not sod.one_person_counts_once:
        for i, rule in enumerate(rules.approvals):
            names = {r.value for r in rule.roles}
            filled[i] = [d.actor for d in eligible if d.roles & names][: rule.count]
        return filled, ignored
    # slots: one per place of each rule; match people to slots (Kuhn's augmenting paths).
    slots = [i for i, rule in enumerate(rules.approvals) for _ in range(rule.count)]
    slot_roles = [{r.value for r in rules.approvals[i].roles} for i in slots]
    owner: list[int | None] = [None] * len(slots)

    def assign(person: int, seen: set[int]) -> bool:
        for s, roles in enumerate(slot_roles):
            if s in seen or not (eligible[person].roles & roles):
                continue
            seen.add(s)
            holder = owner[s]
            if holder is None or assign(holder, seen):
                owner[s] = person
                return True
        return False

    for person in range(len(eligible)):
        assign(person, set())
    for rule_index in range(len(rules.approvals)):  # in the order the approvals came
        people = sorted(p for s, p in enumerate(owner) if p is not None and slots[s] == rule_index)
        filled[rule_index] = [eligible[p].actor for p in people]
    return filled, ignored


def _approvals(rules: StageRules, sod: SeparationOfDuties, facts: Facts) -> list[Requirement]:
    if not rules.approvals:
        return []
    filled, ignored = counted_approvals(rules, sod, facts)
    out = []
    for i, rule in enumerate(rules.approvals):
        roles = [r.value for r in rule.roles]
        got = filled[i]
        ok = len(got) >= rule.count
        who = f" ({', '.join(got)})" if got else ""
        message = (
            f"{len(got)} of {rule.count} approval{'s' if rule.count > 1 else ''} "
            f"from {' or '.join(roles)}{who}"
        )
        prefix = "approved" if ok else f"needs {rule.count - len(got)} more"
        message = f"{prefix}: {message}"
        data = {"required": rule.count, "roles": roles, "counted": got, "ignored": ignored}
        out.append(Requirement(f"approvals.{i}", "approvals", ok, message, data))
    return out

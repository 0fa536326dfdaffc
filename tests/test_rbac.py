"""The RBAC matrix, generated from the routing table and the permission table.

For every route in :data:`mlgov.api.routes.ROUTES` that needs a permission, and every role in
:class:`Role` (plus a user holding no role at all), a user holding only that role sends a
*valid* request. Roles that :data:`GRANTS` allows must succeed (and a change must record exactly
one audit event, by them); every other role must get a 403 problem and change nothing.

:data:`REQUESTS` builds a valid request per route; a test fails when a route has no entry, so a
new route cannot escape the matrix. Routes guarded by ``token:create_own`` ("own tokens for
everyone") are tested twice: on the caller's own tokens (every role) and on someone else's
(``token:manage`` holders only).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from mlgov.api.routes import ROUTES, Route
from mlgov.audit.models import AuditEvent
from mlgov.context import system_context
from mlgov.identity.permissions import GRANTS, Permission, Role
from mlgov.server import Server

REASON = {"reason": "rbac matrix"}
SHA = "ab" * 32
PROBLEM_JSON = "application/problem+json"


@dataclass(frozen=True)
class Call:
    method: str
    url: str
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Env:
    """Prepares, with the admin's token, whatever objects a request needs."""

    client: Any
    admin: dict[str, str]
    server: Server
    counter: itertools.count[int] = field(default_factory=itertools.count)
    cache: dict[str, Any] = field(default_factory=dict)
    #: The callers' own headers, by user name (a request some routes need made by the caller).
    tokens: dict[str, dict[str, str]] = field(default_factory=dict)

    def fresh(self, prefix: str) -> str:
        return f"{prefix}-{next(self.counter)}"

    def ok(self, method: str, url: str, **kwargs: Any) -> Any:
        r = self.client.request(method, url, headers=self.admin, **kwargs)
        assert r.is_success, f"preparing {method} {url}: {r.status_code} {r.text}"
        return r.json()

    def once(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]

    # -- objects -----------------------------------------------------------------------

    def new_model(self) -> str:
        name = self.fresh("model")
        body = {"name": name, "owner_team": "risk", "risk_tier": "limited", **REASON}
        self.ok("POST", "/api/v1/models", json=body)
        return name

    def model_with_version(self) -> str:
        def make() -> str:
            name = self.new_model()
            self.ok("POST", f"/api/v1/models/{name}/versions", files=version_files())
            return name

        return str(self.once("model-with-version", make))

    def dataset(self) -> str:
        def make() -> str:
            name = self.fresh("dataset")
            self.ok("POST", "/api/v1/datasets", json={"name": name, "owner_team": "data", **REASON})
            self.ok("POST", f"/api/v1/datasets/{name}/versions", json=dataset_version_body())
            return name

        return str(self.once("dataset", make))

    def new_user(self, *roles: str) -> str:
        name = self.fresh("target")
        self.ok("POST", "/api/v1/users", json={"name": name, "roles": list(roles), **REASON})
        return name

    def someone(self) -> str:
        return str(self.once("someone", lambda: self.new_user(Role.VIEWER)))

    def new_token(self, user: str) -> str:
        body = {"user": user, "name": self.fresh("tok"), **REASON}
        return str(self.ok("POST", "/api/v1/tokens", json=body)["id"])

    def checkpoint(self) -> str:
        """Make sure a signed checkpoint exists; returns "" (to append to a URL)."""
        self.once("checkpoint", lambda: self.ok("POST", f"{V1}/audit/checkpoints"))
        return ""

    # -- lifecycle ---------------------------------------------------------------------

    def creator(self) -> dict[str, str]:
        """A data scientist who creates (and requests promotion of) the versions the lifecycle
        routes act on: nobody in the matrix is the creator, so separation of duties never
        refuses what the permission table allows."""

        def make() -> dict[str, str]:
            ctx = system_context("rbac")
            ident = self.server.services.identity
            ident.create_user(ctx, name="creator", roles=[Role.DATA_SCIENTIST], reason="rbac")
            issued = ident.issue_token(ctx, user_name="creator", name="rbac", reason="rbac")
            # Staging of minimal-tier models: two approvals from any role that may decide, so
            # one approval (the call under test) records one event and applies nothing.
            policy = {
                "document": "policy: minimal\nstages:\n  staging:\n    approvals:\n"
                "      - {count: 2, roles: [admin, approver, validator, ethics_reviewer]}\n",
                **REASON,
            }
            self.ok("POST", f"{V1}/policies/minimal/versions", json=policy)
            return {"Authorization": f"Bearer {issued.secret}"}

        return dict(self.once("creator", make))

    def as_creator(self, method: str, url: str, **kwargs: Any) -> Any:
        r = self.client.request(method, url, headers=self.creator(), **kwargs)
        assert r.is_success, f"preparing {method} {url}: {r.status_code} {r.text}"
        return r.json()

    def created_version(self, tier: str = "limited") -> str:
        """A new model with version 1 registered by the creator (tier "limited": staging waits
        for evidence; "minimal": for two approvals)."""
        name = self.fresh("lc")
        body = {"name": name, "owner_team": "risk", "risk_tier": tier, **REASON}
        self.as_creator("POST", f"{V1}/models", json=body)
        self.as_creator("POST", f"{V1}/models/{name}/versions", files=version_files())
        return name

    def lifecycle_model(self) -> str:
        return str(self.once("lifecycle-model", self.created_version))

    def pending_transition(
        self, requester: dict[str, str] | None = None, tier: str = "limited"
    ) -> int:
        name = self.created_version(tier)
        body = {"model": name, "version": 1, "to_stage": "staging", **REASON}
        r = self.client.post(f"{V1}/transitions", json=body, headers=requester or self.creator())
        if r.status_code == 403:  # the caller may not request: the creator's request it is
            r = self.client.post(f"{V1}/transitions", json=body, headers=self.creator())
        assert r.status_code == 201 and r.json()["status"] == "pending", r.text
        return int(r.json()["id"])

    def some_transition(self) -> int:
        return int(self.once("transition", self.pending_transition))

    def evidence_attachment(self) -> str:
        """The URL of an evidence attachment (recorded by the admin, not the creator)."""

        def make() -> str:
            model = self.lifecycle_model()
            body = {
                "kind": "performance",
                "passed": True,
                "attachments": [{"name": "report.txt", "content_base64": "b2s="}],
                **REASON,
            }
            ev = self.ok("POST", f"{V1}/models/{model}/versions/1/evidence", json=body)
            return f"{V1}/models/{model}/versions/1/evidence/{ev['id']}/attachments/report.txt"

        return str(self.once("attachment", make))

    # -- validation --------------------------------------------------------------------

    def suite(self) -> str:
        def make() -> str:
            body = {"document": SUITE, **REASON}
            self.ok("POST", f"{V1}/suites/rbac-suite/versions", json=body)
            return "rbac-suite"

        return str(self.once("suite", make))

    def queued_job(self) -> int:
        """A validation run queued by the admin on a version the creator registered."""
        model = self.lifecycle_model()
        body = {"suite": self.suite(), "dataset": {"dataset": self.dataset(), "version": 1}}
        job = self.ok(
            "POST", f"{V1}/models/{model}/versions/1/validations", json={**body, **REASON}
        )
        return int(job["id"])

    def some_job(self) -> int:
        return int(self.once("job", self.queued_job))

    def finished_job(self) -> int:
        """A run that finished with a report: taken and completed through the service (the
        worker's part of it; running a model is not what the matrix tests)."""

        def make() -> int:
            job_id = self.queued_job()
            svc = self.server.services
            claim = svc.validation.claim("rbac-worker")
            while claim is not None and claim.job_id != job_id:  # older runs: left leased
                claim = svc.validation.claim("rbac-worker")
            assert claim is not None
            with svc.store.writer(1 << 20) as writer:
                writer.write(b"<!doctype html><title>report</title>")
                report = writer.commit()
            check = {"kind": "performance", "passed": True, "summary": "ok", "results": {}}
            svc.validation.complete(claim, [check], report, {}, 0.1)
            return job_id

        return int(self.once("finished-job", make))

    def dataset_without_data(self) -> str:
        """A new version of the dataset (whose data is DATA) with no data uploaded yet."""
        name = self.dataset()
        body = {**dataset_version_body(), "content_sha256": hashlib.sha256(DATA).hexdigest()}
        return str(self.ok("POST", f"{V1}/datasets/{name}/versions", json=body)["version"])

    def webhook(self) -> str:
        name = self.fresh("hook")
        body = {"name": name, "url": "http://127.0.0.1:9/hook", "events": ["evidence.added"]}
        self.ok("POST", f"{V1}/webhooks", json={**body, **REASON})
        return name

    def some_webhook(self) -> str:
        return str(self.once("webhook", self.webhook))

    def audit_size(self) -> int:
        with self.server.services.db.read() as session:
            return int(session.execute(select(func.count()).select_from(AuditEvent)).scalar_one())

    def last_event(self) -> AuditEvent:
        with self.server.services.db.read() as session:
            return session.execute(
                select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1)
            ).scalar_one()


def version_files(data: bytes = b"model bytes") -> dict[str, Any]:
    meta = {
        "format": "other",
        "signature": {"inputs": [{"name": "age", "type": "integer"}]},
        **REASON,
    }
    return {"artifact": ("model.skops", data), "metadata": (None, json.dumps(meta))}


SUITE = (
    "label: default\ntask: classification\n"
    "checks:\n  performance:\n    metrics:\n      accuracy: {min: 0.5}\n"
)
DATA = b"age,default\n30,0\n"


def dataset_version_body() -> dict[str, Any]:
    return {
        "content_sha256": SHA,
        "uri": "s3://data/loans.parquet",
        "schema": [{"name": "age", "type": "integer"}, {"name": "default", "type": "integer"}],
        "row_count": 10,
        **REASON,
    }


Factory = Callable[[Env, str], Call]  # (env, caller's name) -> a valid request


@dataclass(frozen=True)
class Variant:
    label: str
    factory: Factory
    permission: Permission | None = None  # None: the route's own permission


V1 = "/api/v1"


def _one(factory: Factory) -> list[Variant]:
    return [Variant("", factory)]


def _sign_checkpoint(env: Env) -> Call:
    env.new_model()  # a new event first, so that each allowed call signs a new checkpoint (201)
    return Call("POST", f"{V1}/audit/checkpoints")


#: A valid request per guarded route, keyed like the routing table: (method, path).
REQUESTS: dict[tuple[str, str], list[Variant]] = {
    ("POST", f"{V1}/models"): _one(
        lambda env, me: Call(
            "POST",
            f"{V1}/models",
            {
                "json": {
                    "name": env.fresh("new-model"),
                    "owner_team": "risk",
                    "risk_tier": "high",
                    **REASON,
                }
            },
        )
    ),
    ("GET", f"{V1}/models"): _one(lambda env, me: Call("GET", f"{V1}/models?q=model")),
    ("GET", f"{V1}/models/{{name}}"): _one(
        lambda env, me: Call("GET", f"{V1}/models/{env.model_with_version()}")
    ),
    ("PATCH", f"{V1}/models/{{name}}"): _one(
        lambda env, me: Call(
            "PATCH",
            f"{V1}/models/{env.new_model()}",
            {"json": {"description": f"changed by {me}", **REASON}},
        )
    ),
    ("POST", f"{V1}/models/{{name}}/versions"): _one(
        lambda env, me: Call(
            "POST", f"{V1}/models/{env.new_model()}/versions", {"files": version_files()}
        )
    ),
    ("GET", f"{V1}/models/{{name}}/versions"): _one(
        lambda env, me: Call("GET", f"{V1}/models/{env.model_with_version()}/versions")
    ),
    ("GET", f"{V1}/models/{{name}}/versions/{{version}}"): _one(
        lambda env, me: Call("GET", f"{V1}/models/{env.model_with_version()}/versions/1")
    ),
    ("GET", f"{V1}/models/{{name}}/versions/{{version}}/artifact"): _one(
        lambda env, me: Call("GET", f"{V1}/models/{env.model_with_version()}/versions/1/artifact")
    ),
    ("POST", f"{V1}/datasets"): _one(
        lambda env, me: Call(
            "POST",
            f"{V1}/datasets",
            {"json": {"name": env.fresh("new-dataset"), "owner_team": "data", **REASON}},
        )
    ),
    ("GET", f"{V1}/datasets"): _one(lambda env, me: Call("GET", f"{V1}/datasets")),
    ("GET", f"{V1}/datasets/{{name}}"): _one(
        lambda env, me: Call("GET", f"{V1}/datasets/{env.dataset()}")
    ),
    ("POST", f"{V1}/datasets/{{name}}/versions"): _one(
        lambda env, me: Call(
            "POST", f"{V1}/datasets/{env.dataset()}/versions", {"json": dataset_version_body()}
        )
    ),
    ("GET", f"{V1}/datasets/{{name}}/versions"): _one(
        lambda env, me: Call("GET", f"{V1}/datasets/{env.dataset()}/versions")
    ),
    ("GET", f"{V1}/datasets/{{name}}/versions/{{version}}"): _one(
        lambda env, me: Call("GET", f"{V1}/datasets/{env.dataset()}/versions/1")
    ),
    ("GET", f"{V1}/me"): _one(lambda env, me: Call("GET", f"{V1}/me")),
    ("POST", f"{V1}/users"): _one(
        lambda env, me: Call(
            "POST",
            f"{V1}/users",
            {"json": {"name": env.fresh("new-user"), "roles": ["viewer"], **REASON}},
        )
    ),
    ("GET", f"{V1}/users"): _one(lambda env, me: Call("GET", f"{V1}/users")),
    ("GET", f"{V1}/users/{{name}}"): _one(
        lambda env, me: Call("GET", f"{V1}/users/{env.someone()}")
    ),
    ("PATCH", f"{V1}/users/{{name}}"): _one(
        lambda env, me: Call(
            "PATCH",
            f"{V1}/users/{env.new_user()}",
            {"json": {"display_name": "Renamed", **REASON}},
        )
    ),
    ("POST", f"{V1}/users/{{name}}/roles"): _one(
        lambda env, me: Call(
            "POST",
            f"{V1}/users/{env.new_user()}/roles",
            {"json": {"role": "validator", **REASON}},
        )
    ),
    ("DELETE", f"{V1}/users/{{name}}/roles/{{role}}"): _one(
        lambda env, me: Call(
            "DELETE", f"{V1}/users/{env.new_user('approver')}/roles/approver", {"json": REASON}
        )
    ),
    ("GET", f"{V1}/users/{{name}}/tokens"): [
        Variant("own", lambda env, me: Call("GET", f"{V1}/users/{me}/tokens")),
        Variant(
            "someone else's",
            lambda env, me: Call("GET", f"{V1}/users/{env.someone()}/tokens"),
            Permission.TOKEN_MANAGE,
        ),
    ],
    ("POST", f"{V1}/tokens"): [
        Variant(
            "own",
            lambda env, me: Call(
                "POST", f"{V1}/tokens", {"json": {"user": me, "name": env.fresh("t"), **REASON}}
            ),
        ),
        Variant(
            "someone else's",
            lambda env, me: Call(
                "POST",
                f"{V1}/tokens",
                {"json": {"user": env.someone(), "name": env.fresh("t"), **REASON}},
            ),
            Permission.TOKEN_MANAGE,
        ),
    ],
    ("DELETE", f"{V1}/tokens/{{token_id}}"): [
        Variant(
            "own",
            lambda env, me: Call("DELETE", f"{V1}/tokens/{env.new_token(me)}", {"json": REASON}),
        ),
        Variant(
            "someone else's",
            lambda env, me: Call(
                "DELETE", f"{V1}/tokens/{env.new_token(env.someone())}", {"json": REASON}
            ),
            Permission.TOKEN_MANAGE,
        ),
    ],
    # lifecycle
    ("POST", f"{V1}/models/{{name}}/versions/{{version}}/evidence"): _one(
        lambda env, me: Call(
            "POST",
            f"{V1}/models/{env.lifecycle_model()}/versions/1/evidence",
            {"json": {"kind": "performance", "passed": True, **REASON}},
        )
    ),
    ("GET", f"{V1}/models/{{name}}/versions/{{version}}/evidence"): _one(
        lambda env, me: Call("GET", f"{V1}/models/{env.lifecycle_model()}/versions/1/evidence")
    ),
    (
        "GET",
        f"{V1}/models/{{name}}/versions/{{version}}/evidence/{{evidence_id}}/attachments/{{filename}}",
    ): _one(lambda env, me: Call("GET", env.evidence_attachment())),
    ("GET", f"{V1}/models/{{name}}/stage-history"): _one(
        lambda env, me: Call("GET", f"{V1}/models/{env.lifecycle_model()}/stage-history")
    ),
    ("POST", f"{V1}/transitions"): _one(
        lambda env, me: Call(
            "POST",
            f"{V1}/transitions",
            {
                "json": {
                    "model": env.created_version(),
                    "version": 1,
                    "to_stage": "staging",
                    **REASON,
                }
            },
        )
    ),
    ("GET", f"{V1}/transitions"): _one(
        lambda env, me: Call("GET", f"{V1}/transitions?status=pending")
    ),
    ("GET", f"{V1}/transitions/{{transition_id}}"): _one(
        lambda env, me: Call("GET", f"{V1}/transitions/{env.some_transition()}")
    ),
    ("POST", f"{V1}/transitions/{{transition_id}}/decisions"): _one(
        lambda env, me: Call(
            "POST",
            f"{V1}/transitions/{env.pending_transition(tier='minimal')}/decisions",
            {"json": {"decision": "approve", "comment": f"approved by {me}"}},
        )
    ),
    ("POST", f"{V1}/transitions/{{transition_id}}/cancel"): _one(
        lambda env, me: Call(
            "POST",
            f"{V1}/transitions/{env.pending_transition(env.tokens.get(me))}/cancel",
            {"json": REASON},
        )
    ),
    ("GET", f"{V1}/policies"): _one(lambda env, me: Call("GET", f"{V1}/policies")),
    ("GET", f"{V1}/policies/{{name}}"): _one(lambda env, me: Call("GET", f"{V1}/policies/high")),
    ("POST", f"{V1}/policies/{{name}}/versions"): _one(
        lambda env, me: Call(
            "POST",
            f"{V1}/policies/unacceptable/versions",
            {
                "json": {
                    "document": f"policy: unacceptable\ndescription: revision {env.fresh('p')}\n"
                    "stages:\n  staging: {allowed: false}\n  production: {allowed: false}\n",
                    **REASON,
                }
            },
        )
    ),
    # validation
    ("GET", f"{V1}/suites"): _one(lambda env, me: Call("GET", f"{V1}/suites")),
    ("GET", f"{V1}/suites/{{name}}"): _one(
        lambda env, me: Call("GET", f"{V1}/suites/{env.suite()}")
    ),
    ("POST", f"{V1}/suites/{{name}}/versions"): _one(
        lambda env, me: Call(
            "POST",
            f"{V1}/suites/{env.fresh('suite')}/versions",
            {"json": {"document": SUITE, **REASON}},
        )
    ),
    ("POST", f"{V1}/models/{{name}}/versions/{{version}}/validations"): _one(
        lambda env, me: Call(
            "POST",
            f"{V1}/models/{env.lifecycle_model()}/versions/1/validations",
            {
                "json": {
                    "suite": env.suite(),
                    "dataset": {"dataset": env.dataset(), "version": 1},
                    **REASON,
                }
            },
        )
    ),
    ("GET", f"{V1}/validations"): _one(
        lambda env, me: Call("GET", f"{V1}/validations?status=queued")
    ),
    ("GET", f"{V1}/validations/{{job_id}}"): _one(
        lambda env, me: Call("GET", f"{V1}/validations/{env.some_job()}")
    ),
    ("GET", f"{V1}/validations/{{job_id}}/report"): _one(
        lambda env, me: Call("GET", f"{V1}/validations/{env.finished_job()}/report")
    ),
    ("PUT", f"{V1}/datasets/{{name}}/versions/{{version}}/data"): _one(
        lambda env, me: Call(
            "PUT",
            f"{V1}/datasets/{env.dataset()}/versions/{env.dataset_without_data()}/data",
            {"params": {"format": "csv", **REASON}, "content": DATA},
        )
    ),
    # webhooks
    ("POST", f"{V1}/webhooks"): _one(
        lambda env, me: Call(
            "POST",
            f"{V1}/webhooks",
            {
                "json": {
                    "name": env.fresh("new-hook"),
                    "url": "https://hooks.example.com/mlgov",
                    "events": ["transition.applied"],
                    **REASON,
                }
            },
        )
    ),
    ("GET", f"{V1}/webhooks"): _one(lambda env, me: Call("GET", f"{V1}/webhooks")),
    ("GET", f"{V1}/webhooks/{{name}}"): _one(
        lambda env, me: Call("GET", f"{V1}/webhooks/{env.some_webhook()}")
    ),
    ("DELETE", f"{V1}/webhooks/{{name}}"): _one(
        lambda env, me: Call("DELETE", f"{V1}/webhooks/{env.webhook()}", {"json": REASON})
    ),
    ("GET", f"{V1}/webhooks/{{name}}/deliveries"): _one(
        lambda env, me: Call("GET", f"{V1}/webhooks/{env.some_webhook()}/deliveries")
    ),
    ("GET", f"{V1}/audit/events"): _one(
        lambda env, me: Call("GET", f"{V1}/audit/events?action=model.create")
    ),
    ("GET", f"{V1}/audit/checkpoint"): _one(
        lambda env, me: Call("GET", f"{V1}/audit/checkpoint" + env.checkpoint())
    ),
    ("GET", f"{V1}/audit/checkpoints"): _one(
        lambda env, me: Call("GET", f"{V1}/audit/checkpoints?limit=5" + env.checkpoint())
    ),
    ("POST", f"{V1}/audit/checkpoints"): _one(lambda env, me: _sign_checkpoint(env)),
    ("GET", f"{V1}/audit/proofs/inclusion"): _one(
        lambda env, me: Call("GET", f"{V1}/audit/proofs/inclusion?index=0" + env.checkpoint())
    ),
    ("GET", f"{V1}/audit/proofs/consistency"): _one(
        lambda env, me: Call("GET", f"{V1}/audit/proofs/consistency?first=1" + env.checkpoint())
    ),
    ("GET", f"{V1}/audit/export"): _one(
        lambda env, me: Call("GET", f"{V1}/audit/export?tree_size=2" + env.checkpoint())
    ),
}

GUARDED: tuple[Route, ...] = tuple(r for r in ROUTES if r.permission is not None)
#: The matrix's columns: each role alone, and a user holding no role (denied everything).
COLUMNS: tuple[Role | None, ...] = (*Role, None)


def _cases() -> list[tuple[Route, Variant, Permission]]:
    cases = []
    for route in GUARDED:
        for variant in REQUESTS[(route.method, route.path)]:
            assert route.permission is not None
            cases.append((route, variant, variant.permission or route.permission))
    return cases


def test_every_guarded_route_has_a_request_in_the_matrix() -> None:
    guarded = {(r.method, r.path) for r in GUARDED}
    missing = sorted(guarded - set(REQUESTS))
    stale = sorted(set(REQUESTS) - guarded)
    assert not missing, f"routes without an RBAC matrix entry: {missing}"
    assert not stale, f"matrix entries for routes that no longer exist: {stale}"


def test_own_token_routes_are_tested_on_own_and_others_tokens() -> None:
    for route in GUARDED:
        variants = REQUESTS[(route.method, route.path)]
        if route.permission is Permission.TOKEN_CREATE_OWN:
            assert {v.permission for v in variants} == {None, Permission.TOKEN_MANAGE}, route.path
        else:
            assert [v.permission for v in variants] == [None], route.path


def test_rbac_matrix(client, admin, server, make_user) -> None:
    env = Env(client, admin, server)
    people = {role: make_user(role) if role else make_user() for role in COLUMNS}
    env.tokens = {p.name: p.headers for p in people.values()}
    mismatches: list[str] = []
    checked = 0
    for route, variant, permission in _cases():
        for role, person in people.items():
            held = frozenset({role}) if role else frozenset()
            allowed = not GRANTS[permission].isdisjoint(held)
            call = variant.factory(env, person.name)
            before = env.audit_size()
            r = client.request(call.method, call.url, headers=person.headers, **call.kwargs)
            after = env.audit_size()
            where = f"{route.method} {route.path} {variant.label} as {role or 'no role'}".strip()
            checked += 1
            if allowed:
                if r.status_code != route.status:
                    mismatches.append(f"{where}: expected {route.status}, got {r.status_code}")
                    continue
                if route.method == "GET" or route.unaudited_write:
                    if after != before:
                        mismatches.append(f"{where}: a read wrote {after - before} audit events")
                elif after != before + 1:
                    mismatches.append(f"{where}: {after - before} audit events, expected 1")
                elif env.last_event().actor != person.name:
                    mismatches.append(f"{where}: event actor is {env.last_event().actor!r}")
            else:
                ctype = r.headers.get("content-type", "")
                if r.status_code != 403 or ctype != PROBLEM_JSON or r.json().get("status") != 403:
                    mismatches.append(f"{where}: expected a 403 problem, got {r.status_code}")
                elif after != before:
                    mismatches.append(f"{where}: refused, yet {after - before} audit events")
    assert checked == len(_cases()) * len(COLUMNS)
    assert not mismatches, "RBAC matrix mismatches:\n" + "\n".join(mismatches)


def test_every_guarded_route_needs_a_token(client, admin, server, make_user) -> None:
    env = Env(client, admin, server)
    caller = make_user(Role.ADMIN)
    env.tokens = {caller.name: caller.headers}
    wrong: list[str] = []
    for route, variant, _ in _cases():
        for headers in ({}, {"Authorization": "Bearer mlgov_not-a-real-token"}):
            call = variant.factory(env, caller.name)
            before = env.audit_size()
            r = client.request(call.method, call.url, headers=headers, **call.kwargs)
            where = f"{route.method} {route.path} {variant.label} {headers or 'no token'}"
            if (
                r.status_code != 401
                or r.headers.get("content-type") != PROBLEM_JSON
                or r.headers.get("www-authenticate") != "Bearer"
                or r.json()["status"] != 401
            ):
                wrong.append(f"{where}: {r.status_code} {r.text[:120]}")
            elif env.audit_size() != before:
                wrong.append(f"{where}: unauthenticated, yet something was recorded")
    assert not wrong, "guarded routes answering without a valid token:\n" + "\n".join(wrong)


def test_public_routes_answer_without_a_token(client) -> None:
    public = [r for r in ROUTES if r.permission is None]
    assert {"/healthz", "/readyz"} <= {r.path for r in public}
    for route in public:
        if route.method != "GET":
            continue  # password login: tests/test_identity_api.py
        r = client.request(route.method, route.path)
        assert r.status_code == 200, (route.path, r.text)
        if route.tag == "operations":
            assert r.json()["status"] == "ok"

"""The audit trail: one event per change, written in the change's own transaction.

(a) a scripted session through the API: each successful change adds exactly one event with the
    right actor, action, target, reason, request id and client address; refusals add none; the
    sequence numbers are 0..n-1 without gaps;
(b) the change path itself (:func:`mlgov.audit.service.change`) against a real database: a
    change that fails before, while or after recording its event leaves neither;
(c) concurrent changes from several threads get a gap-free, duplicate-free sequence;
(d) the read API's filters and cursor pagination;
(e) who may read it.
"""

from __future__ import annotations

import itertools
import json
import threading
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from mlgov.audit.events import Action
from mlgov.audit.models import AuditEvent
from mlgov.context import Actor, Context
from mlgov.db import utcnow
from mlgov.errors import InvalidInput, PermissionDenied
from mlgov.identity.permissions import Permission, Role
from mlgov.registry.models import Model
from mlgov.server import Server
from mlgov.tlog.models import LogHead

V1 = "/api/v1"
META = {"format": "other", "signature": {"inputs": [{"name": "x", "type": "double"}]}}

# What the server's first start (mlgov.server.build_server) records, all by "system" with the
# request id "bootstrap": version 1 of each built-in lifecycle policy pack, installed in one
# change (an event per pack, in the risk tiers' order), then the administrator and its first
# token, a change each. Other test modules import these.
BOOTSTRAP_POLICIES = [
    f"policy/{tier}/versions/1" for tier in ("unacceptable", "high", "limited", "minimal")
]
BOOTSTRAP_EVENTS = len(BOOTSTRAP_POLICIES) + 2  # the policy packs, the admin, its token


def all_events(client: Any, headers: dict[str, str], **filters: Any) -> list[dict[str, Any]]:
    """Every event matching the filters, following the cursor page by page."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {**filters, "limit": 1000, **({"cursor": cursor} if cursor else {})}
        r = client.get(f"{V1}/audit/events", params=params, headers=headers)
        assert r.status_code == 200, r.text
        page = r.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def head_size(server: Server) -> int:
    with server.services.db.read() as session:
        return int(session.execute(select(LogHead.size)).scalar_one())


def event_count(server: Server) -> int:
    with server.services.db.read() as session:
        return int(session.execute(select(func.count()).select_from(AuditEvent)).scalar_one())


# -- (a) a scripted session ----------------------------------------------------------------


def test_every_change_in_a_session_records_exactly_one_event(client, admin, server):
    numbers = itertools.count(1)
    expected: list[dict[str, Any]] = []
    tokens: dict[str, dict[str, str]] = {"admin": admin}

    def step(
        who: str,
        method: str,
        url: str,
        action: str | None,
        target: str | None,
        status: int,
        **kwargs: Any,
    ) -> Any:
        """Send one request with its own request id and reason; check its event (or none)."""
        n = next(numbers)
        request_id = f"req-{n:03d}"
        reason = f"step {n}: {method} {url}"
        if "files" in kwargs:
            meta = {**kwargs["files"]["metadata"], "reason": reason}
            kwargs["files"]["metadata"] = (None, json.dumps(meta))
        else:
            kwargs["json"] = {**kwargs.get("json", {}), "reason": reason}
        before = event_count(server)
        r = client.request(
            method, url, headers={**tokens[who], "X-Request-Id": request_id}, **kwargs
        )
        assert r.status_code == status, r.text
        assert r.headers["x-request-id"] == request_id
        if action is None:
            assert event_count(server) == before, f"a refused request was recorded: {url}"
            return r.json()
        assert event_count(server) == before + 1, f"{method} {url}: not exactly one event"
        expected.append(
            {
                "actor": who,
                "actor_kind": "user",
                "action": action,
                "target": target,
                "reason": reason,
                "request_id": request_id,
                "client_addr": "testclient",
            }
        )
        return r.json()

    def issue(user: str) -> str:
        body = step(
            "admin",
            "POST",
            f"{V1}/tokens",
            "token.create",
            None,
            201,
            json={"user": user, "name": "t"},
        )
        expected[-1]["target"] = f"user/{user}/tokens/{body['id']}"
        tokens[user] = {"Authorization": f"Bearer {body['token']}"}
        return str(body["id"])

    user = {"roles": ["data_scientist"]}
    step("admin", "POST", f"{V1}/users", "user.create", "user/ds", 201, json={"name": "ds", **user})
    ds_token = issue("ds")
    step(
        "admin",
        "POST",
        f"{V1}/users",
        "user.create",
        "user/de",
        201,
        json={"name": "de", "roles": ["data_engineer"]},
    )
    issue("de")
    model = {"name": "credit", "owner_team": "risk", "risk_tier": "high"}
    step("ds", "POST", f"{V1}/models", "model.create", "model/credit", 201, json=model)
    # refusals in between record nothing
    step("ds", "POST", f"{V1}/models", None, None, 409, json=model)
    step("de", "POST", f"{V1}/models", None, None, 403, json={**model, "name": "other"})
    step("ds", "POST", f"{V1}/datasets", None, None, 403, json={"name": "d", "owner_team": "t"})
    step(
        "de",
        "POST",
        f"{V1}/datasets",
        "dataset.create",
        "dataset/loans",
        201,
        json={"name": "loans", "owner_team": "data"},
    )
    dv = {
        "content_sha256": "cd" * 32,
        "uri": "s3://data/loans-2024.parquet",
        "schema": [{"name": "x", "type": "double"}],
        "row_count": 1000,
    }
    step(
        "de",
        "POST",
        f"{V1}/datasets/loans/versions",
        "dataset_version.create",
        "dataset/loans/versions/1",
        201,
        json=dv,
    )
    meta = {**META, "datasets": [{"dataset": "loans", "version": 1}]}
    step(
        "ds",
        "POST",
        f"{V1}/models/credit/versions",
        "model_version.create",
        "model/credit/versions/1",
        201,
        files={"artifact": ("m.onnx", b"onnx bytes"), "metadata": meta},
    )
    step(
        "ds",
        "PATCH",
        f"{V1}/models/credit",
        "model.update",
        "model/credit",
        200,
        json={"description": "Scores loan applications"},
    )
    step(
        "admin",
        "POST",
        f"{V1}/users/ds/roles",
        "user.role_grant",
        "user/ds",
        200,
        json={"role": "validator"},
    )
    step("admin", "DELETE", f"{V1}/users/ds/roles/validator", "user.role_revoke", "user/ds", 200)
    step("admin", "PATCH", f"{V1}/users/de", "user.update", "user/de", 200, json={"disabled": True})
    step(
        "ds", "DELETE", f"{V1}/tokens/{ds_token}", "token.revoke", f"user/ds/tokens/{ds_token}", 200
    )

    events = all_events(client, admin)
    # The first start recorded, as "system", the built-in policy packs, then the administrator's
    # creation and first token.
    bootstrap = events[:BOOTSTRAP_EVENTS]
    assert [(e["actor"], e["action"], e["target"]) for e in bootstrap] == [
        *(("system", "policy.create", target) for target in BOOTSTRAP_POLICIES),
        ("system", "user.create", "user/admin"),
        ("system", "token.create", bootstrap[-1]["target"]),
    ]
    assert bootstrap[-1]["target"].startswith("user/admin/tokens/tok_")
    assert {e["actor_kind"] for e in bootstrap} == {"system"}
    assert {e["request_id"] for e in bootstrap} == {"bootstrap"}
    assert {e["client_addr"] for e in bootstrap} == {None}
    assert [e["seq"] for e in events] == list(range(len(events)))
    assert len(events) == BOOTSTRAP_EVENTS + len(expected)
    keys = list(expected[0])
    assert [{k: e[k] for k in keys} for e in events[BOOTSTRAP_EVENTS:]] == expected
    assert head_size(server) == len(events)
    times = [datetime.fromisoformat(e["time"]) for e in events]
    assert times == sorted(times) and all(t.tzinfo is not None for t in times)
    # details say what changed, and never carry a secret
    by_action = {e["action"]: e for e in events[BOOTSTRAP_EVENTS:]}
    assert by_action["model.update"]["details"] == {
        "description": {"old": "", "new": "Scores loan applications"}
    }
    assert by_action["user.role_grant"]["details"] == {"role": "validator"}
    assert by_action["model_version.create"]["details"]["datasets"] == ["loans@1:training"]
    assert all("mlgov_" not in json.dumps(e["details"]) for e in events)

    # a request id that is not safe to log is replaced by one of the server's
    for unsafe in ["bad id", "x" * 65, "a\tb", "<script>"]:
        body = {"description": unsafe, "reason": "r"}
        r = client.patch(
            f"{V1}/models/credit", json=body, headers={**admin, "X-Request-Id": unsafe}
        )
        assert r.status_code == 200, r.text
        request_id = r.headers["x-request-id"]
        assert request_id != unsafe and len(request_id) == 32
        assert all_events(client, admin)[-1]["request_id"] == request_id


# -- (b) the change path, against the database --------------------------------------------


def _ctx(*roles: str) -> Context:
    return Context(
        actor=Actor(name="alice", kind="user", roles=frozenset(roles)), request_id="svc-test"
    )


def _model_row(name: str) -> Model:
    now = utcnow()
    return Model(
        name=name,
        owner_team="risk",
        risk_tier="minimal",
        out_of_scope_uses=[],
        created_at=now,
        created_by="alice",
        updated_at=now,
    )


class Boom(Exception):
    pass


def _models(server: Server, name: str) -> int:
    with server.services.db.read() as session:
        return int(
            session.execute(
                select(func.count()).select_from(Model).where(Model.name == name)
            ).scalar_one()
        )


def _events_for(server: Server, target: str) -> int:
    with server.services.db.read() as session:
        return int(
            session.execute(
                select(func.count()).select_from(AuditEvent).where(AuditEvent.target == target)
            ).scalar_one()
        )


def test_a_change_that_fails_midway_leaves_neither_change_nor_event(server):
    trail = server.services.audit
    ctx = _ctx(Role.DATA_SCIENTIST)
    size = head_size(server)

    # 1. failure after the change and its event, inside the block
    with pytest.raises(Boom), trail.change(ctx, Permission.MODEL_CREATE, "will fail") as cs:
        cs.session.add(_model_row("doomed"))
        cs.session.flush()
        cs.record(Action.MODEL_CREATE, "model/doomed", {})
        # both are visible inside the transaction ...
        assert cs.session.execute(select(Model).where(Model.name == "doomed")).scalar_one()
        raise Boom
    # ... and gone after it
    assert _models(server, "doomed") == 0 and _events_for(server, "model/doomed") == 0
    assert head_size(server) == size

    # 2. a change that forgets to record its event is refused and rolled back
    refused = pytest.raises(RuntimeError, match="audit event")
    with refused, trail.change(ctx, Permission.MODEL_CREATE, "no event") as cs:
        cs.session.add(_model_row("unrecorded"))
        cs.session.flush()
    assert _models(server, "unrecorded") == 0 and head_size(server) == size

    # 3. a database error after the event was recorded (a unique constraint, flushed late)
    with pytest.raises(IntegrityError), trail.change(ctx, Permission.MODEL_CREATE, "dup") as cs:
        cs.session.add(_model_row("twin"))
        cs.session.flush()
        cs.record(Action.MODEL_CREATE, "model/twin", {})
        cs.session.add(_model_row("twin"))
        cs.session.flush()
    assert _models(server, "twin") == 0 and _events_for(server, "model/twin") == 0
    assert head_size(server) == size

    # 4. refused before any transaction: no permission, no reason
    viewer = _ctx(Role.VIEWER)
    with pytest.raises(PermissionDenied), trail.change(viewer, Permission.MODEL_CREATE, "no"):
        raise AssertionError("the block must not run")
    with pytest.raises(InvalidInput) as excinfo, trail.change(ctx, Permission.MODEL_CREATE, "  "):
        raise AssertionError("the block must not run")
    assert excinfo.value.field == "reason"
    assert event_count(server) == size

    # 5. a change that succeeds gets the next number: failures left no gap
    with trail.change(ctx, Permission.MODEL_CREATE, "works") as cs:
        cs.session.add(_model_row("kept"))
        cs.session.flush()
        cs.record(Action.MODEL_CREATE, "model/kept", {"n": 1})
    assert [e.seq for e in cs.events] == [size]
    assert _models(server, "kept") == 1 and _events_for(server, "model/kept") == 1
    assert head_size(server) == size + 1 == event_count(server)


# -- (c) concurrency ------------------------------------------------------------------------


def test_concurrent_changes_get_a_gap_free_sequence(client, admin, server):
    threads, per_thread = 8, 10
    errors: list[str] = []
    start = threading.Barrier(threads)

    def work(t: int) -> None:
        start.wait()
        for i in range(per_thread):
            body = {"name": f"m-{t}-{i}", "owner_team": f"team-{t}", "risk_tier": "minimal"}
            r = client.post(f"{V1}/models", json={**body, "reason": f"load {t}/{i}"}, headers=admin)
            if r.status_code != 201:
                errors.append(f"{body['name']}: {r.status_code} {r.text}")

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert not errors, errors
    events = all_events(client, admin)
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(len(events))), "gaps or duplicates in the sequence"
    created = [e["target"] for e in events if e["action"] == "model.create"]
    expected = {f"model/m-{t}-{i}" for t in range(threads) for i in range(per_thread)}
    assert len(created) == len(expected) and set(created) == expected
    assert head_size(server) == len(events) == event_count(server)
    r = client.get(f"{V1}/models", params={"limit": 200}, headers=admin)
    assert {f"model/{m['name']}" for m in r.json()["items"]} == expected


# -- (d) filters and pagination ------------------------------------------------------------


@pytest.fixture
def history(client, admin, make_user) -> dict[str, Any]:
    """Models x, xy, a_b and acb (with versions) by two people; returns their names."""
    ds = make_user("data_scientist")
    other = make_user("data_scientist")
    for who, name in [(ds, "x"), (other, "xy"), (ds, "a_b"), (other, "acb")]:
        body = {"name": name, "owner_team": "t", "risk_tier": "minimal", "reason": "r"}
        assert client.post(f"{V1}/models", json=body, headers=who.headers).status_code == 201
    for who, name in [(ds, "x"), (ds, "x"), (other, "xy"), (other, "acb")]:
        files = {
            "artifact": ("m", name.encode()),
            "metadata": (None, json.dumps({**META, "reason": "r"})),
        }
        r = client.post(f"{V1}/models/{name}/versions", files=files, headers=who.headers)
        assert r.status_code == 201, r.text
    return {"ds": ds.name, "other": other.name}


def test_filters_by_actor_action_and_target(client, admin, history):
    def targets(**filters: Any) -> list[str]:
        return [e["target"] for e in all_events(client, admin, **filters)]

    assert targets(target="model/x") == ["model/x", "model/x/versions/1", "model/x/versions/2"]
    assert targets(target="model/xy") == ["model/xy", "model/xy/versions/1"]
    assert targets(target="model/x/versions/2") == ["model/x/versions/2"]
    # '_' is a literal, not a wildcard: model/a_b does not include model/acb
    assert targets(target="model/a_b") == ["model/a_b"]
    assert targets(target="model/acb") == ["model/acb", "model/acb/versions/1"]
    assert targets(target="model/") == []
    assert targets(target="model/x%") == []
    assert targets(actor=history["ds"]) == [
        "model/x",
        "model/a_b",
        "model/x/versions/1",
        "model/x/versions/2",
    ]
    assert targets(actor=history["ds"], action="model_version.create") == [
        "model/x/versions/1",
        "model/x/versions/2",
    ]
    assert targets(actor=history["other"], target="model/xy") == [
        "model/xy",
        "model/xy/versions/1",
    ]
    assert targets(action="model.create") == ["model/x", "model/xy", "model/a_b", "model/acb"]
    assert targets(actor="nobody") == []
    assert all(e["actor"] == history["ds"] for e in all_events(client, admin, actor=history["ds"]))


def test_filters_by_time_with_time_zones(client, admin, history):
    events = all_events(client, admin)
    times = [datetime.fromisoformat(e["time"]) for e in events]
    # The bounds are events of the history, each a change of its own: the first start's policy
    # packs share one change, hence one time.
    first, last = BOOTSTRAP_EVENTS + 1, BOOTSTRAP_EVENTS + 6
    assert len(events) >= BOOTSTRAP_EVENTS + 8
    assert times[first - 1] < times[first] and times[last - 1] < times[last]
    lo, hi = times[first], times[last]

    def seqs(**filters: Any) -> list[int]:
        return [e["seq"] for e in all_events(client, admin, **filters)]

    def between(since: datetime | None, until: datetime | None) -> list[int]:
        return [
            e["seq"]
            for e, t in zip(events, times, strict=True)
            if (since is None or t >= since) and (until is None or t < until)
        ]

    plus_two = timezone(timedelta(hours=2))
    for since, until in [(lo, None), (None, hi), (lo, hi)]:
        params = {}
        if since:
            params["since"] = since.astimezone(plus_two).isoformat()  # same instant, other zone
        if until:
            params["until"] = until.isoformat()
        got = seqs(**params)
        assert got == between(since, until), params
        assert got and got != [e["seq"] for e in events]
    assert seqs(since=lo.isoformat())[0] == first  # since is inclusive
    assert seqs(until=hi.isoformat())[-1] == last - 1  # until is exclusive
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert seqs(since=future) == []
    assert seqs(until="2000-01-01T00:00:00+00:00") == []


def test_cursor_pagination_across_pages(client, admin, history):
    everything = all_events(client, admin)
    pages: list[list[int]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = client.get(f"{V1}/audit/events", params=params, headers=admin).json()
        pages.append([e["seq"] for e in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert all(len(p) == 3 for p in pages[:-1]) and 1 <= len(pages[-1]) <= 3
    assert [s for p in pages for s in p] == [e["seq"] for e in everything]
    # pagination with a filter: only matching events, none twice, none left out
    seen: list[str] = []
    cursor = None
    while True:
        url = f"{V1}/audit/events?action=model_version.create&limit=1"
        if cursor:
            url += f"&cursor={quote(cursor)}"
        page = client.get(url, headers=admin).json()
        seen += [e["target"] for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [e["target"] for e in everything if e["action"] == "model_version.create"]
    assert len(seen) == 4


# -- (e) who may read it ------------------------------------------------------------------


def test_auditors_read_the_trail_and_data_scientists_do_not(client, admin, make_user):
    auditor = make_user("auditor")
    scientist = make_user("data_scientist")
    r = client.get(f"{V1}/audit/events", headers=auditor.headers)
    assert r.status_code == 200
    assert [e["action"] for e in r.json()["items"]][:BOOTSTRAP_EVENTS] == [
        *["policy.create"] * len(BOOTSTRAP_POLICIES),
        "user.create",
        "token.create",
    ]
    r = client.get(f"{V1}/audit/events", headers=scientist.headers)
    assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
    assert "audit:read" in r.json()["detail"]
    # the auditor reads, but changes nothing
    body = {"name": "m", "owner_team": "t", "risk_tier": "minimal", "reason": "r"}
    assert client.post(f"{V1}/models", json=body, headers=auditor.headers).status_code == 403

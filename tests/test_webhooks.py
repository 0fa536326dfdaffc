"""Governance webhooks: subscriptions through the API, the transactional outbox, and the worker
delivering to real HTTP receivers on 127.0.0.1 (answering 2xx, 500, redirecting, hanging, or
not listening), on SQLite and PostgreSQL. Time is driven with ``run_once(now=...)``."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from typer.testing import CliRunner

from mlgov.audit.events import Action
from mlgov.config import Settings
from mlgov.context import system_context
from mlgov.db import Database, utcnow
from mlgov.identity.permissions import Permission
from mlgov.secretbox import SecretBox, SecretBoxError
from mlgov.server import Server, build_server
from mlgov.webhooks.events import GovernanceEvent
from mlgov.webhooks.models import WebhookDelivery
from mlgov.webhooks.schemas import WebhookCreate
from mlgov.webhooks.service import WebhookService
from mlgov.webhooks.worker import WebhookWorker, exponential_backoff, sign, verify_signature

V1 = "/api/v1"
PROBLEM_JSON = "application/problem+json"

# -- receivers ---------------------------------------------------------------------------------


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival


@dataclass
class Receiver:
    """A webhook receiver on a free loopback port. ``statuses`` scripts the answers (then
    ``default``); ``hang`` seconds of silence before answering simulate a stuck receiver."""

    default: int = 200
    statuses: list[int] = field(default_factory=list)
    hang: float = 0.0
    delay: float = 0.0
    hits: list[Hit] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    release: threading.Event = field(default_factory=threading.Event)
    httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.httpd is not None
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def next_status(self) -> int:
        with self.lock:
            return self.statuses.pop(0) if self.statuses else self.default

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                try:
                    size = int(self.headers.get("Content-Length", "0"))
                    body = self.rfile.read(size)
                    with receiver.lock:
                        receiver.hits.append(
                            Hit(self.path, dict(self.headers.items()), body, time.monotonic())
                        )
                    if receiver.hang:
                        receiver.release.wait(receiver.hang)
                    if receiver.delay:
                        time.sleep(receiver.delay)
                    status = receiver.next_status()
                    answer = f"answer {status} \x00 from {self.path}".encode()
                    self.send_response(status)
                    if 300 <= status < 400:
                        self.send_header("Location", receiver.url + "/elsewhere")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:
                    pass  # the worker gave up waiting and closed the connection

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass

        self.httpd = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.release.set()
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    started: list[Receiver] = []

    def make(**options: Any) -> Receiver:
        receiver = Receiver(**options).start()
        started.append(receiver)
        return receiver

    yield make
    for receiver in started:
        receiver.stop()


def closed_port_url() -> str:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/hook"


# -- helpers -----------------------------------------------------------------------------------


@pytest.fixture
def hooks(server: Server) -> WebhookService:
    return server.services.webhooks


@pytest.fixture
def workers(server: Server) -> Iterator[Callable[..., WebhookWorker]]:
    made: list[WebhookWorker] = []

    def make(db: Database | None = None, box: SecretBox | None = None, **kw: Any) -> WebhookWorker:
        kw.setdefault("timeout", 2.0)
        worker = WebhookWorker(db or server.services.db, box or server.services.webhooks.box, **kw)
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.close()


def subscribe(
    hooks: WebhookService, name: str, url: str, events: list[GovernanceEvent] | None = None
) -> str:
    data = WebhookCreate(
        name=name,
        url=url,
        events=events or [GovernanceEvent.EVIDENCE_ADDED],
        reason="test subscription",
    )
    return hooks.create(system_context("test"), data)[1]


def emit(server: Server, event: GovernanceEvent, data: dict[str, Any]) -> int:
    """A governance change that writes ``event`` to the outbox in its own transaction."""
    with server.services.audit.change(system_context("test"), Permission.WEBHOOK_MANAGE, "r") as cs:
        written = server.services.webhooks.enqueue(cs.session, event, data)
        cs.record(Action.WEBHOOK_DELETE, "webhook/test-event", {})
    return written


def deliveries(server: Server) -> list[WebhookDelivery]:
    with server.services.db.read() as session:
        return list(session.execute(select(WebhookDelivery).order_by(WebhookDelivery.id)).scalars())


def audit_size(server: Server) -> int:
    return server.services.audit.tree_head().size


def refused(r: Any, status: int, field_name: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM_JSON
    problem: dict[str, Any] = r.json()
    assert problem.get("field") == field_name, problem
    return problem


# -- the secret box ----------------------------------------------------------------------------


def test_secret_box_round_trip_binds_the_context_and_the_key(tmp_path: Path):
    path = tmp_path / "keys" / "secret.key"
    box = SecretBox.load_or_create(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    blob = box.encrypt(b"whsec_abc", context=b"webhook:a")
    assert b"whsec_abc" not in blob and len(blob) == 12 + len(b"whsec_abc") + 16
    assert box.encrypt(b"whsec_abc", context=b"webhook:a") != blob  # a fresh nonce each time
    again = SecretBox.load_or_create(path)  # the same key, loaded
    assert again.decrypt(blob, context=b"webhook:a") == b"whsec_abc"
    with pytest.raises(SecretBoxError, match="does not decrypt"):
        again.decrypt(blob, context=b"webhook:b")
    with pytest.raises(SecretBoxError):
        SecretBox.generate().decrypt(blob, context=b"webhook:a")
    with pytest.raises(SecretBoxError):
        box.decrypt(blob[:-1] + bytes([blob[-1] ^ 1]), context=b"webhook:a")
    assert "key" in repr(box) and path.read_text().strip() not in repr(box)

    hex_key = tmp_path / "hex.key"
    hex_key.write_text("ab" * 32 + "\n")
    SecretBox.load_or_create(hex_key).decrypt(
        SecretBox(bytes.fromhex("ab" * 32)).encrypt(b"x", context=b"c"), context=b"c"
    )
    short = tmp_path / "short.key"
    short.write_text("c2hvcnQ=\n")
    with pytest.raises(ValueError, match=r"short\.key.*32 bytes.*found 5 bytes"):
        SecretBox.load_or_create(short)
    garbage = tmp_path / "garbage.key"
    garbage.write_bytes(b"\xff\xfe not a key")
    with pytest.raises(ValueError, match=r"garbage\.key"):
        SecretBox.load_or_create(garbage)


# -- subscriptions through the API -------------------------------------------------------------


def test_create_shows_the_secret_once_and_stores_it_encrypted(client, admin, server):
    body = {
        "name": "alerts",
        "url": "https://hooks.example.org/mlgov?team=risk",
        "events": ["transition.applied", "evidence.added"],
        "description": "risk team",
        "reason": "the risk team wants to know",
    }
    r = client.post(f"{V1}/webhooks", json=body, headers=admin)
    assert r.status_code == 201, r.text
    created = r.json()
    secret = created["secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    assert created["events"] == ["transition.applied", "evidence.added"]
    assert created["active"] is True and created["created_by"] == "admin"

    shown = [
        client.get(f"{V1}/webhooks", headers=admin).text,
        client.get(f"{V1}/webhooks/alerts", headers=admin).text,
        client.get(f"{V1}/webhooks/alerts/deliveries", headers=admin).text,
        client.get(f"{V1}/audit/events", headers=admin).text,
    ]
    assert all(secret not in page for page in shown)
    assert "secret" not in client.get(f"{V1}/webhooks/alerts", headers=admin).json()

    with server.services.db.read() as session:
        rows = session.execute(text("SELECT * FROM webhooks")).all()
        events = session.execute(text("SELECT details FROM audit_events")).all()
    raw = rows[0]._mapping["secret_encrypted"]
    assert secret.encode() not in bytes(raw)
    assert all(secret not in repr(value) for row in rows for value in row)
    assert all(secret not in str(row) for row in events)
    box = server.services.webhooks.box
    assert box.decrypt(bytes(raw), context=b"mlgov.webhook.secret:alerts") == secret.encode()

    (event,) = client.get(
        f"{V1}/audit/events", params={"action": "webhook.create"}, headers=admin
    ).json()["items"]
    assert event["target"] == "webhook/alerts"
    assert event["details"] == {"url": body["url"], "events": body["events"]}
    assert event["reason"] == "the risk team wants to know"


BAD_BODIES = [
    ({"url": "ftp://example.org/x"}, 422, "url"),
    ({"url": "http://"}, 422, "url"),
    ({"url": "example.org/hook"}, 422, "url"),
    ({"url": "https://user:pw@example.org/hook"}, 422, "url"),
    ({"url": "https://example.org/a b"}, 422, "url"),
    ({"url": "https://example.org:99999/"}, 422, "url"),
    ({"url": "https://example.org/#frag"}, 422, "url"),
    ({"url": "https://example.org/" + "a" * 2048}, 422, "url"),
    ({"events": ["evidence.added", "model.deleted"]}, 422, "events[1]"),
    ({"events": []}, 422, "events"),
    ({"events": ["evidence.added", "evidence.added"]}, 422, "events"),
    ({"name": "../etc"}, 422, "name"),
    ({"reason": None}, 422, "reason"),
    ({"reason": "   "}, 422, "reason"),
    ({"secret": "mine"}, 422, "secret"),
    ({"name": "taken"}, 409, "name"),
]


@pytest.mark.parametrize(("change", "status", "field_name"), BAD_BODIES)
def test_bad_subscriptions_are_refused_and_change_nothing(
    client, admin, server, change, status, field_name
):
    base = {"name": "taken", "url": "http://127.0.0.1:9/x", "events": ["evidence.added"]}
    r = client.post(f"{V1}/webhooks", json={**base, "reason": "first"}, headers=admin)
    assert r.status_code == 201, r.text
    size = audit_size(server)
    body = {**base, "name": "other", "reason": "test", **change}
    body = {k: v for k, v in body.items() if v is not None}
    refused(client.post(f"{V1}/webhooks", json=body, headers=admin), status, field_name)
    assert [w["name"] for w in client.get(f"{V1}/webhooks", headers=admin).json()] == ["taken"]
    assert audit_size(server) == size


def test_who_may_manage_and_read_webhooks(client, admin, make_user):
    auditor = make_user("auditor")
    scientist = make_user("data_scientist")
    body = {"name": "h", "url": "http://127.0.0.1:9/", "events": ["evidence.added"], "reason": "r"}
    assert client.post(f"{V1}/webhooks", json=body, headers=auditor.headers).status_code == 403
    assert client.post(f"{V1}/webhooks", json=body, headers=admin).status_code == 201
    assert client.get(f"{V1}/webhooks", headers=auditor.headers).status_code == 200
    assert client.get(f"{V1}/webhooks/h/deliveries", headers=auditor.headers).status_code == 200
    assert client.get(f"{V1}/webhooks", headers=scientist.headers).status_code == 403
    r = client.request("DELETE", f"{V1}/webhooks/h", json={"reason": "r"}, headers=auditor.headers)
    assert r.status_code == 403
    assert client.get(f"{V1}/webhooks/nope", headers=admin).status_code == 404


def test_removing_a_webhook_stops_its_deliveries_and_keeps_its_history(
    client, admin, server, hooks, receivers, workers
):
    receiver = receivers()
    subscribe(hooks, "gone", receiver.url)
    assert emit(server, GovernanceEvent.EVIDENCE_ADDED, {"n": 1}) == 1

    refused(client.request("DELETE", f"{V1}/webhooks/gone", json={}, headers=admin), 422, "reason")
    r = client.request(
        "DELETE", f"{V1}/webhooks/gone", json={"reason": "team disbanded"}, headers=admin
    )
    assert r.status_code == 200, r.text
    assert r.json()["active"] is False and r.json()["disabled_at"] is not None
    r = client.request("DELETE", f"{V1}/webhooks/gone", json={"reason": "again"}, headers=admin)
    assert r.status_code == 409
    r = client.request("DELETE", f"{V1}/webhooks/never", json={"reason": "r"}, headers=admin)
    assert r.status_code == 404

    assert emit(server, GovernanceEvent.EVIDENCE_ADDED, {"n": 2}) == 0
    assert workers().run_once(now=utcnow() + timedelta(days=1)) == 0
    assert receiver.hits == []
    (dropped,) = deliveries(server)
    assert dropped.status == "failed" and dropped.last_error == "subscription removed"

    page = client.get(f"{V1}/webhooks/gone/deliveries", headers=admin).json()
    assert [d["status"] for d in page["items"]] == ["failed"]
    assert client.get(f"{V1}/webhooks/gone", headers=admin).json()["active"] is False
    body = {"name": "gone", "url": receiver.url, "events": ["evidence.added"], "reason": "back"}
    problem = refused(client.post(f"{V1}/webhooks", json=body, headers=admin), 409, "name")
    assert "removed" in problem["detail"]
    (event,) = client.get(
        f"{V1}/audit/events", params={"target": "webhook/gone"}, headers=admin
    ).json()["items"][1:]
    assert event["target"] == "webhook/gone" and event["reason"] == "team disbanded"


# -- the outbox --------------------------------------------------------------------------------


def test_deliveries_are_written_with_the_change_or_not_at_all(server, hooks):
    subscribe(hooks, "a", "http://127.0.0.1:9/a", [GovernanceEvent.EVIDENCE_ADDED])
    subscribe(
        hooks,
        "b",
        "http://127.0.0.1:9/b",
        [GovernanceEvent.EVIDENCE_ADDED, GovernanceEvent.TRANSITION_APPLIED],
    )
    subscribe(hooks, "c", "http://127.0.0.1:9/c", [GovernanceEvent.TRANSITION_REQUESTED])

    assert emit(server, GovernanceEvent.EVIDENCE_ADDED, {"model": "m", "version": 1}) == 2
    rows = deliveries(server)
    assert len(rows) == 2 and {r.status for r in rows} == {"pending"}
    assert rows[0].payload == rows[1].payload and rows[0].event_id == rows[1].event_id
    payload = json.loads(rows[0].payload)
    assert payload["id"] == rows[0].event_id and payload["type"] == "evidence.added"
    assert payload["data"] == {"model": "m", "version": 1}
    assert payload["time"].endswith("Z")
    assert datetime.fromisoformat(payload["time"]) == rows[0].created_at

    # No subscriber for this type: nothing written.
    assert emit(server, GovernanceEvent.TRANSITION_REJECTED, {"x": 1}) == 0
    assert len(deliveries(server)) == 2

    # A change that fails after writing its deliveries leaves none of them.
    size = audit_size(server)
    with (
        pytest.raises(RuntimeError, match="policy says no"),
        server.services.audit.change(system_context("test"), Permission.WEBHOOK_MANAGE, "r") as cs,
    ):
        assert hooks.enqueue(cs.session, GovernanceEvent.TRANSITION_APPLIED, {"v": 2}) == 1
        cs.record(Action.WEBHOOK_DELETE, "webhook/test-event", {})
        raise RuntimeError("policy says no")
    assert len(deliveries(server)) == 2 and audit_size(server) == size

    # Payloads are JSON: datetimes are written as RFC 3339; anything else is refused.
    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=utcnow().tzinfo)
    assert emit(server, GovernanceEvent.TRANSITION_APPLIED, {"at": when}) == 1
    assert json.loads(deliveries(server)[-1].payload)["data"] == {
        "at": "2030-01-02T03:04:05.000000Z"
    }
    with pytest.raises(TypeError, match="cannot hold"):
        emit(server, GovernanceEvent.TRANSITION_APPLIED, {"x": object()})
    assert len(deliveries(server)) == 3


# -- the worker --------------------------------------------------------------------------------


def test_delivery_is_signed_over_the_exact_body(server, hooks, receivers, workers, client, admin):
    receiver = receivers()
    secret = subscribe(hooks, "signed", receiver.url + "/in?x=1")
    emit(server, GovernanceEvent.EVIDENCE_ADDED, {"kind": "bias_audit", "note": "é\u2028"})
    (pending,) = deliveries(server)

    assert workers().run_once() == 1
    (hit,) = receiver.hits
    headers = {k.lower(): v for k, v in hit.headers.items()}
    assert hit.path == "/in?x=1"
    assert hit.body == pending.payload.encode()
    assert headers["content-type"] == "application/json"
    assert headers["x-mlgov-event"] == "evidence.added"
    assert headers["x-mlgov-delivery"] == pending.event_id == json.loads(hit.body)["id"]
    assert headers["user-agent"].startswith("mlgov-webhooks/")
    timestamp, signature = headers["x-mlgov-timestamp"], headers["x-mlgov-signature"]
    assert abs(int(timestamp) - time.time()) < 60
    assert signature == sign(secret, timestamp, hit.body) and signature.startswith("sha256=")
    assert verify_signature(secret, timestamp, hit.body, signature)
    assert verify_signature(secret, timestamp, hit.body.decode(), f"sha256=00, {signature}")
    assert not verify_signature(secret, timestamp, hit.body + b" ", signature)
    assert not verify_signature(secret + "x", timestamp, hit.body, signature)
    assert not verify_signature(secret, int(timestamp) + 1, hit.body, signature)
    assert not verify_signature(secret, "soon", hit.body, signature)
    assert not verify_signature(secret, timestamp, hit.body, signature, now=int(timestamp) + 301)
    assert verify_signature(secret, timestamp, hit.body, signature, now=int(timestamp) + 299)

    (item,) = client.get(f"{V1}/webhooks/signed/deliveries", headers=admin).json()["items"]
    assert item["status"] == "delivered" and item["attempts"] == 1
    assert item["payload"]["data"] == {"kind": "bias_audit", "note": "é\u2028"}
    (attempt,) = item["attempt_log"]
    assert attempt["status_code"] == 200 and attempt["error"] == ""
    assert attempt["response_excerpt"].startswith("answer 200")
    assert "\x00" not in attempt["response_excerpt"]
    # Delivered once is delivered: later passes send nothing.
    assert workers().run_once(now=utcnow() + timedelta(days=1)) == 0
    assert len(receiver.hits) == 1


def test_failures_are_retried_with_backoff_until_delivered(
    server, hooks, receivers, workers, client, admin
):
    receiver = receivers(statuses=[500, 302, 503])
    subscribe(hooks, "flaky", receiver.url)
    emit(server, GovernanceEvent.EVIDENCE_ADDED, {})
    worker = workers()
    t0 = utcnow()

    def state() -> WebhookDelivery:
        (row,) = deliveries(server)
        return row

    assert worker.run_once(now=t0) == 0
    assert state().attempts == 1 and state().next_attempt_at == t0 + timedelta(seconds=10)
    assert worker.run_once(now=t0 + timedelta(seconds=9)) == 0  # not due yet
    assert len(receiver.hits) == 1

    t1 = t0 + timedelta(seconds=10)
    assert worker.run_once(now=t1) == 0  # 302: redirects are not followed
    assert len(receiver.hits) == 2 and state().next_attempt_at == t1 + timedelta(seconds=30)
    t2 = t1 + timedelta(seconds=30)
    assert worker.run_once(now=t2) == 0
    assert state().next_attempt_at == t2 + timedelta(seconds=90)
    assert state().status == "pending" and state().last_status_code == 503
    assert worker.run_once(now=t2 + timedelta(seconds=90)) == 1
    assert len(receiver.hits) == 4 and all(h.path == "/" for h in receiver.hits)
    assert len({h.headers["X-Mlgov-Delivery"] for h in receiver.hits}) == 1

    (item,) = client.get(f"{V1}/webhooks/flaky/deliveries", headers=admin).json()["items"]
    assert item["status"] == "delivered" and item["attempts"] == 4
    log = item["attempt_log"]
    assert [a["attempt"] for a in log] == [1, 2, 3, 4]
    assert [a["status_code"] for a in log] == [500, 302, 503, 200]
    assert [a["error"] for a in log] == [
        "HTTP 500",
        "HTTP 302 (redirects are not followed)",
        "HTTP 503",
        "",
    ]
    assert all(a["duration_ms"] >= 0 for a in log)


def test_a_delivery_fails_for_good_after_max_attempts(
    server, hooks, receivers, workers, client, admin
):
    receiver = receivers(default=500)
    subscribe(hooks, "down", receiver.url)
    emit(server, GovernanceEvent.EVIDENCE_ADDED, {})
    worker = workers(max_attempts=3)
    later = utcnow()
    for _ in range(5):
        worker.run_once(now=later)
        later += timedelta(hours=2)
    assert len(receiver.hits) == 3
    (row,) = deliveries(server)
    assert row.status == "failed" and row.attempts == 3 and row.last_status_code == 500

    failed = client.get(
        f"{V1}/webhooks/down/deliveries", params={"status": "failed"}, headers=admin
    ).json()
    assert [d["attempts"] for d in failed["items"]] == [3]
    pending = client.get(
        f"{V1}/webhooks/down/deliveries", params={"status": "pending"}, headers=admin
    ).json()
    assert pending["items"] == []
    r = client.get(f"{V1}/webhooks/down/deliveries", params={"status": "lost"}, headers=admin)
    refused(r, 422, "query.status")


def test_the_default_backoff_schedule():
    backoff = exponential_backoff()
    assert [backoff(n) for n in range(1, 9)] == [10, 30, 90, 270, 810, 2430, 3600, 3600]
    jittered = exponential_backoff(jitter=0.5)
    assert all(5 <= jittered(1) <= 15 for _ in range(50))
    with pytest.raises(ValueError):
        exponential_backoff(jitter=1.5)


def test_dead_and_hanging_receivers_do_not_block_the_action_or_the_others(
    server, hooks, receivers, workers
):
    good, stuck = receivers(), receivers(hang=30)
    subscribe(hooks, "good", good.url)
    subscribe(hooks, "stuck", stuck.url)
    subscribe(hooks, "dead", closed_port_url())

    started = time.monotonic()
    assert emit(server, GovernanceEvent.EVIDENCE_ADDED, {"n": 1}) == 3
    assert time.monotonic() - started < 5 and good.hits == [] and stuck.hits == []

    worker = workers(timeout=0.5)
    started = time.monotonic()
    assert worker.run_once() == 1
    assert time.monotonic() - started < 10  # the stuck receiver cost one timeout, not 30 s
    by_hook = dict(zip(["good", "stuck", "dead"], deliveries(server), strict=True))
    assert by_hook["good"].status == "delivered"
    assert by_hook["stuck"].status == "pending" and by_hook["stuck"].attempts == 1
    assert by_hook["stuck"].last_error.startswith("timed out after 0.5 s")
    assert by_hook["dead"].status == "pending" and "ConnectError" in by_hook["dead"].last_error
    assert by_hook["dead"].last_status_code is None
    assert len(good.hits) == 1 and len(stuck.hits) == 1


def test_a_hanging_receiver_holds_one_slot_and_the_others_flow_past(
    server, hooks, receivers, workers
):
    good, stuck = receivers(), receivers(hang=30)
    subscribe(hooks, "stuck", stuck.url, [GovernanceEvent.TRANSITION_REQUESTED])
    subscribe(hooks, "good", good.url, [GovernanceEvent.EVIDENCE_ADDED])
    for n in range(4):  # the stuck receiver's deliveries are the oldest
        emit(server, GovernanceEvent.TRANSITION_REQUESTED, {"n": n})
    for n in range(4):
        emit(server, GovernanceEvent.EVIDENCE_ADDED, {"n": n})

    assert workers(timeout=0.5, concurrency=2).run_once() == 4
    assert len(stuck.hits) == 4 and len(good.hits) == 4
    # One at a time to the stuck receiver (each costs a timeout); the good one's deliveries
    # all went through the other slot meanwhile, not after the stuck ones.
    assert max(h.at for h in good.hits) < sorted(h.at for h in stuck.hits)[2]


def test_a_secret_that_does_not_decrypt_is_an_attempt_error(server, hooks, receivers, workers):
    receiver = receivers()
    subscribe(hooks, "k", receiver.url)
    emit(server, GovernanceEvent.EVIDENCE_ADDED, {})
    assert workers(box=SecretBox.generate()).run_once() == 0
    (row,) = deliveries(server)
    assert row.status == "pending" and "cannot decrypt" in row.last_error
    assert receiver.hits == []
    assert workers().run_once(now=utcnow() + timedelta(minutes=1)) == 1


def test_two_workers_never_send_a_delivery_twice(server, settings, hooks, receivers, workers):
    receiver = receivers(delay=0.005)
    for name in ("w1", "w2", "w3"):
        subscribe(hooks, name, f"{receiver.url}/{name}")
    for n in range(20):
        assert emit(server, GovernanceEvent.EVIDENCE_ADDED, {"n": n}) == 3
    other_db = Database(settings.database_url)
    try:
        pair = [workers(concurrency=3), workers(db=other_db, concurrency=3)]
        start = threading.Barrier(2)
        done: list[int] = []

        def work(worker: WebhookWorker) -> None:
            start.wait()
            total = 0
            while (sent := worker.run_once()) > 0:
                total += sent
            done.append(total)

        threads = [threading.Thread(target=work, args=(w,)) for w in pair]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    finally:
        other_db.dispose()
    rows = deliveries(server)
    assert len(rows) == 60 and {r.status for r in rows} == {"delivered"}
    assert sum(done) == 60 and len(receiver.hits) == 60
    sent = {(h.path, h.headers["X-Mlgov-Delivery"]) for h in receiver.hits}
    assert len(sent) == 60
    assert {r.attempts for r in rows} == {1}


def test_run_forever_delivers_until_stopped(server, hooks, receivers, workers, caplog):
    receiver = receivers()
    subscribe(hooks, "loop", receiver.url)
    worker = workers()
    stop = threading.Event()
    with caplog.at_level(logging.INFO, logger="mlgov.webhooks"):
        thread = threading.Thread(target=worker.run_forever, args=(stop, 0.05))
        thread.start()
        try:
            emit(server, GovernanceEvent.EVIDENCE_ADDED, {"n": 1})
            deadline = time.monotonic() + 20
            while not receiver.hits and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            stop.set()
            thread.join(20)
    assert not thread.is_alive() and len(receiver.hits) == 1
    assert "delivered evidence.added" in caplog.text
    assert all("whsec_" not in r.getMessage() for r in caplog.records)


def test_the_delivery_list_pages_newest_first(server, hooks, client, admin):
    subscribe(hooks, "pages", "http://127.0.0.1:9/")
    for n in range(5):
        emit(server, GovernanceEvent.EVIDENCE_ADDED, {"n": n})
    url = f"{V1}/webhooks/pages/deliveries"
    first = client.get(url, params={"limit": 3}, headers=admin).json()
    assert [d["payload"]["data"]["n"] for d in first["items"]] == [4, 3, 2]
    second = client.get(
        url, params={"limit": 3, "cursor": first["next_cursor"]}, headers=admin
    ).json()
    assert [d["payload"]["data"]["n"] for d in second["items"]] == [1, 0]
    assert second["next_cursor"] is None
    refused(client.get(url, params={"cursor": "!!"}, headers=admin), 422, "query.cursor")
    assert client.get(f"{V1}/webhooks/none/deliveries", headers=admin).status_code == 404


# -- running the worker ------------------------------------------------------------------------


def test_the_embedded_worker_runs_with_the_server(settings: Settings, server, receivers):
    receiver = receivers()
    embedded = build_server(dataclasses.replace(settings, embedded_worker=True))
    try:
        subscribe(embedded.services.webhooks, "embedded", receiver.url)
        with TestClient(embedded.app):
            emit(embedded, GovernanceEvent.EVIDENCE_ADDED, {"n": 1})
            deadline = time.monotonic() + 20
            while not receiver.hits and time.monotonic() < deadline:
                time.sleep(0.05)
        assert len(receiver.hits) == 1
        with embedded.services.db.read() as session:
            status = session.execute(select(WebhookDelivery.status)).scalar_one()
        assert status == "delivered"
    finally:
        embedded.services.db.dispose()


def test_settings_of_the_worker_and_the_secret_key(tmp_path, monkeypatch):
    monkeypatch.delenv("MLGOV_SECRET_KEY_FILE", raising=False)
    monkeypatch.delenv("MLGOV_EMBEDDED_WORKER", raising=False)
    settings = Settings.from_env(tmp_path)
    assert settings.secret_key_path == tmp_path / "secret.key"
    assert settings.embedded_worker is False
    monkeypatch.setenv("MLGOV_SECRET_KEY_FILE", str(tmp_path / "k" / "box.key"))
    monkeypatch.setenv("MLGOV_EMBEDDED_WORKER", "true")
    settings = Settings.from_env(tmp_path)
    assert settings.secret_key_path == tmp_path / "k" / "box.key"
    assert settings.embedded_worker is True
    monkeypatch.setenv("MLGOV_EMBEDDED_WORKER", "sometimes")
    with pytest.raises(ValueError, match="MLGOV_EMBEDDED_WORKER"):
        Settings.from_env(tmp_path)


def test_mlgov_worker_once(settings: Settings, server, hooks, receivers, tmp_path):
    from mlgov.cli.main import app

    receiver = receivers()
    subscribe(hooks, "cli", receiver.url)
    emit(server, GovernanceEvent.EVIDENCE_ADDED, {"n": 1})
    emit(server, GovernanceEvent.EVIDENCE_ADDED, {"n": 2})
    env = {
        "MLGOV_DATA_DIR": str(settings.data_dir),
        "MLGOV_DATABASE_URL": settings.database_url,
        "MLGOV_SECRET_KEY_FILE": "",
        "MLGOV_EMBEDDED_WORKER": "",
    }
    result = CliRunner().invoke(app, ["worker", "--once"], env=env)
    assert result.exit_code == 0, result.output
    assert "2 deliveries delivered; 0 validation jobs run." in result.output
    assert len(receiver.hits) == 2
    result = CliRunner().invoke(app, ["worker", "--once"], env=env)
    assert "0 deliveries delivered; 0 validation jobs run." in result.output

    empty = tmp_path / "empty"
    result = CliRunner().invoke(
        app,
        ["worker", "--once", "--data-dir", str(empty)],
        env={**env, "MLGOV_DATABASE_URL": f"sqlite:///{empty / 'mlgov.db'}"},
    )
    assert result.exit_code == 1 and "mlgov db upgrade" in result.output

"""The webhook worker: sends the outbox's deliveries, signed, with retries and backoff.

A pass (:meth:`WebhookWorker.run_once`) goes on until nothing is due:

1. **Claim**, in one short write transaction, due deliveries (pending, ``next_attempt_at``
   come, lease free or expired) for the free sending slots (``concurrency``), the oldest of
   each webhook, at most one per webhook in flight; and lease them for ``lease_seconds``. On
   PostgreSQL the rows are read ``FOR UPDATE SKIP LOCKED``, so concurrent workers claim
   disjoint rows without waiting on each other; on SQLite the write transaction (``BEGIN
   IMMEDIATE``, see :mod:`mlgov.db`) holds the database's one write lock, so the read and the
   lease are atomic across processes too.
2. **Send** each one in a thread, outside any transaction: ``POST`` of the stored payload with
   the signature headers, no redirects followed, ``timeout`` seconds per network step. A slot
   that frees is filled again at once, so a receiver that hangs holds one slot, not the pass.
3. **Record** each attempt in its own short transaction: an attempt row, and the delivery is
   ``delivered`` (2xx), rescheduled at ``now + backoff(attempts)``, or ``failed`` after
   ``max_attempts``. The update applies only if the delivery is still pending with the attempt
   count it was claimed with, so a worker whose lease ran out cannot undo another's result.

Delivery is at least once: a worker that dies after sending and before recording leaves the
lease to expire, and the delivery is sent again. Receivers deduplicate on ``X-Mlgov-Delivery``.

Signature: ``X-Mlgov-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`` with
``X-Mlgov-Timestamp`` the Unix time of the attempt; :func:`verify_signature` checks one.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType

import httpx
from sqlalchemy import func, or_, select, update

from mlgov import __version__
from mlgov.db import Database, utcnow
from mlgov.secretbox import SecretBox, SecretBoxError
from mlgov.webhooks.models import (
    DELIVERED,
    FAILED,
    PENDING,
    Webhook,
    WebhookAttempt,
    WebhookDelivery,
)
from mlgov.webhooks.service import SUBSCRIPTION_REMOVED, secret_context

__all__ = [
    "SIGNATURE_TOLERANCE",
    "WebhookWorker",
    "exponential_backoff",
    "sign",
    "verify_signature",
]

log = logging.getLogger("mlgov.webhooks")

USER_AGENT = f"mlgov-webhooks/{__version__}"
#: How far (seconds) a receiver should accept a timestamp from its own clock, by default.
SIGNATURE_TOLERANCE = 300
EXCERPT_BYTES = 1024
MAX_ERROR_CHARS = 2000


def exponential_backoff(
    base: float = 10.0, factor: float = 3.0, cap: float = 3600.0, jitter: float = 0.0
) -> Callable[[int], float]:
    """Seconds to wait after the ``n``-th failed attempt: ``base * factor**(n-1)``, at most
    ``cap``, spread by ±``jitter`` (a fraction; 0 gives the exact schedule)."""
    if not 0 <= jitter < 1:
        raise ValueError("jitter is a fraction in [0, 1)")

    def backoff(attempts: int) -> float:
        delay: float = min(cap, base * factor ** max(0, attempts - 1))
        if jitter:
            delay *= 1 + random.uniform(-jitter, jitter)  # noqa: S311 (spreading, not secrecy)
        return delay

    return backoff


def sign(secret: str | bytes, timestamp: int | str, body: bytes | str) -> str:
    """The ``X-Mlgov-Signature`` value of ``body`` sent at ``timestamp``."""
    key = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    data = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    mac = hmac.new(key, f"{timestamp}.".encode("ascii") + data, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify_signature(
    secret: str | bytes,
    timestamp: int | str,
    body: bytes | str,
    header: str,
    tolerance: float = SIGNATURE_TOLERANCE,
    *,
    now: float | None = None,
) -> bool:
    """Whether ``header`` (``X-Mlgov-Signature``) signs ``body`` (the raw request body) sent at
    ``timestamp`` (``X-Mlgov-Timestamp``) with ``secret``, and the timestamp is within
    ``tolerance`` seconds of ``now`` (default: this machine's clock). The header may list
    several comma-separated signatures; one valid is enough."""
    try:
        sent = int(str(timestamp).strip())
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - sent) > tolerance:
        return False
    expected = sign(secret, sent, body)
    return any(
        hmac.compare_digest(candidate.strip().encode(), expected.encode())
        for candidate in str(header).split(",")
    )


@dataclass(frozen=True)
class _Claimed:
    id: int
    attempts: int
    event_id: str
    event_type: str
    payload: str
    webhook_id: int
    webhook: str
    url: str
    secret_encrypted: bytes


@dataclass(frozen=True)
class _Outcome:
    started_at: datetime
    duration_ms: float
    status_code: int | None = None
    error: str = ""
    excerpt: str = ""

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class WebhookWorker:
    """Delivers pending webhook deliveries; safe to run in several threads or processes."""

    def __init__(
        self,
        db: Database,
        box: SecretBox,
        *,
        client: httpx.Client | None = None,
        timeout: float = 10.0,
        max_attempts: int = 8,
        backoff: Callable[[int], float] | None = None,
        lease_seconds: float = 60.0,
        concurrency: int = 4,
        max_per_pass: int = 1000,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if lease_seconds <= 2 * timeout:
            # A lease must outlast a send (connect, write, read: each up to ``timeout``).
            raise ValueError("lease_seconds must be more than twice the timeout")
        self.db = db
        self.box = box
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff = backoff or exponential_backoff()
        self.lease_seconds = lease_seconds
        self.concurrency = concurrency
        self.max_per_pass = max_per_pass
        self._own_client = client is None
        self.client = client or httpx.Client(
            timeout=timeout, follow_redirects=False, headers={"User-Agent": USER_AGENT}
        )
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
        if self._own_client:
            self.client.close()

    def __enter__(self) -> WebhookWorker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def run_once(self, now: datetime | None = None) -> int:
        """One pass: send everything due (at ``now``, default the clock) and record the
        outcomes. Returns how many deliveries succeeded."""
        return self._pass(now)[1]

    def run_forever(self, stop: threading.Event, poll_seconds: float = 1.0) -> None:
        """Pass after pass until ``stop`` is set, waiting ``poll_seconds`` between passes that
        found nothing left to do. An error (the database away, say) is logged, not raised."""
        log.info("webhook worker started (polling every %g s)", poll_seconds)
        while not stop.is_set():
            try:
                attempted, _ = self._pass(None)
            except Exception:
                log.exception("webhook delivery pass failed; retrying")
                attempted = 0
            if attempted < self.max_per_pass:  # else more is waiting: go on at once
                stop.wait(poll_seconds)
        log.info("webhook worker stopped")

    # -- a pass --------------------------------------------------------------------------

    def _pass(self, now: datetime | None) -> tuple[int, int]:
        """(deliveries attempted, deliveries that succeeded). Each freed slot is filled at
        once, with at most one delivery per webhook in flight: a receiver that hangs holds one
        slot for a timeout, and the others' deliveries flow past it."""
        pool = self._executor()
        running: dict[Future[bool], int] = {}  # -> webhook id
        attempted = delivered = 0
        try:
            while True:
                free = min(self.concurrency - len(running), self.max_per_pass - attempted)
                if free > 0:
                    # A fixed ``now`` (tests drive time) or the clock at each claim, so that a
                    # lease taken late in a long pass runs from when it was taken.
                    at = now or utcnow()
                    for item in self._claim(at, free, set(running.values())):
                        running[pool.submit(self._process, item, at)] = item.webhook_id
                        attempted += 1
                if not running:
                    return attempted, delivered
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    del running[future]
                    delivered += future.result()
        finally:
            wait(running)  # a claim failed: what is in flight still records its outcome

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=self.concurrency, thread_name_prefix="mlgov-webhook"
                )
            return self._pool

    def _claim(self, now: datetime, limit: int, busy: set[int]) -> list[_Claimed]:
        """Lease up to ``limit`` due deliveries, the oldest of each webhook not in ``busy``
        (webhooks this worker is sending to already), oldest webhooks first."""
        due = [
            WebhookDelivery.status == PENDING,
            WebhookDelivery.next_attempt_at <= now,
            or_(WebhookDelivery.lease_until.is_(None), WebhookDelivery.lease_until <= now),
        ]
        with self.db.write() as session:
            hooks = select(WebhookDelivery.webhook_id).where(*due)
            if busy:
                hooks = hooks.where(WebhookDelivery.webhook_id.not_in(busy))
            hook_ids = session.execute(
                hooks.group_by(WebhookDelivery.webhook_id)
                .order_by(func.min(WebhookDelivery.next_attempt_at), WebhookDelivery.webhook_id)
                .limit(limit)
            ).scalars()
            ids: list[int] = []
            for hook_id in list(hook_ids):
                found = session.execute(
                    select(WebhookDelivery.id)
                    .where(*due, WebhookDelivery.webhook_id == hook_id)
                    .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
                    .limit(1)
                    .with_for_update(skip_locked=True)  # PostgreSQL; SQLite holds the db lock
                ).scalar_one_or_none()
                if found is not None:
                    ids.append(found)
            if not ids:
                return []
            session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_(ids))
                .values(lease_until=now + timedelta(seconds=self.lease_seconds))
            )
            rows = session.execute(
                select(
                    WebhookDelivery.id,
                    WebhookDelivery.attempts,
                    WebhookDelivery.event_id,
                    WebhookDelivery.event_type,
                    WebhookDelivery.payload,
                    Webhook.id.label("webhook_id"),
                    Webhook.name,
                    Webhook.url,
                    Webhook.secret_encrypted,
                    Webhook.active,
                )
                .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
                .where(WebhookDelivery.id.in_(ids))
                .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
            ).all()
            # Written by a change that raced the subscription's removal: never sent.
            removed = [r.id for r in rows if not r.active]
            if removed:
                session.execute(
                    update(WebhookDelivery)
                    .where(WebhookDelivery.id.in_(removed))
                    .values(status=FAILED, last_error=SUBSCRIPTION_REMOVED, lease_until=None)
                )
        return [
            _Claimed(
                id=r.id,
                attempts=r.attempts,
                event_id=r.event_id,
                event_type=r.event_type,
                payload=r.payload,
                webhook_id=r.webhook_id,
                webhook=r.name,
                url=r.url,
                secret_encrypted=r.secret_encrypted,
            )
            for r in rows
            if r.active
        ]

    def _process(self, item: _Claimed, now: datetime) -> bool:
        """Send one delivery and record the outcome; never raises (a failure to record leaves
        the lease to expire, and the delivery is tried again)."""
        try:
            outcome = self._send(item)
            self._record(item, outcome, now)
        except Exception:
            log.exception("webhook delivery %d (webhook %s) failed", item.id, item.webhook)
            return False
        return outcome.ok

    def _send(self, item: _Claimed) -> _Outcome:
        started_at = utcnow()
        clock = time.perf_counter()

        def elapsed() -> float:
            return (time.perf_counter() - clock) * 1000

        try:
            secret = self.box.decrypt(
                item.secret_encrypted, context=secret_context(item.webhook)
            ).decode("utf-8")
        except (SecretBoxError, UnicodeDecodeError):
            log.error(
                "cannot decrypt the secret of webhook %s: is this the server's secret key file?",
                item.webhook,
            )
            return _Outcome(
                started_at,
                elapsed(),
                error="cannot decrypt the webhook's secret (another secret key file?); not sent",
            )
        body = item.payload.encode("utf-8")
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "X-Mlgov-Event": item.event_type,
            "X-Mlgov-Delivery": item.event_id,
            "X-Mlgov-Timestamp": str(timestamp),
            "X-Mlgov-Signature": sign(secret, timestamp, body),
        }
        try:
            with self.client.stream(
                "POST",
                item.url,
                content=body,
                headers=headers,
                timeout=self.timeout,
                follow_redirects=False,
            ) as response:
                excerpt = _read_excerpt(response)
                status = response.status_code
        except httpx.TimeoutException as exc:
            error = f"timed out after {self.timeout:g} s ({type(exc).__name__})"
            return _Outcome(started_at, elapsed(), error=error)
        except Exception as exc:  # noqa: BLE001 (any failure to send is an attempt's error)
            return _Outcome(started_at, elapsed(), error=_clean(f"{type(exc).__name__}: {exc}"))
        error = "" if 200 <= status < 300 else f"HTTP {status}"
        if 300 <= status < 400:
            error += " (redirects are not followed)"
        return _Outcome(started_at, elapsed(), status, error, excerpt)

    def _record(self, item: _Claimed, outcome: _Outcome, now: datetime) -> None:
        attempt = item.attempts + 1
        values: dict[str, object] = {
            "attempts": attempt,
            "lease_until": None,
            "last_status_code": outcome.status_code,
            "last_error": outcome.error,
        }
        if outcome.ok:
            values.update(status=DELIVERED, delivered_at=utcnow())
        elif attempt >= self.max_attempts:
            values["status"] = FAILED
        else:
            values["next_attempt_at"] = now + timedelta(seconds=self.backoff(attempt))
        with self.db.write() as session:
            session.add(
                WebhookAttempt(
                    delivery_id=item.id,
                    attempt=attempt,
                    started_at=outcome.started_at,
                    duration_ms=round(outcome.duration_ms, 3),
                    status_code=outcome.status_code,
                    error=outcome.error,
                    response_excerpt=outcome.excerpt,
                )
            )
            changed = session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id == item.id,
                    WebhookDelivery.status == PENDING,
                    WebhookDelivery.attempts == item.attempts,
                )
                .values(**values)
            ).rowcount  # type: ignore[attr-defined]
        if not changed:
            log.warning(
                "webhook delivery %d changed while it was sent (lease expired or subscription "
                "removed); attempt recorded, state left as it is",
                item.id,
            )
        elif outcome.ok:
            log.info(
                "delivered %s %s to webhook %s (HTTP %s)",
                item.event_type,
                item.event_id,
                item.webhook,
                outcome.status_code,
            )
        else:
            log.warning(
                "delivery %d of %s to webhook %s failed (attempt %d of %d): %s",
                item.id,
                item.event_type,
                item.webhook,
                attempt,
                self.max_attempts,
                outcome.error,
            )


def _read_excerpt(response: httpx.Response) -> str:
    """The first bytes of the answer, as text a database can hold (no NUL)."""
    data = b""
    for chunk in response.iter_bytes():
        data += chunk
        if len(data) >= EXCERPT_BYTES:
            break
    return _clean(data[:EXCERPT_BYTES].decode("utf-8", errors="replace"))[:EXCERPT_BYTES]


def _clean(text: str) -> str:
    return text.replace("\x00", "\ufffd")[:MAX_ERROR_CHARS]

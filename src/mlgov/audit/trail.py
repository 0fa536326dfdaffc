"""The audit trail: the one path for every state change, kept as a verifiable Merkle log.

A service changes state only inside :meth:`AuditTrail.change`: it checks the permission
against the permission table, requires a non-empty reason, opens one write transaction and
hands back a :class:`ChangeSet` whose :meth:`ChangeSet.record` collects the change's audit
events. Before the transaction commits, the events are appended to the log: the log head row is
locked (so every process writing to the database extends one tree in one order), each event
gets the next sequence number and its leaf hash, and the tree's new perfect subtrees are
stored. The transaction commits only if at least one event was recorded, so nothing changes
without its event and a failed change leaves neither.

The server signs checkpoints (C2SP signed notes of the tree size and root hash) on demand,
every ``checkpoint_every`` events inside the appending transaction, and every
``checkpoint_interval`` seconds from a background task when events arrived since the last one.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mlgov.audit.entry import (
    checkpoint_line,
    entry_line,
    entry_object,
    format_time,
    header_line,
)
from mlgov.audit.events import Action
from mlgov.audit.models import AuditEvent
from mlgov.audit.service import AuditQuery, authorize, check_reason, events_statement
from mlgov.context import Context
from mlgov.db import Database, utcnow
from mlgov.errors import InvalidInput, NotFound
from mlgov.identity.permissions import Permission
from mlgov.tlog import canonical, merkle
from mlgov.tlog.models import AUDIT_LOG, LogCheckpoint, LogHead
from mlgov.tlog.note import Checkpoint, Signer, sign_note
from mlgov.tlog.store import MerkleLog

EXPORT_BATCH = 2000


@dataclass(frozen=True)
class PendingEvent:
    action: Action
    target: str
    details: dict[str, Any]


@dataclass
class ChangeSet:
    session: Session
    ctx: Context
    reason: str
    pending: list[PendingEvent] = field(default_factory=list)
    #: The events as appended to the log (filled just before the commit).
    events: list[AuditEvent] = field(default_factory=list)

    def record(self, action: Action, target: str, details: dict[str, Any]) -> None:
        """Record the audit event of this change; it is appended to the log, in the change's
        own transaction, when the change is complete."""
        # What the JSON column gives back (tuples become lists, keys strings): the entry is
        # hashed from exactly what can be read again.
        self.pending.append(PendingEvent(action, target, json.loads(json.dumps(details))))

    def numbered(self, first_seq: int, time: datetime) -> list[AuditEvent]:
        """The recorded events as rows, numbered from ``first_seq`` (leaf hashes not set)."""
        return [
            AuditEvent(
                seq=first_seq + offset,
                time=time,
                actor=self.ctx.actor.name,
                actor_kind=self.ctx.actor.kind,
                action=item.action.value,
                target=item.target,
                reason=self.reason,
                details=item.details,
                request_id=self.ctx.request_id,
                client_addr=self.ctx.client_addr,
            )
            for offset, item in enumerate(self.pending)
        ]


def entry_bytes(event: AuditEvent) -> bytes:
    return canonical.dumps(
        entry_object(
            seq=event.seq,
            time=event.time,
            actor=event.actor,
            actor_kind=event.actor_kind,
            action=event.action,
            target=event.target,
            reason=event.reason,
            details=event.details,
            request_id=event.request_id,
            client_addr=event.client_addr,
        )
    )


def _read_leaves(session: Session, indices: Collection[int]) -> dict[int, bytes]:
    rows = session.execute(
        select(AuditEvent.seq, AuditEvent.leaf_hash).where(AuditEvent.seq.in_(list(indices)))
    )
    return {seq: digest for seq, digest in rows}


@dataclass(frozen=True)
class InclusionProof:
    index: int
    tree_size: int
    entry: bytes
    leaf_hash: bytes
    root_hash: bytes
    proof: list[bytes]


@dataclass(frozen=True)
class ConsistencyProof:
    first: int
    second: int
    first_root: bytes
    second_root: bytes
    proof: list[bytes]


@dataclass(frozen=True)
class TreeHead:
    size: int
    root_hash: bytes


class AuditTrail:
    def __init__(
        self,
        db: Database,
        signer: Signer,
        origin: str,
        *,
        checkpoint_every: int = 1000,
        checkpoint_interval: float = 60.0,
    ) -> None:
        if checkpoint_every < 1:
            raise ValueError("checkpoint_every must be at least 1")
        self.db = db
        self.signer = signer
        self.origin = origin
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval = checkpoint_interval
        self.log = MerkleLog(AUDIT_LOG, _read_leaves)

    # -- the change path ------------------------------------------------------------------

    @contextmanager
    def change(
        self, ctx: Context, permission: Permission, reason: str | None
    ) -> Iterator[ChangeSet]:
        authorize(ctx, permission)
        text = check_reason(reason)
        with self.db.write() as session:
            changes = ChangeSet(session=session, ctx=ctx, reason=text)
            yield changes
            if not changes.pending:
                raise RuntimeError("a change must record its audit event before it commits")
            changes.events = self._append(changes)

    def _append(self, changes: ChangeSet) -> list[AuditEvent]:
        # Everything else of the change is done: the head is locked as late as possible, so
        # concurrent changes wait on each other only for the append and the commit.
        session = changes.session
        head = self.log.head(session, lock=True)
        now = utcnow()
        events = changes.numbered(head.size, now)
        for event in events:
            event.leaf_hash = merkle.leaf_hash(entry_bytes(event))
        session.add_all(events)
        self.log.append(session, head, [e.leaf_hash for e in events])
        if head.size - head.checkpoint_size >= self.checkpoint_every:
            self._sign(session, head, now)
        session.flush()
        return events

    # -- checkpoints ------------------------------------------------------------------------

    def _sign(self, session: Session, head: LogHead, now: datetime) -> LogCheckpoint:
        root = merkle.Frontier.from_bytes(head.size, head.frontier).root()
        body = Checkpoint(origin=self.origin, size=head.size, root_hash=root).body()
        row = LogCheckpoint(
            log_id=AUDIT_LOG,
            tree_size=head.size,
            root_hash=root,
            time=now,
            key_name=self.signer.name,
            note=sign_note(body, [self.signer]),
        )
        session.add(row)
        head.checkpoint_size = head.size
        head.checkpoint_time = now
        return row

    def checkpoint(self, ctx: Context) -> tuple[LogCheckpoint, bool]:
        """A checkpoint of the log as it is now: the latest one if nothing was appended since,
        else a new one. Returns it and whether it is new."""
        authorize(ctx, Permission.AUDIT_CHECKPOINT)
        with self.db.write() as session:
            head = self.log.head(session, lock=True)
            latest = self._latest(session)
            if latest is not None and latest.tree_size == head.size:
                return latest, False
            row = self._sign(session, head, utcnow())
            session.flush()
            return row, True

    def checkpoint_if_due(self, now: datetime | None = None) -> LogCheckpoint | None:
        """Sign a checkpoint if events arrived and the interval since the last one passed
        (run periodically by the server; harmless when several replicas run it)."""
        now = now or utcnow()
        with self.db.read() as session:
            head = self.log.head(session)
            if not self._due(head, now):
                return None
        with self.db.write() as session:
            head = self.log.head(session, lock=True)
            if not self._due(head, now):
                return None
            row = self._sign(session, head, now)
            session.flush()
            return row

    def _due(self, head: LogHead, now: datetime) -> bool:
        if head.size == head.checkpoint_size:
            return False
        last = head.checkpoint_time
        return last is None or (now - last).total_seconds() >= self.checkpoint_interval

    def _latest(self, session: Session) -> LogCheckpoint | None:
        return session.execute(
            select(LogCheckpoint)
            .where(LogCheckpoint.log_id == AUDIT_LOG)
            .order_by(LogCheckpoint.tree_size.desc())
            .limit(1)
        ).scalar_one_or_none()

    def latest_checkpoint(self) -> LogCheckpoint:
        with self.db.read() as session:
            row = self._latest(session)
        if row is None:
            raise NotFound("no checkpoint has been signed yet (POST /api/v1/audit/checkpoints)")
        return row

    def checkpoints(
        self, *, after_size: int | None = None, limit: int = 100
    ) -> list[LogCheckpoint]:
        stmt = select(LogCheckpoint).where(LogCheckpoint.log_id == AUDIT_LOG)
        if after_size is not None:
            stmt = stmt.where(LogCheckpoint.tree_size > after_size)
        stmt = stmt.order_by(LogCheckpoint.tree_size).limit(limit)
        with self.db.read() as session:
            return list(session.execute(stmt).scalars())

    # -- reads and proofs -------------------------------------------------------------------

    def events(self, query: AuditQuery) -> Sequence[AuditEvent]:
        with self.db.read() as session:
            return session.execute(events_statement(query)).scalars().all()

    def tree_head(self) -> TreeHead:
        with self.db.read() as session:
            head = self.log.head(session)
            frontier = merkle.Frontier.from_bytes(head.size, head.frontier)
            return TreeHead(size=head.size, root_hash=frontier.root())

    def _size(self, session: Session, size: int | None, field_name: str) -> int:
        current = self.log.head(session).size
        if size is None:
            latest = self._latest(session)
            return latest.tree_size if latest is not None else current
        if size > current:
            raise InvalidInput(
                f"{field_name} {size} is beyond the log's current size {current}",
                field=f"query.{field_name}",
            )
        return size

    def inclusion(self, index: int, tree_size: int | None = None) -> InclusionProof:
        """Proof that entry ``index`` is in the tree of ``tree_size`` entries (default: the
        latest checkpoint's)."""
        with self.db.read() as session:
            size = self._size(session, tree_size, "tree_size")
            if index >= size:
                raise InvalidInput(
                    f"index {index} is not below tree_size {size}", field="query.index"
                )
            event = session.get(AuditEvent, index)
            if event is None:
                raise NotFound(f"audit event {index} does not exist")
            root, proof = self.log.inclusion_proof(session, index, size)
            return InclusionProof(
                index=index,
                tree_size=size,
                entry=entry_bytes(event),
                leaf_hash=event.leaf_hash,
                root_hash=root,
                proof=proof,
            )

    def consistency(self, first: int, second: int | None = None) -> ConsistencyProof:
        """Proof that the tree of ``first`` entries is a prefix of the tree of ``second``."""
        if first < 1:
            raise InvalidInput(
                "first must be at least 1: every tree extends the empty tree, there is "
                "nothing to prove",
                field="query.first",
            )
        with self.db.read() as session:
            size = self._size(session, second, "second")
            if first > size:
                raise InvalidInput(
                    f"first {first} is larger than second {size}", field="query.first"
                )
            first_root, second_root, proof = self.log.consistency_proof(session, first, size)
            return ConsistencyProof(
                first=first,
                second=size,
                first_root=first_root,
                second_root=second_root,
                proof=proof,
            )

    # -- export -----------------------------------------------------------------------------

    def export(self, tree_size: int | None = None) -> Iterator[bytes]:
        """The export file, line by line (see :mod:`mlgov.audit.entry`): the entries in
        sequence order (those below ``tree_size``, default all), each checkpoint up to that size
        after the entry that completes its tree. Entries are rebuilt from their columns, so what
        is verified is what the database says now. Checked before the first line is produced."""
        with self.db.read() as session:
            size = self.log.head(session).size
            if tree_size is not None and tree_size > size:
                raise InvalidInput(
                    f"tree_size {tree_size} is beyond the log's current size {size}",
                    field="query.tree_size",
                )
            stmt = select(LogCheckpoint.tree_size, LogCheckpoint.note).where(
                LogCheckpoint.log_id == AUDIT_LOG
            )
            if tree_size is not None:
                stmt = stmt.where(LogCheckpoint.tree_size <= tree_size)
            checkpoints = [(n, note) for n, note in session.execute(stmt.order_by("tree_size"))]
        return self._export_lines(
            tree_size if tree_size is not None else size, tree_size, checkpoints
        )

    def _export_lines(
        self, size: int, limit: int | None, checkpoints: list[tuple[int, str]]
    ) -> Iterator[bytes]:
        yield header_line(origin=self.origin, tree_size=size, exported_at=utcnow())
        pending = iter(checkpoints)
        upcoming = next(pending, None)
        while upcoming is not None and upcoming[0] == 0:
            yield checkpoint_line(*upcoming)
            upcoming = next(pending, None)
        after = -1
        while True:
            stmt = select(AuditEvent).where(AuditEvent.seq > after)
            if limit is not None:
                stmt = stmt.where(AuditEvent.seq < limit)
            with self.db.read() as session:
                batch = list(
                    session.execute(stmt.order_by(AuditEvent.seq).limit(EXPORT_BATCH)).scalars()
                )
            if not batch:
                break
            for event in batch:
                yield entry_line(event.leaf_hash, entry_bytes(event))
                while upcoming is not None and upcoming[0] <= event.seq + 1:
                    yield checkpoint_line(*upcoming)
                    upcoming = next(pending, None)
            after = batch[-1].seq
        while upcoming is not None:
            yield checkpoint_line(*upcoming)
            upcoming = next(pending, None)


def checkpoint_view(row: LogCheckpoint) -> dict[str, Any]:
    return {
        "tree_size": row.tree_size,
        "root_hash": row.root_hash.hex(),
        "time": format_time(row.time),
        "key_name": row.key_name,
        "note": row.note,
    }

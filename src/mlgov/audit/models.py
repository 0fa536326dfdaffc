"""The audit trail's table: one row per event, with its leaf hash in the Merkle log
(the tree itself lives in :mod:`mlgov.tlog.models`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from mlgov.db import Base, UTCDateTime


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_actor_seq", "actor", "seq"),
        Index("ix_audit_events_action_seq", "action", "seq"),
        Index("ix_audit_events_target_seq", "target", "seq"),
        Index("ix_audit_events_time", "time"),
    )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    time: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(128))
    actor_kind: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(512))
    reason: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]]
    request_id: Mapped[str] = mapped_column(String(64))
    client_addr: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: SHA-256(0x00 || entry), the entry being :func:`mlgov.audit.entry.entry_object` in JCS.
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32))

"""Tables shared by the verifiable logs (the audit trail now, the prediction log next).

A log's leaves live with its entries (``audit_events.leaf_hash``); these tables hold what the
Merkle tree adds: the head (size and right frontier, locked by every append), the perfect
subtree hashes above the leaves (so proofs cost O(log n) lookups, never a rebuild) and the
signed checkpoints.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, LargeBinary, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from mlgov.db import Base, UTCDateTime

AUDIT_LOG = 1


class LogHead(Base):
    """One row per log. An append locks it (``SELECT … FOR UPDATE``), so writers in any number
    of processes get one gap-free total order; it carries the frontier that makes the append
    O(log n)."""

    __tablename__ = "tlog_heads"

    log_id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(BigInteger)
    frontier: Mapped[bytes] = mapped_column(LargeBinary)
    checkpoint_size: Mapped[int] = mapped_column(BigInteger)
    checkpoint_time: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class LogNode(Base):
    """The hash of a perfect subtree above the leaves: ``level`` ≥ 1, covering leaves
    ``[index·2^level, (index+1)·2^level)``."""

    __tablename__ = "tlog_nodes"

    log_id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    index: Mapped[int] = mapped_column("idx", BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class LogCheckpoint(Base):
    """A signed tree head, as the C2SP signed note the server issued."""

    __tablename__ = "tlog_checkpoints"

    log_id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    tree_size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    time: Mapped[datetime] = mapped_column(UTCDateTime())
    key_name: Mapped[str] = mapped_column(String(255))
    note: Mapped[str] = mapped_column(Text)

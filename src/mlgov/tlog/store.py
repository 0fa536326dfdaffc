"""A Merkle log kept in the database: O(log n) appends, proofs from stored subtree hashes.

The caller owns the entries and their leaf hashes (for the audit trail, ``audit_events``); this
module keeps the rest of the tree in ``tlog_nodes`` and the head in ``tlog_heads``. Appends lock
the head row, so every process writing to one database extends one tree in one order.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from mlgov.tlog import merkle
from mlgov.tlog.models import LogHead, LogNode

#: Reads the leaf hashes of the given entry indices (the log's own entries table).
LeafReader = Callable[[Session, Collection[int]], dict[int, bytes]]


def _named_param(name: str) -> str:
    return f":{name}"


def _pyformat_param(name: str) -> str:
    return f"%({name})s"


class MissingNode(RuntimeError):
    """A hash the tree should hold is absent: the stored tree is damaged."""


@dataclass(frozen=True)
class MerkleLog:
    log_id: int
    read_leaves: LeafReader

    def head(self, session: Session, *, lock: bool = False) -> LogHead:
        stmt = select(LogHead).where(LogHead.log_id == self.log_id)
        if lock:
            stmt = stmt.with_for_update()
        return session.execute(stmt).scalar_one()

    def append(self, session: Session, head: LogHead, leaves: Sequence[bytes]) -> None:
        """Extend the tree by ``leaves`` (the head must be locked by this transaction)."""
        frontier = merkle.Frontier.from_bytes(head.size, head.frontier)
        nodes: list[dict[str, object]] = []
        for leaf in leaves:
            for level, index, digest in frontier.append(leaf):
                nodes.append(
                    {"log_id": self.log_id, "level": level, "index": index, "hash": digest}
                )
        if nodes:
            session.execute(insert(LogNode), nodes)
        head.size = frontier.size
        head.frontier = frontier.to_bytes()

    def inclusion_proof(self, session: Session, index: int, size: int) -> tuple[bytes, list[bytes]]:
        """The root of the tree of ``size`` leaves and the inclusion proof of leaf ``index``,
        from one lookup of the stored hashes."""
        root, *proof = self._range_hashes(
            session, [(0, size), *merkle.inclusion_ranges(index, size)]
        )
        return root, proof

    def consistency_proof(
        self, session: Session, first: int, second: int
    ) -> tuple[bytes, bytes, list[bytes]]:
        """Both roots and the consistency proof between them, from one lookup."""
        ranges = [(0, first), (0, second), *merkle.consistency_ranges(first, second)]
        first_root, second_root, *proof = self._range_hashes(session, ranges)
        return first_root, second_root, proof

    def _range_hashes(self, session: Session, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        wanted = merkle.nodes_for_ranges(ranges)
        found = self._node_hashes(session, wanted)
        missing = wanted - found.keys()
        if missing:
            level, index = min(missing)
            raise MissingNode(
                f"log {self.log_id}: the hash of node (level {level}, index {index}) is missing"
            )
        return [merkle.range_hash(begin, end, found) for begin, end in ranges]

    def _node_hashes(
        self, session: Session, wanted: Collection[merkle.NodeId]
    ) -> dict[merkle.NodeId, bytes]:
        found: dict[merkle.NodeId, bytes] = {}
        leaves = [index for level, index in wanted if level == 0]
        if leaves:
            for index, digest in self.read_leaves(session, leaves).items():
                found[(0, index)] = digest
        by_level: dict[int, list[int]] = {}
        for level, index in wanted:
            if level > 0:
                by_level.setdefault(level, []).append(index)
        if by_level:
            # One primary-key lookup per level, glued with UNION ALL (a row-value IN over
            # (level, idx) pairs, or an OR of per-level terms, made SQLite scan the log's
            # nodes), sent as the driver's own SQL: compiling the equivalent expression for
            # ~30 levels cost more than the lookups. Every value is a bound parameter.
            conn = session.connection()
            mark = _named_param if conn.dialect.name == "sqlite" else _pyformat_param
            params: dict[str, int] = {"log": self.log_id}
            parts = []
            for n, (level, indices) in enumerate(by_level.items()):
                params[f"l{n}"] = level
                names = []
                for k, index in enumerate(indices):
                    params[f"i{n}_{k}"] = index
                    names.append(mark(f"i{n}_{k}"))
                where = f"log_id = {mark('log')} AND level = {mark(f'l{n}')}"
                keys = ", ".join(names)
                # placeholders only, never a value:
                sql = f"SELECT level, idx, hash FROM tlog_nodes WHERE {where} AND idx IN ({keys})"  # noqa: S608
                parts.append(sql)
            rows = conn.exec_driver_sql(" UNION ALL ".join(parts), params)
            for level, index, digest in rows:
                found[(level, index)] = bytes(digest)
        return found

"""The byte form of an audit event in the Merkle log, and the export file's line layout.

An event's **entry** is the RFC 8785 (JCS) canonical JSON of the object below; its leaf hash is
SHA-256(0x00 || entry). Every field is read back from the event's columns, so the server can
recompute an entry at any time and a verifier can check it with nothing but the bytes::

    {"action": …, "actor": …, "actor_kind": …, "client_addr": … | null, "details": {…},
     "reason": …, "request_id": …, "seq": N, "target": …,
     "time": "YYYY-MM-DDTHH:MM:SS.ffffffZ", "type": "mlgov.audit.v1"}

This module is shared by the server and the offline verifier, so it imports nothing of the
server.

Export files (JSON Lines, UTF-8) hold, in order: one header line; one line per entry,
``{"leaf_hash":"<64 hex>","entry":<entry bytes>}`` with the entry embedded byte for byte (so the
verifier hashes exactly what the server hashed); and each signed checkpoint as
``{"type":"mlgov.checkpoint","tree_size":N,"note":"…"}`` right after the entry that brings the
tree to its size.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mlgov.tlog import canonical

ENTRY_TYPE = "mlgov.audit.v1"
EXPORT_TYPE = "mlgov.audit.export.v1"
CHECKPOINT_TYPE = "mlgov.checkpoint"

ENTRY_PREFIX = b'{"leaf_hash":"'
ENTRY_MIDDLE = b'","entry":'
ENTRY_SUFFIX = b"}"
#: Byte offset of the entry inside an entry line.
ENTRY_OFFSET = len(ENTRY_PREFIX) + 64 + len(ENTRY_MIDDLE)


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with microseconds, the one form an entry uses."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_object(
    *,
    seq: int,
    time: datetime,
    actor: str,
    actor_kind: str,
    action: str,
    target: str,
    reason: str,
    details: dict[str, Any],
    request_id: str,
    client_addr: str | None,
) -> dict[str, Any]:
    return {
        "type": ENTRY_TYPE,
        "seq": seq,
        "time": format_time(time),
        "actor": actor,
        "actor_kind": actor_kind,
        "action": action,
        "target": target,
        "reason": reason,
        "details": details,
        "request_id": request_id,
        "client_addr": client_addr,
    }


def entry_line(leaf_hash: bytes, entry: bytes) -> bytes:
    return ENTRY_PREFIX + leaf_hash.hex().encode() + ENTRY_MIDDLE + entry + ENTRY_SUFFIX + b"\n"


def checkpoint_line(tree_size: int, note: str) -> bytes:
    body = {"type": CHECKPOINT_TYPE, "tree_size": tree_size, "note": note}
    return canonical.dumps(body) + b"\n"


def header_line(*, origin: str, tree_size: int, exported_at: datetime) -> bytes:
    body = {
        "type": EXPORT_TYPE,
        "origin": origin,
        "tree_size": tree_size,
        "exported_at": format_time(exported_at),
        "entry_type": ENTRY_TYPE,
    }
    return canonical.dumps(body) + b"\n"

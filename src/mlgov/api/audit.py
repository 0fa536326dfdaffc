"""The audit trail: events, signed checkpoints, proofs and the export."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, Field

from mlgov.api.deps import Services, context, services
from mlgov.api.views import AuditEventOut, Page, audit_out
from mlgov.audit.events import Action
from mlgov.audit.service import AuditQuery
from mlgov.audit.trail import checkpoint_view
from mlgov.context import Context
from mlgov.errors import InvalidInput
from mlgov.registry.service import decode_number_cursor, encode_cursor
from mlgov.tlog.models import LogCheckpoint


def list_events(
    svc: Services = Depends(services),
    actor: Annotated[str | None, Query(max_length=128)] = None,
    action: Action | None = None,
    target: Annotated[str | None, Query(max_length=512)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> Page[AuditEventOut]:
    """Events in sequence order, filtered; ``target`` includes everything below it."""
    for field, value in (("since", since), ("until", until)):
        if value is None:
            continue
        if value.tzinfo is None:
            raise InvalidInput(f"{field} needs a time zone (e.g. 'Z')", field=f"query.{field}")
        try:
            value.astimezone(UTC)  # as stored; year 9999 at -14:00 is past the calendar's end
        except OverflowError:
            raise InvalidInput(f"{field} is out of range", field=f"query.{field}") from None
    after = decode_number_cursor(cursor) if cursor else None
    rows = svc.audit.events(
        AuditQuery(
            actor=actor,
            action=action.value if action else None,
            target=target,
            since=since,
            until=until,
            after_seq=after,
            limit=limit + 1,
        )
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return Page[AuditEventOut](
        items=[audit_out(e) for e in rows],
        next_cursor=encode_cursor(str(rows[-1].seq)) if more else None,
    )


# -- the verifiable log -----------------------------------------------------------------------

MAX_INDEX = 2**63 - 1


class PublicKeyOut(BaseModel):
    verifier_key: str = Field(description="C2SP note verifier key: name+keyhash+base64(0x01||key)")
    key_name: str
    origin: str = Field(description="The first line of every checkpoint of this log")
    algorithm: str = "Ed25519"


class CheckpointOut(BaseModel):
    tree_size: int
    root_hash: str = Field(description="Hex SHA-256 Merkle tree root (RFC 9162)")
    time: str = Field(description="When the server signed it (RFC 3339, UTC)")
    key_name: str
    note: str = Field(description="The C2SP signed note: tlog-checkpoint body and signature")


class CheckpointList(BaseModel):
    items: list[CheckpointOut]


class InclusionProofOut(BaseModel):
    index: int
    tree_size: int
    entry: str = Field(description="The entry (canonical JSON) whose leaf hash is proven")
    leaf_hash: str
    root_hash: str
    proof: list[str] = Field(description="RFC 9162 inclusion proof, hex hashes, leaf first")


class ConsistencyProofOut(BaseModel):
    first: int
    second: int
    first_root: str
    second_root: str
    proof: list[str] = Field(description="RFC 9162 consistency proof, hex hashes")


def _checkpoint_out(row: LogCheckpoint) -> CheckpointOut:
    return CheckpointOut(**checkpoint_view(row))


def public_key(svc: Services = Depends(services)) -> PublicKeyOut:
    """The key that signs the audit log's checkpoints. Compare it with the one you were
    given out of band before you trust a verification made with it."""
    signer = svc.audit.signer
    return PublicKeyOut(
        verifier_key=signer.verifier().key_string(), key_name=signer.name, origin=svc.audit.origin
    )


def latest_checkpoint(request: Request, svc: Services = Depends(services)) -> Response:
    """The latest signed checkpoint: JSON, or the bare note with ``Accept: text/plain``."""
    row = svc.audit.latest_checkpoint()
    if "text/plain" in request.headers.get("accept", ""):
        return PlainTextResponse(row.note)
    return JSONResponse(_checkpoint_out(row).model_dump())


def list_checkpoints(
    svc: Services = Depends(services),
    after_size: Annotated[int | None, Query(ge=0, le=MAX_INDEX)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> CheckpointList:
    """Stored checkpoints, smallest tree first."""
    rows = svc.audit.checkpoints(after_size=after_size, limit=limit)
    return CheckpointList(items=[_checkpoint_out(r) for r in rows])


def create_checkpoint(
    response: Response, ctx: Context = Depends(context), svc: Services = Depends(services)
) -> CheckpointOut:
    """Sign a checkpoint of the log as it is now (201), or return the latest one when no
    event arrived since (200)."""
    row, created = svc.audit.checkpoint(ctx)
    if not created:
        response.status_code = 200
    return _checkpoint_out(row)


def inclusion_proof(
    index: Annotated[int, Query(ge=0, le=MAX_INDEX, description="Sequence number")],
    svc: Services = Depends(services),
    tree_size: Annotated[
        int | None, Query(ge=1, le=MAX_INDEX, description="Default: the latest checkpoint's")
    ] = None,
) -> InclusionProofOut:
    """Proof that an entry is in the tree of the given size (RFC 9162 §2.1.3)."""
    p = svc.audit.inclusion(index, tree_size)
    return InclusionProofOut(
        index=p.index,
        tree_size=p.tree_size,
        entry=p.entry.decode(),
        leaf_hash=p.leaf_hash.hex(),
        root_hash=p.root_hash.hex(),
        proof=[h.hex() for h in p.proof],
    )


def consistency_proof(
    first: Annotated[int, Query(ge=0, le=MAX_INDEX, description="The older tree size")],
    svc: Services = Depends(services),
    second: Annotated[
        int | None,
        Query(ge=1, le=MAX_INDEX, description="The newer tree size (default: latest checkpoint)"),
    ] = None,
) -> ConsistencyProofOut:
    """Proof that the older tree is a prefix of the newer one (RFC 9162 §2.1.4). A proof from
    the empty tree is refused: every tree extends it, there is nothing to prove."""
    p = svc.audit.consistency(first, second)
    return ConsistencyProofOut(
        first=p.first,
        second=p.second,
        first_root=p.first_root.hex(),
        second_root=p.second_root.hex(),
        proof=[h.hex() for h in p.proof],
    )


class NDJSONResponse(StreamingResponse):
    media_type = "application/x-ndjson"


def export(
    svc: Services = Depends(services),
    tree_size: Annotated[
        int | None,
        Query(ge=0, le=MAX_INDEX, description="Only the first N entries (default: all)"),
    ] = None,
) -> NDJSONResponse:
    """The log as JSON Lines (header, entries, checkpoints), for ``mlgov audit verify``."""
    return NDJSONResponse(svc.audit.export(tree_size))

"""Check the server's proofs locally, against checkpoints signed with a key you trust.

Used by the SDK and the CLI; imports nothing of the server. Every failure raises
:class:`~mlgov.audit.verify.VerificationFailed` with what is wrong.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from mlgov.audit.verify import SignedHead, VerificationFailed, open_checkpoint
from mlgov.tlog import merkle
from mlgov.tlog.note import NoteError, Verifier


def verifiers_from(public_keys: Sequence[str]) -> list[Verifier]:
    if not public_keys:
        raise VerificationFailed("at least one public key is needed")
    try:
        return [Verifier.from_string(key.strip()) for key in public_keys]
    except NoteError as exc:
        raise VerificationFailed(f"bad public key: {exc}") from None


def _signed(note: str, verifiers: Sequence[Verifier], what: str) -> SignedHead:
    try:
        return open_checkpoint(note, verifiers)
    except NoteError as exc:
        raise VerificationFailed(f"{what}: {exc}") from None


def signed_size(note: str, public_keys: Sequence[str]) -> int:
    """The tree size of a checkpoint note, once its signature is checked."""
    return _signed(note, verifiers_from(public_keys), "checkpoint").size


def _hashes(values: Sequence[str], what: str) -> list[bytes]:
    out = []
    for number, value in enumerate(values):
        try:
            digest = bytes.fromhex(value)
        except (ValueError, TypeError):
            raise VerificationFailed(f"{what} element {number} is not hex") from None
        out.append(digest)
    return out


def head_view(head: SignedHead) -> dict[str, Any]:
    return {
        "origin": head.origin,
        "tree_size": head.size,
        "root_hash": head.root_hash.hex(),
        "key_names": list(head.key_names),
    }


def check_inclusion(proof: dict[str, Any], note: str, public_keys: Sequence[str]) -> dict[str, Any]:
    """``proof`` as ``GET /api/v1/audit/proofs/inclusion`` returns it; ``note`` the signed
    checkpoint of the same tree size."""
    head = _signed(note, verifiers_from(public_keys), "checkpoint")
    index, size = proof["index"], proof["tree_size"]
    if size != head.size:
        raise VerificationFailed(
            f"the proof is for a tree of {size} entries, the checkpoint covers {head.size}"
        )
    entry = str(proof["entry"]).encode()
    leaf = merkle.leaf_hash(entry)
    if leaf.hex() != proof["leaf_hash"]:
        raise VerificationFailed(f"entry {index} does not hash to its leaf hash", seq=index)
    try:
        fields = json.loads(entry)
    except ValueError:
        raise VerificationFailed(f"entry {index} is not JSON", seq=index) from None
    if not isinstance(fields, dict) or fields.get("seq") != index:
        raise VerificationFailed(f"the entry proven is not entry {index}", seq=index)
    try:
        merkle.verify_inclusion(leaf, index, size, _hashes(proof["proof"], "proof"), head.root_hash)
    except merkle.ProofError as exc:
        raise VerificationFailed(
            f"entry {index} is not in the signed tree of {size} entries: {exc}", seq=index
        ) from None
    return {"entry": fields, "leaf_hash": leaf.hex(), "checkpoint": head_view(head)}


def check_consistency(
    old_note: str,
    new_note: str,
    proof: dict[str, Any] | None,
    public_keys: Sequence[str],
) -> dict[str, Any]:
    """Check that the tree signed in ``new_note`` extends the one in ``old_note``; ``proof``
    as ``GET /api/v1/audit/proofs/consistency`` returns it (None when the old tree is empty:
    every tree extends the empty one)."""
    verifiers = verifiers_from(public_keys)
    old = _signed(old_note, verifiers, "old checkpoint")
    new = _signed(new_note, verifiers, "new checkpoint")
    if old.origin != new.origin:
        raise VerificationFailed(f"the checkpoints are of two logs: {old.origin!r}, {new.origin!r}")
    if new.size < old.size:
        raise VerificationFailed(
            f"the log shrank from {old.size} to {new.size} entries: it was truncated or rewritten",
            seq=new.size,
        )
    if old.size > 0:
        if proof is None or (proof["first"], proof["second"]) != (old.size, new.size):
            raise VerificationFailed(f"a consistency proof from {old.size} to {new.size} is needed")
        try:
            merkle.verify_consistency(
                old.size,
                new.size,
                _hashes(proof["proof"], "proof"),
                old.root_hash,
                new.root_hash,
            )
        except merkle.ProofError as exc:
            raise VerificationFailed(
                f"the log of {new.size} entries does not extend the one of {old.size}: {exc}"
            ) from None
    return {"old": head_view(old), "new": head_view(new)}

"""Verify an audit export with nothing but the file and the log's public key.

The verifier reads the export line by line (memory stays flat in the number of entries): it
recomputes every entry's leaf hash and the tree's root at every checkpoint, checks each
checkpoint's Ed25519 signature and root, and stops at the first problem, naming the first
entry it can prove bad. Because every root is recomputed from one sequence of entries, a
checkpoint that verifies is a prefix of every later one that verifies: the checkpoints are
consistent with each other by construction.

What a verifier can name depends on what was changed. An entry whose content no longer matches
its recorded leaf hash, a missing, repeated or reordered entry, and a truncated tail are named
exactly. Someone who also rewrote the recorded hashes is caught by the first signed checkpoint
that covers the change, and the verifier names the range between the last checkpoint that still
verifies and that one: checkpoints more frequent than the change narrow the range.

This module imports nothing of the server: it runs wherever ``mlgov`` is installed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import orjson

from mlgov.audit.entry import (
    CHECKPOINT_TYPE,
    ENTRY_MIDDLE,
    ENTRY_OFFSET,
    ENTRY_PREFIX,
    ENTRY_SUFFIX,
    ENTRY_TYPE,
    EXPORT_TYPE,
)
from mlgov.tlog.merkle import Frontier
from mlgov.tlog.note import Checkpoint, NoteError, Verifier, open_note

_HASH_END = len(ENTRY_PREFIX) + 64


class VerificationFailed(Exception):
    """The export does not verify. ``seq`` is the first entry proven bad (None when the
    problem is not an entry's, e.g. a forged checkpoint signature)."""

    def __init__(self, message: str, seq: int | None = None) -> None:
        super().__init__(message)
        self.seq = seq


@dataclass(frozen=True)
class SignedHead:
    size: int
    root_hash: bytes
    origin: str
    key_names: tuple[str, ...]
    note: str


@dataclass(frozen=True)
class VerifyReport:
    entries: int
    checkpoints: int
    head: SignedHead | None
    #: Entries after the last checkpoint, verified as a chain but covered by no signature.
    unsigned_tail: int
    root_hash: bytes


def open_checkpoint(note: str, verifiers: Sequence[Verifier]) -> SignedHead:
    """Check a checkpoint note's signature and parse it (NoteError when either fails)."""
    opened = open_note(note, verifiers)
    checkpoint = Checkpoint.parse(opened.text)
    return SignedHead(
        size=checkpoint.size,
        root_hash=checkpoint.root_hash,
        origin=checkpoint.origin,
        key_names=tuple(s.name for s in opened.verified),
        note=note,
    )


class _Verifier:
    def __init__(
        self,
        verifiers: Sequence[Verifier],
        trusted: Sequence[str],
        origin: str | None,
        allow_unsigned_tail: bool,
    ) -> None:
        if not verifiers:
            raise ValueError("at least one public key is needed")
        self.verifiers = verifiers
        self.origin = origin
        self.allow_unsigned_tail = allow_unsigned_tail
        self.frontier = Frontier()
        self.checkpoints = 0
        self.last_size = -1  # the last checkpoint line's size
        self.good = 0  # entries covered by the last checkpoint that verified
        self.head: SignedHead | None = None
        self.trusted: dict[int, SignedHead] = {}
        for number, note in enumerate(trusted, 1):
            try:
                cp = open_checkpoint(note, verifiers)
            except NoteError as exc:
                raise VerificationFailed(f"trusted checkpoint #{number}: {exc}") from None
            self._check_origin(cp, f"trusted checkpoint #{number}")
            earlier = self.trusted.get(cp.size)
            if earlier is not None and earlier.root_hash != cp.root_hash:
                raise VerificationFailed(
                    f"two trusted checkpoints of size {cp.size} disagree: the log was forked"
                )
            self.trusted[cp.size] = cp

    def _check_origin(self, cp: SignedHead, what: str) -> None:
        if self.origin is None:
            self.origin = cp.origin
        elif cp.origin != self.origin:
            raise VerificationFailed(f"{what} is for log {cp.origin!r}, not {self.origin!r}")

    def header(self, line: bytes) -> None:
        try:
            head = orjson.loads(line)
        except orjson.JSONDecodeError:
            head = None
        if not isinstance(head, dict) or head.get("type") != EXPORT_TYPE:
            raise VerificationFailed(
                f"not an mlgov audit export (first line must be {EXPORT_TYPE})"
            )
        if head.get("entry_type") != ENTRY_TYPE:
            raise VerificationFailed(
                f"entries of type {head.get('entry_type')!r} are not known to this verifier "
                f"(it checks {ENTRY_TYPE})"
            )
        origin = head.get("origin")
        if self.origin is not None and origin != self.origin:
            raise VerificationFailed(f"the export is of log {origin!r}, not {self.origin!r}")

    def entry(self, line: bytes) -> None:
        seq = self.frontier.size
        if line[_HASH_END:ENTRY_OFFSET] != ENTRY_MIDDLE or not line.endswith(ENTRY_SUFFIX):
            raise VerificationFailed(f"entry {seq}: malformed line", seq=seq)
        entry = line[ENTRY_OFFSET:-1]
        try:
            fields = orjson.loads(entry)
        except orjson.JSONDecodeError as exc:
            raise VerificationFailed(f"entry {seq}: not JSON ({exc})", seq=seq) from None
        if not isinstance(fields, dict) or fields.get("type") != ENTRY_TYPE:
            raise VerificationFailed(f"entry {seq}: not an {ENTRY_TYPE} entry", seq=seq)
        number = fields.get("seq")
        if number != seq:
            if isinstance(number, int) and number > seq:
                raise VerificationFailed(
                    f"entry {seq} is missing (the next entry in the export is {number})", seq=seq
                )
            raise VerificationFailed(
                f"entry {seq}: the entry here says it is number {number!r}: entries were "
                "reordered, repeated or renumbered",
                seq=seq,
            )
        leaf = hashlib.sha256(b"\x00" + entry).digest()
        if leaf.hex().encode() != line[len(ENTRY_PREFIX) : _HASH_END]:
            raise VerificationFailed(
                f"entry {seq}: its content does not match its recorded leaf hash "
                "(it was changed after it was logged)",
                seq=seq,
            )
        self.frontier.append(leaf)
        trusted = self.trusted.get(seq + 1)
        if trusted is not None:
            self._match(trusted, "trusted checkpoint")

    def checkpoint(self, line: bytes) -> None:
        try:
            body = orjson.loads(line)
            size, note = body["tree_size"], body["note"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise VerificationFailed(
                f"malformed checkpoint line after entry {self.frontier.size - 1}"
            ) from None
        if body.get("type") != CHECKPOINT_TYPE or not isinstance(note, str):
            raise VerificationFailed(f"malformed checkpoint line (size {size!r})")
        try:
            cp = open_checkpoint(note, self.verifiers)
        except NoteError as exc:
            raise VerificationFailed(f"checkpoint of size {size}: {exc}") from None
        self._check_origin(cp, f"checkpoint of size {cp.size}")
        if cp.size != size:
            raise VerificationFailed(
                f"checkpoint line says size {size} but its signed note says {cp.size}"
            )
        if cp.size < self.last_size:
            raise VerificationFailed(
                f"checkpoint of size {cp.size} comes after one of size {self.last_size}: "
                "checkpoints are out of order"
            )
        self.last_size = cp.size
        have = self.frontier.size
        if cp.size > have:
            raise VerificationFailed(
                f"entries {have}..{cp.size - 1} are missing: the checkpoint of size {cp.size} "
                f"covers them but the export ends at entry {have - 1} (the log was truncated)",
                seq=have,
            )
        if cp.size < have:
            raise VerificationFailed(
                f"checkpoint of size {cp.size} is out of place (after entry {have - 1})"
            )
        self._match(cp, "checkpoint")
        self.checkpoints += 1
        self.head = cp

    def _match(self, cp: SignedHead, what: str) -> None:
        root = self.frontier.root()
        if root != cp.root_hash:
            raise VerificationFailed(
                f"the entries differ from the log the server signed: the {what} of size "
                f"{cp.size} has root {cp.root_hash.hex()}, the entries give {root.hex()}; the "
                f"last checkpoint that verifies covers {self.good} entries, so the change lies "
                f"in entries {self.good}..{cp.size - 1}",
                seq=self.good,
            )
        self.good = max(self.good, cp.size)

    def finish(self) -> VerifyReport:
        have = self.frontier.size
        beyond = [size for size in self.trusted if size > have]
        if beyond:
            raise VerificationFailed(
                f"entries {have}..{max(beyond) - 1} are missing: a trusted checkpoint covers "
                f"{max(beyond)} entries but the export ends at entry {have - 1} "
                "(the log was truncated)",
                seq=have,
            )
        covered = self.head.size if self.head else 0
        tail = have - covered
        if tail and not self.allow_unsigned_tail:
            raise VerificationFailed(
                f"entries {covered}..{have - 1} are covered by no signed checkpoint (sign one "
                "and export again, or accept an unsigned tail explicitly)",
                seq=covered,
            )
        return VerifyReport(
            entries=have,
            checkpoints=self.checkpoints,
            head=self.head,
            unsigned_tail=tail,
            root_hash=self.frontier.root(),
        )


def verify_export(
    lines: Iterable[bytes],
    verifiers: Sequence[Verifier],
    *,
    trusted: Sequence[str] = (),
    origin: str | None = None,
    allow_unsigned_tail: bool = False,
) -> VerifyReport:
    """Verify an export given as lines (a file opened in binary mode, or a response stream).

    ``trusted`` are checkpoint notes kept from earlier (by an auditor or a witness): each must
    be covered by the export and match it, which catches a log rewritten or truncated together
    with its stored checkpoints. Raises :class:`VerificationFailed` at the first problem.
    """
    state = _Verifier(verifiers, trusted, origin, allow_unsigned_tail)
    first = True
    for raw in lines:
        line = raw.rstrip(b"\n")
        if first:
            state.header(line)
            first = False
        elif line.startswith(ENTRY_PREFIX):
            state.entry(line)
        elif line.startswith(b'{"note":'):
            state.checkpoint(line)
        else:
            raise VerificationFailed(
                f"unexpected line after entry {state.frontier.size - 1}: {line[:60]!r}"
            )
    if first:
        raise VerificationFailed("the export is empty")
    return state.finish()

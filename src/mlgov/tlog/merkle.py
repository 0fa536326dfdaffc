"""RFC 9162 Merkle tree primitives: hashing, the append frontier, proof ranges, proof checks.

Pure functions over 32-byte SHA-256 hashes; storage is the caller's business. A node
``(level, index)`` is the perfect subtree over leaves ``[index·2^level, (index+1)·2^level)``;
level 0 is the leaf hashes themselves.

Conventions follow RFC 9162 §2.1 (identical to RFC 6962 §2.1 for these algorithms):
``MTH({}) = SHA-256()``, leaves hash as ``SHA-256(0x00 || entry)``, interior nodes as
``SHA-256(0x01 || left || right)``, and a tree of ``n > 1`` leaves splits at the largest power
of two below ``n``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from hashlib import sha256
from typing import TypeAlias

HASH_SIZE = 32
EMPTY_ROOT = sha256(b"").digest()

#: ``(level, index)`` of a perfect subtree; see the module docstring.
NodeId: TypeAlias = tuple[int, int]


class ProofError(ValueError):
    """A proof, or what it is checked against, is malformed or does not verify."""


def leaf_hash(entry: bytes) -> bytes:
    """``SHA-256(0x00 || entry)``."""
    return sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``."""
    return sha256(b"\x01" + left + right).digest()


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of a whole tree given its leaf hashes (a reference for tests and small trees).

    Pairs nodes level by level, carrying a lone last node up unchanged: O(n), and the same
    tree as the RFC's recursive split, but computed independently of :class:`Frontier`.
    """
    level = list(leaf_hashes)
    for i, h in enumerate(level):
        if len(h) != HASH_SIZE:
            raise ValueError(f"leaf hash {i} is {len(h)} bytes, not {HASH_SIZE}")
    if not level:
        return EMPTY_ROOT
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) & 1:
            paired.append(level[-1])
        level = paired
    return level[0]


class Frontier:
    """Compact range [0, size): the roots of the perfect subtrees covering the leaves,
    largest first (one per set bit of size)."""

    __slots__ = ("_hashes", "_size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0:
            raise ValueError(f"a tree size cannot be negative, got {size}")
        if len(hashes) != size.bit_count():
            raise ValueError(
                f"a frontier of size {size} has {size.bit_count()} hashes, not {len(hashes)}"
            )
        for i, h in enumerate(hashes):
            if not isinstance(h, bytes) or len(h) != HASH_SIZE:
                raise ValueError(f"frontier hash {i} is not {HASH_SIZE} bytes")
        self._size = size
        self._hashes = list(hashes)

    @property
    def size(self) -> int:
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        return tuple(self._hashes)

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add a leaf hash. Returns the perfect nodes this completes, ``(level, index, hash)``
        for levels ≥ 1, lowest first (the leaf itself is not returned)."""
        if len(leaf) != HASH_SIZE:
            raise ValueError(f"a leaf hash is {HASH_SIZE} bytes, not {len(leaf)}")
        n = self._size
        self._size = n + 1
        hashes = self._hashes
        if not n & 1:
            hashes.append(leaf)
            return []
        # Each trailing 1 bit of n is a perfect subtree that the new leaf completes.
        done = []
        level = 0
        h = leaf
        while n & 1:
            h = sha256(b"\x01" + hashes.pop() + h).digest()
            n >>= 1
            level += 1
            done.append((level, n, h))
        hashes.append(h)
        return done

    def root(self) -> bytes:
        """MTH of the tree of this size: the subtree roots folded right to left."""
        hashes = self._hashes
        if not hashes:
            return EMPTY_ROOT
        root = hashes[-1]
        for i in range(len(hashes) - 2, -1, -1):
            root = node_hash(hashes[i], root)
        return root

    def to_bytes(self) -> bytes:
        return b"".join(self._hashes)

    @classmethod
    def from_bytes(cls, size: int, data: bytes) -> Frontier:
        if size < 0:
            raise ValueError(f"a tree size cannot be negative, got {size}")
        want = size.bit_count() * HASH_SIZE
        if len(data) != want:
            raise ValueError(f"a frontier of size {size} is {want} bytes, not {len(data)}")
        data = bytes(data)
        return cls(size, [data[i : i + HASH_SIZE] for i in range(0, want, HASH_SIZE)])

    def copy(self) -> Frontier:
        return Frontier(self._size, self._hashes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frontier):
            return NotImplemented
        return self._size == other._size and self._hashes == other._hashes

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Frontier(size={self._size})"


# --- Server side: which subtree hashes a proof is made of ------------------------------------


def _split(n: int) -> int:
    """The largest power of two below ``n`` (n ≥ 2): where RFC 9162 splits a tree of n leaves."""
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose MTHs make up PATH(index, D[size]) (RFC 9162 §2.1.3.1), in proof
    order: from the leaf up."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is outside a tree of size {size}")
    ranges = []
    begin, end = 0, size
    while end - begin > 1:
        mid = begin + _split(end - begin)
        if index < mid:
            ranges.append((mid, end))
            end = mid
        else:
            ranges.append((begin, mid))
            begin = mid
    ranges.reverse()
    return ranges


def consistency_ranges(size1: int, size2: int) -> list[tuple[int, int]]:
    """The leaf ranges whose MTHs make up PROOF(size1, D[size2]) (RFC 9162 §2.1.4.1), in proof
    order. Requires ``0 < size1 <= size2``; equal sizes need no proof. A proof from the empty
    tree is refused, as by :func:`verify_consistency`."""
    if not 0 < size1 <= size2:
        raise ValueError(
            f"a consistency proof needs 0 < size1 <= size2, got size1={size1}, size2={size2}"
        )
    ranges = []
    begin, end = 0, size2
    whole = True  # SUBPROOF's b: is [begin, end) still the requested old tree's ancestor?
    while size1 != end:
        mid = begin + _split(end - begin)
        if size1 <= mid:
            ranges.append((mid, end))
            end = mid
        else:
            ranges.append((begin, mid))
            begin = mid
            whole = False
    if not whole:
        ranges.append((begin, end))
    ranges.reverse()
    return ranges


def _perfect_nodes(begin: int, width: int) -> list[NodeId]:
    """The aligned nodes covering ``width`` (a power of two) leaves from ``begin``, in order."""
    level = width.bit_length() - 1
    if begin & (width - 1) == 0:
        return [(level, begin >> level)]
    half = width >> 1
    return _perfect_nodes(begin, half) + _perfect_nodes(begin + half, half)


def _spine(begin: int, end: int) -> list[tuple[int, int]]:
    """Split ``[begin, end)`` by the RFC rule down its right edge into power-of-two-wide
    ranges; the MTH of the whole is their MTHs folded right to left."""
    if not 0 <= begin < end:
        raise ValueError(f"not a non-empty leaf range: [{begin}, {end})")
    parts = []
    while (end - begin) & (end - begin - 1):
        mid = begin + _split(end - begin)
        parts.append((begin, mid))
        begin = mid
    parts.append((begin, end))
    return parts


def nodes_for_ranges(ranges: Iterable[tuple[int, int]]) -> set[NodeId]:
    """The perfect aligned nodes whose hashes :func:`range_hash` needs for these ranges."""
    wanted: set[NodeId] = set()
    for begin, end in ranges:
        for lo, hi in _spine(begin, end):
            wanted.update(_perfect_nodes(lo, hi - lo))
    return wanted


def _perfect_hash(begin: int, width: int, nodes: Mapping[NodeId, bytes]) -> bytes:
    level = width.bit_length() - 1
    if begin & (width - 1) == 0:
        return nodes[(level, begin >> level)]
    half = width >> 1
    return node_hash(_perfect_hash(begin, half, nodes), _perfect_hash(begin + half, half, nodes))


def range_hash(begin: int, end: int, nodes: Mapping[NodeId, bytes]) -> bytes:
    """MTH of leaves ``[begin, end)`` from perfect node hashes (KeyError if one is missing)."""
    parts = _spine(begin, end)
    lo, hi = parts[-1]
    h = _perfect_hash(lo, hi - lo, nodes)
    for lo, hi in reversed(parts[:-1]):
        h = node_hash(_perfect_hash(lo, hi - lo, nodes), h)
    return h


# --- Client side: RFC 9162 §2.1.3.2 and §2.1.4.2 ---------------------------------------------


def _check_hash(value: bytes, what: str) -> None:
    if not isinstance(value, bytes):
        raise ProofError(f"{what} must be bytes, not {type(value).__name__}")
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} is {len(value)} bytes, not {HASH_SIZE}")


def _check_proof(proof: Sequence[bytes]) -> None:
    for i, h in enumerate(proof):
        _check_hash(h, f"proof element {i}")


def _wrong_length(kind: str, got: int, want: int) -> ProofError:
    excess = "too long" if got > want else "too short"
    return ProofError(f"{kind} proof is {excess}: {got} hashes where {want} are needed")


def _inclusion_length(index: int, size: int) -> int:
    # Levels below the point where the paths to `index` and `size - 1` part, plus one left
    # sibling for every right turn above it.
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def root_from_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """The root that ``proof`` leads to from ``leaf`` at ``index`` in a tree of ``size``."""
    _check_hash(leaf, "leaf")
    _check_proof(proof)
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    want = _inclusion_length(index, size)
    if len(proof) != want:
        raise _wrong_length("inclusion", len(proof), want)
    # RFC 9162 §2.1.3.2, step by step; the length check above already caught what the
    # `sn` tests below would.
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise _wrong_length("inclusion", len(proof), want)
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise _wrong_length("inclusion", len(proof), want)
    return r


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf`` is entry ``index`` of the tree of ``size`` with ``root``."""
    _check_hash(root, "root")
    got = root_from_inclusion(leaf, index, size, proof)
    if got != root:
        raise ProofError(
            f"inclusion proof for leaf {index} of {size} leads to root {got.hex()}, "
            f"not {root.hex()}"
        )


def _consistency_length(size1: int, size2: int) -> int:
    # The tail of the inclusion proof of leaf size1 - 1 in size2, from the level of the largest
    # perfect subtree ending at size1; its root comes first unless it is the whole old tree.
    inner = ((size1 - 1) ^ (size2 - 1)).bit_length()
    border = ((size1 - 1) >> inner).bit_count()
    shift = (size1 & -size1).bit_length() - 1
    return (size1 != 1 << shift) + inner - shift + border


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check that the tree of ``size2`` with ``root2`` extends the one of ``size1`` with
    ``root1``.

    A proof from the empty tree (``size1 == 0``) is refused: every tree extends the empty
    tree, so there is nothing to prove, and RFC 9162 defines the proof only for
    ``0 < size1``. A caller that holds no earlier tree head has nothing to check a new one
    against; it must take the first one it sees on trust. transparency-dev/merkle's Go
    verifier refuses it the same way, for every ``size2`` including 0.
    """
    _check_hash(root1, "root1")
    _check_hash(root2, "root2")
    _check_proof(proof)
    if size1 < 0:
        raise ProofError(f"size1 cannot be negative, got {size1}")
    if size2 < size1:
        raise ProofError(f"size2 ({size2}) is smaller than size1 ({size1}): a log never shrinks")
    if size1 == 0:
        raise ProofError(
            "a consistency proof from the empty tree is meaningless: every tree extends the "
            "empty tree; there is nothing to prove"
        )
    if size1 == size2:
        if proof:
            raise ProofError(
                f"trees of equal size {size1} need an empty consistency proof, "
                f"not {len(proof)} hashes"
            )
        if root1 != root2:
            raise ProofError(f"two trees of size {size1} have different roots")
        return
    want = _consistency_length(size1, size2)
    if len(proof) != want:
        raise _wrong_length("consistency", len(proof), want)
    # RFC 9162 §2.1.4.2, step by step; the length check above already caught what its
    # step 1 and the `sn` tests below would.
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise _wrong_length("consistency", len(proof), want)
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise _wrong_length("consistency", len(proof), want)
    if fr != root1:
        raise ProofError(
            f"consistency proof {size1} -> {size2} leads to root1 {fr.hex()}, not {root1.hex()}"
        )
    if sr != root2:
        raise ProofError(
            f"consistency proof {size1} -> {size2} leads to root2 {sr.hex()}, not {root2.hex()}"
        )

"""RFC 9162 Merkle primitives: published known answers, then properties, then refusals.

The known-answer data is vendored in ``tests/fixtures/tlog/merkle`` (its README names every
source). Our own code only ever appears on one side of a comparison.
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlgov.tlog.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    Frontier,
    NodeId,
    ProofError,
    consistency_ranges,
    inclusion_ranges,
    leaf_hash,
    node_hash,
    nodes_for_ranges,
    range_hash,
    root_from_inclusion,
    root_of,
    verify_consistency,
    verify_inclusion,
)

FIXTURES = Path(__file__).parent / "fixtures" / "tlog" / "merkle"
UPSTREAM = FIXTURES / "transparency-dev"


def _json(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def _hexes(values: Sequence[str]) -> list[bytes]:
    return [bytes.fromhex(v) for v in values]


# --- transparency-dev/merkle testdata: good proofs verify, broken ones are refused ----------

INCLUSION_PROBES = sorted((UPSTREAM / "inclusion").rglob("*.json"))
CONSISTENCY_PROBES = sorted((UPSTREAM / "consistency").rglob("*.json"))

# Upstream compares two equal-size roots without checking their length, so this probe passes
# 12-byte "roots"; we refuse every root that is not 32 bytes.
DISAGREE = {"consistency/additional/sizes-are-equal-one-and-proof-is-empty.json": "root1 is 12"}


def _probe(path: Path) -> dict[str, Any]:
    probe: dict[str, Any] = json.loads(path.read_text())
    if "leafIndex" in probe:  # the oldest upstream revisions' name for leafIdx
        probe["leafIdx"] = probe.pop("leafIndex")
    probe["proof"] = [base64.b64decode(h) for h in probe["proof"] or []]
    return probe


def _b64(value: str) -> bytes:
    return base64.b64decode(value)


def _probe_id(path: Path) -> str:
    return path.relative_to(UPSTREAM).as_posix()


def test_upstream_fixture_set_is_complete() -> None:
    assert (len(INCLUSION_PROBES), len(CONSISTENCY_PROBES)) == (98, 98)
    valid = [p for p in INCLUSION_PROBES + CONSISTENCY_PROBES if not _probe(p)["wantErr"]]
    assert len(valid) == 12


@pytest.mark.parametrize("path", INCLUSION_PROBES, ids=_probe_id)
def test_upstream_inclusion_probe(path: Path) -> None:
    p = _probe(path)
    args = (_b64(p["leafHash"]), p["leafIdx"], p["treeSize"], p["proof"], _b64(p["root"]))
    if p["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)
        assert root_from_inclusion(*args[:4]) == args[4]


@pytest.mark.parametrize("path", CONSISTENCY_PROBES, ids=_probe_id)
def test_upstream_consistency_probe(path: Path) -> None:
    p = _probe(path)
    args = (p["size1"], p["size2"], p["proof"], _b64(p["root1"]), _b64(p["root2"]))
    disagreement = DISAGREE.get(_probe_id(path))
    if disagreement:
        assert not p["wantErr"]
        with pytest.raises(ProofError, match=disagreement):
            verify_consistency(*args)
    elif p["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def test_upstream_happy_paths_use_the_ct_reference_roots() -> None:
    """The two publishers agree: upstream's valid probes are about the CT reference tree."""
    roots = _hexes(_json("ct-reference-tree.json")["roots"])
    for n in range(5):
        inc = _probe(UPSTREAM / f"inclusion/{n}/happy-path.json")
        assert _b64(inc["root"]) == roots[inc["treeSize"] - 1]
        con = _probe(UPSTREAM / f"consistency/{n}/happy-path.json")
        assert _b64(con["root1"]) == roots[con["size1"] - 1]
        assert _b64(con["root2"]) == roots[con["size2"] - 1]


# --- The RFC 6962 reference tree (Certificate Transparency, transparency-dev testonly) -------

CT = _json("ct-reference-tree.json")
TESTONLY = _json("transparency-dev-testonly.json")
REF_LEAVES = [leaf_hash(bytes.fromhex(x)) for x in CT["inputs"]]
REF_ROOTS = _hexes(CT["roots"])


def _stored_nodes(leaves: Sequence[bytes]) -> dict[NodeId, bytes]:
    """What a log keeps: the leaf hashes and every node that ``Frontier.append`` completes."""
    nodes: dict[NodeId, bytes] = {(0, i): h for i, h in enumerate(leaves)}
    frontier = Frontier()
    for h in leaves:
        for level, index, digest in frontier.append(h):
            nodes[(level, index)] = digest
    return nodes


REF_NODES = _stored_nodes(REF_LEAVES)


def _built_inclusion(index: int, size: int, nodes: dict[NodeId, bytes]) -> list[bytes]:
    return [range_hash(b, e, nodes) for b, e in inclusion_ranges(index, size)]


def _built_consistency(size1: int, size2: int, nodes: dict[NodeId, bytes]) -> list[bytes]:
    return [range_hash(b, e, nodes) for b, e in consistency_ranges(size1, size2)]


def test_reference_inputs_agree_between_publishers() -> None:
    assert CT["inputs"] == TESTONLY["leaf_inputs"]
    assert [CT["empty_root"], *CT["roots"]] == TESTONLY["root_hashes"]


def test_reference_roots() -> None:
    assert bytes.fromhex(CT["empty_root"]) == EMPTY_ROOT == root_of([])
    assert Frontier().root() == EMPTY_ROOT
    frontier = Frontier()
    for n in range(1, 9):
        frontier.append(REF_LEAVES[n - 1])
        assert root_of(REF_LEAVES[:n]) == REF_ROOTS[n - 1]
        assert frontier.root() == REF_ROOTS[n - 1]
        assert range_hash(0, n, REF_NODES) == REF_ROOTS[n - 1]


def test_reference_node_hashes_and_frontiers() -> None:
    """Every perfect subtree hash of the reference tree, and each size's frontier made of them."""
    published = {
        (level, index): bytes.fromhex(h)
        for level, row in enumerate(TESTONLY["node_hashes"])
        for index, h in enumerate(row)
    }
    assert published == REF_NODES
    frontier = Frontier()
    for n in range(1, 9):
        frontier.append(REF_LEAVES[n - 1])
        want, begin = [], 0
        for level in reversed(range(n.bit_length())):
            if n >> level & 1:
                want.append(published[(level, begin >> level)])
                begin += 1 << level
        assert frontier.hashes == tuple(want)


def test_reference_inclusion_proofs() -> None:
    """The CT C++ paths (1-based leaf) and transparency-dev's: we build and verify each one."""
    cases = [(c["leaf"] - 1, c["snapshot"], c["path"]) for c in CT["paths"] if c["leaf"]]
    cases += [(c["index"], c["size"], c["proof"]) for c in TESTONLY["inclusion_proofs"]]
    assert len(cases) == 12
    for index, size, hexes in cases:
        proof = _hexes(hexes)
        assert _built_inclusion(index, size, REF_NODES) == proof
        verify_inclusion(REF_LEAVES[index], index, size, proof, REF_ROOTS[size - 1])


def test_reference_consistency_proofs() -> None:
    cases = [(c["snapshot1"], c["snapshot2"], c["proof"]) for c in CT["proofs"]]
    cases += [(c["size1"], c["size2"], c["proof"]) for c in TESTONLY["consistency_proofs"]]
    assert len(cases) == 9
    for size1, size2, hexes in cases:
        proof = _hexes(hexes)
        assert _built_consistency(size1, size2, REF_NODES) == proof
        verify_consistency(size1, size2, proof, REF_ROOTS[size1 - 1], REF_ROOTS[size2 - 1])


def test_real_ct_log_inclusion_proof() -> None:
    ct = _json("ct-log-inclusion.json")
    leaf = leaf_hash(bytes.fromhex("".join(ct["leaf_input_hex"])))
    assert leaf == bytes.fromhex(ct["leaf_hash"])
    proof, root = _hexes(ct["audit_path"]), bytes.fromhex(ct["root_hash"])
    verify_inclusion(leaf, ct["leaf_index"], ct["tree_size"], proof, root)
    assert len(inclusion_ranges(ct["leaf_index"], ct["tree_size"])) == len(proof) == 22
    with pytest.raises(ProofError, match="leads to root"):
        verify_inclusion(leaf, ct["leaf_index"] + 1, ct["tree_size"], proof, root)


# --- Properties over trees of up to 300 leaves ------------------------------------------------

MAX = 300
LEAVES = [leaf_hash(b"entry %d" % i) for i in range(MAX)]
NODES = _stored_nodes(LEAVES)
PROPERTY = settings(max_examples=60, deadline=None, derandomize=True)


@functools.cache
def _root(n: int) -> bytes:
    return root_of(LEAVES[:n])


def _complete_at(node: NodeId, size: int) -> bool:
    level, index = node
    return (index + 1) << level <= size


@st.composite
def _size_and_index(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(st.integers(1, MAX))
    return size, draw(st.integers(0, size - 1))


@st.composite
def _two_sizes(draw: st.DrawFn) -> tuple[int, int]:
    size2 = draw(st.integers(2, MAX))
    return draw(st.integers(1, size2 - 1)), size2


def _bit_flips(value: bytes) -> Iterator[bytes]:
    for bit in range(len(value) * 8):
        flipped = bytearray(value)
        flipped[bit // 8] ^= 1 << (bit % 8)
        yield bytes(flipped)


def _with(proof: Sequence[bytes], at: int, value: bytes) -> list[bytes]:
    changed = list(proof)
    changed[at] = value
    return changed


def _rfc_path(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) exactly as RFC 9162 §2.1.3.1 writes it (quadratic; small trees only)."""
    n = len(leaves)
    if n == 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if m < k:
        return [*_rfc_path(m, leaves[:k]), root_of(leaves[k:])]
    return [*_rfc_path(m - k, leaves[k:]), root_of(leaves[:k])]


def _rfc_subproof(m: int, leaves: Sequence[bytes], b: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) exactly as RFC 9162 §2.1.4.1 writes it."""
    n = len(leaves)
    if m == n:
        return [] if b else [root_of(leaves)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return [*_rfc_subproof(m, leaves[:k], b), root_of(leaves[k:])]
    return [*_rfc_subproof(m - k, leaves[k:], False), root_of(leaves[:k])]


def test_built_proofs_equal_the_rfc_definitions_for_every_small_tree() -> None:
    for n in range(1, 65):
        for m in range(n):
            assert _built_inclusion(m, n, NODES) == _rfc_path(m, LEAVES[:n])
        for m in range(1, n + 1):
            assert _built_consistency(m, n, NODES) == _rfc_subproof(m, LEAVES[:n], True)


def test_frontier_root_equals_root_of_at_every_size() -> None:
    frontier = Frontier()
    assert frontier.root() == EMPTY_ROOT
    for n in range(1, MAX + 1):
        frontier.append(LEAVES[n - 1])
        assert frontier.size == n
        assert frontier.root() == _root(n)
        assert Frontier.from_bytes(n, frontier.to_bytes()) == frontier


def test_append_returns_exactly_the_perfect_nodes_it_completes() -> None:
    frontier = Frontier()
    for n in range(1, MAX + 1):
        done = frontier.append(LEAVES[n - 1])
        want = [(lv, (n >> lv) - 1) for lv in range(1, n.bit_length()) if n % (1 << lv) == 0]
        assert [(level, index) for level, index, _ in done] == want
        for level, index, digest in done:
            assert digest == root_of(LEAVES[index << level : (index + 1) << level])


@PROPERTY
@given(st.lists(st.binary(min_size=HASH_SIZE, max_size=HASH_SIZE), max_size=80))
def test_frontier_over_arbitrary_leaves(leaves: list[bytes]) -> None:
    frontier = Frontier()
    for i, leaf in enumerate(leaves):
        frontier.append(leaf)
        restored = Frontier.from_bytes(frontier.size, frontier.to_bytes())
        assert restored == frontier
        assert restored.hashes == frontier.hashes
        assert len(frontier.hashes) == (i + 1).bit_count()
    assert frontier.root() == root_of(leaves)
    twin = frontier.copy()
    twin.append(bytes(HASH_SIZE))
    assert frontier.size == len(leaves)
    assert frontier.root() == root_of(leaves)


@PROPERTY
@given(_size_and_index())
def test_inclusion_proofs_verify(case: tuple[int, int]) -> None:
    size, index = case
    ranges = inclusion_ranges(index, size)
    assert all(_complete_at(node, size) for node in nodes_for_ranges(ranges))
    proof = _built_inclusion(index, size, NODES)
    verify_inclusion(LEAVES[index], index, size, proof, _root(size))
    assert root_from_inclusion(LEAVES[index], index, size, proof) == _root(size)


@settings(PROPERTY, max_examples=30)
@given(_size_and_index())
def test_any_change_to_an_inclusion_proof_is_caught(case: tuple[int, int]) -> None:
    size, index = case
    leaf, root = LEAVES[index], _root(size)
    proof = _built_inclusion(index, size, NODES)
    for bad_leaf in _bit_flips(leaf):
        with pytest.raises(ProofError):
            verify_inclusion(bad_leaf, index, size, proof, root)
    for bad_root in _bit_flips(root):
        with pytest.raises(ProofError):
            verify_inclusion(leaf, index, size, proof, bad_root)
    for at, element in enumerate(proof):
        for bad in _bit_flips(element):
            with pytest.raises(ProofError):
                verify_inclusion(leaf, index, size, _with(proof, at, bad), root)
        with pytest.raises(ProofError, match="too short"):
            verify_inclusion(leaf, index, size, proof[:at] + proof[at + 1 :], root)
    for at in range(len(proof) + 1):
        for extra in (root, leaf, bytes(HASH_SIZE)):
            with pytest.raises(ProofError, match="too long"):
                verify_inclusion(leaf, index, size, [*proof[:at], extra, *proof[at:]], root)


@settings(PROPERTY, max_examples=40)
@given(st.integers(1, MAX))
def test_consistency_proofs_verify_from_every_earlier_size(size2: int) -> None:
    for size1 in range(1, size2 + 1):
        ranges = consistency_ranges(size1, size2)
        assert all(_complete_at(node, size2) for node in nodes_for_ranges(ranges))
        proof = _built_consistency(size1, size2, NODES)
        verify_consistency(size1, size2, proof, _root(size1), _root(size2))


@settings(PROPERTY, max_examples=30)
@given(_two_sizes())
def test_any_change_to_a_consistency_proof_is_caught(case: tuple[int, int]) -> None:
    size1, size2 = case
    root1, root2 = _root(size1), _root(size2)
    proof = _built_consistency(size1, size2, NODES)
    for bad in _bit_flips(root1):
        with pytest.raises(ProofError):
            verify_consistency(size1, size2, proof, bad, root2)
    for bad in _bit_flips(root2):
        with pytest.raises(ProofError):
            verify_consistency(size1, size2, proof, root1, bad)
    for at, element in enumerate(proof):
        for bad in _bit_flips(element):
            with pytest.raises(ProofError):
                verify_consistency(size1, size2, _with(proof, at, bad), root1, root2)
        with pytest.raises(ProofError):
            verify_consistency(size1, size2, proof[:at] + proof[at + 1 :], root1, root2)
    for at in range(len(proof) + 1):
        for extra in (root1, root2, bytes(HASH_SIZE)):
            with pytest.raises(ProofError, match="too long"):
                verify_consistency(size1, size2, [*proof[:at], extra, *proof[at:]], root1, root2)


@PROPERTY
@given(st.integers(0, MAX - 1).flatmap(lambda b: st.tuples(st.just(b), st.integers(b + 1, MAX))))
def test_range_hash_of_any_range(case: tuple[int, int]) -> None:
    """Any range, aligned or not, hashes as its leaves would on their own."""
    begin, end = case
    assert nodes_for_ranges([case]) <= NODES.keys()
    assert range_hash(begin, end, NODES) == root_of(LEAVES[begin:end])


# --- Refusals ---------------------------------------------------------------------------------

H = bytes(HASH_SIZE)


def test_hashes_of_the_wrong_size_are_named() -> None:
    proof = _built_inclusion(0, 8, REF_NODES)
    root = REF_ROOTS[7]
    with pytest.raises(ProofError, match=r"^proof element 1 is 31 bytes, not 32$"):
        verify_inclusion(REF_LEAVES[0], 0, 8, _with(proof, 1, proof[1][:31]), root)
    with pytest.raises(ProofError, match=r"^leaf is 33 bytes, not 32$"):
        verify_inclusion(REF_LEAVES[0] + b"\0", 0, 8, proof, root)
    with pytest.raises(ProofError, match=r"^root is 0 bytes, not 32$"):
        verify_inclusion(REF_LEAVES[0], 0, 8, proof, b"")
    with pytest.raises(ProofError, match=r"^root1 is 9 bytes, not 32$"):
        verify_consistency(1, 2, [H], b"WrongRoot", H)
    with pytest.raises(ProofError, match=r"^root2 is 64 bytes, not 32$"):
        verify_consistency(1, 2, [H], H, H + H)
    with pytest.raises(ProofError, match=r"^proof element 0 must be bytes, not str$"):
        verify_consistency(1, 2, ["00" * 32], H, H)  # type: ignore[list-item]


def test_consistency_from_the_empty_tree_is_refused() -> None:
    message = (
        "a consistency proof from the empty tree is meaningless: every tree extends the "
        "empty tree; there is nothing to prove"
    )
    for size2, proof in ((0, []), (1, []), (8, []), (8, [H])):
        with pytest.raises(ProofError) as refused:
            verify_consistency(0, size2, proof, EMPTY_ROOT, REF_ROOTS[7])
        assert str(refused.value) == message
    with pytest.raises(ValueError, match="0 < size1 <= size2"):
        consistency_ranges(0, 8)


def test_sizes_out_of_order_are_refused() -> None:
    with pytest.raises(ProofError, match=r"size2 \(5\) is smaller than size1 \(6\)"):
        verify_consistency(6, 5, [H], REF_ROOTS[5], REF_ROOTS[4])
    with pytest.raises(ValueError):
        consistency_ranges(6, 5)
    with pytest.raises(ProofError, match="cannot be negative"):
        verify_consistency(-1, 5, [H], H, H)


def test_equal_sizes_need_an_empty_proof_and_equal_roots() -> None:
    verify_consistency(5, 5, [], REF_ROOTS[4], REF_ROOTS[4])
    assert consistency_ranges(5, 5) == []
    with pytest.raises(ProofError, match="need an empty consistency proof, not 1 hashes"):
        verify_consistency(5, 5, [REF_ROOTS[4]], REF_ROOTS[4], REF_ROOTS[4])
    with pytest.raises(ProofError, match="different roots"):
        verify_consistency(5, 5, [], REF_ROOTS[4], REF_ROOTS[3])


def test_empty_consistency_proof_between_different_sizes() -> None:
    with pytest.raises(ProofError, match="too short: 0 hashes where 2 are needed"):
        verify_consistency(2, 5, [], REF_ROOTS[1], REF_ROOTS[4])


def test_leaf_index_out_of_range() -> None:
    for index, size in ((8, 8), (9, 8), (0, 0), (-1, 8)):
        with pytest.raises(ProofError, match=f"leaf index {index} is outside a tree of size"):
            verify_inclusion(REF_LEAVES[0], index, size, [], REF_ROOTS[7])
        with pytest.raises(ValueError, match="outside a tree"):
            inclusion_ranges(index, size)


def test_proof_length_messages() -> None:
    proof = _built_inclusion(2, 5, REF_NODES)
    root = REF_ROOTS[4]
    with pytest.raises(ProofError, match="inclusion proof is too long: 4 hashes where 3"):
        verify_inclusion(REF_LEAVES[2], 2, 5, [*proof, H], root)
    with pytest.raises(ProofError, match="inclusion proof is too short: 2 hashes where 3"):
        verify_inclusion(REF_LEAVES[2], 2, 5, proof[:2], root)


def test_frontier_refuses_inconsistent_state() -> None:
    with pytest.raises(ValueError, match="a frontier of size 3 has 2 hashes, not 1"):
        Frontier(3, [H])
    with pytest.raises(ValueError, match="frontier hash 1 is not 32 bytes"):
        Frontier(3, [H, H[:31]])
    with pytest.raises(ValueError, match="cannot be negative"):
        Frontier(-1)
    with pytest.raises(ValueError, match="a frontier of size 5 is 64 bytes, not 32"):
        Frontier.from_bytes(5, H)
    with pytest.raises(ValueError, match="a leaf hash is 32 bytes, not 31"):
        Frontier().append(H[:31])
    with pytest.raises(ValueError, match="leaf hash 1 is 2 bytes"):
        root_of([H, b"no"])


def test_range_hash_needs_its_nodes() -> None:
    nodes = dict(REF_NODES)
    del nodes[(2, 0)]
    assert nodes_for_ranges([(0, 6)]) == {(2, 0), (1, 2)}
    with pytest.raises(KeyError):
        range_hash(0, 6, nodes)
    for begin, end in ((3, 3), (4, 2), (-1, 2)):
        with pytest.raises(ValueError, match="not a non-empty leaf range"):
            range_hash(begin, end, REF_NODES)


def test_hash_primitives() -> None:
    assert leaf_hash(b"") == REF_ROOTS[0]
    assert node_hash(REF_LEAVES[0], REF_LEAVES[1]) == REF_ROOTS[1]

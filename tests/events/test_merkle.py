"""events/merkle.py against RFC 6962's definitions written out plainly (recursion over
the data, as section 2.1 states them), the certificate-transparency test roots, and
hypothesis over sizes: every proof verifies, and every altered one fails."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from threadline.events.merkle import (
    EMPTY_ROOT,
    Frontier,
    MerkleTree,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)

# ------------------------------------------------------------- the second implementation


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(d: list[bytes]) -> bytes:
    if not d:
        return _h(b"")
    if len(d) == 1:
        return _h(b"\x00" + d[0])
    k = _k(len(d))
    return _h(b"\x01" + mth(d[:k]) + mth(d[k:]))


def path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return path(m, d[:k]) + [mth(d[k:])]
    return path(m - k, d[k:]) + [mth(d[:k])]


def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [mth(d)]
    k = _k(n)
    if m <= k:
        return subproof(m, d[:k], b) + [mth(d[k:])]
    return subproof(m - k, d[k:], False) + [mth(d[:k])]


def proof(m: int, d: list[bytes]) -> list[bytes]:
    return subproof(m, d, True)


def data(n: int) -> list[bytes]:
    return [f"record {i}".encode() for i in range(n)]


def tree_of(d: list[bytes]) -> MerkleTree:
    return MerkleTree(leaf_hash(x) for x in d)


# ------------------------------------------------------------- known answers

#: the leaves and roots of certificate-transparency's merkle tests (RFC 6962)
CT_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    bytes(range(0x60, 0x70)),
]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def test_certificate_transparency_roots() -> None:
    tree, frontier = MerkleTree(), Frontier()
    assert tree.root() == frontier.root() == EMPTY_ROOT
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    for size, (leaf, expected) in enumerate(zip(CT_LEAVES, CT_ROOTS, strict=True), start=1):
        tree.append(leaf_hash(leaf))
        frontier.append(leaf_hash(leaf))
        assert tree.root().hex() == frontier.root().hex() == expected, size
        assert mth(CT_LEAVES[:size]).hex() == expected


def test_rfc_example_tree_of_seven() -> None:
    """RFC 6962 2.1.3's example: the path of d0 in the 7-leaf tree is [b, h, l]
    and the consistency proof from 3 to 7 is [c, d, g, l]."""
    d = data(7)
    tree = tree_of(d)
    b, c, d_ = (leaf_hash(x) for x in d[1:4])
    g, h, l_ = mth(d[0:2]), mth(d[2:4]), mth(d[4:7])
    assert tree.inclusion_proof(0) == [b, h, l_]
    assert tree.consistency_proof(3) == [c, d_, g, l_]
    assert tree.consistency_proof(4) == [l_]
    assert tree.consistency_proof(6) == [mth(d[4:6]), leaf_hash(d[6]), mth(d[0:4])]


# ------------------------------------------------------------- properties

SIZES = st.integers(min_value=1, max_value=70)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_inclusion_matches_the_definition_and_verifies(draw: st.DataObject) -> None:
    size = draw.draw(SIZES)
    index = draw.draw(st.integers(0, size - 1))
    d = data(size)
    tree = tree_of(d)
    root = mth(d)
    assert tree.root() == root
    got = tree.inclusion_proof(index)
    assert got == path(index, d)
    assert verify_inclusion(index, size, leaf_hash(d[index]), got, root)
    # another leaf, another index, another size, a changed hash or a shortened path fail
    assert not verify_inclusion(index, size, leaf_hash(b"forged"), got, root)
    if size > 1:
        assert not verify_inclusion((index + 1) % size, size, leaf_hash(d[index]), got, root)
        assert not verify_inclusion(index, size, leaf_hash(d[index]), got[:-1], root)
        bent = [*got[:-1], leaf_hash(b"x")]
        assert not verify_inclusion(index, size, leaf_hash(d[index]), bent, root)
    assert not verify_inclusion(size, size, leaf_hash(d[index]), got, root)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_consistency_matches_the_definition_and_verifies(draw: st.DataObject) -> None:
    size = draw.draw(SIZES)
    old = draw.draw(st.integers(0, size))
    d = data(size)
    tree = tree_of(d)
    old_root, root = mth(d[:old]), mth(d)
    assert tree.root(old) == old_root
    got = tree.consistency_proof(old)
    assert got == ([] if old == 0 else proof(old, d))
    assert verify_consistency(old, size, old_root, root, got)
    # a rewritten old leaf, a wrong size, a tampered proof: refused
    if old:
        rewritten = [*d[: old - 1], b"rewritten", *d[old:]]
        assert not verify_consistency(old, size, old_root, mth(rewritten), got)
        other = tree_of(rewritten)
        assert not verify_consistency(
            old, size, old_root, other.root(), other.consistency_proof(old)
        )
    if 0 < old < size:
        assert not verify_consistency(old, size, old_root, root, got[:-1])
        assert not verify_consistency(old, size, old_root, root, [leaf_hash(b"x"), *got[1:]])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 20), min_size=1, max_size=6))
def test_frontier_grows_without_rehashing_to_the_same_roots(steps: list[int]) -> None:
    frontier, total = Frontier(), 0
    for step in steps:
        total += step
        for x in data(total)[frontier.size :]:
            frontier.append(leaf_hash(x))
        assert frontier.size == total and len(frontier.hashes) == total.bit_count()
        assert frontier.root() == mth(data(total))
        resumed = Frontier(frontier.size, frontier.hashes)  # what a checkpointer restarts from
        resumed.append(leaf_hash(b"next"))
        assert resumed.root() == mth([*data(total), b"next"])


def test_bad_arguments_are_refused() -> None:
    tree = tree_of(data(3))
    with pytest.raises(ValueError):
        tree.inclusion_proof(3)
    with pytest.raises(ValueError):
        tree.consistency_proof(2, 4)
    with pytest.raises(ValueError):
        Frontier(3, [EMPTY_ROOT])
    assert not verify_consistency(4, 3, EMPTY_ROOT, EMPTY_ROOT, [])
    assert not verify_consistency(2, 3, EMPTY_ROOT, EMPTY_ROOT, [])
    assert verify_consistency(0, 3, EMPTY_ROOT, tree.root(), [])

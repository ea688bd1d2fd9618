"""A Merkle tree over the whole log, as RFC 6962 / RFC 9162 section 2 defines it.

The log is the list of every stored record in stream order; entry ``i`` is the
``i``-th record's hash as the hash chain computes it (:func:`codec.record_hash`, the
SHA-256 of its stored bytes), as 32 raw bytes. From there on it is RFC 9162 exactly:

- leaf hash ``SHA-256(0x00 || entry)`` (:func:`leaf_hash`), interior node
  ``SHA-256(0x01 || left || right)`` (:func:`node_hash`), the empty tree ``SHA-256()``;
- ``MTH(D[n])`` splits at ``k``, the largest power of two smaller than ``n``, so a
  size that is not a power of two has a complete left subtree and a smaller right one;
- inclusion proofs are ``PATH(m, D[n])``, consistency proofs ``PROOF(m, D[n])``, and
  :func:`verify_inclusion` / :func:`verify_consistency` are the RFC 9162 2.1.3.2 and
  2.1.4.2 algorithms, needing only the proof, sizes and roots.

Two holders of a tree: :class:`Frontier` (what a checkpointer keeps while the log grows:
O(log n) hashes, O(1) amortised per appended record, never a rehash) and
:class:`MerkleTree` (every leaf hash, for the verifier that builds proofs).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Final

EMPTY_ROOT: Final = hashlib.sha256(b"").digest()


def leaf_hash(entry: bytes) -> bytes:
    """RFC 9162's leaf hash: ``SHA-256(0x00 || entry)``."""
    return hashlib.sha256(b"\x00" + entry).digest()


def record_leaf(record_hash_hex: str) -> bytes:
    """The leaf hash of a record, from its chain hash (hex, as ``codec.record_hash``)."""
    return leaf_hash(bytes.fromhex(record_hash_hex))


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162's interior node: ``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """``k``: the largest power of two smaller than ``n`` (``n > 1``)."""
    return 1 << ((n - 1).bit_length() - 1)


class Frontier:
    """The compact range ``[0, size)`` of a growing tree.

    What is stored: ``hashes``, the roots of the perfect subtrees that ``[0, size)``
    splits into, largest (leftmost) first; their sizes are the powers of two set in
    ``size`` (size 13 = 8 + 4 + 1 keeps three hashes). Appending a leaf merges equal
    sized subtrees like a binary counter carry, so a growing log is never rehashed.
    """

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if len(hashes) != size.bit_count():
            raise ValueError(f"a frontier of size {size} holds {size.bit_count()} hashes")
        self.size = size
        self.hashes = list(hashes)

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash (:func:`leaf_hash`) at index ``size``."""
        merged, size = leaf, self.size
        while size & 1:
            merged = node_hash(self.hashes.pop(), merged)
            size >>= 1
        self.hashes.append(merged)
        self.size += 1

    def root(self) -> bytes:
        """``MTH`` of the leaves so far: the subtree roots folded right to left (which is
        how ``MTH`` splits at the largest power of two)."""
        if not self.hashes:
            return EMPTY_ROOT
        root = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            root = node_hash(left, root)
        return root


class MerkleTree:
    """Every leaf hash of a log, with the proofs RFC 9162 defines over any prefix of it.

    Hashes of perfect (power-of-two, aligned) subtrees are cached, so proving many
    records of one tree costs about one pass over the leaves, not one per proof.
    """

    def __init__(self, leaves: Iterable[bytes] = ()) -> None:
        self.leaves = list(leaves)
        self._perfect: dict[tuple[int, int], bytes] = {}

    def append(self, leaf: bytes) -> None:
        self.leaves.append(leaf)

    @property
    def size(self) -> int:
        return len(self.leaves)

    def root(self, size: int | None = None) -> bytes:
        """``MTH(D[size])`` (default: the whole tree)."""
        size = self.size if size is None else size
        self._check(size <= self.size, f"size {size} is beyond the tree's {self.size}")
        return self._mth(0, size)

    def _mth(self, start: int, end: int) -> bytes:
        n = end - start
        if n == 0:
            return EMPTY_ROOT
        if n == 1:
            return self.leaves[start]
        perfect = n & (n - 1) == 0
        if perfect and (cached := self._perfect.get((start, n))) is not None:
            return cached
        k = _split(n)
        value = node_hash(self._mth(start, start + k), self._mth(start + k, end))
        if perfect:
            self._perfect[(start, n)] = value
        return value

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """``PATH(index, D[size])``: the audit path of leaf ``index`` in the first ``size``."""
        size = self.size if size is None else size
        self._check(0 <= index < size <= self.size, f"no leaf {index} in a tree of {size}")
        proof: list[bytes] = []
        start, end = 0, size
        while end - start > 1:  # PATH, unrolled from the root down; siblings are collected
            k = _split(end - start)  # top first, and returned bottom first
            if index < start + k:
                proof.append(self._mth(start + k, end))
                end = start + k
            else:
                proof.append(self._mth(start, start + k))
                start += k
        return proof[::-1]

    def consistency_proof(self, old_size: int, size: int | None = None) -> list[bytes]:
        """``PROOF(old_size, D[size])``: that the first ``old_size`` leaves are a prefix."""
        size = self.size if size is None else size
        self._check(0 <= old_size <= size <= self.size, f"no proof from {old_size} to {size}")
        if old_size in (0, size):
            return []
        proof: list[bytes] = []
        start, end, m, whole = 0, size, old_size, True
        while m != end - start:  # SUBPROOF(m, D[start:end], whole), unrolled; m is
            k = _split(end - start)  # relative to start
            if m <= k:
                proof.append(self._mth(start + k, end))
                end = start + k
            else:
                proof.append(self._mth(start, start + k))
                start, m, whole = start + k, m - k, False
        if not whole:
            proof.append(self._mth(start, end))
        return proof[::-1]

    @staticmethod
    def _check(condition: bool, message: str) -> None:
        if not condition:
            raise ValueError(message)


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 2.1.3.2: whether ``leaf`` (a leaf hash) is leaf ``index`` of the tree of
    ``size`` leaves whose root is ``root``."""
    if index >= size or index < 0:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(
    old_size: int, size: int, old_root: bytes, root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 2.1.4.2: whether the tree of ``size`` leaves with ``root`` extends the
    one of ``old_size`` leaves with ``old_root`` (its first ``old_size`` leaves are those)."""
    if not 0 <= old_size <= size:
        return False
    if old_size == size:
        return not proof and old_root == root
    if old_size == 0:
        return not proof and old_root == EMPTY_ROOT
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == old_root and sr == root and sn == 0

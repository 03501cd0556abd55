"""RFC 6962 / RFC 9162 Merkle trees: tree hashes, inclusion proofs and consistency proofs.

The tree is the one Certificate Transparency uses, with the hash function as a parameter
(SM3 by default, DESIGN.md section 7; SHA-256 for the published test vectors)::

    leaf hash  = H(0x00 || entry)
    node hash  = H(0x01 || left || right)
    MTH({})    = H("")
    MTH(D[n])  = H(0x01 || MTH(D[0:k]) || MTH(D[k:n]))   k = largest power of two < n

Threat model: the party that *produces* proofs (the appliance) may be compromised or the
database rewritten; the party that *checks* them holds only a signed tree head (see
:mod:`evidence.checkpoint`) and trusts nothing else.  So the verifiers here take every input as
hostile: wrong sizes, wrong hash lengths, proofs that are too long, too short or reordered all
fail with :class:`~evidence.errors.InvalidProof`, following the iterative algorithms of RFC 9162
sections 2.1.3.2 and 2.1.4.2 exactly.  The 0x00/0x01 prefixes keep a leaf from being passed off
as an interior node (second-preimage attacks on the tree shape).

Producing proofs over a large log must not rehash the log: :class:`MerkleTree` reads leaf hashes
through a :class:`LeafSource` (a list, or the rows of a database) in fixed chunks and memoizes
every complete, aligned subtree larger than a chunk.  Those never change in an append-only log,
so a proof costs O(log n) memoized lookups plus the hashes inside one or two chunks.
:class:`CompactRange` computes roots of a growing prefix in O(log n) memory, for streaming
verification of millions of rows.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from evidence.errors import EvidenceError, InvalidProof, TreeRangeError
from signcore.hashes import sm3

__all__ = [
    "SHA256",
    "SM3",
    "CompactRange",
    "Hasher",
    "LeafSource",
    "MerkleTree",
    "root_from_inclusion_proof",
    "root_of",
    "verify_consistency",
    "verify_inclusion",
]

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"


@dataclasses.dataclass(frozen=True)
class Hasher:
    """The tree's hash function ``H`` and the RFC 6962 domain separation around it."""

    name: str
    function: Callable[[bytes], bytes]
    digest_size: int

    def leaf(self, entry: bytes) -> bytes:
        """The leaf hash of one log entry: H(0x00 || entry)."""
        return self.function(LEAF_PREFIX + entry)

    def node(self, left: bytes, right: bytes) -> bytes:
        """An interior node: H(0x01 || left || right)."""
        return self.function(NODE_PREFIX + left + right)

    def empty_root(self) -> bytes:
        """The root of the empty tree: H("")."""
        return self.function(b"")


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


SM3 = Hasher("sm3", sm3, 32)
SHA256 = Hasher("sha256", _sha256, 32)


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _is_perfect(start: int, stop: int) -> bool:
    """True for a complete subtree at its natural position: 2^h leaves from a multiple of 2^h."""
    n = stop - start
    return n & (n - 1) == 0 and start % n == 0


def root_of(leaf_hashes: Sequence[bytes], hasher: Hasher = SM3) -> bytes:
    """MTH over the given leaf hashes, hashing level by level (the odd last node moves up)."""
    if not leaf_hashes:
        return hasher.empty_root()
    level = list(leaf_hashes)
    node = hasher.node
    while len(level) > 1:
        paired = [node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


class LeafSource(Protocol):
    """Leaf hashes ``start`` to ``stop - 1`` of the log, in order (like a list slice)."""

    def __call__(self, start: int, stop: int, /) -> Sequence[bytes]: ...


class MerkleTree:
    """Roots and proofs over the first ``size`` leaves of an append-only log.

    ``source`` gives the leaf hashes; ``grow`` tells the tree that more leaves exist.  Not
    thread-safe: callers that share one tree between threads hold a lock around it.
    """

    def __init__(self, source: LeafSource, size: int = 0, *, hasher: Hasher = SM3,
                 chunk_bits: int = 8, cached_chunks: int = 8) -> None:
        if size < 0:
            raise TreeRangeError("a tree size is never negative")
        self.hasher = hasher
        self._source = source
        self._size = size
        self._chunk = 1 << chunk_bits
        self._memo: dict[tuple[int, int], bytes] = {}
        self._chunks: OrderedDict[int, Sequence[bytes]] = OrderedDict()
        self._cached_chunks = cached_chunks

    @classmethod
    def from_leaf_hashes(cls, leaf_hashes: Sequence[bytes], *, hasher: Hasher = SM3,
                         chunk_bits: int = 8) -> MerkleTree:
        """A tree over an in-memory sequence (call ``grow(len(seq))`` after appending to it)."""
        def source(start: int, stop: int) -> Sequence[bytes]:
            return leaf_hashes[start:stop]
        return cls(source, len(leaf_hashes), hasher=hasher, chunk_bits=chunk_bits)

    @property
    def size(self) -> int:
        return self._size

    def grow(self, size: int) -> None:
        """The source now holds ``size`` leaves (an append-only log never shrinks)."""
        if size < self._size:
            raise TreeRangeError(f"the tree has {self._size} leaves; it cannot shrink to {size}")
        self._size = size

    def leaf_hash(self, index: int) -> bytes:
        self._check_index(index, self._size)
        return self._leaves(index, index + 1)[0]

    def subtree(self, start: int, stop: int) -> bytes:
        """MTH(D[start:stop]) for 0 <= start < stop <= size."""
        if not 0 <= start < stop <= self._size:
            raise TreeRangeError(f"no subtree [{start}, {stop}) in a tree of {self._size}")
        return self._subtree(start, stop)

    def root(self, size: int | None = None) -> bytes:
        """The tree hash of the first ``size`` leaves (default: all)."""
        size = self._size if size is None else size
        self._check_size(size)
        return self._subtree(0, size) if size else self.hasher.empty_root()

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[0:size]) of RFC 9162 section 2.1.3.1, leaf-side first."""
        size = self._size if size is None else size
        self._check_size(size)
        self._check_index(index, size)
        siblings: list[bytes] = []
        start, stop = 0, size
        while stop - start > 1:
            k = _split(stop - start)
            if index < start + k:
                siblings.append(self._subtree(start + k, stop))
                stop = start + k
            else:
                siblings.append(self._subtree(start, start + k))
                start += k
        return siblings[::-1]

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """PROOF(size1, D[0:size2]) of RFC 9162 section 2.1.4.1 (empty when trivial)."""
        size2 = self._size if size2 is None else size2
        self._check_size(size2)
        if not 0 <= size1 <= size2:
            raise TreeRangeError(f"no consistency proof from size {size1} to size {size2}")
        if size1 in (0, size2):
            return []
        tail: list[bytes] = []
        start, stop, m, whole = 0, size2, size1, True
        while m != stop - start:
            k = _split(stop - start)
            if m <= k:
                tail.append(self._subtree(start + k, stop))
                stop = start + k
            else:
                tail.append(self._subtree(start, start + k))
                start, m, whole = start + k, m - k, False
        head = [] if whole else [self._subtree(start, stop)]
        return head + tail[::-1]

    def known_subtrees(self) -> dict[tuple[int, int], bytes]:
        """The memoized complete subtrees ``(start, stop) -> hash`` (for a persistent cache:
        in an append-only log they never change)."""
        return dict(self._memo)

    def remember(self, subtrees: Mapping[tuple[int, int], bytes]) -> None:
        """Seed the memo with complete subtrees computed earlier (e.g. stored tiles).  Only
        aligned, complete subtrees of a chunk or more are taken; a wrong value gives proofs
        that fail against a signed root, never a proof that passes wrongly."""
        for (start, stop), value in subtrees.items():
            if stop - start >= self._chunk and _is_perfect(start, stop) \
                    and len(value) == self.hasher.digest_size:
                self._memo[(start, stop)] = value

    # --- internals ------------------------------------------------------------------------------

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= self._size:
            raise TreeRangeError(f"tree size {size} is outside 0..{self._size}")

    @staticmethod
    def _check_index(index: int, size: int) -> None:
        if not 0 <= index < size:
            raise TreeRangeError(f"leaf index {index} is outside a tree of {size} leaves")

    def _subtree(self, start: int, stop: int) -> bytes:
        n = stop - start
        # Complete subtrees of a chunk or more never change: computed once, then looked up.
        memo = n >= self._chunk and _is_perfect(start, stop)
        if memo:
            cached = self._memo.get((start, stop))
            if cached is not None:
                return cached
        if n <= self._chunk and start // self._chunk == (stop - 1) // self._chunk:
            leaves = self._leaves(start, stop)
            value = leaves[0] if n == 1 else root_of(leaves, self.hasher)
        else:
            k = _split(n)
            value = self.hasher.node(self._subtree(start, start + k),
                                     self._subtree(start + k, stop))
        if memo:
            self._memo[(start, stop)] = value
        return value

    def _leaves(self, start: int, stop: int) -> Sequence[bytes]:
        """Leaves within one chunk, read a whole chunk at a time (small LRU of chunks)."""
        index = start // self._chunk
        base = index * self._chunk
        cached = self._chunks.get(index)
        if cached is None or len(cached) < stop - base:
            end = min(base + self._chunk, self._size)
            cached = self._source(base, end)
            if len(cached) != end - base:
                raise EvidenceError(f"the leaf source returned {len(cached)} leaves for "
                                    f"[{base}, {end})")
            self._chunks[index] = cached
            while len(self._chunks) > self._cached_chunks:
                self._chunks.popitem(last=False)
        self._chunks.move_to_end(index)
        return cached[start - base:stop - base]


class CompactRange:
    """The right edge of a growing tree: O(log n) hashes give the root of every prefix."""

    def __init__(self, hasher: Hasher = SM3) -> None:
        self.hasher = hasher
        self.size = 0
        self._stack: list[bytes] = []

    def append(self, leaf_hash: bytes) -> None:
        value, n = leaf_hash, self.size
        while n & 1:
            value = self.hasher.node(self._stack.pop(), value)
            n >>= 1
        self._stack.append(value)
        self.size += 1

    def root(self) -> bytes:
        if not self._stack:
            return self.hasher.empty_root()
        value = self._stack[-1]
        for left in reversed(self._stack[:-1]):
            value = self.hasher.node(left, value)
        return value


# --- verification (RFC 9162 sections 2.1.3.2 and 2.1.4.2) -----------------------------------------


def _check_hashes(hasher: Hasher, *values: bytes) -> None:
    for value in values:
        if not isinstance(value, bytes) or len(value) != hasher.digest_size:
            raise InvalidProof(f"a {hasher.name} hash is {hasher.digest_size} bytes")


def _same(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


def root_from_inclusion_proof(hasher: Hasher, *, index: int, size: int, leaf_hash: bytes,
                              proof: Sequence[bytes]) -> bytes:
    """The root that ``proof`` leads to from leaf ``index`` of a tree of ``size`` leaves."""
    if not 0 <= index < size:
        raise InvalidProof(f"leaf index {index} is outside a tree of {size} leaves")
    _check_hashes(hasher, leaf_hash, *proof)
    fn, sn, value = index, size - 1, leaf_hash
    for sibling in proof:
        if sn == 0:
            raise InvalidProof("the inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            value = hasher.node(sibling, value)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            value = hasher.node(value, sibling)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise InvalidProof("the inclusion proof is shorter than the tree is deep")
    return value


def verify_inclusion(hasher: Hasher, *, index: int, size: int, leaf_hash: bytes,
                     proof: Sequence[bytes], root: bytes) -> None:
    """Check that leaf ``index`` with ``leaf_hash`` is in the tree ``root`` of ``size`` leaves;
    InvalidProof otherwise."""
    _check_hashes(hasher, root)
    computed = root_from_inclusion_proof(hasher, index=index, size=size, leaf_hash=leaf_hash,
                                         proof=proof)
    if not _same(computed, root):
        raise InvalidProof(f"leaf {index} is not in this tree of {size} leaves")


def _verify_trivial_consistency(size1: int, size2: int, proof: Sequence[bytes], root1: bytes,
                                root2: bytes) -> None:
    """size1 == size2 (same root) or size1 == 0 (the empty tree precedes every tree)."""
    if proof:
        raise InvalidProof("a trivial consistency proof is empty")
    if size1 == size2 and not _same(root1, root2):
        raise InvalidProof("two trees of the same size have different roots")


def verify_consistency(hasher: Hasher, *, size1: int, size2: int, proof: Sequence[bytes],
                       root1: bytes, root2: bytes) -> None:
    """Check that the tree ``root2`` of ``size2`` leaves extends the tree ``root1`` of
    ``size1`` leaves; InvalidProof otherwise."""
    _check_hashes(hasher, root1, root2, *proof)
    if not 0 <= size1 <= size2:
        raise InvalidProof(f"a tree of {size2} leaves cannot extend one of {size1}")
    if size1 in (0, size2):
        _verify_trivial_consistency(size1, size2, proof, root1, root2)
        return
    if not proof:
        raise InvalidProof("the consistency proof is empty")
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    first = second = path[0]
    for value in path[1:]:
        if sn == 0:
            raise InvalidProof("the consistency proof is too long")
        if fn & 1 or fn == sn:
            first, second = hasher.node(value, first), hasher.node(value, second)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            second = hasher.node(second, value)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0 or not _same(first, root1) or not _same(second, root2):
        raise InvalidProof(f"the tree of {size2} leaves does not extend the tree of {size1}")

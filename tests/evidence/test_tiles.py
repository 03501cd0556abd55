"""MerkleTree.known_subtrees / remember: stored tiles give the same roots and proofs without
reading the leaves they cover, and a wrong tile gives proofs that fail, never pass."""

from __future__ import annotations

import os

import pytest

from evidence import SM3, MerkleTree, verify_inclusion
from evidence.errors import InvalidProof


def _tree(hashes: list[bytes], reads: list[tuple[int, int]]) -> MerkleTree:
    def source(start: int, stop: int) -> list[bytes]:
        reads.append((start, stop))
        return hashes[start:stop]
    return MerkleTree(source, len(hashes), chunk_bits=4)


def test_tiles_replace_reading_the_log() -> None:
    hashes = [SM3.leaf(os.urandom(8)) for _ in range(1000)]
    full = _tree(hashes, [])
    root = full.root()
    tiles = full.known_subtrees()
    assert tiles and all(b - a >= 16 for a, b in tiles)
    reads: list[tuple[int, int]] = []
    seeded = _tree(hashes, reads)
    seeded.remember(tiles)
    proof = seeded.inclusion_proof(517)
    assert seeded.root() == root and proof == full.inclusion_proof(517)
    assert {start for start, _ in reads} <= {512, 992}  # the leaf's chunk and the ragged end
    verify_inclusion(SM3, index=517, size=1000, leaf_hash=hashes[517], proof=proof, root=root)


def test_a_wrong_tile_makes_proofs_fail() -> None:
    hashes = [SM3.leaf(os.urandom(8)) for _ in range(300)]
    root = _tree(hashes, []).root()
    seeded = _tree(hashes, [])
    seeded.remember({(0, 256): bytes(32), (0, 5): bytes(32)})  # the second is not a tile
    proof = seeded.inclusion_proof(290)
    with pytest.raises(InvalidProof):
        verify_inclusion(SM3, index=290, size=300, leaf_hash=hashes[290], proof=proof, root=root)
    assert (0, 5) not in seeded.known_subtrees()

"""evidence.merkle against the published RFC 6962 test data, an independent reference
implementation of the RFC's recursive definitions, and hypothesis properties with SM3.

Provenance of the SHA-256 vectors: the eight leaves, the roots of sizes 1..8 and the inclusion
and consistency proofs are the Certificate Transparency reference data as published in
transparency-dev/merkle, file proof/verify_test.go (commit 02194e9afb6c1d95b5381350007963aa70fff472,
originally google/certificate-transparency's merkle_tree_test.cc); the empty root is SHA-256("").
In that file inclusion vectors number leaves from 1; here they are converted to 0-based indexes.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from evidence import (
    SHA256,
    SM3,
    CompactRange,
    Hasher,
    InvalidProof,
    MerkleTree,
    TreeRangeError,
    root_from_inclusion_proof,
    root_of,
    verify_consistency,
    verify_inclusion,
)
from signcore.hashes import sm3

LEAVES = [bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
)]
ROOTS = [bytes.fromhex(h) for h in (
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",  # size 0
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",  # size 8
)]


def _hashes(*values: str) -> list[bytes]:
    return [bytes.fromhex(v) for v in values]


# (0-based leaf index, tree size, proof)
INCLUSION = [
    (0, 8, _hashes("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                   "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                   "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")),
    (5, 8, _hashes("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                   "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                   "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")),
    (2, 3, _hashes("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")),
    (1, 5, _hashes("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                   "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                   "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b")),
    (0, 1, []),
]
# (size1, size2, proof)
CONSISTENCY = [
    (1, 1, []),
    (1, 8, _hashes("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                   "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                   "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")),
    (6, 8, _hashes("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                   "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                   "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")),
    (2, 5, _hashes("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                   "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b")),
    (6, 7, _hashes("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                   "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                   "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")),
]
SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


def _sha256_tree() -> MerkleTree:
    return MerkleTree.from_leaf_hashes([SHA256.leaf(x) for x in LEAVES], hasher=SHA256,
                                       chunk_bits=1)


# --- an independent reference: the RFC's recursive definitions, written out literally --------


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(h: Hasher, d: list[bytes]) -> bytes:
    if not d:
        return h.empty_root()
    if len(d) == 1:
        return d[0]
    k = _k(len(d))
    return h.node(ref_mth(h, d[:k]), ref_mth(h, d[k:]))


def ref_path(h: Hasher, m: int, d: list[bytes]) -> list[bytes]:
    if len(d) <= 1:
        return []
    k = _k(len(d))
    if m < k:
        return [*ref_path(h, m, d[:k]), ref_mth(h, d[k:])]
    return [*ref_path(h, m - k, d[k:]), ref_mth(h, d[:k])]


def ref_subproof(h: Hasher, m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(h, d)]
    k = _k(n)
    if m <= k:
        return [*ref_subproof(h, m, d[:k], b), ref_mth(h, d[k:])]
    return [*ref_subproof(h, m - k, d[k:], False), ref_mth(h, d[:k])]


def check_inclusion(h: Hasher, index: int, size: int, leaf: bytes, proof: list[bytes],  # noqa: PLR0917
                    root: bytes) -> None:
    verify_inclusion(h, index=index, size=size, leaf_hash=leaf, proof=proof, root=root)


def check_consistency(h: Hasher, size1: int, size2: int, proof: list[bytes], root1: bytes,  # noqa: PLR0917
                      root2: bytes) -> None:
    verify_consistency(h, size1=size1, size2=size2, proof=proof, root1=root1, root2=root2)


# --- published vectors ---------------------------------------------------------------------------


def test_hashers_apply_the_rfc_prefixes() -> None:
    assert SHA256.leaf(b"") == ROOTS[1] == hashlib.sha256(b"\x00").digest()
    assert SHA256.node(b"a", b"b") == hashlib.sha256(b"\x01ab").digest()
    assert SM3.leaf(b"x") == sm3(b"\x00x")
    assert SM3.node(b"a", b"b") == sm3(b"\x01ab")
    assert SM3.empty_root() == sm3(b"")


@pytest.mark.parametrize("size", range(9))
def test_roots_match_the_published_vectors(size: int) -> None:
    leaf_hashes = [SHA256.leaf(x) for x in LEAVES[:size]]
    assert root_of(leaf_hashes, SHA256) == ROOTS[size]
    assert _sha256_tree().root(size) == ROOTS[size]
    compact = CompactRange(SHA256)
    for leaf in leaf_hashes:
        compact.append(leaf)
    assert compact.root() == ROOTS[size]


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION)
def test_inclusion_proofs_match_the_published_vectors(index: int, size: int,
                                                      proof: list[bytes]) -> None:
    assert _sha256_tree().inclusion_proof(index, size) == proof
    leaf = SHA256.leaf(LEAVES[index])
    check_inclusion(SHA256, index, size, leaf, proof, ROOTS[size])


@pytest.mark.parametrize(("size1", "size2", "proof"), CONSISTENCY)
def test_consistency_proofs_match_the_published_vectors(size1: int, size2: int,
                                                        proof: list[bytes]) -> None:
    assert _sha256_tree().consistency_proof(size1, size2) == proof
    check_consistency(SHA256, size1, size2, proof, ROOTS[size1], ROOTS[size2])


def _inclusion_probes(index: int, size: int, leaf: bytes, proof: list[bytes],
                      root: bytes) -> list[tuple[str, int, int, bytes, list[bytes], bytes]]:
    probes = [
        ("index - 1", index - 1, size, leaf, proof, root),
        ("index + 1", index + 1, size, leaf, proof, root),
        ("index ^ 2", index ^ 2, size, leaf, proof, root),
        ("size * 2", index, size * 2, leaf, proof, root),
        ("size // 2", index, size // 2, leaf, proof, root),
        ("wrong leaf", index, size, SOME_HASH, proof, root),
        ("short leaf", index, size, b"WrongLeaf", proof, root),
        ("empty root", index, size, leaf, proof, ROOTS[0]),
        ("other root", index, size, leaf, proof, SOME_HASH),
        ("trailing empty", index, size, leaf, [*proof, b""], root),
        ("trailing root", index, size, leaf, [*proof, root], root),
        ("leading empty", index, size, leaf, [b"", *proof], root),
        ("leading root", index, size, leaf, [root, *proof], root),
    ]
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([proof[i][0] ^ 8]) + proof[i][1:]
        probes.append((f"bit flip in proof[{i}]", index, size, leaf, flipped, root))
    if proof:
        probes.append(("last removed", index, size, leaf, proof[:-1], root))
    if len(proof) > 1:
        probes.append(("inserted", index, size, leaf, [proof[0], SOME_HASH, *proof[1:]], root))
    return probes


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION)
def test_corrupted_inclusion_proofs_fail(index: int, size: int, proof: list[bytes]) -> None:
    leaf = SHA256.leaf(LEAVES[index])
    accepted = []
    for name, i, n, lf, pr, rt in _inclusion_probes(index, size, leaf, proof, ROOTS[size]):
        try:
            check_inclusion(SHA256, i, n, lf, pr, rt)
            accepted.append(name)
        except InvalidProof:
            pass
    assert accepted == []


def _consistency_probes(size1: int, size2: int, proof: list[bytes], root1: bytes,
                        root2: bytes) -> list[tuple[str, int, int, list[bytes], bytes, bytes]]:
    probes = [
        ("size1 - 1", size1 - 1, size2, proof, root1, root2),
        ("size1 + 1", size1 + 1, size2, proof, root1, root2),
        ("size1 ^ 2", size1 ^ 2, size2, proof, root1, root2),
        ("size2 * 2", size1, size2 * 2, proof, root1, root2),
        ("size2 // 2", size1, size2 // 2, proof, root1, root2),
        ("wrong root1", size1, size2, proof, SOME_HASH, root2),
        ("wrong root2", size1, size2, proof, root1, SOME_HASH),
        ("short root1", size1, size2, proof, b"WrongRoot", root2),
        ("swapped roots", size1, size2, proof, root2, root1),
        ("empty proof", size1, size2, [], root1, root2),
        ("trailing empty", size1, size2, [*proof, b""], root1, root2),
        ("trailing root1", size1, size2, [*proof, root1], root1, root2),
        ("trailing root2", size1, size2, [*proof, root2], root1, root2),
        ("leading empty", size1, size2, [b"", *proof], root1, root2),
        ("leading root1", size1, size2, [root1, *proof], root1, root2),
        ("leading root2", size1, size2, [root2, *proof], root1, root2),
        ("leading proof[0]", size1, size2, [proof[0], *proof], root1, root2),
        ("truncated", size1, size2, proof[:-1], root1, root2),
    ]
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([proof[i][0] ^ 16]) + proof[i][1:]
        probes.append((f"bit flip in proof[{i}]", size1, size2, flipped, root1, root2))
    return probes


@pytest.mark.parametrize(("size1", "size2", "proof"), [c for c in CONSISTENCY if c[2]])
def test_corrupted_consistency_proofs_fail(size1: int, size2: int, proof: list[bytes]) -> None:
    accepted = []
    for name, m, n, pr, r1, r2 in _consistency_probes(size1, size2, proof, ROOTS[size1],
                                                      ROOTS[size2]):
        try:
            check_consistency(SHA256, m, n, pr, r1, r2)
            accepted.append(name)
        except InvalidProof:
            pass
    assert accepted == []


def test_trivial_consistency_cases() -> None:
    a, b = ROOTS[1], ROOTS[2]
    check_consistency(SHA256, 0, 0, [], a, a)
    check_consistency(SHA256, 0, 1, [], a, b)  # the empty tree is a prefix of every tree
    check_consistency(SHA256, 1, 1, [], b, b)
    for size1, size2, proof, root1, root2 in [
        (0, 0, [], a, b), (1, 1, [], a, b),            # same size, different roots
        (1, 0, [], a, b), (2, 1, [], a, b),            # time travel
        (1, 2, [], a, b),                              # missing proof
        (0, 0, [a], a, a), (0, 1, [a], a, a), (1, 1, [a], a, a),  # proof where none is due
        (1, 1, [], b"short", b"short"),                # hash sizes are checked
    ]:
        with pytest.raises(InvalidProof):
            check_consistency(SHA256, size1, size2, proof, root1, root2)


def test_inclusion_edge_cases() -> None:
    leaf = SHA256.leaf(b"data")
    check_inclusion(SHA256, 0, 1, leaf, [], leaf)  # a one-leaf tree's root is its leaf
    for index, size in [(0, 0), (1, 0), (1, 1), (2, 1), (-1, 1)]:
        with pytest.raises(InvalidProof):
            check_inclusion(SHA256, index, size, leaf, [], leaf)
    with pytest.raises(InvalidProof):
        check_inclusion(SHA256, 0, 1, b"", [], leaf)
    with pytest.raises(InvalidProof):
        root_from_inclusion_proof(SHA256, index=0, size=1, leaf_hash=leaf, proof=[leaf])


def test_tree_ranges_are_checked() -> None:
    tree = _sha256_tree()
    for call in (lambda: tree.root(9), lambda: tree.inclusion_proof(8, 8),
                 lambda: tree.inclusion_proof(0, 0), lambda: tree.consistency_proof(5, 4),
                 lambda: tree.consistency_proof(1, 9), lambda: tree.subtree(3, 3),
                 lambda: tree.leaf_hash(8), lambda: tree.grow(7)):
        with pytest.raises(TreeRangeError):
            call()
    assert tree.root(0) == ROOTS[0]


# --- properties with SM3 -------------------------------------------------------------------------

def _sm3_leaves(n: int, salt: int = 0) -> list[bytes]:
    return [SM3.leaf(f"{salt}:{i}".encode()) for i in range(n)]


@given(n=st.integers(0, 70), chunk_bits=st.integers(0, 4))
def test_roots_agree_with_the_reference_definition(n: int, chunk_bits: int) -> None:
    leaves = _sm3_leaves(n)
    tree = MerkleTree.from_leaf_hashes(leaves, chunk_bits=chunk_bits)
    compact = CompactRange()
    for size in range(n + 1):
        expected = ref_mth(SM3, leaves[:size])
        assert tree.root(size) == expected == root_of(leaves[:size])
        assert compact.root() == expected
        if size < n:
            compact.append(leaves[size])


@given(data=st.data(), n=st.integers(1, 300), chunk_bits=st.integers(0, 5))
def test_every_inclusion_proof_verifies_and_tampering_fails(data: st.DataObject, n: int,
                                                           chunk_bits: int) -> None:
    leaves = _sm3_leaves(n, 1)
    tree = MerkleTree.from_leaf_hashes(leaves, chunk_bits=chunk_bits)
    size = data.draw(st.integers(1, n), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    proof = tree.inclusion_proof(index, size)
    assert proof == ref_path(SM3, index, leaves[:size])
    root = tree.root(size)
    check_inclusion(SM3, index, size, leaves[index], proof, root)
    for name, i, m, lf, pr, rt in _inclusion_probes(index, size, leaves[index], proof, root):
        if (i, m, lf, pr, rt) == (index, size, leaves[index], proof, root):
            continue  # a probe that happens to change nothing (index ^ 2 at the edge, ...)
        try:
            check_inclusion(SM3, i, m, lf, pr, rt)
        except InvalidProof:
            continue
        # Only a genuinely valid statement may pass: the same leaf at that index and size.
        assert 0 <= i < m <= n and lf == leaves[i] and rt == tree.root(m), name


@given(data=st.data(), n=st.integers(1, 300), chunk_bits=st.integers(0, 5))
def test_every_consistency_proof_verifies_and_tampering_fails(data: st.DataObject, n: int,
                                                             chunk_bits: int) -> None:
    leaves = _sm3_leaves(n, 2)
    tree = MerkleTree.from_leaf_hashes(leaves, chunk_bits=chunk_bits)
    size2 = data.draw(st.integers(1, n), label="size2")
    size1 = data.draw(st.integers(1, size2), label="size1")
    proof = tree.consistency_proof(size1, size2)
    assert proof == (ref_subproof(SM3, size1, leaves[:size2], True) if size1 < size2 else [])
    root1, root2 = tree.root(size1), tree.root(size2)
    check_consistency(SM3, size1, size2, proof, root1, root2)
    assume(proof)
    for name, m, k, pr, r1, r2 in _consistency_probes(size1, size2, proof, root1, root2):
        try:
            check_consistency(SM3, m, k, pr, r1, r2)
        except InvalidProof:
            continue
        assert 0 <= m <= k <= n and r1 == tree.root(m) and r2 == tree.root(k), name


@given(n=st.integers(2, 200), data=st.data())
def test_a_changed_leaf_breaks_proofs_made_before(n: int, data: st.DataObject) -> None:
    leaves = _sm3_leaves(n, 3)
    root = root_of(leaves)
    victim = data.draw(st.integers(0, n - 1), label="victim")
    forged = list(leaves)
    forged[victim] = SM3.leaf(b"forged")
    proof = MerkleTree.from_leaf_hashes(forged).inclusion_proof(victim)
    with pytest.raises(InvalidProof):
        check_inclusion(SM3, victim, n, forged[victim], proof, root)


def test_a_growing_tree_answers_for_every_size() -> None:
    leaves: list[bytes] = []
    tree = MerkleTree.from_leaf_hashes(leaves, chunk_bits=2)
    for i in range(40):
        leaves.append(SM3.leaf(bytes([i])))
        tree.grow(len(leaves))
        assert tree.root() == ref_mth(SM3, leaves)
        check_consistency(SM3, max(1, i // 2), i + 1, tree.consistency_proof(max(1, i // 2)),
                           tree.root(max(1, i // 2)), tree.root())


def test_proofs_over_a_large_tree_read_at_most_a_few_chunks() -> None:
    """100,000 leaves: after one full pass (which memoizes the complete subtrees), an inclusion
    proof reads no more than the leaf's chunk and the ragged right edge, not the log."""
    n, chunk_bits = 100_003, 8
    leaves = [sm3(i.to_bytes(4, "big")) for i in range(n)]
    reads: list[int] = []

    def source(start: int, stop: int) -> list[bytes]:
        reads.append(stop - start)
        return leaves[start:stop]

    tree = MerkleTree(source, n, chunk_bits=chunk_bits, cached_chunks=2)
    root = tree.root()
    assert root == root_of(leaves)
    assert sum(reads) == n  # the first root reads every leaf exactly once
    for index in (0, 1, 4097, 65_535, 99_999, n - 1):
        reads.clear()
        proof = tree.inclusion_proof(index)
        check_inclusion(SM3, index, n, leaves[index], proof, root)
        assert sum(reads) <= 2 << chunk_bits, (index, reads)
    reads.clear()
    proof = tree.consistency_proof(77_777)
    check_consistency(SM3, 77_777, n, proof, root_of(leaves[:77_777]), root)
    assert sum(reads) <= 3 << chunk_bits

"""SM3 and HMAC-SM3 on the platform libcrypto, against GB/T 32905 vectors and gmssl's SM3."""

from __future__ import annotations

import hashlib
import hmac as std_hmac
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signcore import hashes
from signcore.errors import UnsupportedAlgorithm
from signcore.hashes import HashAlgorithm
from tests.support import gmssl_oracle

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "vectors" / "sm2-sm3.json").read_text()
)


def _hmac_sm3_by_gmssl(key: bytes, data: bytes) -> bytes:
    """RFC 2104 HMAC built by hand on gmssl's SM3 (block size 64)."""
    if len(key) > 64:
        key = gmssl_oracle.sm3(key)
    key = key.ljust(64, b"\x00")
    inner = gmssl_oracle.sm3(bytes(b ^ 0x36 for b in key) + data)
    return gmssl_oracle.sm3(bytes(b ^ 0x5C for b in key) + inner)


@pytest.mark.parametrize("vector", VECTORS["sm3"], ids=lambda v: v["message_ascii"][:8])
def test_sm3_vectors(vector: dict[str, str]) -> None:
    message = vector["message_ascii"].encode()
    assert hashes.sm3(message).hex() == vector["digest"]
    assert hashes.digest(HashAlgorithm.SM3, message).hex() == vector["digest"]
    assert hashes.SM3(message).hexdigest() == vector["digest"]
    # the vector file is also what gmssl computes
    assert gmssl_oracle.sm3(message).hex() == vector["digest"]


def test_sm3_streaming_in_pieces_and_repeated_digest() -> None:
    message = VECTORS["sm3"][1]["message_ascii"].encode()
    h = hashes.SM3()
    for i in range(0, len(message), 7):
        h.update(message[i : i + 7])
    assert h.hexdigest() == VECTORS["sm3"][1]["digest"]
    # digest() does not finalize the running state
    assert h.digest() == h.digest()
    h.update(b"x")
    assert h.digest() == hashes.sm3(message + b"x")


def test_sm3_copy_is_independent() -> None:
    h = hashes.SM3(b"abc")
    clone = h.copy()
    clone.update(b"d")
    assert h.hexdigest() == VECTORS["sm3"][0]["digest"]
    assert clone.digest() == hashes.sm3(b"abcd")


def test_sm3_empty_and_attributes() -> None:
    assert hashes.sm3(b"") == gmssl_oracle.sm3(b"")
    assert hashes.SM3().digest() == hashes.sm3(b"")
    assert hashes.SM3.digest_size == 32
    assert hashes.SM3.block_size == 64
    assert HashAlgorithm.SM3.digest_size == 32


def test_sm3_accepts_bytearray_and_memoryview_like_hashlib() -> None:
    h = hashes.SM3()
    h.update(bytearray(b"ab"))
    h.update(memoryview(b"c"))
    assert h.hexdigest() == VECTORS["sm3"][0]["digest"]
    assert hashes.sm3(bytearray(b"abc")).hex() == VECTORS["sm3"][0]["digest"]
    assert hashes.hmac_sm3(bytearray(b"k"), memoryview(b"d")) == hashes.hmac_sm3(b"k", b"d")


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=300), st.integers(min_value=1, max_value=70))
def test_sm3_matches_gmssl(data: bytes, chunk: int) -> None:
    expected = gmssl_oracle.sm3(data)
    assert hashes.sm3(data) == expected
    h = hashes.new(HashAlgorithm.SM3)
    for i in range(0, len(data), chunk):
        h.update(data[i : i + chunk])
    assert h.digest() == expected


@pytest.mark.parametrize("key_size", [0, 1, 32, 63, 64, 65, 200])
def test_hmac_sm3_matches_hand_built_hmac(key_size: int) -> None:
    key = bytes((7 * i + 1) % 256 for i in range(key_size))
    for data in (b"", b"what do ya want for nothing?", b"\xa5" * 1000):
        assert hashes.hmac_sm3(key, data) == _hmac_sm3_by_gmssl(key, data)
        assert hashes.hmac(HashAlgorithm.SM3, key, data) == _hmac_sm3_by_gmssl(key, data)


@settings(max_examples=30, deadline=None)
@given(st.binary(max_size=100), st.binary(max_size=200))
def test_hmac_sm3_hypothesis(key: bytes, data: bytes) -> None:
    assert hashes.hmac_sm3(key, data) == _hmac_sm3_by_gmssl(key, data)


def test_hmac_sm3_depends_on_key_and_data() -> None:
    base = hashes.hmac_sm3(b"key", b"data")
    assert len(base) == 32
    assert hashes.hmac_sm3(b"kex", b"data") != base
    assert hashes.hmac_sm3(b"key", b"datb") != base


@pytest.mark.parametrize("alg", [HashAlgorithm.SHA256, HashAlgorithm.SHA384, HashAlgorithm.SHA512])
def test_sha2_through_the_same_interface(alg: HashAlgorithm) -> None:
    data = b"medsign" * 100
    assert hashes.digest(alg, data) == hashlib.new(alg.value, data).digest()
    assert len(hashes.digest(alg, data)) == alg.digest_size
    h = hashes.new(alg)
    h.update(data[:5])
    h.update(data[5:])
    assert h.digest() == hashlib.new(alg.value, data).digest()
    assert hashes.hmac(alg, b"k", data) == std_hmac.new(b"k", data, alg.value).digest()


@pytest.mark.parametrize(
    ("name", "expected"),
    [("sm3", HashAlgorithm.SM3), ("SM3", HashAlgorithm.SM3), ("SHA-256", HashAlgorithm.SHA256),
     ("sha384", HashAlgorithm.SHA384), ("Sha-512", HashAlgorithm.SHA512)],
)
def test_hash_from_name(name: str, expected: HashAlgorithm) -> None:
    assert HashAlgorithm.from_name(name) is expected


@pytest.mark.parametrize("name", ["md5", "sha1", "", "sm4", "sha-3"])
def test_hash_from_name_refuses_others(name: str) -> None:
    with pytest.raises(UnsupportedAlgorithm):
        HashAlgorithm.from_name(name)


def test_constant_time_equal() -> None:
    assert hashes.constant_time_equal(b"abc", b"abc")
    assert not hashes.constant_time_equal(b"abc", b"abd")
    assert not hashes.constant_time_equal(b"abc", b"ab")

"""SM4: GB/T 32907 block vectors, RFC 8998 SM4-GCM, and cross-checks with gmssl and libcrypto.

SM4-CBC and the raw block run on the platform libcrypto; SM4-GCM runs on the OpenSSL bundled in
pyca/cryptography (Debian 12's OpenSSL 3.0 has no SM4-GCM).  The GCM cross-check recomputes the
GCM keystream with the platform SM4 block function, so the two OpenSSL builds must agree.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from gmssl.sm4 import SM4_DECRYPT, SM4_ENCRYPT, CryptSM4
from hypothesis import given, settings
from hypothesis import strategies as st

from signcore import sm4
from signcore.errors import DecryptionError

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "vectors" / "sm4.json").read_text()
)
ECB1, ECB_MILLION = VECTORS["ecb"]
GCM = VECTORS["gcm"][0]


def _h(value: str) -> bytes:
    return bytes.fromhex(value)


def _gmssl(key: bytes, mode: int, padding: int | None) -> CryptSM4:
    c = CryptSM4(padding_mode=padding)  # padding None: gmssl's ECB then pads nothing
    c.set_key(key, mode)
    return c


def test_vector_file_has_provenance() -> None:
    assert "GB/T 32907-2016" in VECTORS["provenance"]
    assert "RFC 8998" in VECTORS["provenance"]


def test_ecb_single_block_vector() -> None:
    assert ECB1["iterations"] == 1
    out = sm4.ecb_encrypt_block(_h(ECB1["key"]), _h(ECB1["plaintext"]))
    assert out.hex() == ECB1["ciphertext"]
    # gmssl (pure Python) agrees, so the vector is checked by two implementations
    assert _gmssl(_h(ECB1["key"]), SM4_ENCRYPT, None).crypt_ecb(_h(ECB1["plaintext"])) == out


def test_ecb_million_iterations_vector() -> None:
    """E^1000000(P).  Iterating in Python costs ~6 s, so the chain runs inside libcrypto as
    SM4-CBC over P || 0^(16*999999) with a zero IV: block i is E(0 xor block i-1) = E^(i+1)(P).
    The first 1000 links are recomputed with the single-block function to prove the identity."""
    key, block = _h(ECB_MILLION["key"]), _h(ECB_MILLION["plaintext"])
    iterations = ECB_MILLION["iterations"]
    assert iterations == 1_000_000
    chain = sm4.cbc_encrypt(key, bytes(16), block + bytes(16 * (iterations - 1)), padding=False)
    assert len(chain) == 16 * iterations
    assert chain[-16:].hex() == ECB_MILLION["ciphertext"]
    x = block
    for i in range(1000):
        x = sm4.ecb_encrypt_block(key, x)
        assert chain[16 * i : 16 * i + 16] == x
    assert chain[:16].hex() == ECB1["ciphertext"]


def test_gcm_vector_encrypt_and_decrypt() -> None:
    key, iv, aad = _h(GCM["key"]), _h(GCM["iv"]), _h(GCM["aad"])
    plaintext, ciphertext, tag = _h(GCM["plaintext"]), _h(GCM["ciphertext"]), _h(GCM["tag"])
    assert sm4.gcm_encrypt(key, iv, plaintext, aad) == ciphertext + tag
    assert sm4.gcm_decrypt(key, iv, ciphertext + tag, aad) == plaintext


def _inc32(block: bytes) -> bytes:
    counter = (int.from_bytes(block[12:], "big") + 1) % 2**32
    return block[:12] + counter.to_bytes(4, "big")


def _ctr_keystream_with_platform_sm4(key: bytes, iv: bytes, size: int) -> bytes:
    """NIST SP 800-38D: J0 = IV || 0^31 || 1, keystream = E(inc32(J0)) || E(inc32^2(J0)) ..."""
    counter = iv + (1).to_bytes(4, "big")
    stream = b""
    while len(stream) < size:
        counter = _inc32(counter)
        stream += sm4.ecb_encrypt_block(key, counter)
    return stream[:size]


def test_gcm_ciphertext_is_platform_sm4_ctr_keystream() -> None:
    """The pyca-bundled SM4-GCM agrees with the platform libcrypto's SM4 block function."""
    key, iv, plaintext = _h(GCM["key"]), _h(GCM["iv"]), _h(GCM["plaintext"])
    stream = _ctr_keystream_with_platform_sm4(key, iv, len(plaintext))
    expected = bytes(p ^ k for p, k in zip(plaintext, stream, strict=True))
    assert expected.hex() == GCM["ciphertext"]
    assert sm4.gcm_encrypt(key, iv, plaintext, _h(GCM["aad"]))[:-16] == expected


@settings(max_examples=25, deadline=None)
@given(st.binary(min_size=16, max_size=16), st.binary(min_size=12, max_size=12),
       st.binary(max_size=100), st.binary(max_size=40))
def test_gcm_keystream_cross_check_random(key: bytes, iv: bytes, data: bytes, aad: bytes) -> None:
    sealed = sm4.gcm_encrypt(key, iv, data, aad)
    assert len(sealed) == len(data) + 16
    stream = _ctr_keystream_with_platform_sm4(key, iv, len(data))
    assert sealed[:-16] == bytes(p ^ k for p, k in zip(data, stream, strict=True))
    assert sm4.gcm_decrypt(key, iv, sealed, aad) == data


def test_gcm_rejects_tampering() -> None:
    key, iv, aad = _h(GCM["key"]), _h(GCM["iv"]), _h(GCM["aad"])
    sealed = _h(GCM["ciphertext"] + GCM["tag"])
    for i in (0, 31, len(sealed) - 17, len(sealed) - 16, len(sealed) - 1):
        bad = bytearray(sealed)
        bad[i] ^= 0x80
        with pytest.raises(DecryptionError):
            sm4.gcm_decrypt(key, iv, bytes(bad), aad)
    with pytest.raises(DecryptionError):
        sm4.gcm_decrypt(key, iv, sealed, aad + b"x")
    with pytest.raises(DecryptionError):
        sm4.gcm_decrypt(key, iv[:-1] + b"\x00", sealed, aad)
    with pytest.raises(DecryptionError):
        sm4.gcm_decrypt(bytes(16), iv, sealed, aad)
    with pytest.raises(DecryptionError):
        sm4.gcm_decrypt(key, iv, sealed[:15], aad)
    with pytest.raises(DecryptionError):
        sm4.gcm_decrypt(key, iv, sealed[:-1], aad)


def test_gcm_empty_plaintext_authenticates_aad() -> None:
    key, nonce = bytes(range(16)), bytes(12)
    sealed = sm4.gcm_encrypt(key, nonce, b"", b"header")
    assert len(sealed) == 16
    assert sm4.gcm_decrypt(key, nonce, sealed, b"header") == b""
    with pytest.raises(DecryptionError):
        sm4.gcm_decrypt(key, nonce, sealed, b"headeR")


@pytest.mark.parametrize(
    ("key", "nonce"), [(bytes(15), bytes(12)), (bytes(17), bytes(12)), (bytes(16), bytes(11)),
                       (bytes(16), bytes(16)), (b"", bytes(12))]
)
def test_gcm_bad_sizes(key: bytes, nonce: bytes) -> None:
    with pytest.raises(ValueError, match="SM4"):
        sm4.gcm_encrypt(key, nonce, b"data")
    with pytest.raises(ValueError, match="SM4"):
        sm4.gcm_decrypt(key, nonce, bytes(32))


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=16, max_size=16), st.binary(min_size=16, max_size=16),
       st.binary(max_size=80))
def test_cbc_matches_gmssl_both_ways(key: bytes, iv: bytes, plaintext: bytes) -> None:
    ours = sm4.cbc_encrypt(key, iv, plaintext)
    assert len(ours) == (len(plaintext) // 16 + 1) * 16  # PKCS#7 always adds 1..16 bytes
    theirs = _gmssl(key, SM4_ENCRYPT, 0).crypt_cbc(iv, plaintext)
    assert ours == theirs
    assert sm4.cbc_decrypt(key, iv, theirs) == plaintext
    assert _gmssl(key, SM4_DECRYPT, 0).crypt_cbc(iv, ours) == plaintext


def test_cbc_known_structure() -> None:
    key, iv = _h(ECB1["key"]), bytes(16)
    # one full block of plaintext: block 1 is the GB/T vector (IV = 0), block 2 is padding only
    out = sm4.cbc_encrypt(key, iv, _h(ECB1["plaintext"]))
    assert out[:16].hex() == ECB1["ciphertext"]
    pad = bytes(a ^ b for a, b in zip(out[:16], b"\x10" * 16, strict=True))
    assert out[16:] == sm4.ecb_encrypt_block(key, pad)


def test_cbc_without_padding() -> None:
    key, iv = bytes(range(16)), bytes(range(16, 32))
    data = bytes(range(48))
    out = sm4.cbc_encrypt(key, iv, data, padding=False)
    assert len(out) == 48
    assert sm4.cbc_decrypt(key, iv, out, padding=False) == data
    with pytest.raises(ValueError, match="multiple of 16"):
        sm4.cbc_encrypt(key, iv, data[:47], padding=False)


def test_cbc_bad_padding_and_lengths() -> None:
    key, iv = bytes(range(16)), bytes(16)
    # a block that decrypts to ...0x00 has invalid PKCS#7 padding
    bad_padding = sm4.cbc_encrypt(key, iv, bytes(16), padding=False)
    with pytest.raises(DecryptionError):
        sm4.cbc_decrypt(key, iv, bad_padding)
    good = sm4.cbc_encrypt(key, iv, b"hello")
    for bad in (b"", good[:-1], good + b"\x00"):
        with pytest.raises(DecryptionError):
            sm4.cbc_decrypt(key, iv, bad)


@pytest.mark.parametrize(("key", "iv"), [(bytes(15), bytes(16)), (bytes(16), bytes(15)),
                                         (bytes(32), bytes(16))])
def test_cbc_bad_sizes(key: bytes, iv: bytes) -> None:
    with pytest.raises(ValueError, match="SM4"):
        sm4.cbc_encrypt(key, iv, b"data")


def test_ecb_block_bad_sizes() -> None:
    with pytest.raises(ValueError):
        sm4.ecb_encrypt_block(bytes(16), bytes(15))
    with pytest.raises(ValueError):
        sm4.ecb_encrypt_block(bytes(8), bytes(16))

"""SM4 block cipher (GB/T 32907): CBC with PKCS#7 padding and GCM (RFC 8998).

SM4-CBC runs on the platform libcrypto.  The platform OpenSSL 3.0 of Debian 12 has no SM4-GCM
(OpenSSL added it in 3.2), so SM4-GCM runs on the OpenSSL that ships inside ``cryptography``; the
test suite pins it to the RFC 8998 vector and cross-checks the CTR keystream against the
platform's SM4.  Keys are 16 bytes; GCM nonces 12 bytes; GCM tags 16 bytes, appended.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from signcore._internal import libcrypto
from signcore.errors import DecryptionError

KEY_SIZE = 16
BLOCK_SIZE = 16
GCM_NONCE_SIZE = 12
GCM_TAG_SIZE = 16


def _check_key(key: bytes) -> None:
    if len(key) != KEY_SIZE:
        raise ValueError(f"SM4 keys are {KEY_SIZE} bytes, got {len(key)}")


def _cbc(key: bytes, iv: bytes, data: bytes, *, encrypt: bool, padding: bool) -> bytes:
    _check_key(key)
    if len(iv) != BLOCK_SIZE:
        raise ValueError(f"SM4-CBC IVs are {BLOCK_SIZE} bytes, got {len(iv)}")
    if not padding and len(data) % BLOCK_SIZE:
        raise ValueError("without padding the input must be a multiple of 16 bytes")
    be = libcrypto.backend()
    ffi, lib = be.ffi, be.lib
    ctx = ffi.gc(lib.EVP_CIPHER_CTX_new(), lib.EVP_CIPHER_CTX_free)
    libcrypto.check(be, lib.EVP_CipherInit_ex(ctx, be.sm4_cbc, ffi.NULL, key, iv, int(encrypt)),
                    "SM4-CBC init")
    lib.EVP_CIPHER_CTX_set_padding(ctx, int(padding))
    out = ffi.new("unsigned char[]", len(data) + BLOCK_SIZE)
    n = ffi.new("int *")
    libcrypto.check(be, lib.EVP_CipherUpdate(ctx, out, n, data, len(data)), "SM4-CBC")
    total = n[0]
    if lib.EVP_CipherFinal_ex(ctx, out + total, n) <= 0:
        libcrypto.clear_errors(be)
        raise DecryptionError("SM4-CBC: bad padding (wrong key or corrupted data)")
    total += n[0]
    try:
        return bytes(ffi.buffer(out, total))
    finally:
        lib.OPENSSL_cleanse(out, len(data) + BLOCK_SIZE)


def cbc_encrypt(key: bytes, iv: bytes, plaintext: bytes, *, padding: bool = True) -> bytes:
    """SM4-CBC with PKCS#7 padding (unless ``padding=False``)."""
    return _cbc(key, iv, plaintext, encrypt=True, padding=padding)


def cbc_decrypt(key: bytes, iv: bytes, ciphertext: bytes, *, padding: bool = True) -> bytes:
    """Inverse of :func:`cbc_encrypt`; DecryptionError on bad padding.

    CBC is not authenticated: use it only where a MAC or signature covers the ciphertext.
    """
    if not ciphertext or len(ciphertext) % BLOCK_SIZE:
        raise DecryptionError("SM4-CBC ciphertext length is not a positive multiple of 16")
    return _cbc(key, iv, ciphertext, encrypt=False, padding=padding)


def ecb_encrypt_block(key: bytes, block: bytes) -> bytes:
    """One raw SM4 block encryption (for known-answer tests and key check values)."""
    if len(block) != BLOCK_SIZE:
        raise ValueError("one 16-byte block expected")
    _check_key(key)
    be = libcrypto.backend()
    ffi, lib = be.ffi, be.lib
    ctx = ffi.gc(lib.EVP_CIPHER_CTX_new(), lib.EVP_CIPHER_CTX_free)
    libcrypto.check(be, lib.EVP_CipherInit_ex(ctx, be.sm4_ecb, ffi.NULL, key, ffi.NULL, 1),
                    "SM4-ECB init")
    lib.EVP_CIPHER_CTX_set_padding(ctx, 0)
    out = ffi.new("unsigned char[16]")
    n = ffi.new("int *")
    libcrypto.check(be, lib.EVP_CipherUpdate(ctx, out, n, block, 16), "SM4-ECB")
    return bytes(out)


def gcm_encrypt(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes = b"") -> bytes:
    """SM4-GCM; returns ciphertext || 16-byte tag.  Never reuse a nonce under one key."""
    _check_key(key)
    if len(nonce) != GCM_NONCE_SIZE:
        raise ValueError(f"SM4-GCM nonces are {GCM_NONCE_SIZE} bytes")
    encryptor = Cipher(algorithms.SM4(key), modes.GCM(nonce)).encryptor()
    encryptor.authenticate_additional_data(aad)
    ciphertext = encryptor.update(plaintext) + encryptor.finalize()
    return ciphertext + encryptor.tag


def gcm_decrypt(key: bytes, nonce: bytes, data: bytes, aad: bytes = b"") -> bytes:
    """Inverse of :func:`gcm_encrypt`; DecryptionError unless the tag authenticates."""
    _check_key(key)
    if len(nonce) != GCM_NONCE_SIZE:
        raise ValueError(f"SM4-GCM nonces are {GCM_NONCE_SIZE} bytes")
    if len(data) < GCM_TAG_SIZE:
        raise DecryptionError("SM4-GCM input shorter than its tag")
    ciphertext, tag = data[:-GCM_TAG_SIZE], data[-GCM_TAG_SIZE:]
    decryptor = Cipher(algorithms.SM4(key), modes.GCM(nonce, tag)).decryptor()
    decryptor.authenticate_additional_data(aad)
    try:
        return decryptor.update(ciphertext) + decryptor.finalize()
    except InvalidTag:
        raise DecryptionError("SM4-GCM: authentication failed") from None

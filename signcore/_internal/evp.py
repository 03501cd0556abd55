"""EVP_PKEY helpers on the platform libcrypto: decode, encode, generate, check."""

from __future__ import annotations

from typing import Any

from signcore._internal import libcrypto
from signcore.errors import DecodeError, InvalidKey

#: No key file or SubjectPublicKeyInfo we accept is larger than this (RSA-16384 PKCS#8 is ~9 KiB).
MAX_KEY_INPUT = 64 * 1024


def _decode(data: bytes, selection: int, password: bytes | None, structure: bytes | None) -> Any:
    be = libcrypto.backend()
    ffi, lib = be.ffi, be.lib
    if len(data) > MAX_KEY_INPUT:
        raise DecodeError(f"key input of {len(data)} bytes is larger than {MAX_KEY_INPUT}")
    if not data:
        raise DecodeError("empty key input")
    out = ffi.new("EVP_PKEY **")
    ctx = lib.OSSL_DECODER_CTX_new_for_pkey(
        out, ffi.NULL, structure or ffi.NULL, ffi.NULL, selection, ffi.NULL, ffi.NULL
    )
    if ctx == ffi.NULL:
        raise libcrypto.failure(be, "OSSL_DECODER_CTX_new_for_pkey")
    try:
        # An empty passphrase (not NULL) stops OpenSSL from prompting on a terminal.
        pw = password if password is not None else b""
        libcrypto.check(be, lib.OSSL_DECODER_CTX_set_passphrase(ctx, pw, len(pw)), "passphrase")
        buf = ffi.new("unsigned char[]", data)
        pdata = ffi.new("const unsigned char **", buf)
        plen = ffi.new("size_t *", len(data))
        ok = lib.OSSL_DECODER_from_data(ctx, pdata, plen)
        if ok <= 0 or out[0] == ffi.NULL:
            reason = libcrypto.openssl_error(be, "cannot decode key")
            if b"ENCRYPTED" in data[:64]:
                reason = ("the key is encrypted: a password is required" if password is None
                          else "cannot decrypt the key: wrong password or corrupted file")
            raise DecodeError(reason)
        if plen[0] != 0 and not _only_whitespace(data[len(data) - plen[0] :]):
            lib.EVP_PKEY_free(out[0])
            raise DecodeError("trailing data after the key")
    finally:
        lib.OSSL_DECODER_CTX_free(ctx)
        libcrypto.clear_errors(be)
    return ffi.gc(out[0], lib.EVP_PKEY_free)


def _only_whitespace(tail: bytes) -> bool:
    return not tail.strip()


def decode_private(data: bytes, password: bytes | None = None) -> Any:
    """Decode a private key (PKCS#8, encrypted PKCS#8, SEC1 or PKCS#1; PEM or DER)."""
    return _decode(data, libcrypto.EVP_PKEY_KEYPAIR, password, None)


def decode_public(data: bytes) -> Any:
    """Decode a SubjectPublicKeyInfo (PEM or DER)."""
    return _decode(data, libcrypto.EVP_PKEY_PUBLIC_KEY, None, b"SubjectPublicKeyInfo")


def encode(pkey: Any, *, private: bool, der: bool, password: bytes | None = None) -> bytes:
    """PKCS#8 (optionally PBES2 AES-256-CBC encrypted) or SubjectPublicKeyInfo."""
    be = libcrypto.backend()
    ffi, lib = be.ffi, be.lib
    selection = libcrypto.EVP_PKEY_KEYPAIR if private else libcrypto.EVP_PKEY_PUBLIC_KEY
    structure = b"PrivateKeyInfo" if private else b"SubjectPublicKeyInfo"
    ctx = lib.OSSL_ENCODER_CTX_new_for_pkey(
        pkey, selection, b"DER" if der else b"PEM", structure, ffi.NULL
    )
    if ctx == ffi.NULL or lib.OSSL_ENCODER_CTX_get_num_encoders(ctx) == 0:
        raise libcrypto.failure(be, "no encoder for this key")
    try:
        if password:
            libcrypto.check(be, lib.OSSL_ENCODER_CTX_set_cipher(ctx, b"AES-256-CBC", ffi.NULL),
                            "encoder cipher")
            libcrypto.check(be, lib.OSSL_ENCODER_CTX_set_passphrase(ctx, password, len(password)),
                            "encoder passphrase")
        pdata = ffi.new("unsigned char **")
        plen = ffi.new("size_t *")
        libcrypto.check(be, lib.OSSL_ENCODER_to_data(ctx, pdata, plen), "encode key")
        try:
            return bytes(ffi.buffer(pdata[0], plen[0]))
        finally:
            lib.OPENSSL_cleanse(pdata[0], plen[0])
            lib.CRYPTO_free(pdata[0], b"signcore", 0)
    finally:
        lib.OSSL_ENCODER_CTX_free(ctx)


def is_a(pkey: Any, name: bytes) -> bool:
    be = libcrypto.backend()
    return bool(be.lib.EVP_PKEY_is_a(pkey, name))


def encoded_public_point(pkey: Any) -> bytes:
    """The uncompressed public point 04 || x || y of an EC/SM2 key."""
    be = libcrypto.backend()
    buf = be.ffi.new("unsigned char[133]")
    size = be.ffi.new("size_t *")
    libcrypto.check(
        be, be.lib.EVP_PKEY_get_octet_string_param(pkey, b"encoded-pub-key", buf, 133, size),
        "public point", InvalidKey,
    )
    return bytes(be.ffi.buffer(buf, size[0]))


def new_ctx(pkey: Any) -> Any:
    be = libcrypto.backend()
    ctx = be.lib.EVP_PKEY_CTX_new_from_pkey(be.ffi.NULL, pkey, be.ffi.NULL)
    if ctx == be.ffi.NULL:
        raise libcrypto.failure(be, "EVP_PKEY_CTX_new_from_pkey")
    return be.ffi.gc(ctx, be.lib.EVP_PKEY_CTX_free)


def generate(name: bytes) -> Any:
    be = libcrypto.backend()
    ffi, lib = be.ffi, be.lib
    ctx = lib.EVP_PKEY_CTX_new_from_name(ffi.NULL, name, ffi.NULL)
    if ctx == ffi.NULL:
        raise libcrypto.failure(be, f"no {name.decode()} keygen")
    ctx = ffi.gc(ctx, lib.EVP_PKEY_CTX_free)
    out = ffi.new("EVP_PKEY **")
    libcrypto.check(be, lib.EVP_PKEY_keygen_init(ctx), "keygen init")
    libcrypto.check(be, lib.EVP_PKEY_generate(ctx, out), "keygen")
    return ffi.gc(out[0], lib.EVP_PKEY_free)


def check_keypair(pkey: Any) -> None:
    """Raise InvalidKey unless the private scalar is in range and matches the public point."""
    be = libcrypto.backend()
    ctx = new_ctx(pkey)
    if be.lib.EVP_PKEY_private_check(ctx) != 1 or be.lib.EVP_PKEY_pairwise_check(ctx) != 1:
        libcrypto.clear_errors(be)
        raise InvalidKey("private key out of range or not matching its public key")


def check_public(pkey: Any) -> None:
    """Raise InvalidKey unless the public key passes libcrypto's full public-key validation."""
    be = libcrypto.backend()
    ctx = new_ctx(pkey)
    if be.lib.EVP_PKEY_public_check(ctx) != 1:
        libcrypto.clear_errors(be)
        raise InvalidKey("invalid public key (off the curve, at infinity or of wrong order)")

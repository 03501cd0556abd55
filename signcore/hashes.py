"""Message digests and MACs: SM3 and HMAC-SM3 on the platform libcrypto, SHA-2 from hashlib.

``Hasher`` gives one streaming interface over both, so large inputs (PDFs, backups) are hashed
without being read into memory twice.
"""

from __future__ import annotations

import enum
import hashlib
import hmac as _hmac
from typing import Protocol

from signcore._internal import libcrypto
from signcore.errors import UnsupportedAlgorithm

SM3_DIGEST_SIZE = 32


class HashAlgorithm(enum.Enum):
    """Digest algorithms signcore signs with, by their common lower-case name."""

    SM3 = "sm3"
    SHA256 = "sha256"
    SHA384 = "sha384"
    SHA512 = "sha512"

    @property
    def digest_size(self) -> int:
        return {"sm3": 32, "sha256": 32, "sha384": 48, "sha512": 64}[self.value]

    @classmethod
    def from_name(cls, name: str) -> HashAlgorithm:
        try:
            return cls(name.lower().replace("-", ""))
        except ValueError:
            raise UnsupportedAlgorithm(f"unsupported hash algorithm {name!r}") from None


def _as_bytes(data: bytes) -> bytes:
    """cffi passes only ``bytes`` as a C buffer; accept bytearray and memoryview as hashlib does."""
    return data if isinstance(data, bytes) else bytes(data)


class Hasher(Protocol):
    """What ``hashlib`` objects and :class:`SM3` have in common."""

    def update(self, data: bytes, /) -> None: ...

    def digest(self) -> bytes: ...

    def hexdigest(self) -> str: ...


class SM3:
    """Streaming SM3 (GB/T 32905) on libcrypto, with the ``hashlib`` object interface."""

    digest_size = SM3_DIGEST_SIZE
    block_size = 64
    name = "sm3"

    def __init__(self, data: bytes = b"") -> None:
        be = libcrypto.backend()
        ctx = be.lib.EVP_MD_CTX_new()
        if ctx == be.ffi.NULL:
            raise MemoryError("EVP_MD_CTX_new")
        self._ctx = be.ffi.gc(ctx, be.lib.EVP_MD_CTX_free)
        libcrypto.check(be, be.lib.EVP_DigestInit_ex(self._ctx, be.sm3, be.ffi.NULL), "SM3 init")
        if data:
            self.update(data)

    def update(self, data: bytes, /) -> None:
        be = libcrypto.backend()
        data = _as_bytes(data)
        libcrypto.check(be, be.lib.EVP_DigestUpdate(self._ctx, data, len(data)), "SM3 update")

    def copy(self) -> SM3:
        be = libcrypto.backend()
        clone = SM3.__new__(SM3)
        ctx = be.lib.EVP_MD_CTX_new()
        if ctx == be.ffi.NULL:
            raise MemoryError("EVP_MD_CTX_new")
        clone._ctx = be.ffi.gc(ctx, be.lib.EVP_MD_CTX_free)
        libcrypto.check(be, be.lib.EVP_MD_CTX_copy_ex(clone._ctx, self._ctx), "SM3 copy")
        return clone

    def digest(self) -> bytes:
        # Finalize a copy so that digest() can be called repeatedly, as with hashlib.
        be = libcrypto.backend()
        out = be.ffi.new("unsigned char[]", SM3_DIGEST_SIZE)
        size = be.ffi.new("unsigned int *")
        tmp = self.copy()
        libcrypto.check(be, be.lib.EVP_DigestFinal_ex(tmp._ctx, out, size), "SM3 final")
        return bytes(be.ffi.buffer(out, size[0]))

    def hexdigest(self) -> str:
        return self.digest().hex()


def sm3(data: bytes) -> bytes:
    """SM3 of ``data`` in one call (the hot path of SM2 signing: one libcrypto call)."""
    be = libcrypto.backend()
    data = _as_bytes(data)
    out = be.ffi.new("unsigned char[32]")
    libcrypto.check(
        be, be.lib.EVP_Digest(data, len(data), out, be.ffi.NULL, be.sm3, be.ffi.NULL), "SM3"
    )
    return bytes(out)


def new(algorithm: HashAlgorithm) -> Hasher:
    """A fresh streaming hasher for ``algorithm``."""
    if algorithm is HashAlgorithm.SM3:
        return SM3()
    return hashlib.new(algorithm.value)


def digest(algorithm: HashAlgorithm, data: bytes) -> bytes:
    """The digest of ``data`` under ``algorithm``."""
    if algorithm is HashAlgorithm.SM3:
        return sm3(data)
    return hashlib.new(algorithm.value, data).digest()


def hmac_sm3(key: bytes, data: bytes) -> bytes:
    """HMAC-SM3 (RFC 2104 construction with SM3), computed by libcrypto."""
    be = libcrypto.backend()
    key, data = _as_bytes(key), _as_bytes(data)
    out = be.ffi.new("unsigned char[32]")
    size = be.ffi.new("unsigned int *")
    result = be.lib.HMAC(be.sm3, key, len(key), data, len(data), out, size)
    if result == be.ffi.NULL:
        raise libcrypto.failure(be, "HMAC-SM3")
    return bytes(be.ffi.buffer(out, size[0]))


def hmac(algorithm: HashAlgorithm, key: bytes, data: bytes) -> bytes:
    """HMAC of ``data`` under ``key`` with ``algorithm``."""
    if algorithm is HashAlgorithm.SM3:
        return hmac_sm3(key, data)
    return _hmac.new(key, data, algorithm.value).digest()


def constant_time_equal(a: bytes, b: bytes) -> bool:
    """Compare MACs and digests without leaking where they differ."""
    return _hmac.compare_digest(a, b)

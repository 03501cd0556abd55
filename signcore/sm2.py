"""SM2 keys (GB/T 32918): signatures with SM3 and a signer ID, and public-key encryption.

All operations with the private scalar run inside libcrypto (constant-time, DESIGN.md section 3).
signcore computes ``Z_A`` and ``e = SM3(Z_A || M)`` itself and hands libcrypto the digest ``e``:
this keeps the GM/T 0009 default ID explicit (OpenSSL 3.0 defaults to an empty ID) and lets
protocols that register a digest first (keysplit, sign requests) sign over a precomputed ``e``.

Signatures are DER ``SEQUENCE { r INTEGER, s INTEGER }``.  Ciphertexts are the GM/T 0009 DER
structure ``SEQUENCE { x INTEGER, y INTEGER, hash OCTET STRING, ciphertext OCTET STRING }`` (the
C1C3C2 order), as OpenSSL writes and reads it.
"""

from __future__ import annotations

import functools
from typing import Any

from signcore import ec
from signcore._internal import evp, libcrypto
from signcore._internal.keybase import PrivateKey, PublicKey
from signcore.algorithms import DEFAULT_SM2_ID, KeyType, SignatureAlgorithm
from signcore.errors import DecryptionError, InvalidKey, InvalidSignature
from signcore.hashes import sm3

# SubjectPublicKeyInfo { id-ecPublicKey, sm2p256v1 } followed by the BIT STRING header.
_SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a811ccf5501822d034200")
# PrivateKeyInfo { 0, { id-ecPublicKey, sm2p256v1 }, OCTET STRING { ECPrivateKey { 1, d } } }.
_PKCS8_PREFIX = bytes.fromhex(
    "3041020100301306072a8648ce3d020106082a811ccf5501822d04273025020101" "0420"
)
_CURVE_PARAMS = b"".join(
    v.to_bytes(32, "big") for v in (ec.A, ec.B, ec.GX, ec.GY)
)
MAX_SIGNATURE_SIZE = 72
MAX_ID_BYTES = 8191  # ENTL is a 16-bit count of bits


def compute_z(public_point: bytes, signer_id: bytes = DEFAULT_SM2_ID) -> bytes:
    """Z_A = SM3(ENTL || ID || a || b || xG || yG || xA || yA) (GB/T 32918.2 section 5.5)."""
    if len(signer_id) > MAX_ID_BYTES:
        raise InvalidKey(f"SM2 signer ID longer than {MAX_ID_BYTES} bytes")
    entl = (len(signer_id) * 8).to_bytes(2, "big")
    return sm3(entl + signer_id + _CURVE_PARAMS + public_point[1:])


def _is_one_der_sequence(data: bytes) -> bool:
    """True if ``data`` is exactly one definite-length SEQUENCE, with nothing after it.

    libcrypto's SM2 decryption ignores bytes after the ciphertext structure, which would make
    ciphertexts malleable (any suffix decrypts to the same plaintext).
    """
    if len(data) < 2 or data[0] != 0x30:
        return False
    if data[1] < 0x80:
        return 2 + data[1] == len(data)
    count = data[1] & 0x7F
    if not 1 <= count <= 4 or len(data) < 2 + count:
        return False
    return 2 + count + int.from_bytes(data[2 : 2 + count], "big") == len(data)


@functools.lru_cache(maxsize=2048)
def _key_from_point(encoded: bytes) -> SM2PublicKey:
    decoded = ec.decode_point(encoded)
    return SM2PublicKey(evp.decode_public(_SPKI_PREFIX + decoded.encode()))


class SM2PublicKey(PublicKey):
    """An SM2 public key held as a libcrypto EVP_PKEY."""

    key_type = KeyType.SM2

    def __init__(self, pkey: Any) -> None:
        if not evp.is_a(pkey, b"SM2"):
            raise InvalidKey("not an SM2 key")
        self._pkey = pkey
        self._point = evp.encoded_public_point(pkey)
        if len(self._point) != 65:
            raise InvalidKey("SM2 public key is not an uncompressed affine point")
        self._z: dict[bytes, bytes] = {}

    @classmethod
    def from_point(cls, point: ec.Point | bytes) -> SM2PublicKey:
        """Build a key from a public point (validated: on the curve, not infinity).  Keys
        are immutable, so the same point gives the same (cached) key: a server co-signing for
        many signers rebuilds each joint key on every message otherwise."""
        # A Point object is re-validated too: it may have been built from untrusted integers.
        return _key_from_point(point if isinstance(point, bytes) else point.encode())

    @property
    def key_size(self) -> int:
        return 256

    @property
    def point(self) -> ec.Point:
        return ec.Point(int.from_bytes(self._point[1:33], "big"),
                        int.from_bytes(self._point[33:], "big"))

    @property
    def encoded_point(self) -> bytes:
        """04 || x || y."""
        return self._point

    def z(self, signer_id: bytes = DEFAULT_SM2_ID) -> bytes:
        cached = self._z.get(signer_id)
        if cached is None:
            cached = compute_z(self._point, signer_id)
            if len(self._z) < 16:  # a key sees one or two IDs in practice; bound the cache
                self._z[signer_id] = cached
        return cached

    def digest(self, data: bytes, signer_id: bytes = DEFAULT_SM2_ID) -> bytes:
        """e = SM3(Z_A || M), the value an SM2 signature actually signs."""
        return sm3(self.z(signer_id) + data)

    def verify(
        self,
        signature: bytes,
        data: bytes,
        algorithm: SignatureAlgorithm | None = None,
        *,
        signer_id: bytes = DEFAULT_SM2_ID,
    ) -> None:
        self.verify_digest(signature, self.digest(data, signer_id), algorithm)

    def verify_digest(
        self, signature: bytes, digest: bytes, algorithm: SignatureAlgorithm | None = None
    ) -> None:
        self.resolve_algorithm(algorithm)
        if len(digest) != 32:
            raise InvalidSignature("SM2 digest e must be 32 bytes")
        if not 8 <= len(signature) <= MAX_SIGNATURE_SIZE:
            raise InvalidSignature("SM2 signature has an impossible length")
        be = libcrypto.backend()
        ctx = evp.new_ctx(self._pkey)
        libcrypto.check(be, be.lib.EVP_PKEY_verify_init(ctx), "SM2 verify init")
        # libcrypto rejects non-canonical DER, trailing bytes and r or s outside [1, n-1].
        ok = be.lib.EVP_PKEY_verify(ctx, signature, len(signature), digest, len(digest))
        if ok != 1:
            libcrypto.clear_errors(be)
            raise InvalidSignature("SM2 signature does not verify")

    def encrypt(self, plaintext: bytes) -> bytes:
        """SM2 public-key encryption; returns the GM/T 0009 DER ciphertext (C1C3C2)."""
        if not plaintext:
            raise ValueError("SM2 cannot encrypt an empty message")
        be = libcrypto.backend()
        ctx = evp.new_ctx(self._pkey)
        libcrypto.check(be, be.lib.EVP_PKEY_encrypt_init(ctx), "SM2 encrypt init")
        size = be.ffi.new("size_t *")
        libcrypto.check(be, be.lib.EVP_PKEY_encrypt(ctx, be.ffi.NULL, size, plaintext,
                                                    len(plaintext)), "SM2 encrypt size")
        out = be.ffi.new("unsigned char[]", size[0])
        libcrypto.check(be, be.lib.EVP_PKEY_encrypt(ctx, out, size, plaintext, len(plaintext)),
                        "SM2 encrypt")
        return bytes(be.ffi.buffer(out, size[0]))

    def to_der(self) -> bytes:
        return _SPKI_PREFIX + self._point


class SM2PrivateKey(PrivateKey):
    """An SM2 private key held only inside libcrypto."""

    key_type = KeyType.SM2

    def __init__(self, pkey: Any) -> None:
        if not evp.is_a(pkey, b"SM2"):
            raise InvalidKey("not an SM2 key")
        # libcrypto's SM2 private check enforces d in [1, n-2] (so 1 + d is invertible); the
        # pairwise check recomputes d*G and compares it with the stored public point.
        evp.check_keypair(pkey)
        self._pkey = pkey
        self._public = SM2PublicKey(pkey)

    @classmethod
    def generate(cls) -> SM2PrivateKey:
        return cls(evp.generate(b"SM2"))

    @classmethod
    def from_scalar(cls, d: int) -> SM2PrivateKey:
        """Build a key from its scalar (test vectors, key import); d in [1, n-2]."""
        if not 1 <= d <= ec.N - 2:
            raise InvalidKey("SM2 private key outside [1, n-2]")
        return cls(evp.decode_private(_PKCS8_PREFIX + d.to_bytes(32, "big")))

    def public_key(self) -> SM2PublicKey:
        return self._public

    def sign(
        self,
        data: bytes,
        algorithm: SignatureAlgorithm | None = None,
        *,
        signer_id: bytes = DEFAULT_SM2_ID,
    ) -> bytes:
        return self.sign_digest(self._public.digest(data, signer_id), algorithm)

    def sign_digest(self, digest: bytes, algorithm: SignatureAlgorithm | None = None) -> bytes:
        self._public.resolve_algorithm(algorithm)
        if len(digest) != 32:
            raise ValueError("SM2 digest e must be 32 bytes")
        be = libcrypto.backend()
        ctx = evp.new_ctx(self._pkey)
        libcrypto.check(be, be.lib.EVP_PKEY_sign_init(ctx), "SM2 sign init")
        sig = be.ffi.new("unsigned char[80]")
        size = be.ffi.new("size_t *", 80)
        libcrypto.check(be, be.lib.EVP_PKEY_sign(ctx, sig, size, digest, 32), "SM2 sign")
        return bytes(be.ffi.buffer(sig, size[0]))

    def decrypt(self, ciphertext: bytes) -> bytes:
        """Decrypt a GM/T 0009 DER ciphertext; DecryptionError on any failure."""
        if not _is_one_der_sequence(ciphertext):
            raise DecryptionError("malformed SM2 ciphertext (not one DER SEQUENCE)")
        be = libcrypto.backend()
        ctx = evp.new_ctx(self._pkey)
        libcrypto.check(be, be.lib.EVP_PKEY_decrypt_init(ctx), "SM2 decrypt init")
        size = be.ffi.new("size_t *")
        if be.lib.EVP_PKEY_decrypt(ctx, be.ffi.NULL, size, ciphertext, len(ciphertext)) <= 0:
            libcrypto.clear_errors(be)
            raise DecryptionError("malformed SM2 ciphertext")
        out = be.ffi.new("unsigned char[]", max(size[0], 1))
        if be.lib.EVP_PKEY_decrypt(ctx, out, size, ciphertext, len(ciphertext)) <= 0:
            libcrypto.clear_errors(be)
            raise DecryptionError("SM2 decryption failed (wrong key or tampered ciphertext)")
        try:
            return bytes(be.ffi.buffer(out, size[0]))
        finally:
            be.lib.OPENSSL_cleanse(out, size[0])

    def to_der(self, password: bytes | None = None) -> bytes:
        return evp.encode(self._pkey, private=True, der=True, password=password)

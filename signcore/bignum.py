"""Modular exponentiation with a secret exponent, on libcrypto's constant-time ladder.

For protocols that hold an RSA private exponent (or a share of one) outside a key object:
CPython's ``pow`` uses a sliding window whose timing follows the exponent's bits, so split RSA
signing (keysplit) computes its partial signatures here instead.
"""

from __future__ import annotations

from typing import Any

from signcore._internal import libcrypto

MAX_BITS = 16384


def _bn(be: libcrypto.Backend, value: int, *, secret: bool = False) -> Any:
    raw = value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")
    bn = be.lib.BN_bin2bn(raw, len(raw), be.ffi.NULL)
    if bn == be.ffi.NULL:
        raise MemoryError("BN_bin2bn")
    if secret:
        be.lib.BN_set_flags(bn, libcrypto.BN_FLG_CONSTTIME)
    return be.ffi.gc(bn, be.lib.BN_clear_free)


def mod_exp_secret(base: int, exponent: int, modulus: int) -> int:
    """``base ** exponent % modulus`` for a secret ``exponent`` and an odd ``modulus``."""
    if modulus <= 1 or modulus % 2 == 0 or modulus.bit_length() > MAX_BITS:
        raise ValueError("the modulus must be odd, greater than 1 and at most 16384 bits")
    if not 0 <= base < modulus or exponent < 0:
        raise ValueError("base must be in [0, modulus) and the exponent non-negative")
    be = libcrypto.backend()
    ctx = be.ffi.gc(be.lib.BN_CTX_new(), be.lib.BN_CTX_free)
    result = be.ffi.gc(be.lib.BN_new(), be.lib.BN_clear_free)
    libcrypto.check(be, be.lib.BN_mod_exp_mont_consttime(
        result, _bn(be, base), _bn(be, exponent, secret=True), _bn(be, modulus), ctx,
        be.ffi.NULL), "BN_mod_exp_mont_consttime")
    size = (modulus.bit_length() + 7) // 8
    out = be.ffi.new("unsigned char[]", size)
    if be.lib.BN_bn2binpad(result, out, size) != size:
        raise libcrypto.failure(be, "BN_bn2binpad")
    return int.from_bytes(bytes(out), "big")

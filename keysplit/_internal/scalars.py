"""Scalars mod n of the SM2 group: random choice, encoding, and the arithmetic of the protocol.

Point multiplications by these scalars happen in libcrypto (``signcore.ec``).  The modular
arithmetic on scalars runs on CPython integers; inversion uses Fermat's little theorem, whose
square-and-multiply follows the bits of the public exponent n - 2, not of the secret.  CPython's
bignum arithmetic is not designed to be constant-time: that residual timing channel is part of
the threat model in ``keysplit/pin.py``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from signcore import ec

N = ec.N
SCALAR_SIZE = 32

RandomScalar = Callable[[], int]


def random_scalar() -> int:
    """Uniform in [1, n-1] from the OS CSPRNG."""
    return secrets.randbelow(N - 1) + 1


def inverse(x: int) -> int:
    if x % N == 0:
        raise ZeroDivisionError("0 has no inverse mod n")
    return pow(x, N - 2, N)


def encode(x: int) -> bytes:
    return x.to_bytes(SCALAR_SIZE, "big")


def decode(data: bytes) -> int:
    return int.from_bytes(data, "big")

"""SM2 signing with a caller-chosen nonce k -- TEST ONLY.

The library never does scalar arithmetic on secrets in Python (DESIGN.md section 3): its SM2
signatures come from libcrypto with a fresh random k.  Known-answer tests need a fixed k to
reproduce a published (r, s), so this module does GB/T 32918.2 section 6.1 by hand: k*G through
``signcore.ec.mul_base`` (libcrypto), the rest with Python modular arithmetic.
"""

from __future__ import annotations

from signcore import ec


class FixedKError(ValueError):
    """The chosen k gives r = 0, r + k = n or s = 0: the standard says pick another k."""


def sign_digest_with_k(d: int, e: bytes | int, k: int) -> tuple[int, int]:
    """(r, s) of the SM2 signature of digest ``e`` under private scalar ``d`` with nonce ``k``.

    r = (e + x1) mod n where (x1, y1) = k*G;  s = (1 + d)^-1 * (k - r*d) mod n.
    """
    if not 1 <= d <= ec.N - 2:
        raise ValueError("d outside [1, n-2]")
    if not 1 <= k <= ec.N - 1:
        raise ValueError("k outside [1, n-1]")
    e_int = int.from_bytes(e, "big") if isinstance(e, bytes) else e
    x1 = ec.mul_base(k).x
    r = (e_int + x1) % ec.N
    if r == 0 or r + k == ec.N:
        raise FixedKError("r = 0 or r + k = n")
    s = pow(1 + d, -1, ec.N) * (k - r * d) % ec.N
    if s == 0:
        raise FixedKError("s = 0")
    return r, s

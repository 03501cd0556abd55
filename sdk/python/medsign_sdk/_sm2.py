"""SM2 (GB/T 32918) in pure Python for the SDK: curve arithmetic, Z and e, signatures with a
private scalar (the phone's device key), DER ``(r, s)``, point encoding with validation, and the
phone's steps of the two-party protocol (keysplit/README.md sections 4 and 5).

SM3 and HMAC-SM3 come from ``cryptography``; everything on the curve is here, because
``cryptography`` has no SM2.

Threat model, honestly:

- This code is **not constant time**.  Point multiplication uses windows whose table lookups and
  additions depend on the scalar's digits, and CPython integers take data-dependent time.  A
  local attacker who can time this process precisely (same machine, many observations) may learn
  bits of the scalars it handles: the device key, the phone's share ``d1`` and the nonces
  ``k1``.  Use it where that attacker is not in the threat model (a hospital workstation or a
  test rig), or use the mini-program / a native implementation on a shared host.
- The phone's share ``d1`` only exists decrypted in memory while one operation runs: it is
  opened with the unwrap key the server releases after a PIN check, used for the signatures of
  that session, and dropped.  Python cannot wipe memory, so "dropped" means unreferenced, not
  zeroed.
- ``k1`` is fresh and uniform per digest and per round (rejection sampling from ``secrets``),
  never stored.  Every point received from the server is validated (on the curve, not the point
  at infinity: the curve has cofactor 1), every scalar is range checked, and every finished
  signature is verified against the joint key before it is sent.
- The device key is an ordinary SM2 key kept by the caller's storage adapter: whoever reads
  that storage can impersonate the phone (but still needs the PIN, checked by the server, to
  sign: the share is wrapped under a key only the server can release).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as _hmac

P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
A = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC
B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
GX = 0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7
GY = 0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0
DEFAULT_ID = b"1234567812345678"  # GM/T 0009
POINT_SIZE = 65
SCALAR_SIZE = 32
MAX_SIGNATURE_SIZE = 72
#: SubjectPublicKeyInfo of an SM2 key up to its BIT STRING: id-ecPublicKey with the SM2 curve.
SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a811ccf5501822d034200")

Affine = tuple[int, int]
_Jacobian = tuple[int, int, int]  # Z = 0: the point at infinity
_INFINITY: _Jacobian = (1, 1, 0)
_WINDOW = 4


class PointError(ValueError):
    """Bytes that are not an uncompressed point of the SM2 group."""


# --- hashes -----------------------------------------------------------------------------------


def sm3(data: bytes) -> bytes:
    digest = hashes.Hash(hashes.SM3())
    digest.update(data)
    return digest.finalize()


def hmac_sm3(key: bytes, data: bytes) -> bytes:
    mac = _hmac.HMAC(key, hashes.SM3())
    mac.update(data)
    return mac.finalize()


# --- scalars ----------------------------------------------------------------------------------


def random_scalar() -> int:
    """Uniform in [1, n-1] from the OS CSPRNG."""
    return secrets.randbelow(N - 1) + 1


def inverse(x: int) -> int:
    if x % N == 0:
        raise ZeroDivisionError("0 has no inverse mod n")
    return pow(x, N - 2, N)


def encode_scalar(x: int) -> bytes:
    return x.to_bytes(SCALAR_SIZE, "big")


def decode_scalar(data: bytes) -> int:
    return int.from_bytes(data, "big")


# --- curve arithmetic (Jacobian coordinates, a = -3) ------------------------------------------


def _double(p: _Jacobian) -> _Jacobian:
    x, y, z = p
    if z == 0 or y == 0:
        return _INFINITY
    delta = z * z % P
    gamma = y * y % P
    beta = x * gamma % P
    alpha = 3 * (x - delta) * (x + delta) % P
    x3 = (alpha * alpha - 8 * beta) % P
    z3 = ((y + z) * (y + z) - gamma - delta) % P
    y3 = (alpha * (4 * beta - x3) - 8 * gamma * gamma) % P
    return x3, y3, z3


def _add(p: _Jacobian, q: _Jacobian) -> _Jacobian:
    x1, y1, z1 = p
    x2, y2, z2 = q
    if z1 == 0:
        return q
    if z2 == 0:
        return p
    z1z1, z2z2 = z1 * z1 % P, z2 * z2 % P
    u1, u2 = x1 * z2z2 % P, x2 * z1z1 % P
    s1, s2 = y1 * z2 * z2z2 % P, y2 * z1 * z1z1 % P
    if u1 == u2:
        return _double(p) if s1 == s2 else _INFINITY
    h = (u2 - u1) % P
    i = 4 * h * h % P
    j = h * i % P
    r = 2 * (s2 - s1) % P
    v = u1 * i % P
    x3 = (r * r - j - 2 * v) % P
    y3 = (r * (v - x3) - 2 * s1 * j) % P
    z3 = ((z1 + z2) * (z1 + z2) - z1z1 - z2z2) * h % P
    return x3, y3, z3


def _add_affine(p: _Jacobian, q: Affine) -> _Jacobian:
    """p + q where q is affine (Z = 1): the cheaper mixed addition."""
    x1, y1, z1 = p
    x2, y2 = q
    if z1 == 0:
        return x2, y2, 1
    z1z1 = z1 * z1 % P
    u2 = x2 * z1z1 % P
    s2 = y2 * z1 * z1z1 % P
    h = (u2 - x1) % P
    r = 2 * (s2 - y1) % P
    if h == 0:
        return _double(p) if r == 0 else _INFINITY
    hh = h * h % P
    i = 4 * hh % P
    j = h * i % P
    v = x1 * i % P
    x3 = (r * r - j - 2 * v) % P
    y3 = (r * (v - x3) - 2 * y1 * j) % P
    z3 = ((z1 + h) * (z1 + h) - z1z1 - hh) % P
    return x3, y3, z3


def _affine(p: _Jacobian, *, public: bool = False) -> Affine | None:
    """Affine coordinates; ``public`` (multiples of G only) allows the faster inversion whose
    running time depends on the value."""
    x, y, z = p
    if z == 0:
        return None
    zinv = pow(z, -1, P) if public else pow(z, P - 2, P)
    zinv2 = zinv * zinv % P
    return x * zinv2 % P, y * zinv2 * zinv % P


_BASE_TABLE: list[list[Affine]] = []


def _base_table() -> list[list[Affine]]:
    """table[i][j-1] = j * 16^i * G, affine: mul_base adds one entry per non-zero digit."""
    if not _BASE_TABLE:
        rows = []
        base: _Jacobian = (GX, GY, 1)
        for _ in range(256 // _WINDOW):
            row, acc = [], base
            for _j in range(1, 1 << _WINDOW):
                point = _affine(acc, public=True)
                assert point is not None
                row.append(point)
                acc = _add(acc, base)
            rows.append(row)
            for _k in range(_WINDOW):
                base = _double(base)
        _BASE_TABLE.extend(rows)
    return _BASE_TABLE


def mul_base(k: int) -> Affine | None:
    """k*G (None for the point at infinity)."""
    k %= N
    table = _base_table()
    acc = _INFINITY
    for i in range(256 // _WINDOW):
        digit = (k >> (_WINDOW * i)) & ((1 << _WINDOW) - 1)
        if digit:
            acc = _add_affine(acc, table[i][digit - 1])
    return _affine(acc)


def mul(point: Affine, k: int) -> Affine | None:
    """k*point with a fixed 4-bit window (None for the point at infinity)."""
    k %= N
    base: _Jacobian = (point[0], point[1], 1)
    multiples = [_INFINITY, base]
    for _ in range(2, 1 << _WINDOW):
        multiples.append(_add(multiples[-1], base))
    acc = _INFINITY
    for shift in range(256 - _WINDOW, -1, -_WINDOW):
        for _ in range(_WINDOW):
            acc = _double(acc)
        digit = (k >> shift) & ((1 << _WINDOW) - 1)
        if digit:
            acc = _add(acc, multiples[digit])
    return _affine(acc)


def add(p: Affine | None, q: Affine | None) -> Affine | None:
    if p is None:
        return q
    if q is None:
        return p
    return _affine(_add_affine((p[0], p[1], 1), q))


def on_curve(point: Affine) -> bool:
    x, y = point
    return 0 <= x < P and 0 <= y < P and (y * y - (x * x * x + A * x + B)) % P == 0


def encode_point(point: Affine) -> bytes:
    return b"\x04" + point[0].to_bytes(32, "big") + point[1].to_bytes(32, "big")


def decode_point(data: bytes) -> Affine:
    """An uncompressed point, checked: 65 bytes, 04 prefix, coordinates < p, on the curve."""
    if len(data) != POINT_SIZE or data[0] != 4:
        raise PointError("an SM2 point is 65 bytes: 04 || x || y")
    point = int.from_bytes(data[1:33], "big"), int.from_bytes(data[33:], "big")
    if not on_curve(point):
        raise PointError("the point is not on the SM2 curve")
    return point


def public_point(d: int) -> bytes:
    """The encoded public point d*G of a private scalar."""
    point = mul_base(d)
    if point is None:
        raise ValueError("the private scalar is 0 mod n")
    return encode_point(point)


def spki_der(point: bytes) -> bytes:
    """The SubjectPublicKeyInfo DER of an SM2 public point (what the appliance stores)."""
    decode_point(point)
    return SPKI_PREFIX + point


# --- Z, e and signatures ----------------------------------------------------------------------


def compute_z(point: bytes, signer_id: bytes = DEFAULT_ID) -> bytes:
    """Z = SM3(ENTL || ID || a || b || xG || yG || xA || yA)."""
    if len(signer_id) * 8 > 0xFFFF:
        raise ValueError("the signer ID is too long")
    decode_point(point)
    curve = b"".join(v.to_bytes(32, "big") for v in (A, B, GX, GY))
    return sm3((len(signer_id) * 8).to_bytes(2, "big") + signer_id + curve + point[1:])


def message_digest(point: bytes, message: bytes, signer_id: bytes = DEFAULT_ID) -> bytes:
    """e = SM3(Z || M), what an SM2 signature signs."""
    return sm3(compute_z(point, signer_id) + message)


def encode_signature(r: int, s: int) -> bytes:
    """DER SEQUENCE { INTEGER r, INTEGER s } in its canonical (shortest) form."""
    def integer(value: int) -> bytes:
        body = value.to_bytes(value.bit_length() // 8 + 1, "big")  # a leading 00 if top bit set
        return b"\x02" + bytes([len(body)]) + body

    if not (0 < r < N and 0 < s < N):
        raise ValueError("r and s must be in [1, n-1]")
    content = integer(r) + integer(s)
    return b"\x30" + bytes([len(content)]) + content


def decode_signature(der: bytes) -> tuple[int, int]:
    """(r, s) of a strict DER signature; ValueError for anything non-canonical."""
    if not 8 <= len(der) <= MAX_SIGNATURE_SIZE or der[0] != 0x30 or der[1] != len(der) - 2:
        raise ValueError("not a DER SEQUENCE of the right length")
    values, offset = [], 2
    for _ in range(2):
        if offset + 2 > len(der) or der[offset] != 0x02:
            raise ValueError("expected an INTEGER")
        size = der[offset + 1]
        body = der[offset + 2: offset + 2 + size]
        if size == 0 or len(body) != size or body[0] & 0x80 or (
                size > 1 and body[0] == 0 and not body[1] & 0x80):
            raise ValueError("a non-canonical INTEGER")
        values.append(int.from_bytes(body, "big"))
        offset += 2 + size
    if offset != len(der):
        raise ValueError("trailing bytes after the signature")
    r, s = values
    if not (0 < r < N and 0 < s < N):
        raise ValueError("r and s must be in [1, n-1]")
    return r, s


def new_private_key() -> int:
    """A private scalar in [1, n-2] (SM2 needs 1 + d invertible)."""
    return secrets.randbelow(N - 2) + 1


def sign_digest(d: int, e: bytes, *, k: int | None = None) -> bytes:
    """The DER SM2 signature of the digest e with the private scalar d (``k`` for tests)."""
    if not 0 < d < N - 1:
        raise ValueError("the private scalar must be in [1, n-2]")
    e_int = int.from_bytes(e, "big")
    factor = inverse(1 + d)
    while True:
        nonce = k if k is not None else random_scalar()
        point = mul_base(nonce)
        assert point is not None
        r = (e_int + point[0]) % N
        if r == 0 or r + nonce == N:
            if k is not None:
                raise ValueError("this k gives r = 0 or r + k = n")
            continue
        s = factor * (nonce - r * d) % N
        if s == 0:
            if k is not None:
                raise ValueError("this k gives s = 0")
            continue
        return encode_signature(r, s)


def sign(d: int, message: bytes, signer_id: bytes = DEFAULT_ID) -> bytes:
    """The DER SM2-with-SM3 signature of ``message`` (e = SM3(Z || M)) with the key d."""
    return sign_digest(d, message_digest(public_point(d), message, signer_id))


def verify_digest(point: bytes, e: bytes, signature: bytes) -> bool:
    """Whether a DER signature verifies for the digest e under the public point."""
    try:
        r, s = decode_signature(signature)
        public = decode_point(point)
    except ValueError:
        return False
    t = (r + s) % N
    if t == 0:
        return False
    x1y1 = add(mul_base(s), mul(public, t))
    return x1y1 is not None and (int.from_bytes(e, "big") + x1y1[0]) % N == r


def verify(point: bytes, message: bytes, signature: bytes,
           signer_id: bytes = DEFAULT_ID) -> bool:
    try:
        e = message_digest(point, message, signer_id)
    except ValueError:
        return False
    return verify_digest(point, e, signature)


# --- the phone's steps of two-party SM2 (keysplit/README.md sections 4 and 5) -------------------


def keygen_commit(d1: int) -> bytes:
    """P1 = d1^-1 * G, encoded: what the phone sends in keygen.commit."""
    point = mul_base(inverse(d1))
    assert point is not None
    return encode_point(point)


def cosign_commit(k1: Sequence[int]) -> list[bytes]:
    """Q1 = k1 * G per digest, encoded: what the phone sends in cosign.commit."""
    out = []
    for k in k1:
        point = mul_base(k)
        if point is None:
            raise ValueError("k1 must be in [1, n-1]")
        out.append(encode_point(point))
    return out


def cosign_finish(d1: int, k1: int, r: int, s2: int, s3: int) -> int | None:
    """s = d1*k1*s2 + d1*s3 - r (mod n), or None when the round must be retried (s = 0 or
    s = n - r, SM2's own retry cases)."""
    for value in (r, s2, s3):
        if not 0 < value < N:
            raise ValueError("a scalar from the server is out of range")
    s = (d1 * k1 * s2 + d1 * s3 - r) % N
    if s == 0 or (s + r) % N == 0:
        return None
    return s

"""Point arithmetic on the SM2 curve (sm2p256v1), for protocols built on SM2 such as keysplit.

Threat model: scalars passed to :func:`mul_base` and :func:`mul` may be secret (key shares,
nonces).  Both go through libcrypto's ``EC_POINT_mul`` with a single scalar, which OpenSSL 3
routes to its constant-time Montgomery ladder; a double-scalar ``k1*G + k2*P`` call would take the
variable-time wNAF path, so callers do two multiplications and an :func:`add` instead.  The
Python integers that carry scalars into libcrypto are not constant-time objects; they are
converted once per call and never branched on here.  Every point that comes from outside is
decoded with :func:`decode_point`, which rejects points off the curve and the point at infinity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from signcore._internal import libcrypto
from signcore.errors import InvalidKey

# GB/T 32918.5 recommended curve parameters (checked against `openssl ecparam -name SM2`).
P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
A = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC
B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
GX = 0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7
GY = 0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0
COORD_SIZE = 32


@dataclass(frozen=True)
class Point:
    """An affine point of the SM2 group other than infinity.

    Points that come from outside are built with :func:`decode_point`; every operation below
    re-validates its inputs when it hands them to libcrypto (which rejects off-curve points).
    """

    x: int
    y: int

    def encode(self) -> bytes:
        """Uncompressed SEC1 encoding 04 || x || y."""
        if not (0 <= self.x < P and 0 <= self.y < P):
            raise InvalidKey("point coordinates outside the field [0, p-1]")
        return b"\x04" + self.x.to_bytes(COORD_SIZE, "big") + self.y.to_bytes(COORD_SIZE, "big")

    def __repr__(self) -> str:
        return f"Point(x={self.x:064x}, y={self.y:064x})"


G = Point(GX, GY)


def _ctx() -> tuple[libcrypto.Backend, Any]:
    be = libcrypto.backend()
    bn_ctx = be.lib.BN_CTX_new()
    if bn_ctx == be.ffi.NULL:
        raise MemoryError("BN_CTX_new")
    return be, be.ffi.gc(bn_ctx, be.lib.BN_CTX_free)


def _new_point(be: libcrypto.Backend) -> Any:
    point = be.lib.EC_POINT_new(be.sm2_group)
    if point == be.ffi.NULL:
        raise MemoryError("EC_POINT_new")
    return be.ffi.gc(point, be.lib.EC_POINT_free)


def _to_c(be: libcrypto.Backend, bn_ctx: Any, point: Point) -> Any:
    c_point = _new_point(be)
    data = point.encode()
    libcrypto.check(
        be, be.lib.EC_POINT_oct2point(be.sm2_group, c_point, data, len(data), bn_ctx),
        "point not on the SM2 curve", InvalidKey,
    )
    return c_point


def _from_c(be: libcrypto.Backend, bn_ctx: Any, c_point: Any) -> Point:
    if be.lib.EC_POINT_is_at_infinity(be.sm2_group, c_point):
        raise InvalidKey("the result is the point at infinity")
    buf = be.ffi.new("unsigned char[65]")
    size = be.lib.EC_POINT_point2oct(
        be.sm2_group, c_point, libcrypto.POINT_CONVERSION_UNCOMPRESSED, buf, 65, bn_ctx
    )
    if size != 65:
        raise libcrypto.failure(be, "EC_POINT_point2oct")
    raw = bytes(buf)
    return Point(int.from_bytes(raw[1:33], "big"), int.from_bytes(raw[33:], "big"))


def _scalar(be: libcrypto.Backend, k: int) -> Any:
    if not 0 < k < N:
        raise InvalidKey("scalar out of range [1, n-1]")
    raw = k.to_bytes(COORD_SIZE, "big")
    bn = be.lib.BN_bin2bn(raw, len(raw), be.ffi.NULL)
    if bn == be.ffi.NULL:
        raise MemoryError("BN_bin2bn")
    be.lib.BN_set_flags(bn, libcrypto.BN_FLG_CONSTTIME)
    return be.ffi.gc(bn, be.lib.BN_clear_free)


def decode_point(data: bytes) -> Point:
    """Decode an uncompressed (04) or compressed (02/03) SM2 point; reject anything invalid."""
    if len(data) not in (33, 65) or data[0] not in (2, 3, 4) or (len(data) == 65) != (data[0] == 4):
        raise InvalidKey("not an SM2 point encoding (expected 65 bytes 04||x||y or 33 compressed)")
    be, bn_ctx = _ctx()
    c_point = _new_point(be)
    ok = be.lib.EC_POINT_oct2point(be.sm2_group, c_point, data, len(data), bn_ctx)
    if ok <= 0 or be.lib.EC_POINT_is_on_curve(be.sm2_group, c_point, bn_ctx) != 1:
        libcrypto.clear_errors(be)
        raise InvalidKey("point not on the SM2 curve")
    return _from_c(be, bn_ctx, c_point)


def mul_base(k: int) -> Point:
    """k*G with a constant-time ladder; k in [1, n-1]."""
    be, bn_ctx = _ctx()
    result = _new_point(be)
    libcrypto.check(
        be, be.lib.EC_POINT_mul(be.sm2_group, result, _scalar(be, k), be.ffi.NULL, be.ffi.NULL,
                                bn_ctx), "k*G")
    return _from_c(be, bn_ctx, result)


def mul(point: Point, k: int) -> Point:
    """k*P with a constant-time ladder; k in [1, n-1]."""
    be, bn_ctx = _ctx()
    result = _new_point(be)
    libcrypto.check(
        be, be.lib.EC_POINT_mul(be.sm2_group, result, be.ffi.NULL, _to_c(be, bn_ctx, point),
                                _scalar(be, k), bn_ctx), "k*P")
    return _from_c(be, bn_ctx, result)


def add(p: Point, q: Point) -> Point:
    """P + Q (public points); raises InvalidKey if the sum is the point at infinity."""
    be, bn_ctx = _ctx()
    result = _new_point(be)
    libcrypto.check(
        be, be.lib.EC_POINT_add(be.sm2_group, result, _to_c(be, bn_ctx, p), _to_c(be, bn_ctx, q),
                                bn_ctx), "P+Q")
    return _from_c(be, bn_ctx, result)


def neg(p: Point) -> Point:
    """-P."""
    return Point(p.x, (P - p.y) % P)

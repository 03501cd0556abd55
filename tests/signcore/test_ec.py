"""Point arithmetic on the SM2 curve (signcore.ec), checked against the curve equation."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signcore import ec
from signcore.errors import InvalidKey

SCALARS = st.integers(min_value=1, max_value=ec.N - 1)


def _on_curve(p: ec.Point) -> bool:
    return (p.y * p.y - (p.x**3 + ec.A * p.x + ec.B)) % ec.P == 0


def _compressed(p: ec.Point) -> bytes:
    return bytes([2 + (p.y & 1)]) + p.x.to_bytes(32, "big")


def test_curve_constants() -> None:
    # a = p - 3, G on the curve, n*G = infinity (so (n-1)*G = -G), n is below p
    assert ec.A == ec.P - 3
    assert _on_curve(ec.G)
    assert ec.Point(ec.GX, ec.GY) == ec.G
    assert ec.N < ec.P
    assert ec.mul_base(ec.N - 1) == ec.neg(ec.G)


def test_mul_base_small_multiples() -> None:
    assert ec.mul_base(1) == ec.G
    two = ec.mul_base(2)
    assert two == ec.add(ec.G, ec.G)
    assert two != ec.G
    assert _on_curve(two)
    assert ec.mul_base(3) == ec.add(two, ec.G)


@settings(max_examples=25, deadline=None)
@given(SCALARS)
def test_mul_of_g_equals_mul_base(k: int) -> None:
    point = ec.mul_base(k)
    assert _on_curve(point)
    assert ec.mul(ec.G, k) == point


@settings(max_examples=25, deadline=None)
@given(SCALARS, SCALARS)
def test_scalar_arithmetic_homomorphism(a: int, b: int) -> None:
    pa, pb = ec.mul_base(a), ec.mul_base(b)
    if (a + b) % ec.N:
        assert ec.add(pa, pb) == ec.mul_base((a + b) % ec.N)
        assert ec.add(pa, pb) == ec.add(pb, pa)
    else:
        with pytest.raises(InvalidKey):
            ec.add(pa, pb)
    assert ec.mul(pa, b) == ec.mul(pb, a) == ec.mul_base(a * b % ec.N)


@settings(max_examples=20, deadline=None)
@given(SCALARS)
def test_neg_identities(k: int) -> None:
    p = ec.mul_base(k)
    minus = ec.neg(p)
    assert _on_curve(minus)
    assert minus == ec.mul_base(ec.N - k)
    assert ec.neg(minus) == p
    assert minus.x == p.x
    assert minus.y != p.y
    with pytest.raises(InvalidKey, match="infinity"):
        ec.add(p, minus)
    with pytest.raises(InvalidKey, match="infinity"):
        ec.add(minus, p)


def test_add_and_double_associativity() -> None:
    p, q, r = ec.mul_base(5), ec.mul_base(7), ec.mul_base(11)
    assert ec.add(ec.add(p, q), r) == ec.add(p, ec.add(q, r)) == ec.mul_base(23)
    assert ec.add(p, p) == ec.mul(p, 2)


@pytest.mark.parametrize("k", [0, -1, ec.N, ec.N + 1, 2**256])
def test_scalars_out_of_range_rejected(k: int) -> None:
    with pytest.raises(InvalidKey):
        ec.mul_base(k)
    with pytest.raises(InvalidKey):
        ec.mul(ec.G, k)


def test_point_encode_and_decode_round_trip() -> None:
    p = ec.mul_base(0x1234)
    raw = p.encode()
    assert len(raw) == 65
    assert raw[0] == 4
    assert int.from_bytes(raw[1:33], "big") == p.x
    assert ec.decode_point(raw) == p


@settings(max_examples=20, deadline=None)
@given(SCALARS)
def test_compressed_points_decode(k: int) -> None:
    p = ec.mul_base(k)
    assert ec.decode_point(_compressed(p)) == p
    # the other prefix picks the other root: -P
    flipped = bytes([5 - _compressed(p)[0]]) + _compressed(p)[1:]
    assert ec.decode_point(flipped) == ec.neg(p)


def test_decode_rejects_off_curve_points() -> None:
    g = ec.G
    with pytest.raises(InvalidKey):
        ec.decode_point(ec.Point(g.x, g.y ^ 1).encode())
    with pytest.raises(InvalidKey):
        ec.decode_point(b"\x04" + bytes(64))  # (0, 0) is not on the curve
    # an x with no square root on the curve: find one, then it must not decompress
    x = 1
    while pow((x**3 + ec.A * x + ec.B) % ec.P, (ec.P - 1) // 2, ec.P) == 1:
        x += 1
    with pytest.raises(InvalidKey):
        ec.decode_point(b"\x02" + x.to_bytes(32, "big"))


def _point_with_small_x() -> ec.Point:
    x = 1
    while True:
        rhs = (x**3 + ec.A * x + ec.B) % ec.P
        y = pow(rhs, (ec.P + 1) // 4, ec.P)  # p = 3 mod 4
        if y * y % ec.P == rhs:
            return ec.Point(x, y)
        x += 1


def test_decode_rejects_coordinates_not_reduced() -> None:
    p = _point_with_small_x()
    assert ec.decode_point(p.encode()) == p
    unreduced_x = (p.x + ec.P).to_bytes(32, "big")  # same residue, still 32 bytes
    with pytest.raises(InvalidKey):
        ec.decode_point(b"\x04" + unreduced_x + p.y.to_bytes(32, "big"))
    with pytest.raises(InvalidKey):
        ec.decode_point(bytes([2 + (p.y & 1)]) + unreduced_x)
    with pytest.raises(InvalidKey):
        ec.decode_point(b"\x02" + ec.P.to_bytes(32, "big"))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00",  # the point at infinity
        b"\x04",
        ec.G.encode()[:-1],
        ec.G.encode() + b"\x00",
        _compressed(ec.G)[:-1],
        b"\x04" + ec.G.encode()[1:33],  # 33 bytes with the uncompressed prefix
        b"\x02" + ec.G.encode()[1:],  # 65 bytes with a compressed prefix
        b"\x06" + ec.G.encode()[1:],  # hybrid encodings are refused
        b"\x07" + ec.G.encode()[1:],
        b"\x05" + ec.G.encode()[1:33],
    ],
    ids=lambda d: d[:2].hex() + f"-{len(d)}",
)
def test_decode_rejects_bad_encodings(data: bytes) -> None:
    with pytest.raises(InvalidKey):
        ec.decode_point(data)


@pytest.mark.parametrize(
    "point",
    [ec.Point(1, 2), ec.Point(ec.GX, ec.GY + 1), ec.Point(-1, ec.GY), ec.Point(ec.GX, ec.P + ec.GY),
     ec.Point(2**300, 5)],
    ids=["off-curve", "off-by-one", "negative", "unreduced", "huge"],
)
def test_operations_reject_invalid_point_objects(point: ec.Point) -> None:
    with pytest.raises(InvalidKey):
        ec.mul(point, 3)
    with pytest.raises(InvalidKey):
        ec.add(point, ec.G)
    with pytest.raises(InvalidKey):
        ec.add(ec.G, point)


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=0, max_size=70))
def test_decode_random_bytes_never_crashes(data: bytes) -> None:
    try:
        p = ec.decode_point(data)
    except InvalidKey:
        return
    assert _on_curve(p)


def test_point_repr_is_hex() -> None:
    assert f"{ec.GX:064x}" in repr(ec.G)

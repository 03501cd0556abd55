"""signcore.bignum.mod_exp_secret: libcrypto's constant-time exponentiation agrees with ``pow``,
and its argument checks refuse what BN_mod_exp_mont_consttime cannot do (even moduli)."""

from __future__ import annotations

import secrets

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signcore.bignum import MAX_BITS, mod_exp_secret


def _odd(bits: int) -> int:
    return secrets.randbits(bits) | (1 << (bits - 1)) | 1


@st.composite
def _odd_moduli(draw: st.DrawFn, bits: int = 2048) -> int:
    value = draw(st.integers(min_value=1 << (bits - 1), max_value=(1 << bits) - 1))
    return value | 1


@st.composite
def _cases(draw: st.DrawFn) -> tuple[int, int, int]:
    modulus = draw(_odd_moduli())
    base = draw(st.integers(min_value=0, max_value=modulus - 1))
    exponent = draw(st.integers(min_value=0, max_value=(1 << 2048) - 1))
    return base, exponent, modulus


@settings(max_examples=60)
@given(_cases())
def test_matches_pow_2048(case: tuple[int, int, int]) -> None:
    base, exponent, modulus = case
    assert mod_exp_secret(base, exponent, modulus) == pow(base, exponent, modulus)


@settings(max_examples=60)
@given(modulus=st.integers(min_value=3, max_value=1 << 300).map(lambda m: m | 1),
       data=st.data())
def test_matches_pow_small_and_odd_sizes(modulus: int, data: st.DataObject) -> None:
    """Moduli of every bit length (not only whole bytes), exponents larger than the modulus."""
    base = data.draw(st.integers(min_value=0, max_value=modulus - 1))
    exponent = data.draw(st.integers(min_value=0, max_value=1 << 600))
    assert mod_exp_secret(base, exponent, modulus) == pow(base, exponent, modulus)


def test_random_rsa_sized() -> None:
    for bits in (2048, 3072, 4096):
        modulus = _odd(bits)
        base, exponent = secrets.randbelow(modulus), secrets.randbits(bits)
        assert mod_exp_secret(base, exponent, modulus) == pow(base, exponent, modulus)


def test_largest_allowed_modulus() -> None:
    modulus = _odd(MAX_BITS)
    base, exponent = secrets.randbelow(modulus), secrets.randbits(64)
    assert mod_exp_secret(base, exponent, modulus) == pow(base, exponent, modulus)


def test_result_with_leading_zero_bytes() -> None:
    """A result much shorter than the modulus comes back as the right integer."""
    modulus = _odd(2048)
    assert mod_exp_secret(2, 10, modulus) == 1024
    assert mod_exp_secret(modulus - 1, 2, modulus) == 1


@pytest.mark.parametrize("modulus", [3, 5, 0xFFFF_FFFF_FFFF_FFC5, _odd(2048)],
                         ids=["3", "5", "64-bit", "random-2048"])
def test_edge_bases_and_exponents(modulus: int) -> None:
    assert mod_exp_secret(0, 0, modulus) == 1  # 0^0 = 1, as pow says
    assert pow(0, 0, modulus) == 1
    assert mod_exp_secret(0, 5, modulus) == 0
    assert mod_exp_secret(1, 0, modulus) == 1
    assert mod_exp_secret(1, secrets.randbits(2048), modulus) == 1
    base = secrets.randbelow(modulus)
    assert mod_exp_secret(base, 0, modulus) == 1
    assert mod_exp_secret(base, 1, modulus) == base
    assert mod_exp_secret(modulus - 1, 3, modulus) == modulus - 1


@pytest.mark.parametrize("modulus", [0, 1, 2, 4, 1 << 2048, _odd(2048) + 1, -3, -1],
                         ids=["0", "1", "2", "4", "2^2048", "even-2048", "-3", "-1"])
def test_bad_modulus(modulus: int) -> None:
    with pytest.raises(ValueError, match="modulus"):
        mod_exp_secret(2, 3, modulus)


def test_modulus_too_big() -> None:
    with pytest.raises(ValueError, match="16384"):
        mod_exp_secret(2, 3, _odd(MAX_BITS + 1))


def test_base_out_of_range() -> None:
    modulus = _odd(2048)
    for base in (modulus, modulus + 1, 2 * modulus, -1):
        with pytest.raises(ValueError, match="base"):
            mod_exp_secret(base, 3, modulus)


def test_negative_exponent() -> None:
    with pytest.raises(ValueError, match="exponent"):
        mod_exp_secret(2, -1, _odd(2048))

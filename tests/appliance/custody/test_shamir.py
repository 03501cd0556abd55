"""Shamir secret sharing over GF(256): any k shares reconstruct, fewer do not, typos are named."""

from __future__ import annotations

import itertools
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.custody import shamir


def test_field_tables_cover_every_nonzero_element() -> None:
    assert sorted(shamir._EXP[:255]) == list(range(1, 256))
    for a in range(1, 256):
        assert shamir._mul(a, shamir._div(1, a)) == 1


@given(secret=st.binary(min_size=1, max_size=48), k=st.integers(2, 5), extra=st.integers(0, 3))
@settings(max_examples=60)
def test_any_k_shares_reconstruct(secret: bytes, k: int, extra: int) -> None:
    shares = shamir.split(secret, k, k + extra)
    for combo in itertools.combinations(shares, k):
        assert shamir.combine(list(combo)) == secret
    assert shamir.combine(shares) == secret


def test_fewer_than_k_shares_give_a_different_value() -> None:
    secret = os.urandom(16)
    shares = shamir.split(secret, 3, 5)
    assert all(shamir.combine(list(c)) != secret for c in itertools.combinations(shares, 2))


def test_k_minus_one_shares_are_uniform_for_every_secret() -> None:
    """With k-1 shares fixed, every candidate secret byte is equally consistent: for a 1-byte
    secret and threshold 2, one share's byte takes all 256 values as the polynomial varies."""
    seen: set[int] = set()
    for _ in range(4000):
        (_, body), _ = shamir.split(b"\x42", 2, 2)
        seen.add(body[0])
    assert len(seen) == 256


def test_printed_shares_round_trip_and_name_typos() -> None:
    secret = os.urandom(16)
    index, body = shamir.split(secret, 2, 3)[1]
    text = shamir.encode_share(index, 2, body)
    assert shamir.decode_share(text) == (index, 2, body)
    assert shamir.decode_share(" " + text.lower().replace("-", "-\n", 1) + " ") == (index, 2, body)
    body_pos = len("MSS1-xx-2-")  # the first hex digit of the body
    typo = text[:body_pos] + ("0" if text[body_pos] != "0" else "1") + text[body_pos + 1:]
    with pytest.raises(ValueError, match="typo"):
        shamir.decode_share(typo)
    with pytest.raises(ValueError, match="not a medsign unseal share"):
        shamir.decode_share("hello")


@pytest.mark.parametrize(("k", "n"), [(1, 3), (4, 3), (2, 256)])
def test_bad_parameters(k: int, n: int) -> None:
    with pytest.raises(ValueError):
        shamir.split(b"x", k, n)


def test_duplicate_or_mixed_shares_are_refused() -> None:
    shares = shamir.split(b"secret", 2, 3)
    with pytest.raises(ValueError, match="distinct"):
        shamir.combine([shares[0], shares[0]])
    with pytest.raises(ValueError, match="lengths"):
        shamir.combine([shares[0], (shares[1][0], shares[1][1] + b"x")])

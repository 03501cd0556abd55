"""The CMS we sign is written as DER directly (signcore.cms ``_prepare`` / ``_assemble``); it must
be byte for byte what the asn1crypto construction it replaced made (``_reference_prepare`` /
``_reference_assemble``, kept in signcore.cms as the fallback for hand-made input).

Every public way in is compared: sign, sign_digest, prepare + finish (also through to_dict /
from_dict), and the TSA's build_token (content type TSTInfo, ESS attribute, no signing time),
over the three key types, both flavours, attached and detached content of every length form
(empty, short, one and two length octets, more than 64 KiB), given, missing (the clock fixed)
and absent signing times, signer IDs, content types, extra signed attributes and extra
certificates (duplicates and the signer's own certificate among them).  SM2, ECDSA and
RSASSA-PSS signatures are randomized, so both constructions get their signature from the same
memoizing signer: equal signed attributes then get equal signatures.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import pytest
from asn1crypto import cms as acms
from asn1crypto import core as acore
from asn1crypto import tsp as atsp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signcore import cms, hashes, tsp
from signcore._internal.der import header, read_tlv, tlv
from signcore.algorithms import DEFAULT_SM2_ID, OID_GM_DATA, SignatureAlgorithm
from signcore.keys import PrivateKey
from signcore.x509 import Certificate
from tests.support.pki import KEY_TYPES, TestPKI, cached_pki

FLAVORS = (cms.CMSFlavor.RFC5652, cms.CMSFlavor.GMT0010)
FIXED_NOW = dt.datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=dt.UTC)
CUSTOM_ID = b"wangwu@hospital.medsign.test"
# Around every length form: short, 0x81 (1 octet), 0x82 (2 octets), 0x83 (3 octets, > 64 KiB).
SIZES = (0, 1, 31, 100, 127, 128, 200, 255, 256, 1000, 65535, 65536, 70000)
ALGORITHMS: dict[str, tuple[SignatureAlgorithm | None, ...]] = {
    "sm2": (None,),
    "rsa2048": (None, SignatureAlgorithm.RSA_PKCS1_SHA512, SignatureAlgorithm.RSA_PSS_SHA256),
    "ecdsa-p256": (None,),
}
OID_PRIVATE = "2.999.42.7"  # an eContentType asn1crypto knows nothing about


class MemoSigner:
    """A signer whose signature is a function of what it signs (the first one it made)."""

    def __init__(self, key: PrivateKey) -> None:
        self.key = key
        self.made: dict[tuple[bytes, SignatureAlgorithm | None, bytes], bytes] = {}

    def public_key(self) -> Any:
        return self.key.public_key()

    def sign(self, data: bytes, algorithm: SignatureAlgorithm | None = None, *,
             signer_id: bytes = DEFAULT_SM2_ID) -> bytes:
        memo = (bytes(data), algorithm, signer_id)
        if memo not in self.made:
            self.made[memo] = self.key.sign(data, algorithm, signer_id=signer_id)
        return self.made[memo]


_MEMO: dict[str, MemoSigner] = {}


def memo_signer(pki: TestPKI) -> MemoSigner:
    if pki.key_type not in _MEMO:
        _MEMO[pki.key_type] = MemoSigner(pki.doctor_key)
    return _MEMO[pki.key_type]


@contextmanager
def fixed_clock() -> Iterator[None]:
    with mock.patch.object(cms, "_now", lambda: FIXED_NOW):
        yield


@contextmanager
def reference_builders() -> Iterator[None]:
    """signcore.cms as it was: asn1crypto builds the attributes and the SignedData."""
    with mock.patch.multiple(cms, _prepare=cms._reference_prepare,
                             _assemble=cms._reference_assemble):
        yield


def outcome(make: Callable[[], Any]) -> Any:
    """What ``make()`` returns, or the type and message of what it raises."""
    try:
        return make()
    except Exception as exc:
        return type(exc), str(exc)


def both(make: Callable[[], Any]) -> tuple[Any, Any]:
    """``make()`` with the direct DER, then with the asn1crypto reference (same fixed clock)."""
    with fixed_clock():
        fast = outcome(make)
        with reference_builders():
            reference = outcome(make)
    return fast, reference


def tst_info(seed: int) -> bytes:
    return bytes(atsp.TSTInfo({
        "version": "v1", "policy": "2.999.1.2",
        "message_imprint": {"hash_algorithm": {"algorithm": "sha256"},
                            "hashed_message": random.Random(seed).randbytes(32)},
        "serial_number": seed + 1, "gen_time": FIXED_NOW.replace(microsecond=0),
        "accuracy": {"seconds": 1}, "nonce": seed * 7919,
    }).dump())


def extra_attribute_sets(certificate: Certificate) -> list[tuple[acms.CMSAttribute, ...]]:
    ess = tsp._ess_attribute(certificate)
    other_time = acms.CMSAttribute({"type": "signing_time", "values": [
        acms.Time(name="generalized_time", value=dt.datetime(2070, 1, 2, 3, 4, 5, tzinfo=dt.UTC))]})
    nonce = acms.CMSAttribute({"type": "1.2.840.113549.1.9.25.3",
                               "values": [acore.OctetString(b"\x01" * 300)]})
    # A second content type: no longer "one content-type attribute", so _assemble falls back.
    second_type = acms.CMSAttribute({"type": "content_type", "values": [OID_PRIVATE]})
    return [(), (ess,), (ess, nonce), (other_time,), (nonce, other_time, ess), (second_type,)]


def certificate_lists(pki: TestPKI) -> list[tuple[Certificate, ...]]:
    return [(), (pki.issuing,), (pki.issuing, pki.root), (pki.root, pki.issuing, pki.issuing),
            (pki.doctor, pki.issuing, pki.doctor), (pki.tsa, pki.root, pki.tls, pki.issuing)]


TIMES = st.one_of(
    st.none(),
    st.sampled_from([dt.datetime(1949, 12, 31, 23, 59, 59, tzinfo=dt.UTC),
                     dt.datetime(1950, 1, 1, tzinfo=dt.UTC),
                     dt.datetime(2049, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),
                     dt.datetime(2050, 1, 1, tzinfo=dt.UTC),
                     dt.datetime(2025, 6, 7, 8, 9, 10),  # naive: local time, in both
                     dt.datetime(2025, 6, 7, 0, 30, tzinfo=dt.timezone(dt.timedelta(hours=8)))]),
    # From 1000: asn1crypto's GeneralizedTime (strftime) writes earlier years with fewer than
    # four digits, which it cannot read back (as before: both constructions write the same).
    st.datetimes(min_value=dt.datetime(1000, 1, 2), max_value=dt.datetime(9998, 12, 31),
                 timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=-5))])),
)


@st.composite
def contents(draw: st.DrawFn) -> bytes:
    size = draw(st.one_of(st.sampled_from(SIZES), st.integers(0, 600)))
    return random.Random(draw(st.integers(0, 2**32))).randbytes(size)


@pytest.fixture(scope="module", params=KEY_TYPES)
def pki(request: pytest.FixtureRequest) -> TestPKI:
    return cached_pki(request.param)


HYPOTHESIS = settings(max_examples=60, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture,
                                             HealthCheck.too_slow, HealthCheck.data_too_large])


# ---------------------------------------------------------------------------------------------
# sign


def common(data: st.DataObject, pki: TestPKI) -> dict[str, Any]:
    """The options every way in takes."""
    return {
        "flavor": data.draw(st.sampled_from(FLAVORS), "flavor"),
        "signing_time": data.draw(TIMES, "signing_time"),
        "include_signing_time": data.draw(st.booleans(), "include_signing_time"),
        "signer_id": data.draw(st.sampled_from([DEFAULT_SM2_ID, CUSTOM_ID]), "signer_id"),
        "signature_algorithm": data.draw(st.sampled_from(ALGORITHMS[pki.key_type]), "alg"),
        "extra_certificates": data.draw(st.sampled_from(certificate_lists(pki)), "certs"),
    }


@HYPOTHESIS
@given(data=st.data())
def test_sign_is_byte_identical(pki: TestPKI, data: st.DataObject) -> None:
    content = data.draw(contents(), "content")
    kwargs = common(data, pki)
    kwargs["detached"] = data.draw(st.booleans(), "detached")
    kwargs["content_type"] = data.draw(st.sampled_from(
        [None, OID_PRIVATE, "data", OID_GM_DATA, tsp.OID_TST_INFO]), "content_type")
    if kwargs["content_type"] == tsp.OID_TST_INFO:
        # asn1crypto parses attached TSTInfo and embeds what it parsed (not trailing bytes)
        content = tst_info(len(content)) + data.draw(st.sampled_from([b"", b"\0\0"]), "tail")
    kwargs["extra_signed_attributes"] = data.draw(
        st.sampled_from(extra_attribute_sets(pki.doctor)), "attrs")
    signer = memo_signer(pki)
    fast, reference = both(lambda: cms.sign(content, signer, pki.doctor, **kwargs))
    assert fast == reference


@HYPOTHESIS
@given(data=st.data())
def test_sign_digest_is_byte_identical(pki: TestPKI, data: st.DataObject) -> None:
    kwargs = common(data, pki)
    resolved = pki.doctor.public_key().resolve_algorithm(kwargs["signature_algorithm"])
    digest = hashes.digest(resolved.hash_algorithm, data.draw(contents(), "content"))
    signer = memo_signer(pki)
    fast, reference = both(lambda: cms.sign_digest(digest, signer, pki.doctor, **kwargs))
    assert fast == reference


# ---------------------------------------------------------------------------------------------
# prepare + finish


@HYPOTHESIS
@given(data=st.data())
def test_prepare_and_finish_are_byte_identical(pki: TestPKI, data: st.DataObject) -> None:
    content = data.draw(contents(), "content")
    kwargs = common(data, pki)
    resolved = pki.doctor.public_key().resolve_algorithm(kwargs["signature_algorithm"])
    by_digest = data.draw(st.booleans(), "by_digest")
    if by_digest:
        kwargs["message_digest"] = hashes.digest(resolved.hash_algorithm, content)
    else:
        kwargs["detached"] = data.draw(st.booleans(), "detached")
    fast, reference = both(lambda: cms.prepare(None if by_digest else content, pki.doctor,
                                               **kwargs))
    assert fast == reference
    if data.draw(st.booleans(), "stored"):  # the appliance keeps it as JSON in between
        fast = cms.PreparedSignature.from_dict(fast.to_dict())
    signer = memo_signer(pki)
    signature = signer.sign(fast.to_be_signed, fast.algorithm, signer_id=fast.signer_id)
    finished, reference_finished = both(lambda: fast.finish(signature))
    assert finished == reference_finished
    # and what sign / sign_digest make in one go (the same clock)
    with fixed_clock():
        if by_digest:
            one_go = cms.sign_digest(kwargs.pop("message_digest"), signer, pki.doctor, **kwargs)
        else:
            one_go = cms.sign(content, signer, pki.doctor, **kwargs)
    assert one_go == finished


def prepared_for(pki: TestPKI, **kwargs: Any) -> cms.PreparedSignature:
    with fixed_clock():
        return cms.prepare(b"Rx " * 50, pki.doctor, extra_certificates=pki.chain, **kwargs)


def elements(attrs: bytes) -> list[bytes]:
    found = read_tlv(attrs, 0, len(attrs))
    assert found is not None
    out, position = [], found[1]
    while position < found[2]:
        element = read_tlv(attrs, position, found[2])
        assert element is not None
        out.append(attrs[position:element[2]])
        position = element[2]
    return out


@pytest.mark.parametrize("flavor", FLAVORS, ids=lambda f: f.value)
def test_hand_made_signed_attributes(pki: TestPKI, flavor: cms.CMSFlavor) -> None:
    """What the direct path reads from stored signed attributes: kept in their order (they are
    what was signed), or handed to asn1crypto when they are not plain DER with one content
    type; either way the reference's bytes."""
    prepared = prepared_for(pki, flavor=flavor)
    parts = elements(prepared.signed_attributes)
    assert len(b"".join(parts)) < 0x80  # so that 0x81 is a non-minimal length below
    content_type = next(p for p in parts if p.startswith(cms._ATTR_CONTENT_TYPE, 2))
    variants = [
        tlv(0x31, b"".join(reversed(parts))),  # unsorted: the order is what was signed
        b"\x31\x81" + bytes([len(b"".join(parts))]) + b"".join(parts),  # non-minimal length
        tlv(0x31, b"".join([*parts, content_type])),  # the content type twice
        tlv(0x31, b"".join(p for p in parts if p != content_type)),  # no content type
        tlv(0x31, b"".join(parts)) + b"\x00",  # trailing byte
    ]
    for attrs in variants:
        hand_made = dataclasses.replace(prepared, signed_attributes=attrs)
        reference, fast = (outcome(functools.partial(build, hand_made, b"\x30\x00",
                                                     hand_made._certificates))
                           for build in (cms._reference_assemble, cms._assemble))
        assert fast == reference, attrs.hex()
    assert cms._signed_content_type(variants[0]) is not None  # read directly, order kept
    assert all(cms._signed_content_type(v) is None for v in variants[1:])


def test_non_minimal_oids_go_to_asn1crypto() -> None:
    oid = cms._content_type_parts(OID_PRIVATE)[1]
    assert oid == b"\x06\x04\x88\x37\x2a\x07"  # 2.999 -> 1079 -> 0x88 0x37; 42; 7
    attr = tlv(0x30, cms._ATTR_CONTENT_TYPE + tlv(0x31, oid))
    assert cms._signed_content_type(tlv(0x31, attr)) == (OID_PRIVATE, oid, attr)
    padded_value = tlv(0x30, cms._ATTR_CONTENT_TYPE + tlv(0x31, b"\x06\x05\x88\x37\x80\x2a\x07"))
    assert cms._signed_content_type(tlv(0x31, padded_value)) is None
    padded_type = tlv(0x30, b"\x06\x0a\x2a\x86\x48\x86\xf7\x0d\x01\x09\x80\x03"
                      + tlv(0x31, b"\x06\x01\x2a"))
    assert cms._signed_content_type(tlv(0x31, attr + padded_type)) is None


# ---------------------------------------------------------------------------------------------
# time stamp tokens (content type TSTInfo, attached, ESS signing-certificate-v2 attribute)


@pytest.mark.parametrize("nonce", [None, 1, 2**64 + 5])
def test_build_token_is_byte_identical(pki: TestPKI, nonce: int | None) -> None:
    signer = MemoSigner(pki.tsa_key)
    fast, reference = both(lambda: tsp.build_token(
        hash_algorithm=hashes.HashAlgorithm.SM3, message_imprint=bytes(range(32)),
        signer=signer, certificate=pki.tsa, serial_number=12345, policy="2.999.1.2",
        gen_time=FIXED_NOW, nonce=nonce, extra_certificates=pki.chain))
    assert fast == reference


# ---------------------------------------------------------------------------------------------
# the DER helpers


@given(st.binary(max_size=300), st.integers(0, 70000))
def test_header_and_read_tlv(prefix: bytes, size: int) -> None:
    body = bytes(size)
    encoded = header(0x04, size) + body
    assert encoded == tlv(0x04, body)
    assert read_tlv(prefix + encoded, len(prefix), len(prefix) + len(encoded)) == (
        0x04, len(encoded) - size + len(prefix), len(prefix) + len(encoded))
    assert read_tlv(encoded, 0, len(encoded) - 1) is None  # content running past the end


@pytest.mark.parametrize("encoded", [
    b"\x04", b"\x04\x80", b"\x04\x81\x05abcde", b"\x04\x82\x00\x80" + bytes(128),
    b"\x1f\x01\x00", b"\x04\x85\x00\x00\x00\x00\x01a"])
def test_read_tlv_refuses_what_is_not_der(encoded: bytes) -> None:
    assert read_tlv(encoded, 0, len(encoded)) is None

"""The channel interface over the built-in CA: one-shot enrollment for server-held keys, the
two-phase flow a split key needs, and refusals."""

from __future__ import annotations

import pytest

from ca_client import (
    BuiltinCa,
    BuiltinChannel,
    EnrollmentRequest,
    MemoryRepository,
    RequestRejected,
    SubjectInfo,
    enroll,
    generate_hierarchy,
)
from signcore.keys import PrivateKey, generate_private_key
from signcore.path import validate_path
from tests.keysplit.conftest import cosign
from tests.keysplit.conftest import enroll as co_keygen

SEAL = SubjectInfo(common_name="测试医院电子印章", organization="测试医院")
DOCTOR = SubjectInfo(common_name="王五", organization="测试医院", department="儿科",
                     unique_id="UABCDEF0123456789")


@pytest.fixture(scope="module", params=["sm2", "rsa"])
def channel(request: pytest.FixtureRequest) -> BuiltinChannel:
    h = generate_hierarchy(request.param, "测试医院")
    ca = BuiltinCa(f"{request.param}-1", h.issuing, h.issuing_key, MemoryRepository(),
                   chain=[h.root])
    return BuiltinChannel(f"builtin-{request.param}", ca)


def _key(channel: BuiltinChannel) -> PrivateKey:
    return generate_private_key("sm2" if channel.name.endswith("sm2") else "rsa2048")


def test_one_shot_for_a_server_held_key(channel: BuiltinChannel) -> None:
    key = _key(channel)
    done = enroll(channel, EnrollmentRequest("organization-seal", SEAL, key.public_key()),
                  key)
    assert done.channel == channel.name and done.certificate.public_key() == key.public_key()
    validate_path(done.certificate, trust_roots=[done.chain[-1]], intermediates=done.chain)
    assert channel.status().available


def test_two_phases_for_a_split_key(channel: BuiltinChannel) -> None:
    key = _key(channel)
    request = EnrollmentRequest("doctor-signing", DOCTOR, key.public_key())
    pending = channel.prepare(request)
    # ... the phone co-signs pending.to_be_signed (keysplit); here the whole key does.
    signature = key.sign(pending.to_be_signed, pending.algorithm)
    done = channel.complete(pending, signature)
    assert "CN=王五" in done.certificate.subject
    other = _key(channel)
    with pytest.raises(RequestRejected, match="does not verify"):
        channel.complete(pending, other.sign(pending.to_be_signed, pending.algorithm))
    channel.revoke(done.certificate, "superseded")


def test_refusals(channel: BuiltinChannel) -> None:
    key = _key(channel)
    with pytest.raises(RequestRejected, match="profile"):
        channel.prepare(EnrollmentRequest("dentist", DOCTOR, key.public_key()))
    with pytest.raises(RequestRejected, match="does not hold"):
        enroll(channel, EnrollmentRequest("organization-seal", SEAL, key.public_key()),
               _key(channel))


def test_a_split_key_proves_possession_by_co_signing() -> None:
    """The doctor's key never exists whole: phone (keysplit's reference phone) and server
    co-generate it, then co-sign the CSR's to-be-signed bytes; the channel issues for it."""
    h = generate_hierarchy("sm2", "测试医院")
    channel = BuiltinChannel("builtin-sm2", BuiltinCa("sm2-1", h.issuing, h.issuing_key,
                                                      MemoryRepository(), chain=[h.root]))
    enrollment = co_keygen()
    public_key = enrollment.share.sm2_public_key()
    pending = channel.prepare(EnrollmentRequest("doctor-signing", DOCTOR, public_key))
    digest = public_key.digest(pending.to_be_signed)  # e = SM3(Z_A || M), what both sides sign
    signature = cosign(enrollment, [digest]).signatures[0]
    done = channel.complete(pending, signature)
    assert done.certificate.public_key() == public_key
    validate_path(done.certificate, trust_roots=[h.root], intermediates=[h.issuing])

"""The channel interface over the built-in CA: one-shot enrollment for server-held keys, the
two-phase flow a split key needs, and refusals."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

import pytest

from ca_client import (
    BuiltinCa,
    BuiltinChannel,
    EnrollmentRequest,
    MemoryRepository,
    PendingEnrollment,
    RequestRejected,
    SubjectInfo,
    enroll,
    generate_hierarchy,
)
from ca_client.channel import pkcs10_pending
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


# ---------------------------------------------------------------------------------------------
# A pending enrollment kept in the database between the server's prepare and the phone's proof


_DROP = object()
SERVER = SubjectInfo(common_name="sign.hospital.medsign.test", organization="测试医院",
                     department="信息科", dns_names=("sign.hospital.medsign.test", "sign"),
                     ip_addresses=("10.1.2.3",))


def _stored(pending: PendingEnrollment) -> PendingEnrollment:
    """The pending enrollment after a trip through a JSON database column."""
    data = pending.to_dict()
    text = json.dumps(data, ensure_ascii=False)
    assert json.loads(text) == data  # JSON-able: nothing is lost or converted on the way
    restored = PendingEnrollment.from_dict(json.loads(text))
    assert restored == pending
    assert restored.to_dict() == data
    return restored


def test_pending_enrollment_round_trips_through_json(channel: BuiltinChannel) -> None:
    key = _key(channel)
    first = enroll(channel, EnrollmentRequest("doctor-signing", DOCTOR, key.public_key()), key)
    # A renewal (renewal_of set) with a shorter validity and a title.
    subject = dataclasses.replace(DOCTOR, title="主治医师")
    pending = channel.prepare(EnrollmentRequest("doctor-signing", subject, key.public_key(),
                                                validity_days=30),
                              renewal_of=first.certificate)
    data = pending.to_dict()
    assert data["channel"] == channel.name
    assert data["algorithm"] == pending.algorithm.value
    assert data["renewal_of"] == first.certificate.der.hex()
    assert data["request"]["subject"]["title"] == "主治医师"
    assert data["request"]["subject"]["dns_names"] == []
    assert data["request"]["validity_days"] == 30
    restored = _stored(pending)
    assert restored.renewal_of == first.certificate
    assert restored.request.public_key == key.public_key()
    done = channel.complete(restored, key.sign(restored.to_be_signed, restored.algorithm))
    assert done.certificate.public_key() == key.public_key()
    assert done.certificate.subject_name.native["title"] == "主治医师"
    assert done.certificate.not_after - done.certificate.not_before < dt.timedelta(days=32)
    validate_path(done.certificate, trust_roots=[done.chain[-1]], intermediates=done.chain)
    # Tuple fields (DNS names, addresses) come back as tuples; no renewal is None.
    server = channel.prepare(EnrollmentRequest("tls-server", SERVER, key.public_key()))
    assert server.to_dict()["request"]["subject"]["dns_names"] == list(SERVER.dns_names)
    assert server.to_dict()["renewal_of"] is None
    assert _stored(server).request.subject.ip_addresses == ("10.1.2.3",)


def test_a_restored_pending_enrollment_is_completed_by_co_signing() -> None:
    """Server prepares and stores; minutes later the phone's co-signature completes the
    enrollment restored from the stored dict."""
    h = generate_hierarchy("sm2", "测试医院")
    channel = BuiltinChannel("builtin-sm2", BuiltinCa("sm2-1", h.issuing, h.issuing_key,
                                                      MemoryRepository(), chain=[h.root]))
    enrollment = co_keygen()
    public_key = enrollment.share.sm2_public_key()
    stored = json.dumps(channel.prepare(
        EnrollmentRequest("doctor-signing", DOCTOR, public_key)).to_dict())
    pending = PendingEnrollment.from_dict(json.loads(stored))
    signature = cosign(enrollment, [public_key.digest(pending.to_be_signed)]).signatures[0]
    done = channel.complete(pending, signature)
    assert done.certificate.public_key() == public_key
    validate_path(done.certificate, trust_roots=[h.root], intermediates=[h.issuing])
    # The restored enrollment is bound to its key: a proof by another key is refused.
    other = generate_private_key("sm2")
    with pytest.raises(RequestRejected, match="does not verify"):
        channel.complete(pending, other.sign(pending.to_be_signed, pending.algorithm))


def test_from_dict_refuses_malformed_data() -> None:
    key = generate_private_key("sm2")
    data = pkcs10_pending("builtin-sm2", EnrollmentRequest("doctor-signing", DOCTOR,
                                                           key.public_key()), None).to_dict()

    def changed(path: tuple[str, ...], value: Any) -> dict[str, Any]:
        copy: dict[str, Any] = json.loads(json.dumps(data))
        target = copy
        for part in path[:-1]:
            target = target[part]
        if value is _DROP:
            del target[path[-1]]
        else:
            target[path[-1]] = value
        return copy

    bad = [
        changed(("channel",), 7),
        changed(("to_be_signed",), "not hex"),
        changed(("algorithm",), "sm9-sm3"),
        changed(("renewal_of",), "3000"),
        changed(("state",), {"csr_info": 1}),
        changed(("state",), []),
        changed(("request",), _DROP),
        changed(("request", "public_key"), data["request"]["public_key"][:-4]),
        changed(("request", "validity_days"), "30"),
        changed(("request", "validity_days"), True),
        changed(("request", "subject", "common_name"), _DROP),
        changed(("request", "subject", "dns_names"), "sign.hospital.medsign.test"),
        changed(("request", "subject", "nickname"), "五"),
    ]
    for value in bad:
        with pytest.raises(RequestRejected, match="not a stored pending enrollment"):
            PendingEnrollment.from_dict(value)
    assert PendingEnrollment.from_dict(data).request.subject == DOCTOR

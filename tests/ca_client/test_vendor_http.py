"""The ``vendor-http`` channel against a fake third-party CA (``tests/support/vendor_ca.py``)
that checks the signed requests independently (HMAC-SM3 by hand over gmssl's SM3) and issues
real certificates: enrollment (one-shot and two-phase), renewal, revocation, status, vendor field
names from the configuration, and every failure mapped to RequestRejected (the request is at
fault) or ChannelUnavailable (the vendor is down, busy, slow or answers nonsense)."""

from __future__ import annotations

import base64
import re
import secrets
import time
import tomllib
from collections.abc import Iterator
from typing import Any

import pytest

from ca_client import (
    BuiltinCa,
    ChannelUnavailable,
    EnrollmentRequest,
    RequestRejected,
    SubjectInfo,
    VendorHttpChannel,
    VendorHttpConfig,
    enroll,
)
from signcore import ocsp
from signcore.keys import PrivateKey, generate_private_key
from signcore.path import validate_path
from signcore.x509 import Certificate
from tests.support.vendor_ca import (
    FakeVendorCa,
    Hierarchies,
    VendorStyle,
    closed_port,
    gm_hmac_sm3,
    gm_sm3,
)

SEAL = SubjectInfo(common_name="测试医院电子印章", organization="测试医院")
DOCTOR = SubjectInfo(common_name="王五", organization="测试医院", department="儿科",
                     title="主治医师", unique_id="UABCDEF0123456789")

#: A vendor that spells everything differently from the defaults: nested answers, its own
#: profile and reason values, hex signatures, millisecond timestamps, PEM CSRs, decimal
#: serials, integer codes, a root-first PEM bundle as chain, and signed answers.
CUSTOM = VendorStyle(
    app_id="HOSP-0571-001",
    prefix="/gateway/multica",
    enroll_path="/v2/certApply",
    renew_path="/v2/certUpdate",
    revoke_path="/v2/certRevoke",
    status_path="/v2/ping",
    fields={"csr": "p10", "profile": "certType", "name": "userName", "organization": "orgName",
            "department": "deptName", "title": "jobTitle", "unique_id": "idCode",
            "serial": "certSn", "reason": "revokeReason", "code": "resultCode",
            "message": "resultMsg", "certificate": "data.signCert", "chain": "data.caChain",
            "order_id": "data.bizSn", "validity_days": "", "dns_names": ""},
    profiles={"doctor-signing": "DOCTOR_SIGN", "organization-seal": "ORG_SEAL"},
    reasons={"key_compromise": "1", "superseded": "4", "unspecified": "0"},
    app_id_header="appKey", timestamp_header="timestamp", nonce_header="nonceStr",
    signature_header="sign", encoding="hex", timestamp_unit="ms", csr_format="pem",
    serial_format="decimal", success_code=200, error_code=4001, busy_code=5030,
    auth_code=4010, sign_answers=True, chain_as_pem_bundle_root_first=True,
)

#: What the appliance's TOML says for that vendor (base_url filled in by the test).
CUSTOM_TOML = """
[ca.vendors.zjca]
name = "zjca"
app_id = "HOSP-0571-001"
secret_hex = "{secret}"
enroll_path = "/v2/certApply"
renew_path = "/v2/certUpdate"
revoke_path = "/v2/certRevoke"
status_path = "/v2/ping"
app_id_header = "appKey"
timestamp_header = "timestamp"
nonce_header = "nonceStr"
signature_header = "sign"
signature_encoding = "hex"
timestamp_unit = "ms"
csr_format = "pem"
serial_format = "decimal"
success_code = 200
retry_codes = [5030]
verify_responses = true
read_timeout = 10

[ca.vendors.zjca.fields]
csr = "p10"
profile = "certType"
name = "userName"
organization = "orgName"
department = "deptName"
title = "jobTitle"
unique_id = "idCode"
serial = "certSn"
reason = "revokeReason"
code = "resultCode"
message = "resultMsg"
certificate = "data.signCert"
chain = "data.caChain"
order_id = "data.bizSn"
validity_days = ""
dns_names = ""

[ca.vendors.zjca.profiles]
doctor-signing = "DOCTOR_SIGN"
organization-seal = "ORG_SEAL"

[ca.vendors.zjca.reasons]
key_compromise = "1"
superseded = "4"
unspecified = "0"
"""


@pytest.fixture(scope="module")
def cas() -> Hierarchies:
    return Hierarchies.generate()


def _serve(style: VendorStyle, cas: Hierarchies) -> Iterator[FakeVendorCa]:
    vendor = FakeVendorCa(style, cas).start()
    try:
        yield vendor
    finally:
        vendor.stop()


@pytest.fixture
def vendor(cas: Hierarchies) -> Iterator[FakeVendorCa]:
    yield from _serve(VendorStyle(), cas)


@pytest.fixture
def custom_vendor(cas: Hierarchies) -> Iterator[FakeVendorCa]:
    yield from _serve(CUSTOM, cas)


def _channel(vendor: FakeVendorCa, **overrides: Any) -> VendorHttpChannel:
    return VendorHttpChannel(VendorHttpConfig.from_dict(
        {**vendor.style.channel_config(vendor.base_url), **overrides}))


def _custom_channel(vendor: FakeVendorCa) -> VendorHttpChannel:
    table = tomllib.loads(CUSTOM_TOML.format(secret=CUSTOM.secret.hex()))["ca"]["vendors"]
    return VendorHttpChannel(VendorHttpConfig.from_dict(
        {**table["zjca"], "base_url": vendor.base_url}))


def _status(ca: BuiltinCa, certificate: Certificate) -> ocsp.SingleStatus:
    return ca.status(ocsp.CertId.of(certificate.serial_number, ca.certificate))


def _enroll(channel: VendorHttpChannel, key: PrivateKey, profile: str = "organization-seal",
            subject: SubjectInfo = SEAL, **kwargs: Any) -> Any:
    return enroll(channel, EnrollmentRequest(profile, subject, key.public_key()), key, **kwargs)


# -- enrollment ------------------------------------------------------------------------------

@pytest.mark.parametrize("key_spec", ["sm2", "rsa2048"])
def test_one_shot_enrollment(vendor: FakeVendorCa, key_spec: str) -> None:
    channel = _channel(vendor)
    key = generate_private_key(key_spec)
    done = _enroll(channel, key)
    ca = vendor.cas.for_key(key.public_key().key_type)
    assert done.certificate.public_key() == key.public_key()
    assert done.chain == (ca.certificate, *ca.chain)
    assert done.channel == "vendor-test" and done.reference.startswith("ORD-")
    assert "CN=测试医院电子印章" in done.certificate.subject
    validate_path(done.certificate, trust_roots=[done.chain[-1]], intermediates=done.chain)
    method, path, body = vendor.received[-1]
    assert (method, path) == ("POST", "/api/ca/v1/cert/apply")
    assert body["profile"] == "organization-seal" and body["name"] == "测试医院电子印章"
    assert "department" not in body  # empty subject fields are not sent


def test_two_phase_enrollment(vendor: FakeVendorCa) -> None:
    channel = _channel(vendor)
    key = generate_private_key("sm2")
    pending = channel.prepare(EnrollmentRequest("doctor-signing", DOCTOR, key.public_key(),
                                                validity_days=30))
    assert pending.channel == "vendor-test" and not vendor.received  # nothing sent yet
    # ... the phone co-signs pending.to_be_signed (keysplit); here the whole key does.
    other = generate_private_key("sm2")
    with pytest.raises(RequestRejected, match="does not verify"):
        channel.complete(pending, other.sign(pending.to_be_signed, pending.algorithm))
    assert not vendor.received  # a bad proof of possession never reaches the vendor
    done = channel.complete(pending, key.sign(pending.to_be_signed, pending.algorithm))
    assert done.certificate.public_key() == key.public_key()
    assert "CN=王五" in done.certificate.subject and "UABCDEF0123456789" in \
        done.certificate.subject
    _, _, body = vendor.received[-1]
    assert body["unique_id"] == "UABCDEF0123456789" and body["title"] == "主治医师"
    assert body["validity_days"] == 30
    assert (done.certificate.not_after - done.certificate.not_before).days <= 31


def test_renewal(vendor: FakeVendorCa) -> None:
    channel = _channel(vendor)
    old_key, new_key = generate_private_key("sm2"), generate_private_key("sm2")
    old = _enroll(channel, old_key, "doctor-signing", DOCTOR).certificate
    new = _enroll(channel, new_key, "doctor-signing", DOCTOR, renewal_of=old).certificate
    assert new.public_key() == new_key.public_key() and new.serial_number != old.serial_number
    _, path, body = vendor.received[-1]
    assert path == "/api/ca/v1/cert/renew" and body["serial"] == f"{old.serial_number:X}"
    status = _status(vendor.cas.sm2, old)
    assert (status.status, status.revocation_reason) == (ocsp.CertStatus.REVOKED,
                                                          "superseded")


def test_revocation(vendor: FakeVendorCa) -> None:
    channel = _channel(vendor)
    key = generate_private_key("rsa2048")
    certificate = _enroll(channel, key).certificate
    channel.revoke(certificate, "key_compromise")
    status = _status(vendor.cas.rsa, certificate)
    assert (status.status, status.revocation_reason) == (ocsp.CertStatus.REVOKED,
                                                          "key_compromise")
    with pytest.raises(RequestRejected, match="code E400: 吊销失败"):
        channel.revoke(certificate, "superseded")
    sent = len(vendor.received)
    with pytest.raises(RequestRejected, match="unknown revocation reason 'lost'"):
        channel.revoke(certificate, "lost")
    assert len(vendor.received) == sent


def test_status(vendor: FakeVendorCa) -> None:
    channel = _channel(vendor)
    status = channel.status()
    assert (status.name, status.kind, status.available) == ("vendor-test", "vendor-http", True)
    assert vendor.received[-1][:2] == ("GET", "/api/ca/v1/status")
    vendor.mode = "busy"
    status = channel.status()
    assert not status.available and "busy" in status.detail
    down = _channel(vendor, base_url=f"http://127.0.0.1:{closed_port()}/api/ca/v1").status()
    assert not down.available and "refused the connection" in down.detail


@pytest.mark.parametrize("algorithm", ["hmac-sm3", "hmac-sha256"])
def test_signature_algorithms(cas: Hierarchies, algorithm: str) -> None:
    style = VendorStyle(algorithm=algorithm, encoding="hex", timestamp_unit="ms")
    for vendor in _serve(style, cas):
        key = generate_private_key("sm2")
        assert _enroll(_channel(vendor), key).certificate.public_key() == key.public_key()


def test_string_to_sign_is_the_documented_one(vendor: FakeVendorCa) -> None:
    channel = _channel(vendor)
    body = '{"name":"王五"}'.encode()
    expected = b"POST\n/api/ca/v1/cert/apply\n1764121200\n" + b"ab" * 16 + b"\n" + \
        gm_sm3(body).hex().encode()
    assert channel.string_to_sign("POST", "/api/ca/v1/cert/apply", "1764121200", "ab" * 16,
                                  body) == expected
    # and the channel's HMAC-SM3 is the hand-built one over gmssl's SM3 (what the fake checks)
    assert channel._mac(expected) == base64.b64encode(
        gm_hmac_sm3(vendor.style.secret, expected)).decode()


# -- a vendor with its own names, from TOML ----------------------------------------------------

def test_vendor_field_names_from_configuration(custom_vendor: FakeVendorCa) -> None:
    channel = _custom_channel(custom_vendor)
    assert channel.name == "zjca" and channel.status().available
    key = generate_private_key("sm2")
    done = _enroll(channel, key, "doctor-signing", DOCTOR)
    ca = custom_vendor.cas.sm2
    assert done.certificate.public_key() == key.public_key()
    assert done.chain == (ca.certificate, *ca.chain)  # the vendor sent it root first
    assert re.fullmatch(r"ORD-[0-9A-F]{16}", done.reference)
    method, path, body = custom_vendor.received[-1]
    assert (method, path) == ("POST", "/gateway/multica/v2/certApply")
    assert set(body) == {"p10", "certType", "userName", "orgName", "deptName", "jobTitle",
                         "idCode"}
    assert body["certType"] == "DOCTOR_SIGN" and body["p10"].startswith(
        "-----BEGIN CERTIFICATE REQUEST-----")

    renewed = _enroll(channel, key, "doctor-signing", DOCTOR, renewal_of=done.certificate)
    _, path, body = custom_vendor.received[-1]
    assert path == "/gateway/multica/v2/certUpdate"
    assert body["certSn"] == str(done.certificate.serial_number)  # decimal for this vendor

    channel.revoke(renewed.certificate, "key_compromise")
    _, path, body = custom_vendor.received[-1]
    assert body == {"certSn": str(renewed.certificate.serial_number), "revokeReason": "1"}
    assert _status(ca, renewed.certificate).revocation_reason == "key_compromise"

    with pytest.raises(RequestRejected, match="not configured to issue tls-server"):
        channel.prepare(EnrollmentRequest("tls-server", SEAL, key.public_key()))

    custom_vendor.mode = "busy"  # an integer code, listed in retry_codes
    with pytest.raises(ChannelUnavailable, match="busy, try again later: code 5030"):
        _enroll(channel, key)
    custom_vendor.mode = "reject"
    with pytest.raises(RequestRejected, match="refused the request: code 4001: 证书申请信息不完整"):
        _enroll(channel, key)
    custom_vendor.mode = "bad-answer-signature"
    with pytest.raises(ChannelUnavailable, match="signature does not verify"):
        _enroll(channel, key)


# -- failures --------------------------------------------------------------------------------

@pytest.mark.parametrize(("mode", "error", "message"), [
    ("reject", RequestRejected, "refused the request: code E400: 证书申请信息不完整"),
    ("http400", RequestRejected, r"refused the request \(HTTP 400: code E400"),
    ("busy", ChannelUnavailable, "busy, try again later: code E503: 系统繁忙"),
    ("http500", ChannelUnavailable, "answered HTTP 500"),
    ("garbage", ChannelUnavailable, "not a JSON object"),
    ("huge", ChannelUnavailable, "answer over 1048576 bytes"),
    ("huge-stream", ChannelUnavailable, "answer over 1048576 bytes"),
    ("wrong-key", ChannelUnavailable, "certificate for another key than the one enrolled"),
    ("wrong-chain", ChannelUnavailable, "no CA certificate of its chain signed"),
])
def test_vendor_failures(vendor: FakeVendorCa, mode: str, error: type[Exception],
                         message: str) -> None:
    vendor.mode = mode
    with pytest.raises(error, match=message):
        _enroll(_channel(vendor), generate_private_key("sm2"))


def test_slow_vendor_times_out(vendor: FakeVendorCa) -> None:
    vendor.mode = "slow"
    with pytest.raises(ChannelUnavailable, match="did not answer in time"):
        _enroll(_channel(vendor, read_timeout=0.5), generate_private_key("sm2"))


def test_vendor_down() -> None:
    config = VendorStyle().channel_config(f"http://127.0.0.1:{closed_port()}/api")
    channel = VendorHttpChannel(VendorHttpConfig.from_dict(config))
    with pytest.raises(ChannelUnavailable, match="refused the connection"):
        _enroll(channel, generate_private_key("sm2"))


def test_authentication_refusals(vendor: FakeVendorCa) -> None:
    key = generate_private_key("sm2")
    with pytest.raises(RequestRejected, match=r"refused our credentials.*签名验证失败"):
        _enroll(_channel(vendor, secret_hex=secrets.token_hex(32)), key)
    with pytest.raises(RequestRejected, match="HTTP 401: code E401: 未知的应用标识"):
        _enroll(_channel(vendor, app_id="someone-else"), key)
    config = VendorHttpConfig.from_dict(vendor.style.channel_config(vendor.base_url))
    skewed = VendorHttpChannel(config, clock=lambda: time.time() - 3600)
    with pytest.raises(RequestRejected, match="时间戳超出允许范围"):
        _enroll(skewed, key)
    replaying = VendorHttpChannel(config, nonce=lambda: "f" * 32)
    assert replaying.status().available
    refused = replaying.status()
    assert not refused.available and "nonce 重复使用" in refused.detail


def test_refused_before_sending(vendor: FakeVendorCa) -> None:
    channel = _channel(vendor)
    key = generate_private_key("sm2")
    with pytest.raises(RequestRejected, match="unique identifier"):
        channel.prepare(EnrollmentRequest("doctor-signing", SEAL, key.public_key()))
    with pytest.raises(RequestRejected, match="unknown certificate profile"):
        channel.prepare(EnrollmentRequest("dentist", SEAL, key.public_key()))
    pending = channel.prepare(EnrollmentRequest("organization-seal", SEAL, key.public_key()))
    other = _channel(vendor, name="other-vendor")
    with pytest.raises(RequestRejected, match="belongs to channel vendor-test"):
        other.complete(pending, key.sign(pending.to_be_signed, pending.algorithm))
    with pytest.raises(RequestRejected, match="does not hold"):
        enroll(channel, EnrollmentRequest("organization-seal", SEAL, key.public_key()),
               generate_private_key("sm2"))
    assert not vendor.received


# -- configuration ---------------------------------------------------------------------------

BASE = {"name": "v", "base_url": "https://ca.example.cn/api", "app_id": "app",
        "secret": "0123456789abcdef"}


@pytest.mark.parametrize(("change", "message"), [
    ({"base_url": "http://ca.example.cn/api"}, "base_url must use https"),
    ({"base_url": "ftp://ca.example.cn/"}, "base_url must be an http or https URL"),
    ({"base_url": "https://ca.example.cn/api?x=1"}, "base_url takes no query"),
    ({"secret": "short"}, "secret must be at least 16 bytes"),
    ({"secret_hex": "00" * 16}, "exactly one of secret, secret_hex or secret_base64"),
    ({"name": "Vendor A"}, "name must be"),
    ({"app_id": "a b"}, "app_id must be"),
    ({"read_timeout": 0}, "read_timeout must be a number"),
    ({"connect_timeout": "5"}, "connect_timeout must be a number"),
    ({"enroll_path": "cert/apply"}, "enroll_path must be a path"),
    ({"nonce_header": "X-App-Id"}, "headers must differ"),
    ({"signature_header": "X Sig"}, "signature_header must be an HTTP header name"),
    ({"signature_algorithm": "hmac-md5"}, "signature_algorithm must be one of hmac-sm3"),
    ({"fields": {"cert": "x"}}, "unknown logical field 'cert'"),
    ({"fields": {"csr": ""}}, "csr cannot be left out"),
    ({"fields": {"csr": 1}}, "fields must map names to strings"),
    ({"fields": {"name": "user", "title": "user.title"}}, "two request fields to 'user'"),
    ({"fields": {"name": "userName", "title": "userName"}}, "two request fields"),
    ({"profiles": {"dentist": "X"}}, "profiles names 'dentist'"),
    ({"reasons": {"lost": "9"}}, "reasons names 'lost'"),
    ({"retry_codes": "BUSY"}, "retry_codes must be a list"),
    ({"success_code": "0", "retry_codes": [0]}, "retry_codes must not contain the success"),
    ({"max_response_bytes": 10}, "max_response_bytes must be an integer"),
    ({"colour": "blue"}, "unknown configuration key 'colour'"),
    ({"allow_http": "yes"}, "allow_http must be true or false"),
])
def test_configuration_refusals(change: dict[str, Any], message: str) -> None:
    with pytest.raises(RequestRejected, match=f"^vendor CA [^:]+: .*{message}"):
        VendorHttpConfig.from_dict({**BASE, **change})


def test_configuration_accepts() -> None:
    config = VendorHttpConfig.from_dict({**BASE, "success_code": 0, "retry_codes": [1001, "B"],
                                         "fields": {"certificate": "data.cert"}})
    assert config.success_code == "0" and config.retry_codes == frozenset({"1001", "B"})
    assert config.fields["certificate"] == "data.cert" and config.fields["csr"] == "csr"
    assert "0123456789abcdef" not in repr(config)
    assert "0123456789abcdef" not in repr(VendorHttpChannel(config))
    b64 = VendorHttpConfig.from_dict({**{k: v for k, v in BASE.items() if k != "secret"},
                                      "secret_base64": "MDEyMzQ1Njc4OWFiY2RlZg"})
    assert b64.secret == b"0123456789abcdef"
    assert VendorHttpConfig.from_dict({**BASE, "base_url": "http://ca.example.cn",
                                       "allow_http": True}).allow_http
    with pytest.raises(RequestRejected, match=r"ca_file /nonexistent\.pem is not a readable"):
        VendorHttpChannel(VendorHttpConfig.from_dict({**BASE, "ca_file": "/nonexistent.pem"}))
    with pytest.raises(RequestRejected, match="expected a table"):
        VendorHttpConfig.from_dict([])  # type: ignore[arg-type]

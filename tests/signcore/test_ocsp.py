"""signcore.ocsp: requests and responses round-trip for every key type of the test PKI; a
response is trusted only from the issuer or a delegated responder it certified."""

from __future__ import annotations

import datetime as dt

import pytest

from signcore import ocsp
from signcore.errors import DecodeError, InvalidSignature
from signcore.x509 import Extensions
from tests.support.pki import KEY_TYPES, TestPKI, cached_pki, issue_leaf

HOUR = dt.timedelta(hours=1)


@pytest.fixture(params=KEY_TYPES)
def pki(request: pytest.FixtureRequest) -> TestPKI:
    return cached_pki(request.param)


@pytest.mark.parametrize("hash_algorithm", ocsp.CERT_ID_HASHES)
def test_request_round_trip(pki: TestPKI, hash_algorithm: str) -> None:
    ids = [ocsp.CertId.of(pki.doctor.serial_number, pki.issuing, hash_algorithm),
           ocsp.CertId.of(pki.revoked.serial_number, pki.issuing, hash_algorithm)]
    request = ocsp.build_request(ids)
    parsed = ocsp.load_request(request.der)
    assert parsed.cert_ids == tuple(ids)
    assert parsed.nonce == request.nonce and len(request.nonce or b"") == ocsp.NONCE_BYTES
    assert all(c.names_issuer(pki.issuing) and not c.names_issuer(pki.root) for c in ids)
    assert ocsp.load_request(ocsp.build_request(ids, nonce=False).der).nonce is None


def _statuses(pki: TestPKI) -> list[ocsp.SingleStatus]:
    now = pki.now
    return [
        ocsp.SingleStatus(ocsp.CertId.of(pki.doctor.serial_number, pki.issuing),
                          ocsp.CertStatus.GOOD, now, now + HOUR),
        ocsp.SingleStatus(ocsp.CertId.of(pki.revoked.serial_number, pki.issuing),
                          ocsp.CertStatus.REVOKED, now, now + HOUR,
                          revocation_time=now - 2 * HOUR, revocation_reason="key_compromise"),
        ocsp.SingleStatus(ocsp.CertId.of(12345, pki.issuing), ocsp.CertStatus.UNKNOWN, now),
    ]


def test_response_signed_by_the_issuer(pki: TestPKI) -> None:
    statuses = _statuses(pki)
    der = ocsp.build_response(statuses, responder=pki.issuing, signer=pki.issuing_key,
                              nonce=b"n" * 16, produced_at=pki.now)
    response = ocsp.load_response(der)
    assert response.status == "successful" and response.nonce == b"n" * 16
    assert response.produced_at == pki.now
    assert response.responses == tuple(statuses)
    assert response.verify(pki.issuing) == pki.issuing
    revoked = response.status_of(statuses[1].cert_id)
    assert revoked is not None and revoked.revocation_reason == "key_compromise"
    with pytest.raises(InvalidSignature, match="neither the issuer"):
        response.verify(pki.root)


def test_delegated_responder(pki: TestPKI) -> None:
    responder, key = issue_leaf(pki, "CN=OCSP 响应器,O=测试医院,C=CN", extensions=Extensions(
        ca=False, key_usage=frozenset({"digital_signature"}),
        extended_key_usage=("ocsp_signing",)))
    der = ocsp.build_response(_statuses(pki), responder=responder, signer=key,
                              produced_at=pki.now, certs=[responder])
    assert ocsp.load_response(der).verify(pki.issuing) == responder
    # Without the EKU a certificate of the same issuer may not answer for it.
    plain, plain_key = issue_leaf(pki, "CN=不是响应器,O=测试医院,C=CN")
    der = ocsp.build_response(_statuses(pki), responder=plain, signer=plain_key,
                              produced_at=pki.now, certs=[plain])
    with pytest.raises(InvalidSignature, match="OCSPSigning"):
        ocsp.load_response(der).verify(pki.issuing)


def test_tampered_response_is_refused(pki: TestPKI) -> None:
    der = ocsp.build_response(_statuses(pki)[:1], responder=pki.issuing,
                              signer=pki.issuing_key, produced_at=pki.now)
    response = ocsp.load_response(der)
    serial = pki.doctor.serial_number.to_bytes(20, "big").lstrip(b"\0")
    index = der.index(serial)
    forged = der[:index] + bytes([serial[0] ^ 1]) + der[index + 1:]
    with pytest.raises(InvalidSignature):
        ocsp.load_response(forged).verify(pki.issuing)
    assert response.verify(pki.issuing) == pki.issuing


def test_error_responses() -> None:
    for status in ocsp.ERROR_STATUSES:
        response = ocsp.load_response(ocsp.error_response(status))
        assert response.status == status and response.responses == ()
        with pytest.raises(InvalidSignature, match=status):
            response.verify(cached_pki("rsa2048").issuing)
    with pytest.raises(ValueError, match="not an OCSP error status"):
        ocsp.error_response("successful")


@pytest.mark.parametrize("junk", [b"", b"\x30\x00", b"\x30\x03\x02\x01\x01", b"not der"])
def test_malformed_requests(junk: bytes) -> None:
    with pytest.raises(DecodeError):
        ocsp.load_request(junk)


def test_wrong_signer_key_is_refused() -> None:
    pki = cached_pki("rsa2048")
    with pytest.raises(ValueError, match="does not belong"):
        ocsp.build_response(_statuses(pki), responder=pki.issuing, signer=pki.root_key)

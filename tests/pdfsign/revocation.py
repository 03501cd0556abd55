"""A revocation source for the test PKI, as pdfsign's ``RevocationFetcher``: OCSP responses
signed by the issuing CA (signcore.ocsp's responder half) for end-entity certificates, and a
CRL signed by the root for the issuing CA.  Certificates listed in ``revoked`` are answered
``revoked``; those in ``silent`` get no answer (a responder that is down)."""

from __future__ import annotations

import datetime as dt

from pdfsign.ltv import RevocationInfo
from signcore import ocsp
from signcore.x509 import Certificate, RevokedCertificate, build_crl
from tests.support.pki import TestPKI

__all__ = ["TestRevocation"]

_HOUR = dt.timedelta(hours=1)


class TestRevocation:
    """Answers for the certificates of ``pki`` (see the module docstring)."""

    __test__ = False

    def __init__(self, pki: TestPKI, *, revoked: tuple[Certificate, ...] = (),
                 silent: tuple[Certificate, ...] = ()) -> None:
        self.pki = pki
        self.revoked = set(revoked)
        self.silent = set(silent)
        self.asked: list[Certificate] = []

    def __call__(self, certificate: Certificate, issuer: Certificate) -> RevocationInfo:
        self.asked.append(certificate)
        if certificate in self.silent:
            return RevocationInfo()
        now = dt.datetime.now(dt.UTC)
        if issuer == self.pki.root:
            crl = build_crl(issuer=self.pki.root, signer=self.pki.root_key, crl_number=1,
                            this_update=now - _HOUR, next_update=now + 7 * 24 * _HOUR,
                            revoked=[RevokedCertificate(c.serial_number, now - 2 * _HOUR,
                                                        "key_compromise")
                                     for c in self.revoked if c.issuer == self.pki.root.subject])
            return RevocationInfo(crls=(crl.der,))
        assert issuer == self.pki.issuing, issuer.subject
        revoked = certificate in self.revoked
        status = ocsp.SingleStatus(
            ocsp.CertId.of(certificate.serial_number, issuer),
            ocsp.CertStatus.REVOKED if revoked else ocsp.CertStatus.GOOD,
            this_update=now - _HOUR, next_update=now + 24 * _HOUR,
            revocation_time=now - 2 * _HOUR if revoked else None,
            revocation_reason="key_compromise" if revoked else None)
        response = ocsp.build_response([status], responder=issuer, signer=self.pki.issuing_key)
        return RevocationInfo(ocsp_responses=(response,))

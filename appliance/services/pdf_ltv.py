"""Validation data for PAdES B-LT / B-LTA documents the appliance makes or checks.

pdfsign asks a :data:`pdfsign.RevocationFetcher` for the revocation data of every certificate
of a signer's and a TSA's chain.  :class:`ApplianceRevocation` answers:

- for a certificate of the built-in CA (any generation): an OCSP response from the appliance's
  own responder (:meth:`CaService.ocsp`, in process: no HTTP to itself);
- for any other certificate: what ``ca_client.trust.RevocationCache`` has or fetches from the
  certificate's OCSP / CRL URLs (the verification service's cache, with its database store),
  or nothing when there is no cache.

Every call reads the database (the CA's records, the cache), so, as with signing and HTTP, it
must run outside a transaction (the SQLite trap: one connection per transaction).

Threat model: what the fetcher returns is not trusted by itself -- pyHanko checks every OCSP
response and CRL against the issuer before it goes into a DSS or settles a status.
"""

from __future__ import annotations

import pdfsign
from appliance.services.ca import CaService
from ca_client.trust import RevocationCache
from signcore import ocsp
from signcore.x509 import Certificate

__all__ = ["ApplianceRevocation", "validation_data"]


class ApplianceRevocation:
    """The appliance's :data:`pdfsign.RevocationFetcher` (see the module docstring)."""

    def __init__(self, ca: CaService, cache: RevocationCache | None = None) -> None:
        self._ca, self._cache = ca, cache
        self._issuing = {a.certificate for a in ca.authorities()}

    def __call__(self, certificate: Certificate, issuer: Certificate) -> pdfsign.RevocationInfo:
        if issuer in self._issuing:
            request = ocsp.build_request([ocsp.CertId.of(certificate.serial_number, issuer)],
                                         nonce=False)
            return pdfsign.RevocationInfo(ocsp_responses=(self._ca.ocsp(request.der),))
        if self._cache is None:
            return pdfsign.RevocationInfo()
        check = self._cache.check(certificate, issuer, prefer="ocsp")
        if check.data is None:
            return pdfsign.RevocationInfo()
        if check.method == "ocsp":
            return pdfsign.RevocationInfo(ocsp_responses=(check.data,))
        return pdfsign.RevocationInfo(
            crls=(check.data, *((check.delta,) if check.delta is not None else ())))


def validation_data(ca: CaService, cache: RevocationCache | None = None
                    ) -> pdfsign.ValidationData:
    """The appliance's trust anchors and known CA certificates, with its revocation source."""
    anchors, others = ca.trusted_certificates()
    return pdfsign.ValidationData(anchors, others, fetcher=ApplianceRevocation(ca, cache))

"""The exceptions of ca_client: a flat tree (pyca style).  Callers catch :class:`CaError` for
anything this package refuses on purpose; :class:`RequestRejected` is the client's fault (bad
CSR, wrong algorithm, unknown profile: a 4xx, nothing stored); :class:`ChannelUnavailable` is
retryable (a CA that is down or slow) and never affects certificates already issued."""

from __future__ import annotations

import datetime as dt


class CaError(Exception):
    """Base class of every error ca_client raises on purpose."""


class RequestRejected(CaError, ValueError):
    """The enrollment or revocation request itself is unacceptable."""


class UnknownCertificate(CaError, LookupError):
    """No certificate with that issuer and serial number was issued here."""


class AlreadyRevoked(CaError):
    """The certificate is revoked already (its first revocation stands)."""


class IssuerUnusable(CaError):
    """The issuing CA cannot issue now: expired, not yet valid, or revoked."""


class ChannelUnavailable(CaError):
    """The CA channel did not answer or answered with a server error; try again later."""


class PathInvalid(CaError):
    """A certificate does not validate to a trust anchor (:mod:`ca_client.trust`).

    ``reason`` says why, in one word: ``expired``, ``not-yet-valid``, ``revoked``, ``untrusted``
    (no path to a trust anchor), ``bad-signature``, ``disallowed-algorithm``,
    ``revocation-unknown`` (no usable CRL or OCSP answer under a hard-fail policy), ``usage``
    (key usage or EKU) or ``invalid`` (anything else RFC 5280 refuses: CA flags, path length,
    unknown critical extensions, ...).  ``subject`` is the certificate the reason is about when
    known; a revocation also gives ``revoked_at`` and ``revocation_reason`` (a CRLReason name
    such as ``key_compromise``)."""

    def __init__(self, message: str, *, reason: str = "invalid", subject: str | None = None,
                 revoked_at: dt.datetime | None = None,
                 revocation_reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.subject = subject
        self.revoked_at = revoked_at
        self.revocation_reason = revocation_reason

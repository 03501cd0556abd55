"""The exceptions of ca_client: a flat tree (pyca style).  Callers catch :class:`CaError` for
anything this package refuses on purpose; :class:`RequestRejected` is the client's fault (bad
CSR, wrong algorithm, unknown profile: a 4xx, nothing stored); :class:`ChannelUnavailable` is
retryable (a CA that is down or slow) and never affects certificates already issued."""

from __future__ import annotations


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

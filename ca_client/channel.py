"""CA channels: one interface in front of every CA that can certify a key (the built-in CA, a
CMP server, a vendor's HTTP+JSON interface).

Enrollment is two-phase because the key that must prove possession may be a split key whose
signature needs a round trip to the doctor's phone (keysplit): :meth:`Channel.prepare` returns
the exact bytes the key holder signs (a PKCS#10 CertificationRequestInfo, or a CRMF CertRequest
for CMP) and the channel-specific state to keep meanwhile; :meth:`Channel.complete` takes that
signature and obtains the certificate.  Server-held keys do both at once with :func:`enroll`.

A channel that is down raises :class:`~ca_client.errors.ChannelUnavailable` (retryable, never
affects certificates already issued); a request the CA refuses raises
:class:`~ca_client.errors.RequestRejected`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from ca_client.builtin import BuiltinCa
from ca_client.errors import RequestRejected
from ca_client.profiles import SubjectInfo, profile
from signcore.algorithms import SignatureAlgorithm
from signcore.errors import InvalidSignature
from signcore.keys import PublicKey, Signer
from signcore.x509 import Certificate, load_csr, prepare_csr

__all__ = [
    "BuiltinChannel",
    "Channel",
    "ChannelStatus",
    "Enrollment",
    "EnrollmentRequest",
    "PendingEnrollment",
    "enroll",
]


@dataclass(frozen=True)
class EnrollmentRequest:
    profile: str
    subject: SubjectInfo
    public_key: PublicKey
    validity_days: int | None = None


@dataclass(frozen=True)
class PendingEnrollment:
    """An enrollment waiting for the proof-of-possession signature over ``to_be_signed``."""

    channel: str
    request: EnrollmentRequest
    to_be_signed: bytes
    algorithm: SignatureAlgorithm
    renewal_of: Certificate | None = None
    state: Mapping[str, str] = field(default_factory=dict)  # channel-specific, JSON-able


@dataclass(frozen=True)
class Enrollment:
    certificate: Certificate
    chain: tuple[Certificate, ...]  # issuing CA first, up to (not always including) a root
    channel: str
    reference: str = ""  # the CA's own identifier for the transaction, if any


@dataclass(frozen=True)
class ChannelStatus:
    name: str
    kind: str
    available: bool
    detail: str = ""


class Channel(Protocol):
    name: str
    kind: str  # builtin | cmp | vendor-http

    def prepare(self, request: EnrollmentRequest, *,
                renewal_of: Certificate | None = None) -> PendingEnrollment: ...

    def complete(self, pending: PendingEnrollment, signature: bytes) -> Enrollment: ...

    def revoke(self, certificate: Certificate, reason: str) -> None: ...

    def status(self) -> ChannelStatus: ...


def enroll(channel: Channel, request: EnrollmentRequest, signer: Signer, *,
           renewal_of: Certificate | None = None) -> Enrollment:
    """Both phases at once, for a key the appliance holds itself."""
    if signer.public_key() != request.public_key:
        raise RequestRejected("the signer does not hold the key to be certified")
    pending = channel.prepare(request, renewal_of=renewal_of)
    return channel.complete(pending, signer.sign(pending.to_be_signed, pending.algorithm))


def pkcs10_pending(channel: str, request: EnrollmentRequest,
                   renewal_of: Certificate | None) -> PendingEnrollment:
    """The PKCS#10 flavour of :meth:`Channel.prepare` (built-in and vendor channels)."""
    profile(request.profile)  # unknown profiles are refused before any signing round
    unsigned = prepare_csr(request.public_key, "CN=medsign enrollment")
    return PendingEnrollment(channel, request, unsigned.to_be_signed, unsigned.algorithm,
                             renewal_of, {"csr_info": unsigned.info.dump().hex()})


def pkcs10_finish(pending: PendingEnrollment, signature: bytes) -> bytes:
    """The DER of the CSR ``pending`` describes, signed with ``signature`` (checked)."""
    unsigned = prepare_csr(pending.request.public_key, "CN=medsign enrollment")
    if unsigned.info.dump().hex() != pending.state.get("csr_info"):
        raise RequestRejected("the pending enrollment does not match its key")
    try:
        return unsigned.finish(signature).der
    except InvalidSignature:
        raise RequestRejected("the proof-of-possession signature does not verify") from None


class BuiltinChannel:
    """The appliance's own CA as a channel (one per hierarchy: ``builtin-sm2``,
    ``builtin-rsa``)."""

    kind = "builtin"

    def __init__(self, name: str, ca: BuiltinCa) -> None:
        self.name = name
        self._ca = ca

    def prepare(self, request: EnrollmentRequest, *,
                renewal_of: Certificate | None = None) -> PendingEnrollment:
        return pkcs10_pending(self.name, request, renewal_of)

    def complete(self, pending: PendingEnrollment, signature: bytes) -> Enrollment:
        csr = load_csr(pkcs10_finish(pending, signature))
        record = self._ca.issue(pending.request.profile, pending.request.subject, csr=csr,
                                channel=self.name, validity_days=pending.request.validity_days)
        return Enrollment(record.certificate, (self._ca.certificate, *self._ca.chain),
                          self.name, f"{record.serial_number:x}")

    def revoke(self, certificate: Certificate, reason: str) -> None:
        self._ca.revoke(certificate.serial_number, reason)

    def status(self) -> ChannelStatus:
        return ChannelStatus(self.name, self.kind, True, self._ca.certificate.subject)

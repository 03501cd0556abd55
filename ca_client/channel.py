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

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ca_client.builtin import BuiltinCa
from ca_client.errors import RequestRejected
from ca_client.profiles import SubjectInfo, profile
from signcore.algorithms import SignatureAlgorithm
from signcore.errors import InvalidSignature
from signcore.keys import PublicKey, Signer, load_public_key
from signcore.x509 import Certificate, load_certificate, load_csr, prepare_csr

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

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form (strings, numbers, lists and None; bytes as hex), to keep in the
        database while the phone co-signs; :meth:`from_dict` reads it back."""
        request = self.request
        subject: dict[str, Any] = {}
        for f in dataclasses.fields(SubjectInfo):
            value = getattr(request.subject, f.name)
            subject[f.name] = list(value) if isinstance(value, tuple) else value
        return {
            "channel": self.channel,
            "request": {
                "profile": request.profile,
                "subject": subject,
                "public_key": request.public_key.to_der().hex(),
                "validity_days": request.validity_days,
            },
            "to_be_signed": self.to_be_signed.hex(),
            "algorithm": self.algorithm.value,
            "renewal_of": self.renewal_of.der.hex() if self.renewal_of is not None else None,
            "state": dict(self.state),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PendingEnrollment:
        """Read back :meth:`to_dict`; RequestRejected for anything malformed (wrong types, bad
        hex, a public key or certificate that does not decode, an unknown algorithm)."""
        try:
            request = data["request"]
            validity_days = request["validity_days"]
            if validity_days is not None and (
                    not isinstance(validity_days, int) or isinstance(validity_days, bool)):
                raise TypeError("validity_days must be an integer or null")
            state = _mapping(data["state"])
            if not all(isinstance(v, str) for v in state.values()):
                raise TypeError("state values must be strings")
            renewal_of = data["renewal_of"]
            return cls(
                channel=_str(data["channel"]),
                request=EnrollmentRequest(
                    profile=_str(request["profile"]),
                    subject=_subject(_mapping(request["subject"])),
                    public_key=load_public_key(_unhex(request["public_key"])),
                    validity_days=validity_days),
                to_be_signed=_unhex(data["to_be_signed"]),
                algorithm=SignatureAlgorithm(data["algorithm"]),
                renewal_of=None if renewal_of is None else load_certificate(_unhex(renewal_of)),
                state=dict(state))
        except (KeyError, TypeError, ValueError) as exc:  # signcore's DecodeError is a ValueError
            raise RequestRejected(f"not a stored pending enrollment: {exc}") from None


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


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _unhex(value: Any) -> bytes:
    return bytes.fromhex(_str(value))


def _mapping(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise TypeError(f"expected an object, got {type(value).__name__}")
    return value


def _subject(data: Mapping[str, Any]) -> SubjectInfo:
    """A SubjectInfo from its to_dict form: str fields as strings, tuple fields as lists."""
    fields = {f.name: f for f in dataclasses.fields(SubjectInfo)}
    unknown = set(data) - set(fields)
    if unknown:
        raise KeyError(f"unknown subject fields {sorted(unknown)}")
    values: dict[str, Any] = {}
    for name, value in data.items():
        if isinstance(fields[name].default, tuple):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise TypeError(f"subject field {name} must be a list of strings")
            values[name] = tuple(value)
        else:
            values[name] = _str(value)
    return SubjectInfo(**values)


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

"""The built-in CA: SM2 and RSA hierarchies (root -> issuing CA), issuance by profile, revocation,
CRLs (full and delta) and OCSP answers.

Threat model.  The CA keys are the appliance's most valuable keys: the caller holds them only
unwrapped in memory (under the KEK at rest, ``appliance``), and this module only ever asks them
to sign a TBSCertificate built here from a profile -- never bytes a client chose.  A request is
refused (nothing stored) unless its proof of possession verifies, its key type matches the
hierarchy, its profile exists and its subject passes the profile's checks.  Serial numbers are
159 random bits from the OS CSPRNG (``signcore.x509``).  Validity never extends past the issuing
CA's.  Revocation is recorded before any CRL or OCSP answer reflects it, and OCSP answers are
signed per request with a short ``nextUpdate``, so a revocation shows in OCSP at once and in the
CRL at its next publication (the appliance republishes on every revocation).

Storage is the caller's, through :class:`CaRepository` (the appliance implements it on its
database; :class:`MemoryRepository` keeps it in memory for tools and tests).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ca_client.errors import (
    AlreadyRevoked,
    IssuerUnusable,
    RequestRejected,
    UnknownCertificate,
)
from ca_client.profiles import SubjectInfo, profile
from signcore import ocsp
from signcore.algorithms import KeyType
from signcore.errors import DecodeError, InvalidSignature, SigncoreError
from signcore.keys import PrivateKey, PublicKey, Signer, generate_private_key
from signcore.x509 import (
    CRL,
    Certificate,
    CertificateRequest,
    Extensions,
    RevokedCertificate,
    build_crl,
    issue_certificate,
)

__all__ = [
    "ALGORITHMS",
    "REVOCATION_REASONS",
    "BuiltinCa",
    "CaRepository",
    "CaUrls",
    "Hierarchy",
    "IssuedRecord",
    "MemoryRepository",
    "OcspResponder",
    "generate_hierarchy",
]

#: hierarchy algorithm -> the key spec of its CA keys
ALGORITHMS = {"sm2": "sm2", "rsa": "rsa3072"}
_KEY_TYPES = {"sm2": KeyType.SM2, "rsa": KeyType.RSA}
REVOCATION_REASONS = ("unspecified", "key_compromise", "affiliation_changed", "superseded",
                      "cessation_of_operation", "privilege_withdrawn")
CLOCK_SKEW = dt.timedelta(minutes=5)  # notBefore this far back: relying parties' clocks differ
OCSP_VALIDITY = dt.timedelta(minutes=1)  # a cached "good" is at most this stale
CRL_VALIDITY = dt.timedelta(days=1)
_CA_USAGE = frozenset({"key_cert_sign", "crl_sign"})

Clock = Callable[[], dt.datetime]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


@dataclass(frozen=True)
class Hierarchy:
    """A freshly generated hierarchy: the caller wraps the keys and stores the certificates."""

    algorithm: str
    root: Certificate
    root_key: PrivateKey
    issuing: Certificate
    issuing_key: PrivateKey


def generate_hierarchy(algorithm: str, organization: str, *, now: dt.datetime | None = None,
                       root_years: int = 20, issuing_years: int = 10,
                       generation: int = 1) -> Hierarchy:
    """A root CA (pathlen 1) and an issuing CA (pathlen 0) for ``algorithm`` (sm2 | rsa)."""
    if algorithm not in ALGORITHMS:
        raise RequestRejected(f"unknown CA algorithm {algorithm!r}; one of sm2, rsa")
    if not organization.strip():
        raise RequestRejected("the CA needs the organization's name")
    start = (now or _now()) - CLOCK_SKEW
    tag = algorithm.upper()
    root_key = generate_private_key(ALGORITHMS[algorithm])
    issuing_key = generate_private_key(ALGORITHMS[algorithm])
    base = SubjectInfo(common_name="x", organization=organization)
    root = issue_certificate(
        subject=dataclasses.replace(base, common_name=f"{organization} {tag} 根 CA G{generation}")
        .name(), public_key=root_key.public_key(), signer=root_key, not_before=start,
        days=365 * root_years + root_years // 4,
        extensions=Extensions(ca=True, path_length=1, key_usage=_CA_USAGE))
    issuing = issue_certificate(
        subject=dataclasses.replace(base, common_name=f"{organization} {tag} 签发 CA G{generation}")
        .name(), public_key=issuing_key.public_key(), signer=root_key, issuer=root,
        not_before=start, days=365 * issuing_years + issuing_years // 4,
        extensions=Extensions(ca=True, path_length=0, key_usage=_CA_USAGE))
    return Hierarchy(algorithm, root, root_key, issuing, issuing_key)


@dataclass(frozen=True)
class IssuedRecord:
    ca_id: str
    serial_number: int
    profile: str
    certificate: Certificate
    channel: str = "builtin"
    revoked_at: dt.datetime | None = None
    revocation_reason: str | None = None


class CaRepository(Protocol):
    """Where a CA keeps what it issued and revoked."""

    def add_issued(self, record: IssuedRecord) -> None: ...

    def find_issued(self, ca_id: str, serial_number: int) -> IssuedRecord | None: ...

    def mark_revoked(self, ca_id: str, serial_number: int, when: dt.datetime,
                     reason: str) -> IssuedRecord:
        """Record the revocation; UnknownCertificate / AlreadyRevoked."""
        ...

    def revoked(self, ca_id: str, since: dt.datetime | None = None) -> list[RevokedCertificate]:
        """Every revocation of ``ca_id`` (recorded at or after ``since``)."""
        ...


class MemoryRepository:
    """A :class:`CaRepository` in process memory (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._issued: dict[tuple[str, int], IssuedRecord] = {}

    def add_issued(self, record: IssuedRecord) -> None:
        with self._lock:
            self._issued[(record.ca_id, record.serial_number)] = record

    def find_issued(self, ca_id: str, serial_number: int) -> IssuedRecord | None:
        with self._lock:
            return self._issued.get((ca_id, serial_number))

    def mark_revoked(self, ca_id: str, serial_number: int, when: dt.datetime,
                     reason: str) -> IssuedRecord:
        with self._lock:
            record = self._issued.get((ca_id, serial_number))
            if record is None:
                raise UnknownCertificate(f"no certificate {serial_number:x} from {ca_id}")
            if record.revoked_at is not None:
                raise AlreadyRevoked(f"certificate {serial_number:x} is revoked already")
            record = dataclasses.replace(record, revoked_at=when, revocation_reason=reason)
            self._issued[(ca_id, serial_number)] = record
            return record

    def revoked(self, ca_id: str, since: dt.datetime | None = None) -> list[RevokedCertificate]:
        with self._lock:
            return [RevokedCertificate(r.serial_number, r.revoked_at, r.revocation_reason)
                    for r in self._issued.values()
                    if r.ca_id == ca_id and r.revoked_at is not None
                    and (since is None or r.revoked_at >= since)]


@dataclass(frozen=True)
class CaUrls:
    """Where relying parties find this CA's CRL, OCSP responder and certificate."""

    crl: str | None = None
    delta_crl: str | None = None
    ocsp: str | None = None
    ca_issuers: str | None = None


class BuiltinCa:
    """One issuing CA: issues by profile, revokes, signs CRLs and OCSP answers."""

    def __init__(self, ca_id: str, issuing: Certificate, signer: Signer,
                 repository: CaRepository, *, chain: Sequence[Certificate] = (),
                 urls: CaUrls | None = None, clock: Clock = _now) -> None:
        self.ca_id = ca_id
        self.certificate = issuing
        self.chain = tuple(chain)  # above the issuing CA: the root (and cross-certificates)
        self._signer = signer
        self._repository = repository
        self._urls = urls or CaUrls()
        self._clock = clock
        key_type = issuing.public_key().key_type
        self.algorithm = next(a for a, t in _KEY_TYPES.items() if t is key_type)
        self._names: dict[str, tuple[bytes, bytes]] = {}  # CertID hash -> (name, key) hashes

    def answers_for(self, cert_id: ocsp.CertId) -> bool:
        """True if ``cert_id`` names this CA as the issuer (hashes computed once per
        algorithm: every OCSP request asks)."""
        hashes = self._names.get(cert_id.hash_algorithm)
        if hashes is None:
            if not cert_id.names_issuer(self.certificate):
                return False
            hashes = (cert_id.issuer_name_hash, cert_id.issuer_key_hash)
            self._names[cert_id.hash_algorithm] = hashes
        return hashes == (cert_id.issuer_name_hash, cert_id.issuer_key_hash)

    # -- issuance

    def issue(self, profile_name: str, subject: SubjectInfo, *,
              csr: CertificateRequest | None = None, public_key: PublicKey | None = None,
              channel: str = "builtin", validity_days: int | None = None) -> IssuedRecord:
        """Issue a certificate for ``csr`` (its proof of possession is checked) or for a
        ``public_key`` the appliance generated itself (server-held keys)."""
        chosen = profile(profile_name)
        subject = subject.checked(chosen)
        key = self._requested_key(csr, public_key)
        now = self._clock()
        self._check_usable(now)
        days = chosen.validity_days if validity_days is None else validity_days
        if not 0 < days <= chosen.validity_days:
            raise RequestRejected(f"validity must be 1 to {chosen.validity_days} days")
        not_after = min(now + dt.timedelta(days=days), self.certificate.not_after)
        extensions = chosen.extensions(subject, urls=self._urls)
        try:
            certificate = issue_certificate(
                subject=subject.name(), public_key=key, signer=self._signer,
                issuer=self.certificate, not_before=now - CLOCK_SKEW, not_after=not_after,
                extensions=extensions)
        except ValueError as exc:
            raise RequestRejected(str(exc)) from exc
        record = IssuedRecord(self.ca_id, certificate.serial_number, chosen.name, certificate,
                              channel)
        self._repository.add_issued(record)
        return record

    def _requested_key(self, csr: CertificateRequest | None,
                       public_key: PublicKey | None) -> PublicKey:
        if (csr is None) == (public_key is None):
            raise RequestRejected("give exactly one of a CSR or a public key")
        if csr is not None:
            try:
                csr.verify()
                public_key = csr.public_key()
            except (InvalidSignature, SigncoreError) as exc:
                raise RequestRejected(f"the CSR's proof of possession does not verify: {exc}"
                                      ) from None
        assert public_key is not None
        if public_key.key_type is not _KEY_TYPES[self.algorithm]:
            raise RequestRejected(f"a {public_key.key_type.value} key cannot be certified by "
                                  f"the {self.algorithm.upper()} CA")
        return public_key

    def _check_usable(self, now: dt.datetime) -> None:
        if not self.certificate.is_valid_at(now):
            raise IssuerUnusable(f"the issuing CA {self.ca_id} is not valid now "
                                 f"({self.certificate.not_before:%Y-%m-%d} to "
                                 f"{self.certificate.not_after:%Y-%m-%d})")

    # -- revocation

    def revoke(self, serial_number: int, reason: str = "unspecified",
               when: dt.datetime | None = None) -> IssuedRecord:
        if reason not in REVOCATION_REASONS:
            raise RequestRejected(f"unknown revocation reason {reason!r}; one of "
                                  f"{', '.join(REVOCATION_REASONS)}")
        return self._repository.mark_revoked(self.ca_id, serial_number,
                                             (when or self._clock()).replace(microsecond=0),
                                             reason)

    def crl(self, number: int, *, delta_of: tuple[int, dt.datetime] | None = None) -> CRL:
        """A full CRL with CRL number ``number``, or (``delta_of`` = (base number, base
        thisUpdate)) a delta CRL of the revocations since that base."""
        now = self._clock()
        since = delta_of[1] if delta_of else None
        return build_crl(issuer=self.certificate, signer=self._signer,
                         revoked=self._repository.revoked(self.ca_id, since),
                         crl_number=number, this_update=now, next_update=now + CRL_VALIDITY,
                         delta_base=delta_of[0] if delta_of else None,
                         freshest_crl_urls=(self._urls.delta_crl,) if self._urls.delta_crl
                         else ())

    def status(self, cert_id: ocsp.CertId) -> ocsp.SingleStatus:
        now = self._clock()
        record = self._repository.find_issued(self.ca_id, cert_id.serial_number)
        if record is None:
            return ocsp.SingleStatus(cert_id, ocsp.CertStatus.UNKNOWN, now, now + OCSP_VALIDITY)
        if record.revoked_at is not None:
            return ocsp.SingleStatus(cert_id, ocsp.CertStatus.REVOKED, now, now + OCSP_VALIDITY,
                                     record.revoked_at, record.revocation_reason)
        return ocsp.SingleStatus(cert_id, ocsp.CertStatus.GOOD, now, now + OCSP_VALIDITY)

    def sign_ocsp(self, statuses: Sequence[ocsp.SingleStatus], nonce: bytes | None) -> bytes:
        return ocsp.build_response(statuses, responder=self.certificate, signer=self._signer,
                                   nonce=nonce, produced_at=self._clock())


class OcspResponder:
    """Answers OCSP requests for several CAs (RFC 6960): each request is answered by the CA its
    CertIDs name, signed with that CA's key; requests naming several CAs or none of ours get
    ``unauthorized``, unparsable ones ``malformed_request``."""

    def __init__(self, cas: Sequence[BuiltinCa]) -> None:
        self._cas = list(cas)

    def respond(self, request_der: bytes) -> bytes:
        try:
            request = ocsp.load_request(request_der)
        except DecodeError:
            return ocsp.error_response("malformed_request")
        owners = {id(ca): ca for cert_id in request.cert_ids for ca in self._cas
                  if ca.answers_for(cert_id)}
        if len(owners) != 1 or not all(any(ca.answers_for(c) for ca in owners.values())
                                       for c in request.cert_ids):
            return ocsp.error_response("unauthorized")
        ca = next(iter(owners.values()))
        return ca.sign_ocsp([ca.status(cert_id) for cert_id in request.cert_ids], request.nonce)

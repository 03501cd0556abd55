"""The declared test PKI: every hierarchy the tests use, described as data, built on demand.

Provenance: nothing here is a stored fixture.  The certificates, keys and CRLs are generated at
test time by signcore's own builders (:func:`signcore.x509.issue_certificate`,
:func:`signcore.x509.build_crl`, :func:`signcore.keys.generate_private_key`) from the declaration
below, so keys (and therefore signatures, key identifiers and serial numbers) are fresh random
values on every run; tests must only rely on what the declaration fixes.  The counterpart that
OpenSSL makes (roots, leaves, CSRs and CRLs produced by the ``openssl`` CLI and checked by signcore)
is created by ``tests/peers/test_openssl_x509.py``, which also has OpenSSL check this PKI.

One hierarchy per key type (``sm2``, ``rsa2048``, ``ecdsa-p256``), all of the same shape::

    root CA        10 years (from 2 years ago), CA, pathlen 1, keyCertSign+cRLSign, self-signed
    └─ issuing CA   5 years (from 2 years ago), CA, pathlen 0, keyCertSign+cRLSign
       ├─ doctor    1 year, digitalSignature+nonRepudiation, EKU emailProtection,
       │            subject CN=张三,OU=内科,O=测试医院,C=CN, SAN email
       ├─ tsa       1 year, digitalSignature, EKU timeStamping CRITICAL (RFC 3161 2.3)
       ├─ tls       1 year, digitalSignature, EKU serverAuth, SAN DNS:localhost, IP:127.0.0.1
       ├─ expired   valid from 400 to 35 days before ``now``
       └─ revoked   a valid doctor-like certificate, listed in ``crl`` (keyCompromise)
    crl             issued by the issuing CA, CRL number 1, thisUpdate now-1h, nextUpdate now+7d

basicConstraints is critical everywhere, keyUsage is critical everywhere.  The CAs start two
years back so that the expired leaf was once valid under them (validation in the past works).
Every end-entity certificate carries CRL distribution point, AIA (OCSP + caIssuers) and a
certificate policy from :data:`URLS` / :data:`POLICY_OID`.  Times are relative to the moment the
PKI is built (``TestPKI.now``, whole seconds, UTC); every valid certificate's notBefore is at
least one day earlier so that small clock differences with OpenSSL do not matter.

:func:`cached_pki` builds each hierarchy once per process (so once per xdist worker) and shares
it between tests: treat the objects as read-only.  A test that needs something unusual builds
its own certificate with :func:`issue_leaf` (or ``issue_certificate``) under these CAs.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from signcore.keys import PrivateKey, generate_private_key
from signcore.x509 import (
    CRL,
    Certificate,
    Extensions,
    RevokedCertificate,
    build_crl,
    issue_certificate,
)

__all__ = [
    "CA_NAMES",
    "CRL_DECLARATION",
    "DECLARATION",
    "DOCTOR_SUBJECT",
    "KEY_TYPES",
    "POLICY_OID",
    "URLS",
    "CRLSpec",
    "CertSpec",
    "TestPKI",
    "build_pki",
    "cached_pki",
    "issue_leaf",
    "write_pem",
]

#: The key types a hierarchy can be built for (``signcore.keys.generate_private_key`` specs).
KEY_TYPES = ("sm2", "rsa2048", "ecdsa-p256")

#: A private test OID under the ``2.999`` example arc (X.660), used as certificate policy.
POLICY_OID = "2.999.1.1"
URLS = {
    "crl": "http://pki.medsign.test/issuing.crl",
    "ocsp": "http://ocsp.medsign.test/",
    "ca_issuers": "http://pki.medsign.test/issuing.cer",
}
DOCTOR_SUBJECT = "CN=张三,OU=内科,O=测试医院,C=CN"
_TAG = {"sm2": "SM2", "rsa2048": "RSA", "ecdsa-p256": "ECDSA"}
CA_NAMES = {
    "root": "CN=medsign test root CA {tag},O=测试医院,C=CN",
    "issuing": "CN=medsign test issuing CA {tag},O=测试医院,C=CN",
}

_CA_USAGE = frozenset({"key_cert_sign", "crl_sign"})
_SIGNING_USAGE = frozenset({"digital_signature", "non_repudiation"})


def _end_entity(key_usage: frozenset[str], eku: str, *, eku_critical: bool = False,
                emails: tuple[str, ...] = (), dns_names: tuple[str, ...] = (),
                ip_addresses: tuple[str, ...] = ()) -> Extensions:
    """End-entity extensions: the given usages plus CRL DP, AIA and policy of :data:`URLS`."""
    return Extensions(
        ca=False, key_usage=key_usage, extended_key_usage=(eku,),
        extended_key_usage_critical=eku_critical, emails=emails, dns_names=dns_names,
        ip_addresses=ip_addresses, crl_urls=(URLS["crl"],), ocsp_urls=(URLS["ocsp"],),
        ca_issuers_urls=(URLS["ca_issuers"],), policies=(POLICY_OID,))


@dataclass(frozen=True)
class CertSpec:
    """One certificate of the declaration.

    ``issuer`` is the role of the issuing certificate (None: self-signed).  ``valid_from`` and
    ``valid_to`` are offsets from the build time.  ``{tag}`` in the subject becomes SM2/RSA/ECDSA.
    """

    role: str
    subject: str
    issuer: str | None
    valid_from: dt.timedelta
    valid_to: dt.timedelta
    extensions: Extensions


_DAY = dt.timedelta(days=1)

#: The declaration: built in this order (an issuer always comes before what it issues).
DECLARATION: tuple[CertSpec, ...] = (
    CertSpec("root", CA_NAMES["root"], None, -730 * _DAY, 2920 * _DAY,
             Extensions(ca=True, path_length=1, key_usage=_CA_USAGE)),
    CertSpec("issuing", CA_NAMES["issuing"], "root", -730 * _DAY, 1095 * _DAY,
             Extensions(ca=True, path_length=0, key_usage=_CA_USAGE,
                        crl_urls=("http://pki.medsign.test/root.crl",))),
    CertSpec("doctor", DOCTOR_SUBJECT, "issuing", -_DAY, 365 * _DAY,
             _end_entity(_SIGNING_USAGE, "email_protection",
                         emails=("zhangsan@hospital.medsign.test",))),
    CertSpec("tsa", "CN=medsign test TSA {tag},O=测试医院,C=CN", "issuing", -_DAY, 365 * _DAY,
             _end_entity(frozenset({"digital_signature"}), "time_stamping", eku_critical=True)),
    CertSpec("tls", "CN=localhost,O=测试医院,C=CN", "issuing", -_DAY, 365 * _DAY,
             _end_entity(frozenset({"digital_signature"}), "server_auth",
                         dns_names=("localhost",), ip_addresses=("127.0.0.1",))),
    CertSpec("expired", "CN=李四 (expired),OU=外科,O=测试医院,C=CN", "issuing",
             -400 * _DAY, -35 * _DAY,
             _end_entity(_SIGNING_USAGE, "email_protection")),
    CertSpec("revoked", "CN=王五 (revoked),OU=儿科,O=测试医院,C=CN", "issuing", -_DAY, 365 * _DAY,
             _end_entity(_SIGNING_USAGE, "email_protection")),
)


@dataclass(frozen=True)
class CRLSpec:
    """The CRL of the declaration: its issuer's role, number, and the roles it lists (with the
    revocation reason, an asn1crypto CRLReason name)."""

    issuer: str
    number: int
    revoked: tuple[tuple[str, str], ...]
    this_update: dt.timedelta
    next_update: dt.timedelta


CRL_DECLARATION = CRLSpec("issuing", 1, (("revoked", "key_compromise"),),
                          -dt.timedelta(hours=1), 7 * _DAY)


@dataclass(frozen=True)
class TestPKI:
    """A built hierarchy (see the module docstring).  Read-only: it may be shared."""

    __test__ = False  # not a test class, even when imported into a test module

    key_type: str
    now: dt.datetime
    root: Certificate
    root_key: PrivateKey
    issuing: Certificate
    issuing_key: PrivateKey
    doctor: Certificate
    doctor_key: PrivateKey
    tsa: Certificate
    tsa_key: PrivateKey
    tls: Certificate
    tls_key: PrivateKey
    expired: Certificate
    expired_key: PrivateKey
    revoked: Certificate
    revoked_key: PrivateKey
    crl: CRL

    @property
    def tag(self) -> str:
        """SM2, RSA or ECDSA: what ``{tag}`` became in the subjects."""
        return _TAG[self.key_type]

    @property
    def chain(self) -> tuple[Certificate, Certificate]:
        """The CA certificates, issuing CA first: what a signer ships with its certificate."""
        return (self.issuing, self.root)

    def certificate(self, role: str) -> Certificate:
        cert = getattr(self, role)
        assert isinstance(cert, Certificate), role
        return cert

    def key(self, role: str) -> PrivateKey:
        key = getattr(self, f"{role}_key")
        assert isinstance(key, PrivateKey), role
        return key


def build_pki(key_type: str, now: dt.datetime | None = None) -> TestPKI:
    """Build the declared hierarchy for ``key_type`` with fresh keys, relative to ``now``."""
    if key_type not in KEY_TYPES:
        raise ValueError(f"unknown key type {key_type!r}; one of {KEY_TYPES}")
    when = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    certs: dict[str, Certificate] = {}
    keys: dict[str, PrivateKey] = {}
    for spec in DECLARATION:
        key = generate_private_key(key_type)
        certs[spec.role] = issue_certificate(
            subject=spec.subject.format(tag=_TAG[key_type]),
            public_key=key.public_key(),
            signer=keys[spec.issuer] if spec.issuer else key,
            issuer=certs[spec.issuer] if spec.issuer else None,
            not_before=when + spec.valid_from,
            not_after=when + spec.valid_to,
            extensions=spec.extensions,
        )
        keys[spec.role] = key
    spec_crl = CRL_DECLARATION
    crl = build_crl(
        issuer=certs[spec_crl.issuer],
        signer=keys[spec_crl.issuer],
        revoked=[RevokedCertificate(certs[role].serial_number, when - dt.timedelta(hours=2),
                                    reason) for role, reason in spec_crl.revoked],
        crl_number=spec_crl.number,
        this_update=when + spec_crl.this_update,
        next_update=when + spec_crl.next_update,
    )
    return TestPKI(
        key_type=key_type, now=when, crl=crl,
        root=certs["root"], root_key=keys["root"],
        issuing=certs["issuing"], issuing_key=keys["issuing"],
        doctor=certs["doctor"], doctor_key=keys["doctor"],
        tsa=certs["tsa"], tsa_key=keys["tsa"],
        tls=certs["tls"], tls_key=keys["tls"],
        expired=certs["expired"], expired_key=keys["expired"],
        revoked=certs["revoked"], revoked_key=keys["revoked"],
    )


@functools.cache
def cached_pki(key_type: str) -> TestPKI:
    """:func:`build_pki` once per process and key type; tests in one worker share the result."""
    return build_pki(key_type)


def issue_leaf(
    pki: TestPKI,
    subject: str = "CN=测试叶子,O=测试医院,C=CN",
    *,
    extensions: Extensions | None = None,
    key: PrivateKey | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> tuple[Certificate, PrivateKey]:
    """A one-off end-entity certificate under ``pki``'s issuing CA (a fresh key unless given)."""
    key = key or generate_private_key(pki.key_type)
    cert = issue_certificate(
        subject=subject, public_key=key.public_key(), signer=pki.issuing_key, issuer=pki.issuing,
        not_before=not_before or pki.now - _DAY,
        not_after=not_after or pki.now + 30 * _DAY,
        extensions=extensions or Extensions(ca=False, key_usage=_SIGNING_USAGE),
    )
    return cert, key


class _HasPem(Protocol):
    def to_pem(self) -> bytes: ...


def write_pem(path: str | os.PathLike[str], *objs: _HasPem) -> Path:
    """Write the PEM of each object (certificates, CSRs, CRLs, keys) into one file; its path."""
    target = Path(path)
    target.write_bytes(b"".join(obj.to_pem() for obj in objs))
    return target


class PkiFiles:
    """A built PKI written where a command-line peer can read it: the CA certificates up front,
    end-entity certificates and keys on request, and scratch files in the same directory."""

    def __init__(self, pki: TestPKI, directory: Path) -> None:
        self.pki = pki
        self.dir = directory
        self.root = write_pem(directory / "root.pem", pki.root)
        self.issuing = write_pem(directory / "issuing.pem", pki.issuing)
        self.chain = write_pem(directory / "chain.pem", pki.issuing, pki.root)

    def cert_file(self, role: str) -> Path:
        return write_pem(self.dir / f"{role}.pem", self.pki.certificate(role))

    def key_file(self, role: str) -> Path:
        return write_pem(self.dir / f"{role}.key", self.pki.key(role))

    def path(self, name: str, content: bytes | None = None) -> Path:
        target = self.dir / name
        if content is not None:
            target.write_bytes(content)
        return target

"""Certificate profiles per use, and the subject fields of the health sector.

A profile fixes what a certificate may do (key usage, EKU), how long it lives, and which
subject fields it needs; everything variable comes from :class:`SubjectInfo`.  Person
certificates (doctor, pharmacist, nurse) carry the person's name, organisation, department and
title, and -- instead of the national ID number, which must not be published in a certificate
that relying parties copy around -- a pseudonymous unique identifier derived from it by the
appliance (HMAC-SM3 under an installation key): it is stable across renewals and CA channels,
so one person's certificates can be linked without exposing the number.  It goes into the
subject's ``serialNumber`` attribute and into the GM/T 0015 "identify code" extension
(1.2.156.10260.4.1.1, non-critical).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from asn1crypto import core, x509

from ca_client.errors import RequestRejected
from signcore.x509 import Certificate, Extensions

__all__ = ["OID_IDENTIFY_CODE", "PROFILES", "Profile", "SubjectInfo", "profile"]

OID_IDENTIFY_CODE = "1.2.156.10260.4.1.1"
_SIGNING = frozenset({"digital_signature", "non_repudiation"})
_UNIQUE_ID = re.compile(r"^[0-9A-Za-z._-]{8,64}$")


@dataclass(frozen=True)
class Profile:
    name: str
    title: str  # zh-CN, for the console and the doctor's app
    validity_days: int
    key_usage: frozenset[str]
    extended_key_usage: tuple[str, ...] = ()
    eku_critical: bool = False
    person: bool = False  # needs name + unique id (doctor, pharmacist, nurse)
    server_held: bool = False  # the appliance holds the key (seal, TSA, TLS, updates)
    dns_names_allowed: bool = False

    def extensions(self, subject: SubjectInfo, *, urls: Any) -> Extensions:
        """The extensions of a certificate for ``subject``; ``urls``: the CA's
        :class:`~ca_client.builtin.CaUrls` (CRL, delta CRL, OCSP, CA certificate)."""
        extra: tuple[x509.Extension, ...] = ()
        if subject.unique_id:
            extra = (x509.Extension({"extn_id": OID_IDENTIFY_CODE, "critical": False,
                                     "extn_value": core.UTF8String(subject.unique_id).dump()}),)
        return Extensions(
            ca=False, key_usage=self.key_usage, extended_key_usage=self.extended_key_usage,
            extended_key_usage_critical=self.eku_critical,
            dns_names=subject.dns_names if self.dns_names_allowed else (),
            ip_addresses=subject.ip_addresses if self.dns_names_allowed else (),
            crl_urls=_one(urls.crl), freshest_crl_urls=_one(urls.delta_crl),
            ocsp_urls=_one(urls.ocsp), ca_issuers_urls=_one(urls.ca_issuers), extra=extra)


def _one(url: str | None) -> tuple[str, ...]:
    return (url,) if url else ()


def _years(years: int) -> int:
    return 365 * years + years // 4


PROFILES: dict[str, Profile] = {p.name: p for p in (
    Profile("doctor-signing", "医师签名证书", _years(2), _SIGNING, ("email_protection",),
            person=True),
    Profile("pharmacist-signing", "药师签名证书", _years(2), _SIGNING, ("email_protection",),
            person=True),
    Profile("nurse-signing", "护士签名证书", _years(2), _SIGNING, ("email_protection",),
            person=True),
    Profile("organization-seal", "机构印章证书", _years(3), _SIGNING, server_held=True),
    Profile("tsa", "时间戳服务证书", _years(5), frozenset({"digital_signature"}),
            ("time_stamping",), eku_critical=True, server_held=True),
    Profile("tls-server", "TLS 服务器证书", _years(1),
            frozenset({"digital_signature", "key_encipherment"}), ("server_auth",),
            server_held=True, dns_names_allowed=True),
    Profile("update-signing", "升级包签名证书", _years(3), frozenset({"digital_signature"}),
            ("code_signing",), server_held=True),
)}


def profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise RequestRejected(f"unknown certificate profile {name!r}; one of "
                              f"{', '.join(sorted(PROFILES))}") from None


@dataclass(frozen=True)
class SubjectInfo:
    """The variable part of a subject.  ``common_name``: the person's name, the seal's name or
    the server's host name; ``unique_id``: the pseudonymous identifier (module docstring)."""

    common_name: str
    organization: str
    department: str = ""
    title: str = ""
    unique_id: str = ""
    country: str = "CN"
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()

    def checked(self, for_profile: Profile) -> SubjectInfo:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                  if isinstance(getattr(self, f.name), str)}
        for name, value in fields.items():
            if len(value) > 128 or any(ord(c) < 0x20 for c in value):
                raise RequestRejected(f"subject field {name} is too long or has control "
                                      f"characters")
        if not self.common_name.strip() or not self.organization.strip():
            raise RequestRejected("the subject needs a common name and an organization")
        if len(self.country) != 2 or not self.country.isalpha():
            raise RequestRejected("country must be a two-letter code")
        if for_profile.person and not _UNIQUE_ID.match(self.unique_id):
            raise RequestRejected("a person's certificate needs its unique identifier "
                                  "(8 to 64 letters, digits, '.', '_' or '-')")
        if (self.dns_names or self.ip_addresses) and not for_profile.dns_names_allowed:
            raise RequestRejected(f"profile {for_profile.name} takes no DNS names or addresses")
        return self

    @classmethod
    def from_certificate(cls, certificate: Certificate) -> SubjectInfo:
        """The subject fields of an issued certificate (what a renewal asks for again)."""
        native = certificate.subject_name.native
        extensions = certificate.extensions
        return cls(common_name=str(native.get("common_name", "")),
                   organization=str(native.get("organization_name", "")),
                   department=str(native.get("organizational_unit_name", "")),
                   title=str(native.get("title", "")),
                   unique_id=str(native.get("serial_number", "")),
                   country=str(native.get("country_name", "CN")),
                   dns_names=extensions.dns_names, ip_addresses=extensions.ip_addresses)

    def name(self) -> x509.Name:
        attributes: dict[str, Any] = {"country_name": self.country,
                                      "organization_name": self.organization}
        if self.department:
            attributes["organizational_unit_name"] = self.department
        if self.title:
            attributes["title"] = self.title
        attributes["common_name"] = self.common_name
        if self.unique_id:
            attributes["serial_number"] = self.unique_id
        return x509.Name.build(attributes, use_printable=False)

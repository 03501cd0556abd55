"""ca_client: where certificates come from.

- :mod:`ca_client.profiles`: certificate profiles per use (doctor / pharmacist / nurse signing,
  organisation seal, TSA, TLS server, update signing) and the health-sector subject fields;
- :mod:`ca_client.builtin`: the built-in CA (SM2 and RSA hierarchies, issuance, revocation,
  CRLs, OCSP answers) over a caller-provided repository;
- :mod:`ca_client.channel`: the channel interface (two-phase enrollment, revocation, status)
  and the built-in CA as a channel.
- :mod:`ca_client.cmp`: a CMP server (RFC 4210 over HTTP, lightweight profile RFC 9483: ir / cr /
  kur, certConf, rr, genm; PBM or signature protection both ways) as a channel.
- :mod:`ca_client.vendor_http`: a licensed third-party CA's HTTP+JSON interface (T/SHIA
  013-2024 shape, HMAC-SM3 signed requests) as a channel, fitted to each vendor by configuration.
- :mod:`ca_client.trust`: the trust store (several roots, cross-certificates), path validation
  on pyhanko-certvalidator with SM2 signatures verified by signcore, and revocation checking
  (CRL and OCSP, cached, with a grace period and a hard-fail / soft-fail policy).

Depends on ``signcore`` only; the appliance stores, wraps and serves.
"""

from ca_client.builtin import (
    ALGORITHMS,
    REVOCATION_REASONS,
    BuiltinCa,
    CaRepository,
    CaUrls,
    Hierarchy,
    IssuedRecord,
    MemoryRepository,
    OcspResponder,
    generate_hierarchy,
)
from ca_client.channel import (
    BuiltinChannel,
    Channel,
    ChannelStatus,
    Enrollment,
    EnrollmentRequest,
    PendingEnrollment,
    enroll,
)
from ca_client.cmp import CmpChannel, CmpConfig
from ca_client.errors import (
    AlreadyRevoked,
    CaError,
    ChannelUnavailable,
    IssuerUnusable,
    PathInvalid,
    RequestRejected,
    UnknownCertificate,
)
from ca_client.profiles import PROFILES, Profile, SubjectInfo, profile
from ca_client.trust import (
    CachedRevocation,
    RevocationCache,
    RevocationCheck,
    RevocationMode,
    RevocationPolicy,
    RevocationStore,
    SM2SignatureValidator,
    TrustStore,
    Usage,
    ValidationResult,
    validate,
)
from ca_client.vendor_http import VendorHttpChannel, VendorHttpConfig

__all__ = [
    "ALGORITHMS",
    "PROFILES",
    "REVOCATION_REASONS",
    "AlreadyRevoked",
    "BuiltinCa",
    "BuiltinChannel",
    "CaError",
    "CaRepository",
    "CaUrls",
    "CachedRevocation",
    "Channel",
    "ChannelStatus",
    "ChannelUnavailable",
    "CmpChannel",
    "CmpConfig",
    "Enrollment",
    "EnrollmentRequest",
    "Hierarchy",
    "IssuedRecord",
    "IssuerUnusable",
    "MemoryRepository",
    "OcspResponder",
    "PathInvalid",
    "PendingEnrollment",
    "Profile",
    "RequestRejected",
    "RevocationCache",
    "RevocationCheck",
    "RevocationMode",
    "RevocationPolicy",
    "RevocationStore",
    "SM2SignatureValidator",
    "SubjectInfo",
    "TrustStore",
    "UnknownCertificate",
    "Usage",
    "ValidationResult",
    "VendorHttpChannel",
    "VendorHttpConfig",
    "enroll",
    "generate_hierarchy",
    "profile",
    "validate",
]

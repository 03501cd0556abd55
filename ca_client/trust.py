"""Trust store, path validation and revocation checking (CRL and OCSP, cached, with a grace
period), on pyhanko-certvalidator with SM2 signatures verified by signcore.

- :class:`TrustStore`: the trust anchors (several roots, SM2 and RSA) and the other certificates
  known to the relying party (issuing CAs, cross-certificates), loaded from PEM bundles.
- :class:`SM2SignatureValidator`: pyhanko-certvalidator's ``SignatureValidator`` that verifies
  SM2-with-SM3 signatures on certificates, CRLs and OCSP responses through signcore, with the
  GM/T 0009 default signer ID (``1234567812345678``), and defers every other algorithm to
  pyhanko's default validator.  It is handed to each ``ValidationContext`` this module builds
  (``signature_validator=``), so path building, CRL and OCSP validation all use it.
- :class:`RevocationCache`: fetched CRLs and OCSP responses, verified before they are kept,
  reused until their nextUpdate, optionally persisted through a :class:`RevocationStore`.
- :func:`validate`: builds and validates the paths from a certificate to a trust anchor at a
  given time, checks key usage / EKU, checks revocation under a :class:`RevocationPolicy`, and
  returns a :class:`ValidationResult` (the path, and per certificate how revocation was
  checked) or raises :class:`~ca_client.errors.PathInvalid` naming the reason.

How a validation runs.  (1) pyhanko builds the candidate paths (several when cross-certificates
offer alternatives) and validates each without revocation: signatures, validity at ``at``,
basic constraints, path lengths, name constraints, policies, critical extensions.  (2) For the
first valid path, every certificate below the anchor that declares a CRL distribution point or
an OCSP responder gets its revocation data from the cache, which fetches when it has nothing
fresh.  (3) pyhanko validates the path again with exactly that data (no fetching of its own):
the CRL or OCSP response must be signed by the certificate's issuer (or an OCSP responder it
delegated to), name the certificate, and not list it as revoked before ``at``.  A path whose
revocation check fails is set aside for the next candidate path.  Two adjustments to pyhanko:
validating now, a certificate listed as revoked is revoked whatever the revocation time says
(pyhanko compares it with the validation time, and CA clocks differ); validating in the past,
an OCSP "revoked" dated after ``at`` (which pyhanko reads as indeterminate rather than as "good
at ``at``") is passed to pyhanko as a non-revocation assertion for ``at``, the response having
been authenticated by the cache.

Threat model.

- Forged chains.  Every certificate except the trust anchors may come from the party being
  verified (it was embedded in a signature): nothing in one is believed until a chain of
  signatures from an anchor covers it.  Only anchors are trusted; a certificate in the store's
  "other certificates" (intermediates, cross-certificates) is a path-building hint and must
  itself chain to an anchor.  A cross-certificate extends trust to another PKI exactly as far as
  its issuer decided (its basic constraints and path length apply).  Path building is bounded
  (at most :data:`MAX_PATHS` candidate paths validated, :data:`MAX_EXTRA_CERTIFICATES`
  untrusted certificates from the caller).
- Revocation data is authenticated before it is used or cached: a CRL must be a full CRL signed
  by the certificate's issuer; an OCSP response must be successful, signed by the issuer or a
  responder it delegated to (OCSPSigning EKU), cover the certificate, echo our nonce if it
  carries one, and say good or revoked (``unknown`` is not an answer).  Data dated more than
  :data:`MAX_CLOCK_SKEW` in the future is refused.  The network is touched only after step (1),
  so the URLs fetched come from certificates a trusted CA signed -- a self-made certificate
  cannot make the appliance fetch an arbitrary URL -- and only ``http``/``https`` URLs of the
  certificate's own CRL distribution points and AIA OCSP entries are fetched: no redirects, no
  proxies, bounded size (:data:`MAX_CRL_BYTES`, :data:`MAX_OCSP_BYTES`) and bounded time
  (connect timeout, and a read deadline for the whole answer).
- Replayed old CRLs and OCSP responses.  An attacker on the network can serve an old, validly
  signed CRL (from before a revocation) instead of the current one.  A CRL or response older
  than the one cached (earlier thisUpdate, or lower CRL number) never replaces it; data past its
  nextUpdate is not "fresh"; OCSP requests carry a nonce.  An OCSP responder that does not echo
  nonces (RFC 5019 pre-signed responses) can still be replayed within the response's own
  validity, which is why short nextUpdate values matter.
- Unreachable or slow responders.  A hospital must keep signing when the CA's responder is down.
  When a fetch fails (timeout, connection refused, HTTP error, a refused answer) and the cache
  holds data whose nextUpdate passed less than ``grace`` ago, that data is used and the result
  says so (status ``cached-stale`` and a warning).  The trade-off: a revocation published during
  the outage goes unnoticed for up to nextUpdate + ``grace``, so ``grace`` is a risk decision of
  the hospital, not a technical constant (default :data:`DEFAULT_GRACE`).  With no usable data
  the status is ``unknown``: under :attr:`RevocationMode.HARD_FAIL` (the default) validation
  fails with reason ``revocation-unknown``; under :attr:`RevocationMode.SOFT_FAIL` it succeeds
  with a warning (what a stolen key's holder would like: soft-fail is for verification views
  that show the warning, not for decisions).  After a failed fetch a URL is not retried for
  ``retry_after``, so an outage costs one timeout, not one per signature.  A revoked status is
  never softened by any mode.
- Validation in the past (``at``, the signing time): validity periods are checked at ``at``;
  revocation uses current data, and a certificate revoked after ``at`` was valid at ``at``
  (RFC 5280's rule; whether to distrust all signatures after a key compromise -- the later
  revocation and its reason are in the result, with a warning -- is the caller's decision).
  The time ``at`` must itself be trustworthy (a time stamp): a signer may claim any signing
  time.

Not implemented: indirect CRLs and delta CRLs are not fetched (a full CRL from the issuer is
required); LDAP and other non-HTTP URLs are not fetched (a certificate naming only those has
status ``unknown``); trust anchors' own path-length constraints are not applied (RFC 5280
section 6.1.1 takes only the anchor's name and key; its validity period is checked).  Delegated
OCSP responders: the revocation data of the responder certificate itself is not gathered (under
hard-fail, a responder certificate that declares a CRL or OCSP source fails the check), and one
carrying ``id-pkix-ocsp-nocheck`` is checked by pyhanko with its default signature validator,
which does not know SM2 (pyhanko-certvalidator 0.33 does not pass the validator down there).
SM2 CAs should sign OCSP answers themselves, as :class:`~ca_client.builtin.BuiltinCa` does.

:func:`validate` is synchronous (it runs pyhanko's coroutines with :func:`asyncio.run`); from
async code call it in a worker thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import enum
import hashlib
import http.client
import logging
import ssl
import threading
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from asn1crypto import crl as asn1_crl
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import x509 as asn1_x509
from cryptography.exceptions import InvalidSignature as PycaInvalidSignature
from cryptography.exceptions import UnsupportedAlgorithm as PycaUnsupportedAlgorithm
from pyhanko_certvalidator.authority import AuthorityWithCert, CertTrustAnchor, TrustQualifiers
from pyhanko_certvalidator.context import ValidationContext
from pyhanko_certvalidator.errors import (
    DisallowedAlgorithmError,
    ExpiredError,
    InsufficientRevinfoError,
    InvalidCertificateError,
    NotYetValidError,
    PathBuildingError,
    PathValidationError,
    RevokedError,
    ValidationError,
)
from pyhanko_certvalidator.ltv.poe import POEManager
from pyhanko_certvalidator.path import ValidationPath
from pyhanko_certvalidator.policy_decl import (
    NO_REVOCATION,
    CertRevTrustPolicy,
    FreshnessReqType,
    NonRevokedStatusAssertion,
    RevocationCheckingPolicy,
    RevocationCheckingRule,
)
from pyhanko_certvalidator.registry import CertificateRegistry, SimpleTrustManager
from pyhanko_certvalidator.revinfo.archival import CRLContainer, OCSPContainer
from pyhanko_certvalidator.revinfo.manager import RevinfoManager
from pyhanko_certvalidator.sig_validate import (
    SignatureValidator,
)
from pyhanko_certvalidator.validate import async_validate_path, validate_usage

from ca_client._common import clean, exchange
from ca_client.errors import ChannelUnavailable, PathInvalid
from signcore import ocsp
from signcore.certvalidator import SM2_SIGNATURE_VALIDATOR, SM2SignatureValidator
from signcore.errors import SigncoreError
from signcore.x509 import Certificate, load_certificates, load_crl, names_equal

__all__ = [
    "DEFAULT_GRACE",
    "CachedRevocation",
    "RevocationCache",
    "RevocationCheck",
    "RevocationMode",
    "RevocationPolicy",
    "RevocationStore",
    "SM2SignatureValidator",
    "TrustStore",
    "Usage",
    "ValidationResult",
    "validate",
]

logger = logging.getLogger(__name__)

#: Revocation data (and certificates) may be dated this far in the future: clocks differ.
MAX_CLOCK_SKEW = dt.timedelta(minutes=5)
#: How long an OCSP response without nextUpdate counts as fresh (pyhanko's default too).
NO_NEXT_UPDATE_VALIDITY = dt.timedelta(minutes=30)
DEFAULT_GRACE = dt.timedelta(hours=24)
MAX_CRL_BYTES = 16 * 1024 * 1024
MAX_OCSP_BYTES = 64 * 1024
#: Valid candidate paths tried for revocation (alternatives through cross-certificates).
MAX_PATHS = 4
#: Untrusted certificates a caller may add for one validation (those of a signature).
MAX_EXTRA_CERTIFICATES = 32
#: URLs of each kind (OCSP, CRL) tried per certificate.
MAX_URLS = 3
_USER_AGENT = "medsign-ca-client"

Clock = Callable[[], dt.datetime]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _utc(value: dt.datetime, what: str) -> dt.datetime:
    if value.tzinfo is None:
        raise ValueError(f"{what} is a naive datetime: pass an aware datetime (UTC)")
    return value.astimezone(dt.UTC)


# ---------------------------------------------------------------------------------------------
# Trust store


class TrustStore:
    """Trust anchors and other known certificates (thread-safe).

    Anchors are trusted by their name and key; they must be CA certificates.  The other
    certificates (issuing CAs, cross-certificates) are only candidates for path building and are
    trusted as far as a chain from an anchor covers them.  A certificate is either an anchor or
    an other certificate, never both (adding it as an anchor moves it)."""

    def __init__(self, anchors: Iterable[Certificate] = (),
                 certificates: Iterable[Certificate] = ()) -> None:
        self._lock = threading.Lock()
        self._anchors: dict[bytes, Certificate] = {}
        self._others: dict[bytes, Certificate] = {}
        for anchor in anchors:
            self.add_anchor(anchor)
        for certificate in certificates:
            self.add_certificate(certificate)

    @classmethod
    def from_pem(cls, anchors: bytes, certificates: bytes | None = None) -> TrustStore:
        """A store from a PEM bundle of anchors and (optionally) one of other certificates."""
        store = cls()
        store.load_anchors(anchors)
        if certificates:
            store.load_certificates(certificates)
        return store

    def add_anchor(self, certificate: Certificate) -> None:
        if not certificate.is_ca:
            raise ValueError(f"a trust anchor must be a CA certificate: {certificate.subject!r}")
        key = certificate.fingerprint()
        with self._lock:
            self._others.pop(key, None)
            self._anchors[key] = certificate

    def add_certificate(self, certificate: Certificate) -> None:
        """An intermediate or cross-certificate for path building (not trusted by itself)."""
        key = certificate.fingerprint()
        with self._lock:
            if key not in self._anchors:
                self._others[key] = certificate

    def load_anchors(self, pem: bytes) -> list[Certificate]:
        """Add every certificate of a PEM bundle as an anchor (all or none)."""
        certificates = load_certificates(pem)
        for certificate in certificates:
            if not certificate.is_ca:
                raise ValueError(f"a trust anchor must be a CA certificate: "
                                 f"{certificate.subject!r}")
        for certificate in certificates:
            self.add_anchor(certificate)
        return certificates

    def load_certificates(self, pem: bytes) -> list[Certificate]:
        """Add every certificate of a PEM bundle as an other certificate."""
        certificates = load_certificates(pem)
        for certificate in certificates:
            self.add_certificate(certificate)
        return certificates

    def remove(self, certificate: Certificate) -> bool:
        """Forget ``certificate`` (anchor or other); False if it was not there."""
        key = certificate.fingerprint()
        with self._lock:
            return (self._anchors.pop(key, None) or self._others.pop(key, None)) is not None

    @property
    def anchors(self) -> tuple[Certificate, ...]:
        with self._lock:
            return tuple(self._anchors.values())

    @property
    def certificates(self) -> tuple[Certificate, ...]:
        """The other certificates (not anchors)."""
        with self._lock:
            return tuple(self._others.values())

    def is_anchor(self, certificate: Certificate) -> bool:
        with self._lock:
            return certificate.fingerprint() in self._anchors

    def __contains__(self, certificate: object) -> bool:
        if not isinstance(certificate, Certificate):
            return False
        key = certificate.fingerprint()
        with self._lock:
            return key in self._anchors or key in self._others

    def __len__(self) -> int:
        with self._lock:
            return len(self._anchors) + len(self._others)

    def __repr__(self) -> str:
        return f"<TrustStore anchors={len(self.anchors)} certificates={len(self.certificates)}>"


# ---------------------------------------------------------------------------------------------
# SM2 signatures for pyhanko-certvalidator


# SM2SignatureValidator and SM2_SIGNATURE_VALIDATOR live in signcore.certvalidator (pdfsign
# needs the same one); they are re-exported here.


# ---------------------------------------------------------------------------------------------
# Policies and results


@dataclass(frozen=True)
class Usage:
    """What the end-entity certificate must be good for: every ``key_usage`` bit (asn1crypto
    names: ``digital_signature``, ``non_repudiation``, ...) and every ``extended_key_usage``
    purpose (names such as ``email_protection``, ``time_stamping``, or dotted OIDs).  With
    ``extended_optional`` a certificate without an EKU extension passes (RFC 5280: no EKU means
    no restriction)."""

    key_usage: frozenset[str] = frozenset()
    extended_key_usage: frozenset[str] = frozenset()
    extended_optional: bool = True


class RevocationMode(enum.Enum):
    """What an unknown revocation status does: fail (``hard-fail``), pass with a warning
    (``soft-fail``), or revocation is not checked at all (``off``).  A known revocation always
    fails."""

    HARD_FAIL = "hard-fail"
    SOFT_FAIL = "soft-fail"
    OFF = "off"


@dataclass(frozen=True)
class RevocationPolicy:
    """How revocation is checked: the mode, how long past its nextUpdate cached data may stand
    in when a responder cannot be reached (``grace``), and which source is tried first."""

    mode: RevocationMode = RevocationMode.HARD_FAIL
    grace: dt.timedelta = DEFAULT_GRACE
    prefer: str = "ocsp"  # "ocsp" or "crl"

    def __post_init__(self) -> None:
        if self.grace < dt.timedelta(0):
            raise ValueError("the grace period cannot be negative")
        if self.prefer not in ("ocsp", "crl"):
            raise ValueError("prefer is 'ocsp' or 'crl'")


@dataclass(frozen=True)
class RevocationCheck:
    """How the revocation of one certificate of the path was checked.

    ``status``: ``ocsp`` or ``crl`` (fresh data), ``cached-stale`` (a fetch failed and data past
    its nextUpdate but within the grace period was used; ``method`` says which kind),
    ``unknown`` (declared sources, no usable data), ``not-declared`` (the certificate names no
    CRL distribution point and no OCSP responder), ``off`` (not checked by policy).  ``data`` is
    the DER of the CRL or OCSP response used (worth keeping as evidence); ``problems`` says what
    went wrong on the way (a responder down, a replayed CRL refused, ...).  In a validation in
    the past, ``revoked_at`` and ``revocation_reason`` say that the certificate, valid at
    ``at``, was revoked later."""

    certificate: Certificate
    status: str
    method: str | None = None
    url: str | None = None
    source: str | None = None  # "fetched", "cache" or "stale-cache"
    this_update: dt.datetime | None = None
    next_update: dt.datetime | None = None
    data: bytes | None = None
    problems: tuple[str, ...] = ()
    #: Set when the data lists the certificate as revoked after the validation time ``at``.
    revoked_at: dt.datetime | None = None
    revocation_reason: str | None = None
    #: The delta CRL used with ``data`` when that CRL names one (freshestCRL), DER.
    delta: bytes | None = None

    @property
    def checked(self) -> bool:
        """True if revocation data was used (fresh or within the grace period)."""
        return self.data is not None and self.status != "unknown"

    @property
    def stale(self) -> bool:
        return self.status == "cached-stale"


@dataclass(frozen=True)
class ValidationResult:
    """A validated path: ``path`` from the certificate (first) to the trust anchor (last);
    ``revocation`` has one entry per certificate below the anchor, in the same order."""

    path: tuple[Certificate, ...]
    at: dt.datetime
    revocation: tuple[RevocationCheck, ...]
    warnings: tuple[str, ...] = ()

    @property
    def certificate(self) -> Certificate:
        return self.path[0]

    @property
    def anchor(self) -> Certificate:
        return self.path[-1]

    @property
    def revocation_checked(self) -> bool:
        """True if every certificate that declares a revocation source was checked."""
        return all(c.checked for c in self.revocation if c.status not in ("not-declared", "off"))

    @property
    def revocation_status(self) -> str:
        """The weakest status of the path: ``unknown``, else ``cached-stale``, else the
        certificate's own (``ocsp``, ``crl``, ``not-declared`` or ``off``)."""
        statuses = {c.status for c in self.revocation}
        for weakest in ("unknown", "cached-stale"):
            if weakest in statuses:
                return weakest
        return self.revocation[0].status if self.revocation else "not-declared"


# ---------------------------------------------------------------------------------------------
# Revocation data: cache, store, fetching


class RevocationStore(Protocol):
    """Where the appliance persists revocation data (its database), by kind and key.

    ``kind`` is ``crl`` or ``ocsp``; ``key`` is the URL the data was fetched from with a
    fragment naming what it is about: ``<url>#<issuer key SHA-1 hex>`` for a CRL,
    ``<url>#<issuer key SHA-1 hex>:<serial hex>`` for an OCSP response.  What comes back from
    :meth:`get` is verified again before use; :meth:`put` replaces."""

    def get(self, kind: str, key: str) -> bytes | None: ...

    def put(self, kind: str, key: str, der: bytes) -> None: ...


@dataclass(frozen=True)
class CachedRevocation:
    """A CRL or OCSP response that was verified against its issuer when it was accepted."""

    kind: str  # "crl" or "ocsp"
    key: str
    url: str
    der: bytes
    this_update: dt.datetime
    next_update: dt.datetime | None
    crl_number: int | None = None

    @property
    def expires(self) -> dt.datetime:
        return self.next_update or self.this_update + NO_NEXT_UPDATE_VALIDITY

    def fresh_at(self, now: dt.datetime) -> bool:
        return self.this_update - MAX_CLOCK_SKEW <= now <= self.expires

    def older_than(self, other: CachedRevocation) -> bool:
        if self.crl_number is not None and other.crl_number is not None and \
                self.crl_number != other.crl_number:
            return self.crl_number < other.crl_number
        return self.this_update < other.this_update


class _FetchError(Exception):
    """The responder could not be reached or did not answer properly."""


class _RefusedError(ValueError):
    """The data fetched (or offered) is not acceptable."""


@dataclass(frozen=True)
class _Outcome:
    fresh: CachedRevocation | None = None
    source: str | None = None
    cached: CachedRevocation | None = None
    problem: str | None = None


def _key_hash(issuer: Certificate) -> str:
    info = issuer.tbs["subject_public_key_info"]
    return hashlib.sha1(bytes(info["public_key"]), usedforsecurity=False).hexdigest()


_WHAT = {"crl": "CRL", "delta": "delta CRL", "ocsp": "OCSP response"}


def _when(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class RevocationCache:
    """Fetched CRLs and OCSP responses, kept in memory (and in ``store`` when given), reused
    until their nextUpdate.  Thread-safe; meant to live as long as the process.

    Fetching: only ``http`` (and, with ``allow_https``, ``https``) URLs; ``connect_timeout``
    for the connection and ``read_timeout`` as a deadline for the whole answer; answers over
    ``max_crl_bytes`` / ``max_ocsp_bytes`` are refused; after a failure the URL is not retried
    for ``retry_after``.  ``clock`` is "now" for freshness (and for :func:`validate`)."""

    def __init__(self, store: RevocationStore | None = None, *,
                 connect_timeout: float = 3.0, read_timeout: float = 5.0,
                 max_crl_bytes: int = MAX_CRL_BYTES, max_ocsp_bytes: int = MAX_OCSP_BYTES,
                 retry_after: dt.timedelta = dt.timedelta(seconds=30),
                 max_entries: int = 10_000, allow_https: bool = True,
                 clock: Clock = _now) -> None:
        if connect_timeout <= 0 or read_timeout <= 0:
            raise ValueError("timeouts must be positive")
        if max_crl_bytes <= 0 or max_ocsp_bytes <= 0 or max_entries <= 0:
            raise ValueError("size limits must be positive")
        self._store = store
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_crl_bytes = max_crl_bytes
        self.max_ocsp_bytes = max_ocsp_bytes
        self.retry_after = retry_after
        self.max_entries = max_entries
        self._schemes = ("http", "https") if allow_https else ("http",)
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, str], CachedRevocation] = OrderedDict()
        self._failures: dict[str, tuple[dt.datetime, str]] = {}
        self._ssl: ssl.SSLContext | None = None

    def now(self) -> dt.datetime:
        return _utc(self._clock(), "the clock")

    # -- the cache proper

    def get(self, kind: str, key: str) -> CachedRevocation | None:
        """What the memory cache holds under ``key`` (no store lookup, no verification)."""
        with self._lock:
            return self._entries.get((kind, key))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._failures.clear()

    def offer_crl(self, url: str, der: bytes, *, issuer: Certificate) -> CachedRevocation:
        """Add a CRL obtained some other way (verified like a fetched one; ValueError if it is
        not acceptable).  Returns what the cache now holds for ``url``: the CRL offered, or the
        newer one already cached (an older CRL never replaces a newer one).  A delta CRL is
        kept as such, for the full CRLs that name ``url`` as their freshest CRL."""
        key = f"{url}#{_key_hash(issuer)}"
        try:
            delta = load_crl(der).delta_crl_indicator is not None
        except (SigncoreError, ValueError) as exc:
            raise _RefusedError(f"the CRL from {url} does not decode: {exc}") from None
        entry = self._accept_crl(key, url, der, issuer, self.now(), delta=delta)
        try:
            return self._keep(entry)
        except _RefusedError:
            held = self.get(entry.kind, entry.key)
            assert held is not None
            return held

    def _lookup(self, kind: str, key: str,
                accept: Callable[[bytes], CachedRevocation]) -> CachedRevocation | None:
        with self._lock:
            entry = self._entries.get((kind, key))
            if entry is not None:
                self._entries.move_to_end((kind, key))
                return entry
        if self._store is None:
            return None
        try:
            der = self._store.get(kind, key)
        except Exception:
            logger.warning("revocation store: reading %s %s failed", kind, key, exc_info=True)
            return None
        if der is None:
            return None
        try:
            entry = accept(der)
        except _RefusedError as exc:
            logger.warning("revocation store: stored %s for %s refused: %s", kind, key, exc)
            return None
        self._remember(entry)
        return entry

    def _remember(self, entry: CachedRevocation) -> None:
        with self._lock:
            self._entries[(entry.kind, entry.key)] = entry
            self._entries.move_to_end((entry.kind, entry.key))
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def _keep(self, entry: CachedRevocation) -> CachedRevocation:
        """Cache ``entry`` unless the cache holds newer data for its key (_RefusedError then);
        returns what is held."""
        with self._lock:
            held = self._entries.get((entry.kind, entry.key))
            if held is not None and entry.older_than(held):
                raise _RefusedError(
                    f"the {_WHAT[entry.kind]} from {entry.url} (thisUpdate "
                    f"{_when(entry.this_update)}) is older than the one already cached "
                    f"(thisUpdate {_when(held.this_update)}): a replay, refused")
            if held is not None and not held.older_than(entry):
                return held  # the same issue again
        self._remember(entry)
        if self._store is not None:
            try:
                self._store.put(entry.kind, entry.key, entry.der)
            except Exception:
                logger.warning("revocation store: writing %s %s failed", entry.kind, entry.key,
                               exc_info=True)
        return entry

    # -- checking one certificate

    def check(self, certificate: Certificate, issuer: Certificate, *,
              grace: dt.timedelta = DEFAULT_GRACE, prefer: str = "ocsp") -> RevocationCheck:
        """Obtain revocation data for ``certificate`` (issued by ``issuer``) from the sources
        it declares: fresh data from the cache or the network, else data within ``grace`` of
        its nextUpdate, else status ``unknown``.  The data is authenticated, but whether it
        lists the certificate as revoked is for :func:`validate` (pyhanko) to say."""
        try:
            extensions = certificate.extensions
        except SigncoreError as exc:
            return RevocationCheck(certificate, "unknown", problems=(str(exc),))
        ocsp_sources = [("ocsp", url) for url in extensions.ocsp_urls[:MAX_URLS]]
        crl_sources = [("crl", url) for url in extensions.crl_urls[:MAX_URLS]]
        sources = ocsp_sources + crl_sources if prefer == "ocsp" else crl_sources + ocsp_sources
        if not sources:
            return RevocationCheck(certificate, "not-declared")
        now = self.now()
        problems: list[str] = []
        usable_stale: list[CachedRevocation] = []
        for kind, url in sources:
            outcome = self._obtain(kind, url, certificate, issuer, now)
            if outcome.fresh is not None:
                found = _check_of(certificate, outcome.fresh, outcome.source or "cache",
                                  tuple(problems))
                return self._with_delta(found, certificate, issuer, now) if kind == "crl" \
                    else found
            if outcome.problem:
                problems.append(outcome.problem)
            if outcome.cached is not None and now <= outcome.cached.expires + grace:
                usable_stale.append(outcome.cached)
        if usable_stale:
            best = max(usable_stale, key=lambda entry: entry.this_update)
            problems.append(
                f"using the cached {_WHAT[best.kind]} from {best.url}, past its nextUpdate "
                f"{_when(best.expires)} by {now - best.expires} (grace period {grace})")
            return dataclasses.replace(_check_of(certificate, best, "stale-cache",
                                                 tuple(problems)), status="cached-stale")
        return RevocationCheck(certificate, "unknown", problems=tuple(problems))

    def _obtain(self, kind: str, url: str, certificate: Certificate, issuer: Certificate,
                now: dt.datetime) -> _Outcome:
        if kind in ("crl", "delta"):
            key = f"{url}#{_key_hash(issuer)}"

            def accept(der: bytes) -> CachedRevocation:
                return self._accept_crl(key, url, der, issuer, now, delta=kind == "delta")

            def fetch() -> CachedRevocation:
                return accept(self._http("GET", url, None, self.max_crl_bytes))
        else:
            cert_id = ocsp.CertId.of(certificate.serial_number, issuer, "sha1")
            key = f"{url}#{_key_hash(issuer)}:{certificate.serial_number:x}"

            def accept(der: bytes) -> CachedRevocation:
                return self._accept_ocsp(key, url, der, cert_id=cert_id, issuer=issuer, now=now,
                                         nonce=None)

            def fetch() -> CachedRevocation:
                request = ocsp.build_request([cert_id])
                der = self._http("POST", url, request.der, self.max_ocsp_bytes)
                return self._accept_ocsp(key, url, der, cert_id=cert_id, issuer=issuer, now=now,
                                         nonce=request.nonce)

        cached = self._lookup(kind, key, accept)
        if cached is not None and cached.fresh_at(now):
            return _Outcome(fresh=cached, source="cache")
        problem = self._backing_off(url, now)
        if problem is not None:
            return _Outcome(cached=cached, problem=problem)
        try:
            kept = self._keep(fetch())
        except _FetchError as exc:
            self._failed(url, now, str(exc))
            return _Outcome(cached=cached, problem=str(exc))
        except _RefusedError as exc:
            if kind != "ocsp":  # one CRL per URL; an OCSP refusal is about one certificate
                self._failed(url, now, str(exc))
            else:
                logger.warning("revocation: %s", exc)
            return _Outcome(cached=self.get(kind, key) or cached, problem=str(exc))
        if kept.fresh_at(now):
            return _Outcome(fresh=kept, source="fetched")
        problem = f"{url} served a {_WHAT[kind]} past its nextUpdate {_when(kept.expires)}"
        self._failed(url, now, problem)
        return _Outcome(cached=kept, problem=problem)

    def _with_delta(self, found: RevocationCheck, certificate: Certificate,
                    issuer: Certificate, now: dt.datetime) -> RevocationCheck:
        """A full CRL that names delta CRLs (freshestCRL) is only complete with one: add the
        first fresh delta whose base this CRL covers (RFC 5280 5.2.4); none -- the check stays
        without, and the validator says the revocation status is undetermined."""
        assert found.data is not None
        full = load_crl(found.data)
        points = full.asn1.freshest_crl_value
        urls = [name.native for point in (points or [])
                for name in (point["distribution_point"].chosen
                             if point["distribution_point"].name == "full_name" else [])
                if name.name == "uniform_resource_identifier"][:MAX_URLS]
        problems = list(found.problems)
        for url in urls:
            outcome = self._obtain("delta", url, certificate, issuer, now)
            entry = outcome.fresh
            if entry is None:
                problems.append(outcome.problem or f"no fresh delta CRL from {url}")
                continue
            base = load_crl(entry.der).delta_crl_indicator
            if base is None or full.crl_number is None or base > full.crl_number:
                problems.append(f"the delta CRL from {url} is for a newer base CRL")
                continue
            return dataclasses.replace(found, delta=entry.der, problems=tuple(problems))
        return dataclasses.replace(found, problems=tuple(problems))

    def _backing_off(self, url: str, now: dt.datetime) -> str | None:
        with self._lock:
            failure = self._failures.get(url)
            if failure is None:
                return None
            until, problem = failure
            if now >= until:
                del self._failures[url]
                return None
        return f"{problem} (not retried before {_when(until)})"

    def _failed(self, url: str, now: dt.datetime, problem: str) -> None:
        logger.warning("revocation: %s", problem)
        if self.retry_after > dt.timedelta(0):
            with self._lock:
                self._failures[url] = (now + self.retry_after, problem)

    # -- acceptance of data

    @staticmethod
    def _check_times(kind: str, url: str, this_update: dt.datetime,
                     next_update: dt.datetime | None, now: dt.datetime) -> None:
        if this_update > now + MAX_CLOCK_SKEW:
            raise _RefusedError(f"the {kind} from {url} is dated in the future "
                                f"(thisUpdate {_when(this_update)})")
        if next_update is not None and next_update < this_update:
            raise _RefusedError(f"the {kind} from {url} has nextUpdate before thisUpdate")

    def _accept_crl(self, key: str, url: str, der: bytes, issuer: Certificate,
                    now: dt.datetime, *, delta: bool = False) -> CachedRevocation:
        try:
            crl = load_crl(der)
        except (SigncoreError, ValueError) as exc:
            raise _RefusedError(f"the CRL from {url} does not decode: {exc}") from None
        if not names_equal(crl.issuer_name, issuer.subject_name):
            raise _RefusedError(f"the CRL from {url} was issued by {crl.issuer!r}, not by the "
                                f"certificate's issuer {issuer.subject!r} (indirect CRLs are not "
                                f"supported)")
        if (crl.delta_crl_indicator is not None) != delta:
            expected, got = ("delta", "full") if delta else ("full", "delta")
            raise _RefusedError(f"{url} served a {got} CRL where a {expected} CRL was expected")
        try:
            crl.verify_signature(issuer.public_key())
        except (SigncoreError, ValueError):
            raise _RefusedError(f"the CRL from {url} is not signed by {issuer.subject!r}") from None
        self._check_times("CRL", url, crl.this_update, crl.next_update, now)
        return CachedRevocation("delta" if delta else "crl", key, url, crl.der, crl.this_update,
                                crl.next_update, crl.crl_number)

    def _accept_ocsp(self, key: str, url: str, der: bytes, *, cert_id: ocsp.CertId,
                     issuer: Certificate, now: dt.datetime,
                     nonce: bytes | None) -> CachedRevocation:
        try:
            response = ocsp.load_response(der)
        except (SigncoreError, ValueError) as exc:
            raise _RefusedError(f"the OCSP response from {url} does not decode: {exc}") from None
        if response.status != "successful":
            raise _RefusedError(f"the OCSP responder {url} answered {response.status}")
        try:
            response.verify(issuer)
        except (SigncoreError, ValueError) as exc:
            raise _RefusedError(f"the OCSP response from {url} is not authentic: {exc}") from None
        single = response.status_of(cert_id)
        if single is None:
            raise _RefusedError(f"the OCSP response from {url} does not cover the certificate")
        if nonce is not None and response.nonce is not None and response.nonce != nonce:
            raise _RefusedError(f"the OCSP response from {url} answers another request (nonce)")
        if single.status is ocsp.CertStatus.UNKNOWN:
            raise _RefusedError(f"the OCSP responder {url} does not know the certificate")
        self._check_times("OCSP response", url, single.this_update, single.next_update, now)
        return CachedRevocation("ocsp", key, url, der, single.this_update, single.next_update)

    # -- HTTP

    def _connection(self, scheme: str, host: str, port: int | None
                    ) -> http.client.HTTPConnection:
        if scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            return http.client.HTTPSConnection(host, port, timeout=self.connect_timeout,
                                               context=self._ssl)
        return http.client.HTTPConnection(host, port, timeout=self.connect_timeout)

    def _http(self, method: str, url: str, body: bytes | None, limit: int) -> bytes:
        parts = urllib.parse.urlsplit(url)
        where = clean(url)
        try:
            port = parts.port
        except ValueError:
            raise _FetchError(f"{where}: bad port") from None
        if parts.scheme not in self._schemes or not parts.hostname:
            raise _FetchError(f"{where}: only {' and '.join(self._schemes)} URLs are fetched")
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection = self._connection(parts.scheme, parts.hostname, port)
        headers = {"User-Agent": _USER_AGENT, "Connection": "close"}
        if body is not None:
            headers.update({"Content-Type": "application/ocsp-request",
                            "Accept": "application/ocsp-response"})
        try:
            answer = exchange(connection, method, target, body=body, headers=headers,
                              connect_timeout=self.connect_timeout,
                              read_timeout=self.read_timeout, limit=limit, where=where)
        except ChannelUnavailable as exc:
            raise _FetchError(str(exc)) from None
        status, raw = answer.status, answer.body
        if status != 200:
            raise _FetchError(f"{where} answered HTTP {status}")
        return raw


def _check_of(certificate: Certificate, entry: CachedRevocation, source: str,
              problems: tuple[str, ...]) -> RevocationCheck:
    return RevocationCheck(certificate, entry.kind, entry.kind, entry.url, source,
                           entry.this_update, entry.next_update, entry.der, problems)


# ---------------------------------------------------------------------------------------------
# Validation


@dataclass
class _Inputs:
    """The asn1crypto objects of one validation, and the way back to ours."""

    leaf: asn1_x509.Certificate
    trust_manager: SimpleTrustManager
    others: list[asn1_x509.Certificate]
    ours: dict[bytes, Certificate]
    moment: dt.datetime
    sig_validator: SignatureValidator
    now: bool  # validating at the present time (no ``at``)

    def certificate(self, value: asn1_x509.Certificate) -> Certificate:
        der = value.dump()
        return self.ours.get(der) or Certificate.from_stored(der)

    def context(self, policy: CertRevTrustPolicy, checks: Sequence[RevocationCheck] = (),
                not_revoked: Sequence[Certificate] = ()) -> ValidationContext:
        """A pyhanko context that knows exactly the revocation data of ``checks`` (it fetches
        nothing) and takes ``not_revoked`` as not revoked at the validation time."""
        registry = CertificateRegistry.build(self.others)
        data = [c for c in checks if c.checked and c.data is not None]
        manager = RevinfoManager(
            certificate_registry=registry, poe_manager=POEManager(),
            crls=[CRLContainer(asn1_crl.CertificateList.load(der))
                  for c in data if c.method == "crl"
                  for der in (c.data, c.delta) if der is not None],
            ocsps=[container for c in data if c.method == "ocsp"
                   for container in OCSPContainer.load_multi(
                       asn1_ocsp.OCSPResponse.load(c.data))],
            assertions=[NonRevokedStatusAssertion(
                hashlib.sha256(c.der).digest(), self.moment) for c in not_revoked])
        return ValidationContext(
            trust_manager=self.trust_manager, certificate_registry=registry,
            revinfo_manager=manager, revinfo_policy=policy, moment=self.moment,
            allow_fetching=False, signature_validator=self.sig_validator)


def _inputs(certificate: Certificate, trust: TrustStore, intermediates: Sequence[Certificate],
            *, moment: dt.datetime, sig_validator: SignatureValidator, now: bool) -> _Inputs:
    anchors = trust.anchors
    if not anchors:
        raise PathInvalid("the trust store has no trust anchor", reason="untrusted",
                          subject=certificate.subject)
    if len(intermediates) > MAX_EXTRA_CERTIFICATES:
        raise PathInvalid(f"{len(intermediates)} extra certificates given, at most "
                          f"{MAX_EXTRA_CERTIFICATES} are considered", subject=certificate.subject)
    ours = {c.der: c for c in (*anchors, *trust.certificates, *intermediates, certificate)}
    manager = SimpleTrustManager.build(trust_roots=[
        CertTrustAnchor(asn1_x509.Certificate.load(a.der),
                        quals=TrustQualifiers(valid_from=a.not_before, valid_until=a.not_after))
        for a in anchors])
    others = [asn1_x509.Certificate.load(c.der)
              for c in dict.fromkeys((*trust.certificates, *intermediates))]
    return _Inputs(asn1_x509.Certificate.load(certificate.der), manager, others, ours, moment,
                   sig_validator, now)


def _run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    coroutine.close()
    raise RuntimeError("ca_client.trust.validate blocks: from async code, call it in a worker "
                       "thread (asyncio.to_thread)")


async def _valid_paths(inputs: _Inputs) -> tuple[list[ValidationPath], list[Exception]]:
    """Up to MAX_PATHS paths that validate without revocation, and the errors of the others."""
    context = inputs.context(CertRevTrustPolicy(NO_REVOCATION))
    paths: list[ValidationPath] = []
    errors: list[Exception] = []
    candidates = context.path_builder.async_build_paths_lazy(inputs.leaf)
    try:
        async for path in candidates:
            try:
                await async_validate_path(context, path)
            except (ValidationError, PycaUnsupportedAlgorithm) as exc:
                errors.append(exc)  # pyca's: a key pyhanko's default validator cannot load
                continue
            paths.append(path)
            if len(paths) >= MAX_PATHS:
                break
    except PathBuildingError as exc:
        errors.append(exc)
    finally:
        await candidates.cancel()  # type: ignore[no-untyped-call]
    return paths, errors


def _path_certificates(inputs: _Inputs, path: ValidationPath) -> list[Certificate]:
    """Leaf first, anchor last."""
    return [inputs.certificate(c) for c in reversed(list(path.iter_certs(include_root=True)))]


def _issuer_of(inputs: _Inputs, path: ValidationPath, cert: asn1_x509.Certificate) -> Certificate:
    authority = path.find_issuing_authority(cert)
    assert isinstance(authority, AuthorityWithCert)
    return inputs.certificate(authority.certificate)


def _gather(inputs: _Inputs, path: ValidationPath, policy: RevocationPolicy,
            cache: RevocationCache) -> list[RevocationCheck]:
    """A revocation check per certificate below the anchor, leaf first."""
    below_anchor = list(path.iter_certs(include_root=False))
    checks = []
    for cert in reversed(below_anchor):
        ours = inputs.certificate(cert)
        if policy.mode is RevocationMode.OFF:
            checks.append(RevocationCheck(ours, "off"))
        else:
            checks.append(cache.check(ours, _issuer_of(inputs, path, cert),
                                      grace=policy.grace, prefer=policy.prefer))
    return checks


def _revocation_policy(checks: Sequence[RevocationCheck], policy: RevocationPolicy,
                       moment: dt.datetime) -> CertRevTrustPolicy:
    rule = (RevocationCheckingRule.CHECK_IF_DECLARED if policy.mode is RevocationMode.HARD_FAIL
            else RevocationCheckingRule.CHECK_IF_DECLARED_SOFT)
    rules = RevocationCheckingPolicy(ee_certificate_rule=rule, intermediate_ca_cert_rule=rule)
    used = [c for c in checks if c.checked and c.this_update is not None]
    if any(c.stale for c in used):
        # Freshness was judged by the cache (fresh, or within the grace period): pyhanko is told
        # to accept data as old as the oldest item chosen, and only that data is given to it.
        oldest = max(moment - c.this_update for c in used if c.this_update is not None)
        return CertRevTrustPolicy(
            rules, freshness=max(oldest, dt.timedelta(0)) + dt.timedelta(minutes=1),
            freshness_req_type=FreshnessReqType.MAX_DIFF_REVOCATION_VALIDATION)
    # Current data also serves a validation in the past (``at``): retroactive.
    return CertRevTrustPolicy(rules, retroactive_revinfo=True)


def _failure(exc: Exception, certificate: Certificate) -> PathInvalid:
    """A pyhanko error as PathInvalid with its reason."""
    message = str(exc)
    subject = certificate.subject
    if isinstance(exc, RevokedError):
        reason_name = exc.reason.native if exc.reason is not None else None
        return PathInvalid(
            f"certificate {subject!r}: {message}", reason="revoked", subject=subject,
            revoked_at=exc.revocation_dt, revocation_reason=reason_name or "unspecified")
    if isinstance(exc, InsufficientRevinfoError):
        return PathInvalid(f"revocation status of {subject!r} unknown: {message}",
                           reason="revocation-unknown", subject=subject)
    if isinstance(exc, PathBuildingError):
        return PathInvalid(f"no path from {subject!r} (issuer {certificate.issuer!r}) to a "
                           f"trust anchor: {message}", reason="untrusted", subject=subject)
    reason = next((name for kind, name in _REASONS if isinstance(exc, kind)), "invalid")
    if reason == "invalid" and (isinstance(exc, PycaUnsupportedAlgorithm) or (
            isinstance(exc, PathValidationError)
            and isinstance(exc.__context__, PycaInvalidSignature))):
        reason = "bad-signature"  # pyhanko raises it while handling InvalidSignature
    return PathInvalid(message, reason=reason, subject=subject)


_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (ExpiredError, "expired"),
    (NotYetValidError, "not-yet-valid"),
    (DisallowedAlgorithmError, "disallowed-algorithm"),
    (InvalidCertificateError, "usage"),
)


_PRIORITY = ("revoked", "revocation-unknown", "expired", "not-yet-valid", "disallowed-algorithm",
             "invalid", "usage", "bad-signature", "untrusted")


def _most_relevant(failures: Sequence[PathInvalid]) -> PathInvalid:
    return min(failures, key=lambda f: _PRIORITY.index(f.reason)
               if f.reason in _PRIORITY else len(_PRIORITY))


def _listed_revoked(check: RevocationCheck) -> tuple[dt.datetime, str] | None:
    """(revocation time, reason) if the data of ``check`` lists its certificate as revoked."""
    if check.data is None or not check.checked:
        return None
    serial = check.certificate.serial_number
    try:
        if check.method == "crl":
            for der in (check.data, check.delta):
                entry = load_crl(der).is_revoked(serial) if der is not None else None
                if entry is not None:
                    return entry.revocation_date, entry.reason or "unspecified"
            return None
        for single in ocsp.load_response(check.data).responses:
            if single.status is ocsp.CertStatus.REVOKED and \
                    single.cert_id.serial_number == serial and single.revocation_time:
                return single.revocation_time, single.revocation_reason or "unspecified"
    except (SigncoreError, ValueError):
        return None
    return None


def _revoked(check: RevocationCheck, revoked_at: dt.datetime, reason: str) -> PathInvalid:
    subject = check.certificate.subject
    return PathInvalid(
        f"certificate {subject!r} was revoked on {_when(revoked_at)} (reason: {reason}) "
        f"according to its {(check.method or '').upper()} ({check.url})", reason="revoked",
        subject=subject, revoked_at=revoked_at, revocation_reason=reason)


def _revoked_subject(checks: Sequence[RevocationCheck], error: PathInvalid) -> PathInvalid:
    """Name the certificate the revocation is about (pyhanko says only "intermediate 2")."""
    for check in checks:
        if _listed_revoked(check) is not None and error.revoked_at is not None:
            return _revoked(check, error.revoked_at, error.revocation_reason or "unspecified")
    return error


def _revoked_now(checks: Sequence[RevocationCheck]) -> None:
    """Validating "now": a certificate listed as revoked is revoked, even when the revocation
    time is not before the validation time (pyhanko compares them; CA clocks differ)."""
    for check in checks:
        listed = _listed_revoked(check)
        if listed is not None:
            raise _revoked(check, *listed)


def _with_later_revocation(check: RevocationCheck) -> RevocationCheck:
    listed = _listed_revoked(check)
    if listed is None:
        return check
    return dataclasses.replace(check, revoked_at=listed[0], revocation_reason=listed[1])


def _warnings(checks: Sequence[RevocationCheck]) -> list[str]:
    out = []
    for check in checks:
        if check.revoked_at is not None:
            out.append(f"certificate {check.certificate.subject!r} was revoked on "
                       f"{_when(check.revoked_at)} (reason: {check.revocation_reason}), after "
                       f"the validation time")
        if check.status == "cached-stale":
            out.append(f"revocation of {check.certificate.subject!r} checked against stale "
                       f"cached data: {'; '.join(check.problems)}")
        elif check.status == "unknown":
            out.append(f"revocation status of {check.certificate.subject!r} unknown (soft-fail)"
                       + (f": {'; '.join(check.problems)}" if check.problems else ""))
    return out


def _revoked_later(check: RevocationCheck, moment: dt.datetime) -> bool:
    """An OCSP answer (authenticated by the cache) saying "revoked" with a time after
    ``moment``.  pyhanko treats it as indeterminate, not as "good at ``moment``" (it does the
    right thing for CRLs)."""
    listed = _listed_revoked(check)
    return check.method == "ocsp" and listed is not None and listed[0] > moment


async def _pyhanko_revocation(inputs: _Inputs, path: ValidationPath,
                              checks: Sequence[RevocationCheck],
                              policy: RevocationPolicy) -> None:
    """pyhanko checks the path again with the data gathered: the revocation data must come
    from the right issuer (signature, responder authorisation, certificate ID, scope) and not
    list a certificate as revoked at the validation time."""
    context_policy = _revocation_policy(checks, policy, inputs.moment)
    later = [] if inputs.now else [c.certificate for c in checks
                                   if _revoked_later(c, inputs.moment)]
    leaf = checks[0].certificate
    if leaf in later:
        # pyhanko skips the whole path when the end entity is asserted: check the CA
        # certificates above it as a path of their own.
        if not list(path.iter_certs(include_root=False))[:-1]:
            return
        path = path.copy_and_drop_leaf()
        later.remove(leaf)
    await async_validate_path(inputs.context(context_policy, checks, later), path)


def _check_revocation(inputs: _Inputs, path: ValidationPath, policy: RevocationPolicy,
                      cache: RevocationCache) -> ValidationResult:
    """Revocation of one valid path: the ValidationResult, or PathInvalid."""
    checks = _gather(inputs, path, policy, cache)
    certificates = tuple(_path_certificates(inputs, path))
    unknown = [c for c in checks if c.status == "unknown"]
    if unknown and policy.mode is RevocationMode.HARD_FAIL:
        first = unknown[0]
        raise PathInvalid(
            f"revocation status of {first.certificate.subject!r} unknown: "
            f"{'; '.join(first.problems) or 'no usable CRL or OCSP response'}",
            reason="revocation-unknown", subject=first.certificate.subject)
    if any(c.checked for c in checks):
        try:
            _run(_pyhanko_revocation(inputs, path, checks, policy))
        except InsufficientRevinfoError as exc:
            if policy.mode is RevocationMode.HARD_FAIL:
                raise _failure(exc, certificates[0]) from None
            checks = [dataclasses.replace(c, status="unknown", problems=(*c.problems, str(exc)))
                      if c.checked else c for c in checks]
        except RevokedError as exc:
            raise _revoked_subject(checks, _failure(exc, certificates[0])) from None
        except (ValidationError, ValueError) as exc:
            raise _failure(exc, certificates[0]) from None
        if inputs.now:
            _revoked_now(checks)
        else:
            checks = [_with_later_revocation(c) for c in checks]
    warnings = _warnings(checks)
    for warning in warnings:
        logger.warning("%s", warning)
    return ValidationResult(certificates, inputs.moment, tuple(checks), tuple(warnings))


def validate(
    certificate: Certificate,
    *,
    trust: TrustStore,
    at: dt.datetime | None = None,
    usage: Usage | None = None,
    revocation: RevocationPolicy | None = None,
    cache: RevocationCache | None = None,
    intermediates: Sequence[Certificate] = (),
    signature_validator: SignatureValidator | None = None,
) -> ValidationResult:
    """Validate ``certificate`` to an anchor of ``trust`` at ``at`` (default: now).

    ``intermediates``: untrusted certificates that may help build the path (those carried by a
    signature).  ``usage``: key usage / EKU the certificate must have.  ``revocation``: the
    policy (default: hard-fail, :data:`DEFAULT_GRACE`).  ``cache``: where revocation data is
    kept between validations -- pass a long-lived one; without it a fresh cache is used once
    (its "now" is also the validation's).  Raises :class:`~ca_client.errors.PathInvalid`.
    """
    policy = revocation or RevocationPolicy()
    cache = cache or RevocationCache()
    moment = _utc(at, "at") if at is not None else cache.now()
    inputs = _inputs(certificate, trust, intermediates, moment=moment,
                     sig_validator=signature_validator or SM2_SIGNATURE_VALIDATOR,
                     now=at is None)
    try:
        paths, errors = _run(_valid_paths(inputs))
    except ValueError as exc:  # asn1crypto meeting malformed input deep inside pyhanko
        raise PathInvalid(f"certificate {certificate.subject!r} cannot be processed: {exc}",
                          subject=certificate.subject) from None
    if not paths:
        failures = [_failure(e, certificate) for e in errors] or [
            PathInvalid(f"no path from {certificate.subject!r} to a trust anchor",
                        reason="untrusted", subject=certificate.subject)]
        raise _most_relevant(failures)
    if usage is not None:
        try:
            validate_usage(inputs.leaf, set(usage.key_usage), set(usage.extended_key_usage),
                           usage.extended_optional)
        except InvalidCertificateError as exc:
            raise PathInvalid(f"certificate {certificate.subject!r}: {exc}", reason="usage",
                              subject=certificate.subject) from None
    failures = []
    for path in paths:
        try:
            return _check_revocation(inputs, path, policy, cache)
        except PathInvalid as exc:
            failures.append(exc)
    raise _most_relevant(failures)

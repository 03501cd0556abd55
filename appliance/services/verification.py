"""Verification of CMS signatures (both flavours) and raw signatures for the hospital's
systems: integrity, the signer, the chain to the appliance's trust anchors, revocation at the
time of the check, and the signer's claimed signing time.  The chain and revocation are checked
as of now (a signing-time attribute is the signer's own claim, which a stolen key could
backdate), or as of the time a trusted signature time stamp (RFC 3161 signatureTimeStampToken,
verified against the appliance's anchors) proves, or, for a raw signature, as of the time the
caller states.

Trust anchors are the roots of the built-in CA's hierarchies (every generation) and their
issuing CAs as intermediates; CA channels' roots join when they are configured as anchors (a
later change).  Revocation of certificates of the built-in CA is answered from the appliance's
own published CRLs, offered to the validator's cache (no network round trip to itself);
others are fetched from the CRL and OCSP URLs the certificates name, in soft-fail mode: an
unreachable responder makes the answer say ``unknown`` (with the reason) rather than
"invalid", and the integrator decides.

Threat model: everything submitted is attacker-controlled.  A signature is reported ``valid``
only when integrity holds, the chain validates to an anchor at the signing time, and no
certificate of the path is known revoked at that time; each part is reported separately, with
the reasons.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Callable
from typing import Any

from sqlalchemy import insert, select, update

import pdfsign
from appliance.config import VerifyConfig
from appliance.errors import ConfigError, Conflict, NotFound, Sealed, ValidationFailed
from appliance.services.ca import CaService
from appliance.services.pdf_ltv import ApplianceRevocation
from appliance.storage import Database, schema
from ca_client import PathInvalid
from ca_client.trust import (
    RevocationCache,
    RevocationMode,
    RevocationPolicy,
    TrustStore,
    ValidationResult,
    validate,
)
from signcore import cms, tsp
from signcore.errors import InvalidSignature, SigncoreError
from signcore.keys import PublicKey
from signcore.x509 import Certificate, load_certificate

POLICY = RevocationPolicy(mode=RevocationMode.SOFT_FAIL, prefer="crl")


def revocation_policy(config: VerifyConfig) -> RevocationPolicy:
    """The ``[verify]`` settings as a policy (ConfigError for a bad value)."""
    if config.revocation not in ("soft", "hard"):
        raise ConfigError("verify.revocation must be soft or hard")
    if config.revocation_grace_hours < 0:
        raise ConfigError("verify.revocation_grace_hours cannot be negative")
    return RevocationPolicy(
        mode=RevocationMode.SOFT_FAIL if config.revocation == "soft"
        else RevocationMode.HARD_FAIL,
        grace=dt.timedelta(hours=config.revocation_grace_hours), prefer="crl")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


@dataclasses.dataclass(frozen=True)
class ChainReport:
    trusted: bool
    path: tuple[str, ...]  # subjects, signer first
    revocation: str  # ocsp | crl | cached-stale | unknown | not-declared | revoked
    problems: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"trusted": self.trusted, "path": list(self.path),
                "revocation": self.revocation, "problems": list(self.problems)}


RC = schema.revocation_cache


class DbRevocationStore:
    """ca_client.trust's RevocationStore in the appliance's database: what one worker or node
    fetched from an external CA serves all of them, and survives a restart (the cache verifies
    it again before use, so a tampered row is only a miss)."""

    def __init__(self, database: Database, clock: Callable[[], dt.datetime] = _now) -> None:
        self._db, self._clock = database, clock

    def get(self, kind: str, key: str) -> bytes | None:
        with self._db.engine.connect() as conn:
            row = conn.execute(select(RC.c.der).where(RC.c.kind == kind,
                                                      RC.c.key_sha256 == _sha(key))).first()
        return bytes(row.der) if row is not None else None

    def put(self, kind: str, key: str, der: bytes) -> None:
        with self._db.transaction() as conn:
            where = (RC.c.kind == kind, RC.c.key_sha256 == _sha(key))
            if conn.execute(update(RC).where(*where).values(
                    der=der, key=key, stored_at=self._clock())).rowcount == 0:
                conn.execute(insert(RC).values(kind=kind, key_sha256=_sha(key), key=key,
                                               der=der, stored_at=self._clock()))


def _sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class VerificationService:
    """One per process: the revocation cache (and its grace period) outlives requests, so an
    external CA's CRL is fetched once per nextUpdate, not per verification, and a responder
    that goes down is bridged by what was fetched before."""

    def __init__(self, ca: CaService, *, policy: RevocationPolicy = POLICY,
                 clock: Callable[[], dt.datetime] = _now,
                 store: DbRevocationStore | None = None) -> None:
        self._ca, self._clock, self._policy = ca, clock, policy
        self._cache = RevocationCache(store, clock=clock)

    def _trust(self) -> tuple[TrustStore, RevocationCache]:
        authorities = self._ca.authorities()
        anchors, others = self._ca.trusted_certificates()
        store = TrustStore(anchors, others)
        cache = self._cache
        for authority in authorities:
            urls = self._ca.urls(authority.id)
            try:
                full, delta = (self._ca.crl(authority.id),
                               self._ca.crl(authority.id, delta=True))
            except (NotFound, Sealed):  # not yet published: its revocation answers "unknown"
                continue
            assert urls.crl is not None and urls.delta_crl is not None
            # The appliance's own CRLs, as published (the cache keeps the newest it was given).
            cache.offer_crl(urls.crl, full, issuer=authority.certificate)
            cache.offer_crl(urls.delta_crl, delta, issuer=authority.certificate)
        return store, cache

    def chain(self, certificate: Certificate, at: dt.datetime | None,
              intermediates: tuple[Certificate, ...] = ()) -> ChainReport:
        store, cache = self._trust()
        try:
            result: ValidationResult = validate(certificate, trust=store, at=at,
                                                revocation=self._policy, cache=cache,
                                                intermediates=intermediates)
        except PathInvalid as exc:
            revocation = "revoked" if exc.reason == "revoked" else "unknown"
            return ChainReport(False, (certificate.subject,), revocation, (str(exc),))
        return ChainReport(True, tuple(c.subject for c in result.path),
                           result.revocation_status, result.warnings)

    def verify_pdf(self, data: bytes) -> dict[str, Any]:
        """Every signature of a PDF (PAdES, SM2 or RSA) against the appliance's trust anchors:
        integrity, signer, chain, coverage, changes after signing and the locks, time stamp,
        revocation as of the signing time (the document's DSS first, then the built-in CA's
        OCSP and the revocation cache), the PAdES level reached, and the document timestamps
        (B-LTA, archive timestamps) along their chain."""
        anchors, others = self._ca.trusted_certificates()
        fetcher = ApplianceRevocation(self._ca, self._trust()[1])
        try:
            reports = pdfsign.validate_pdf(data, anchors, others, revocation=fetcher)
            stamps = pdfsign.validate_document_timestamps(data, anchors, others)
        except pdfsign.EncryptedPdf:
            raise ValidationFailed("加密的 PDF 无法验证") from None
        except pdfsign.PdfSignError as exc:
            raise ValidationFailed(f"不是可读取的 PDF：{exc}") from None
        return {"format": "pdf",
                "valid": bool(reports) and all(r.ok for r in reports)
                and all(s.ok for s in stamps),
                "signatures": [_signature_json(r) for r in reports],
                "document_timestamps": [_document_timestamp_json(s) for s in stamps]}

    def verify_stored(self, fmt: str, content: bytes | None,
                      signature: bytes | None) -> dict[str, Any]:
        """A sign request's document as it is now (``fmt``: the request's format), as
        ``POST /api/v1/verify`` would answer for it: the PDF with its signatures so far
        (pades), or the CMS so far with its content (cms-*); not yet signed: no signers."""
        if fmt == "pades":
            data = signature if signature is not None else content
            if data is None:
                raise NotFound("没有这个文档")
            return self.verify_pdf(data)
        if fmt not in ("cms-attached", "cms-detached"):
            raise Conflict("raw 签名请求没有可验证的签名容器（签名值在任务结果中）")
        if signature is None:
            return {"format": "cms", "valid": False, "signers": []}
        if fmt == "cms-detached" and content is None:
            raise Conflict("只登记了摘要的文档无法在此验证：需要原文")
        return self.verify_cms(signature, content if fmt == "cms-detached" else None)

    def verify_cms(self, signature: bytes, content: bytes | None) -> dict[str, Any]:
        try:
            checked = cms.verify(signature, content=content)
        except SigncoreError as exc:
            raise ValidationFailed(f"signature 不是可解析的 CMS SignedData：{exc}") from None
        signers = []
        for signer in checked.signers:
            certificate = signer.signer_certificate
            # The signing-time attribute is the signer's own claim: a compromised key could
            # backdate it.  A trusted signature time stamp proves the time instead: then the
            # chain and its revocation are checked as of the stamped time, else as of now.
            stamp = self._timestamp(signer)
            proven = dt.datetime.fromisoformat(stamp["time"]) if stamp and stamp["valid"] \
                else None
            at = proven or self._clock()
            chain = (self.chain(certificate, proven, checked.certificates)
                     if certificate is not None else
                     ChainReport(False, (), "unknown", ("no signer certificate in the CMS",)))
            signers.append({
                "valid": signer.integrity and chain.trusted and chain.revocation != "revoked",
                "integrity": signer.integrity,
                "problems": list(signer.problems),
                "signer": _certificate_json(certificate),
                "signature_algorithm": signer.signature_algorithm.value
                if signer.signature_algorithm else None,
                "signing_time": signer.signing_time.isoformat() if signer.signing_time else None,
                "checked_at": at.isoformat(),
                "timestamp": stamp,
                "chain": chain.to_json(),
            })
        return {"format": "cms", "flavour": checked.flavor.value, "detached": checked.detached,
                "valid": bool(signers) and all(s["valid"] for s in signers),
                "signers": signers}

    def _timestamp(self, signer: cms.SignerResult) -> dict[str, Any] | None:
        """The signature time stamp of a SignerInfo, verified against the appliance's anchors
        (its TSA's chain is checked like any signer's, at the stamped time)."""
        try:
            token = cms.signature_timestamp_token(signer.unsigned_attributes)
        except SigncoreError as exc:
            return {"valid": False, "time": None, "tsa": None, "problems": [str(exc)]}
        if token is None:
            return None
        anchors, others = self._ca.trusted_certificates()
        try:
            checked = tsp.verify_token(token, data=signer.signature, trust_roots=anchors,
                                       intermediates=others)
        except SigncoreError as exc:
            return {"valid": False, "time": None, "tsa": None, "problems": [str(exc)]}
        return {"valid": checked.valid, "time": checked.info.gen_time.isoformat(),
                "tsa": checked.tsa_certificate.subject if checked.tsa_certificate else None,
                "problems": list(checked.problems)}

    def verify_raw(self, signature: bytes, content: bytes, certificate_pem: bytes,
                   at: dt.datetime | None) -> dict[str, Any]:
        try:
            certificate = load_certificate(certificate_pem)
        except (SigncoreError, ValueError) as exc:
            raise ValidationFailed(f"certificate 无法解析：{exc}") from None
        key: PublicKey = certificate.public_key()
        problems: list[str] = []
        try:
            key.verify(signature, content)
            integrity = True
        except (InvalidSignature, SigncoreError, ValueError) as exc:
            integrity, problems = False, [str(exc) or "the signature does not verify"]
        checked_at = at or self._clock()
        chain = self.chain(certificate, at)  # None: now (a revocation this very second counts)
        return {"format": "raw", "valid": integrity and chain.trusted
                and chain.revocation != "revoked",
                "signers": [{"valid": integrity and chain.trusted
                             and chain.revocation != "revoked",
                             "integrity": integrity, "problems": problems,
                             "signer": _certificate_json(certificate),
                             "signature_algorithm": key.default_signature_algorithm.value,
                             "signing_time": None, "checked_at": checked_at.isoformat(),
                             "timestamp": None, "chain": chain.to_json()}]}


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _signature_json(r: pdfsign.SignatureReport) -> dict[str, Any]:
    return {"field": r.field, "signer": r.signer, "ok": r.ok, "intact": r.intact,
            "valid": r.valid, "trusted": r.trusted, "coverage": r.coverage,
            "modification_level": r.modification_level,
            "modifications_allowed": r.modifications_allowed,
            "signing_time": _iso(r.signing_time), "timestamp": _iso(r.timestamp),
            "timestamp_ok": r.timestamp_ok, "level": r.level, "algorithm": r.algorithm,
            "revocation": r.revocation, "archive_timestamp": _iso(r.archive_timestamp),
            "problems": list(r.problems)}


def _document_timestamp_json(s: pdfsign.DocumentTimestampReport) -> dict[str, Any]:
    return {"field": s.field, "ok": s.ok, "time": _iso(s.time), "tsa": s.tsa,
            "intact": s.intact, "valid": s.valid, "trusted": s.trusted,
            "coverage": s.coverage, "checked_at": s.checked_at.isoformat(),
            "revocation": s.revocation, "problems": list(s.problems)}


def _certificate_json(certificate: Certificate | None) -> dict[str, Any] | None:
    if certificate is None:
        return None
    return {"subject": certificate.subject, "issuer": certificate.issuer,
            "serial": f"{certificate.serial_number:x}",
            "not_before": certificate.not_before.isoformat(),
            "not_after": certificate.not_after.isoformat(),
            "sha256": certificate.fingerprint("sha256").hex()}

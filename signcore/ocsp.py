"""RFC 6960 OCSP: requests and responses, both halves (SM2/SM3 and RSA/SHA-256).

The client half (:func:`build_request`, :func:`load_response`, :meth:`OcspResponse.verify`)
is what path validation uses; the responder half (:func:`load_request`,
:func:`build_response`, :func:`error_response`) is the format of the built-in CA's responder,
whose policy (which CA, what status, how long a response is good for) lives in ``ca_client``.

A response is trusted only when it is signed by the certificate's issuer itself, or by a
delegated responder certificate that the issuer signed, that carries the ``OCSPSigning`` EKU
and that was valid when the response was produced (RFC 6960 section 4.2.2.2).  CertIDs may use
SHA-1 (what OpenSSL and RFC 5019 clients send), SHA-256 or SM3: the hashes only *name* the
issuer, the response's signature is what is trusted.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from signcore import hashes
from signcore._internal import algids, der
from signcore._internal.asn1 import core, load, ocsp
from signcore._internal.keybase import Signer
from signcore.errors import DecodeError, InvalidSignature, UnsupportedAlgorithm
from signcore.hashes import HashAlgorithm
from signcore.x509 import (
    Certificate,
    _signature_bits,
    key_identifier,
    verify_signed_bytes,
)

__all__ = [
    "CertId",
    "CertStatus",
    "OcspRequest",
    "OcspResponse",
    "SingleStatus",
    "build_request",
    "build_response",
    "error_response",
    "load_request",
    "load_response",
]

CERT_ID_HASHES = ("sha1", "sha256", "sm3")
NONCE_BYTES = 16
MAX_NONCE_BYTES = 128  # RFC 8954: responders may refuse longer nonces
#: OCSPResponseStatus values other than ``successful`` (RFC 6960 section 4.2.1).
_SUCCESSFUL = b"\x0a\x01\x00"  # OCSPResponseStatus ENUMERATED successful (0)
_ID_PKIX_OCSP_BASIC = ocsp.ResponseType("basic_ocsp_response").dump()
ERROR_STATUSES = ("malformed_request", "internal_error", "try_later", "sign_required",
                  "unauthorized")


def _hash(name: str, data: bytes) -> bytes:
    if name == "sha1":  # names the issuer; never a signature digest
        return hashlib.sha1(data, usedforsecurity=False).digest()
    if name in ("sha256", "sm3"):
        return hashes.digest(HashAlgorithm(name), data)
    raise UnsupportedAlgorithm(f"unsupported CertID hash {name!r}")


def _public_key_bits(cert: Certificate) -> bytes:
    return bytes(cert.asn1["tbs_certificate"]["subject_public_key_info"]["public_key"])


@dataclass(frozen=True)
class CertId:
    """Which certificate a request or single response is about."""

    hash_algorithm: str
    issuer_name_hash: bytes
    issuer_key_hash: bytes
    serial_number: int

    @classmethod
    def of(cls, serial_number: int, issuer: Certificate, hash_algorithm: str = "sha1") -> CertId:
        return cls(hash_algorithm, _hash(hash_algorithm, issuer.subject_name.dump()),
                   _hash(hash_algorithm, _public_key_bits(issuer)), serial_number)

    def names_issuer(self, issuer: Certificate) -> bool:
        """True if this CertID's hashes name ``issuer`` (by its name and its key)."""
        try:
            other = CertId.of(self.serial_number, issuer, self.hash_algorithm)
        except UnsupportedAlgorithm:
            return False
        return (other.issuer_name_hash, other.issuer_key_hash) == (
            self.issuer_name_hash, self.issuer_key_hash)

    def asn1(self) -> ocsp.CertId:
        return ocsp.CertId({
            "hash_algorithm": {"algorithm": self.hash_algorithm},
            "issuer_name_hash": self.issuer_name_hash,
            "issuer_key_hash": self.issuer_key_hash,
            "serial_number": self.serial_number,
        })

    @classmethod
    def from_asn1(cls, value: ocsp.CertId) -> CertId:
        algorithm = value["hash_algorithm"]["algorithm"].native
        return cls(str(algorithm), bytes(value["issuer_name_hash"].native),
                   bytes(value["issuer_key_hash"].native), int(value["serial_number"].native))


# ---------------------------------------------------------------------------------------------
# Requests


@dataclass(frozen=True)
class OcspRequest:
    der: bytes
    cert_ids: tuple[CertId, ...]
    nonce: bytes | None


def build_request(cert_ids: Sequence[CertId], *, nonce: bool | bytes = True) -> OcspRequest:
    """An unsigned OCSPRequest for ``cert_ids`` (with a random nonce unless ``nonce=False``)."""
    if not cert_ids:
        raise ValueError("an OCSP request names at least one certificate")
    nonce_value = (secrets.token_bytes(NONCE_BYTES) if nonce is True
                   else None if nonce is False else bytes(nonce))
    tbs: dict[str, Any] = {"request_list": [{"req_cert": c.asn1()} for c in cert_ids]}
    if nonce_value is not None:
        tbs["request_extensions"] = [{"extn_id": "nonce", "extn_value": nonce_value}]
    der = ocsp.OCSPRequest({"tbs_request": tbs}).dump()
    return OcspRequest(der, tuple(cert_ids), nonce_value)


def load_request(der: bytes) -> OcspRequest:
    """Parse an OCSPRequest; a request signature, if any, is not needed and not checked."""
    request = load(ocsp.OCSPRequest, der, "OCSP request")
    tbs = request["tbs_request"]
    try:
        ids = tuple(CertId.from_asn1(item["req_cert"]) for item in tbs["request_list"])
        nonce = None
        for extension in tbs["request_extensions"] or []:
            if extension["extn_id"].native == "nonce":
                nonce = bytes(extension["extn_value"].parsed.native)
            elif extension["critical"].native:
                raise DecodeError(
                    f"unsupported critical request extension {extension['extn_id'].dotted}")
    except (ValueError, TypeError, KeyError) as exc:
        raise DecodeError(f"malformed OCSP request: {exc}") from exc
    if not ids:
        raise DecodeError("the OCSP request names no certificate")
    if nonce is not None and not 1 <= len(nonce) <= MAX_NONCE_BYTES:
        raise DecodeError(f"the OCSP nonce must be 1 to {MAX_NONCE_BYTES} bytes")
    return OcspRequest(der, ids, nonce)


# ---------------------------------------------------------------------------------------------
# Responses


class CertStatus(enum.Enum):
    GOOD = "good"
    REVOKED = "revoked"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class SingleStatus:
    cert_id: CertId
    status: CertStatus
    this_update: dt.datetime
    next_update: dt.datetime | None = None
    revocation_time: dt.datetime | None = None
    revocation_reason: str | None = None  # asn1crypto's CRLReason names (key_compromise, ...)


def _generalized(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        raise ValueError("naive datetime: pass an aware datetime (UTC)")
    return value.astimezone(dt.UTC).replace(microsecond=0)


def _single_asn1(item: SingleStatus) -> dict[str, Any]:
    status: Any
    if item.status is CertStatus.REVOKED:
        if item.revocation_time is None:
            raise ValueError("a revoked status needs its revocation time")
        info: dict[str, Any] = {"revocation_time": _generalized(item.revocation_time)}
        if item.revocation_reason:
            info["revocation_reason"] = item.revocation_reason
        status = ocsp.CertStatus(name="revoked", value=info)
    else:
        status = ocsp.CertStatus(name=item.status.value, value=core.Null())
    single: dict[str, Any] = {"cert_id": item.cert_id.asn1(), "cert_status": status,
                              "this_update": _generalized(item.this_update)}
    if item.next_update is not None:
        single["next_update"] = _generalized(item.next_update)
    return single


def build_response(statuses: Sequence[SingleStatus], *, responder: Certificate, signer: Signer,
                   nonce: bytes | None = None, produced_at: dt.datetime | None = None,
                   certs: Sequence[Certificate] = ()) -> bytes:
    """A successful BasicOCSPResponse signed by ``signer`` (the key of ``responder``: the
    issuing CA itself, or a delegated responder, whose certificate then goes in ``certs``)."""
    if not statuses:
        raise ValueError("a response carries at least one status")
    if signer.public_key() != responder.public_key():
        raise ValueError("the signing key does not belong to the responder certificate")
    data: dict[str, Any] = {
        "responder_id": ocsp.ResponderId(name="by_key",
                                         value=key_identifier(responder.public_key())),
        "produced_at": _generalized(produced_at or dt.datetime.now(dt.UTC)),
        "responses": [_single_asn1(item) for item in statuses],
    }
    if nonce is not None:
        data["response_extensions"] = [{"extn_id": "nonce", "extn_value": nonce}]
    tbs_der = ocsp.ResponseData(data).dump()
    algorithm = signer.public_key().resolve_algorithm(None)
    signature = signer.sign(tbs_der, algorithm)
    # The outer layers, around the very bytes that were signed (signcore._internal.der).
    basic = der.sequence(
        tbs_der, algids.signature_algorithm_id(algorithm).dump(), der.bit_string(signature),
        *([der.explicit(0, der.sequence(*(c.der for c in certs)))] if certs else []))
    return der.sequence(_SUCCESSFUL, der.explicit(0, der.sequence(
        _ID_PKIX_OCSP_BASIC, der.octet_string(basic))))


def error_response(status: str) -> bytes:
    """An unsuccessful OCSPResponse (no body): ``malformed_request``, ``unauthorized``, ..."""
    if status not in ERROR_STATUSES:
        raise ValueError(f"not an OCSP error status: {status!r}")
    der: bytes = ocsp.OCSPResponse({"response_status": status}).dump()
    return der


@dataclass(frozen=True)
class OcspResponse:
    der: bytes
    status: str  # "successful" or one of ERROR_STATUSES
    produced_at: dt.datetime | None
    responses: tuple[SingleStatus, ...]
    nonce: bytes | None
    certs: tuple[Certificate, ...]
    _basic: Any = None

    def status_of(self, cert_id: CertId) -> SingleStatus | None:
        for item in self.responses:
            if (item.cert_id.serial_number == cert_id.serial_number
                    and item.cert_id.hash_algorithm == cert_id.hash_algorithm
                    and item.cert_id.issuer_key_hash == cert_id.issuer_key_hash
                    and item.cert_id.issuer_name_hash == cert_id.issuer_name_hash):
                return item
        return None

    def verify(self, issuer: Certificate, *, at: dt.datetime | None = None) -> Certificate:
        """Check the signature: by ``issuer`` or by a delegated responder it certified (EKU
        ``ocsp_signing``, valid at ``produced_at``).  Returns the certificate that signed;
        raises InvalidSignature naming what failed."""
        if self._basic is None:
            raise InvalidSignature(f"the OCSP response is not successful ({self.status})")
        basic = self._basic
        tbs = basic["tbs_response_data"]
        signer = self._responder(tbs["responder_id"], issuer)
        if signer is not issuer:
            try:
                signer.verify_signature(issuer.public_key())
            except InvalidSignature:
                raise InvalidSignature("the delegated OCSP responder certificate was not "
                                       "issued by the certificate's issuer") from None
            if "ocsp_signing" not in signer.extensions.extended_key_usage and \
                    "1.3.6.1.5.5.7.3.9" not in signer.extensions.extended_key_usage:
                raise InvalidSignature("the delegated OCSP responder lacks the OCSPSigning EKU")
            when = at or self.produced_at
            if when is not None and not signer.is_valid_at(when):
                raise InvalidSignature("the OCSP responder certificate was not valid when the "
                                       "response was produced")
        verify_signed_bytes(tbs.dump(), basic["signature_algorithm"],
                            _signature_bits(basic["signature"]), signer.public_key())
        return signer

    def _responder(self, responder_id: ocsp.ResponderId, issuer: Certificate) -> Certificate:
        def named(cert: Certificate) -> bool:
            if responder_id.name == "by_key":
                return bytes(responder_id.chosen.native) == key_identifier(cert.public_key())
            return bool(responder_id.chosen == cert.subject_name)

        for candidate in (issuer, *self.certs):
            if named(candidate):
                return candidate
        raise InvalidSignature("the OCSP response was signed by neither the issuer nor a "
                               "responder certificate it carries")


def _single_from_asn1(value: ocsp.SingleResponse) -> SingleStatus:
    status = value["cert_status"]
    kind = CertStatus(status.name)
    revoked_at = reason = None
    if kind is CertStatus.REVOKED:
        revoked_at = status.chosen["revocation_time"].native
        reason_value = status.chosen["revocation_reason"]
        reason = reason_value.native if reason_value.native is not None else None
    return SingleStatus(CertId.from_asn1(value["cert_id"]), kind, value["this_update"].native,
                        value["next_update"].native, revoked_at, reason)


def load_response(der: bytes) -> OcspResponse:
    """Parse an OCSPResponse (any status).  Call :meth:`OcspResponse.verify` before trusting
    what it says."""
    response = load(ocsp.OCSPResponse, der, "OCSP response")
    status = str(response["response_status"].native)
    if status != "successful":
        return OcspResponse(der, status, None, (), None, ())
    try:
        if response["response_bytes"]["response_type"].native != "basic_ocsp_response":
            raise DecodeError("unsupported OCSP response type")
        basic = response["response_bytes"]["response"].parsed
        tbs = basic["tbs_response_data"]
        singles = tuple(_single_from_asn1(item) for item in tbs["responses"])
        nonce = None
        for extension in tbs["response_extensions"] or []:
            if extension["extn_id"].native == "nonce":
                nonce = bytes(extension["extn_value"].parsed.native)
        certs = tuple(Certificate(c) for c in basic["certs"] or [])
        produced = tbs["produced_at"].native
    except (ValueError, TypeError, KeyError) as exc:
        raise DecodeError(f"malformed OCSP response: {exc}") from exc
    return OcspResponse(der, status, produced, singles, nonce, certs, basic)


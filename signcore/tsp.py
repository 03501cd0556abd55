"""RFC 3161 time-stamp protocol: requests, responses and tokens (SM2/SM3 and RSA/SHA-256).

The client side (build a request, parse and verify a response or a bare token) is what signing
flows and validators use.  :func:`build_token` and :func:`build_response` are the format half of
a TSA; the TSA service (clock-sync checks, serial numbers, policy) lives in the appliance.

Verification checks, and reports each failure by name: the token is a CMS SignedData over a
TSTInfo, its signature and ESS signing-certificate(-v2) binding, the TSA certificate's critical
``timeStamping`` EKU (RFC 3161 section 2.3), the message imprint against the data or digest,
the nonce and policy against the request, and -- with trust roots -- the TSA's chain at the
time of the stamp.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from signcore import cms, hashes
from signcore._internal import algids
from signcore._internal.asn1 import cms as asn1_cms
from signcore._internal.asn1 import core, load, tsp, x509
from signcore._internal.keybase import Signer
from signcore.algorithms import DEFAULT_SM2_ID, KeyType
from signcore.errors import DecodeError, SigncoreError, UnsupportedAlgorithm
from signcore.hashes import HashAlgorithm
from signcore.path import ValidatedPath
from signcore.x509 import Certificate

__all__ = [
    "TimestampInfo",
    "TimestampRequest",
    "TimestampResponse",
    "TimestampVerification",
    "build_request",
    "build_response",
    "build_token",
    "load_request",
    "load_response",
    "parse_token",
    "verify_response",
    "verify_token",
]

OID_TST_INFO = "1.2.840.113549.1.9.16.1.4"
NONCE_BITS = 64


@dataclass(frozen=True)
class TimestampRequest:
    der: bytes
    hash_algorithm: HashAlgorithm
    message_imprint: bytes
    nonce: int | None
    cert_req: bool
    policy: str | None


def build_request(
    *,
    data: bytes | None = None,
    digest: bytes | None = None,
    hash_algorithm: HashAlgorithm = HashAlgorithm.SHA256,
    nonce: bool | int = True,
    cert_req: bool = True,
    policy: str | None = None,
) -> TimestampRequest:
    """A TimeStampReq over ``data`` (hashed here) or a precomputed ``digest``."""
    if (data is None) == (digest is None):
        raise ValueError("give exactly one of data or digest")
    imprint = hashes.digest(hash_algorithm, data) if data is not None else digest
    assert imprint is not None
    if len(imprint) != hash_algorithm.digest_size:
        raise ValueError(f"a {hash_algorithm.value} digest is {hash_algorithm.digest_size} bytes")
    nonce_value = (secrets.randbits(NONCE_BITS) | 1 if nonce is True
                   else None if nonce is False else int(nonce))
    request: dict[str, object] = {
        "version": "v1",
        "message_imprint": {"hash_algorithm": algids.digest_algorithm_id(hash_algorithm),
                            "hashed_message": imprint},
        "cert_req": cert_req,
    }
    if nonce_value is not None:
        request["nonce"] = nonce_value
    if policy:
        request["req_policy"] = policy
    der = tsp.TimeStampReq(request).dump()
    return TimestampRequest(der, hash_algorithm, imprint, nonce_value, cert_req, policy)


def load_request(der: bytes) -> TimestampRequest:
    """Parse a TimeStampReq (``application/timestamp-query``)."""
    request = load(tsp.TimeStampReq, der, "TimeStampReq")
    if request["version"].native != "v1":
        raise DecodeError("unsupported TimeStampReq version")
    imprint = request["message_imprint"]
    hash_algorithm = algids.hash_from_digest_id(imprint["hash_algorithm"])
    hashed = bytes(imprint["hashed_message"].native)
    if len(hashed) != hash_algorithm.digest_size:
        raise DecodeError("message imprint length does not match its hash algorithm")
    nonce = request["nonce"].native
    policy = request["req_policy"].dotted if request["req_policy"].native else None
    return TimestampRequest(der, hash_algorithm, hashed, nonce, bool(request["cert_req"].native),
                            policy)


@dataclass(frozen=True)
class TimestampInfo:
    """The fields of a TSTInfo."""

    policy: str
    hash_algorithm: HashAlgorithm
    message_imprint: bytes
    serial_number: int
    gen_time: dt.datetime
    accuracy: dt.timedelta | None
    ordering: bool
    nonce: int | None
    tsa_name: str | None


class _TimeStampResp(tsp.TimeStampResp):  # type: ignore[misc]
    """asn1crypto's TimeStampResp, but with timeStampToken OPTIONAL as RFC 3161 2.4.2 has it:
    asn1crypto requires the token, so every rejection would otherwise fail to build or parse."""

    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", asn1_cms.ContentInfo, {"optional": True}),
    ]


@dataclass(frozen=True)
class TimestampResponse:
    status: str  # granted, granted_with_mods, rejection, waiting, ...
    status_text: str | None
    failure_info: tuple[str, ...]
    token: bytes | None

    @property
    def granted(self) -> bool:
        return self.status in ("granted", "granted_with_mods")


def load_response(der: bytes) -> TimestampResponse:
    """Parse a TimeStampResp (``application/timestamp-reply``)."""
    response = load(_TimeStampResp, der, "TimeStampResp")
    status_info = response["status"]
    texts = status_info["status_string"].native
    fail = status_info["fail_info"].native
    token = response["time_stamp_token"]
    token_der = None if isinstance(token, core.Void) else bytes(token.dump())
    status = status_info["status"].native
    if status in ("granted", "granted_with_mods") and token_der is None:
        raise DecodeError("a granted TimeStampResp carries no token")
    return TimestampResponse(status, "; ".join(texts) if texts else None,
                             tuple(sorted(fail)) if fail else (), token_der)


def parse_token(token: bytes) -> TimestampInfo:
    """The TSTInfo of a token, without verifying anything."""
    _, signed_data = cms.load_signed_data(token)
    encap = signed_data["encap_content_info"]
    if encap["content_type"].dotted != OID_TST_INFO:
        raise DecodeError("the token does not encapsulate a TSTInfo")
    if isinstance(encap["content"], core.Void):
        raise DecodeError("the token has no TSTInfo content")
    return _tst_info(load(tsp.TSTInfo, bytes(encap["content"].contents), "TSTInfo"))


def _accuracy(value: tsp.Accuracy) -> dt.timedelta | None:
    if isinstance(value, core.Void) or value.native is None:
        return None
    parts = value.native
    return dt.timedelta(seconds=parts.get("seconds") or 0,
                        milliseconds=parts.get("millis") or 0,
                        microseconds=parts.get("micros") or 0)


def _tst_info(info: tsp.TSTInfo) -> TimestampInfo:
    imprint = info["message_imprint"]
    tsa = info["tsa"]
    tsa_name = None
    if not isinstance(tsa, core.Void) and tsa.native is not None:
        tsa_name = str(tsa.native)
    return TimestampInfo(
        policy=info["policy"].dotted,
        hash_algorithm=algids.hash_from_digest_id(imprint["hash_algorithm"]),
        message_imprint=bytes(imprint["hashed_message"].native),
        serial_number=int(info["serial_number"].native),
        gen_time=info["gen_time"].native,
        accuracy=_accuracy(info["accuracy"]),
        ordering=bool(info["ordering"].native),
        nonce=info["nonce"].native,
        tsa_name=tsa_name,
    )


# ---------------------------------------------------------------------------------------------
# Verification


@dataclass(frozen=True)
class TimestampVerification:
    info: TimestampInfo
    tsa_certificate: Certificate | None
    chain: ValidatedPath | None
    trusted: bool | None  # None: no trust roots given
    problems: tuple[str, ...] = field(default=())

    @property
    def valid(self) -> bool:
        return not self.problems and self.trusted is not False


def _ess_matches(attrs: asn1_cms.CMSAttributes | None, cert: Certificate) -> str | None:
    """None when an ESS signing-certificate attribute binds ``cert``, else the problem."""
    if attrs is None:
        return "the token has no signed attributes"
    for attr in attrs:
        name = attr["type"].native
        if name in ("signing_certificate", "signing_certificate_v2"):
            return _ess_cert_id_problem(name, attr, cert)
    return "the token lacks the ESS signing-certificate attribute RFC 3161 requires"


def _ess_cert_id_problem(name: str, attr: asn1_cms.CMSAttribute,
                         cert: Certificate) -> str | None:
    # Attacker-controlled: the SET OF values and the SEQUENCE OF certs may both be empty.
    if not attr["values"] or not attr["values"][0]["certs"]:
        return "the ESS signing-certificate attribute names no certificate"
    first = attr["values"][0]["certs"][0]
    if name == "signing_certificate":
        hash_name = "sha1"
    else:
        hash_name = first["hash_algorithm"]["algorithm"].native
    if hash_name == "sm3":
        expected = hashes.sm3(cert.der)
    else:
        try:
            expected = hashlib.new(hash_name, cert.der).digest()
        except (ValueError, TypeError):
            return f"ESS certificate hash {hash_name} is not supported"
    if bytes(first["cert_hash"].native) != expected:
        return "the ESS signing-certificate attribute does not match the TSA certificate"
    serial = first["issuer_serial"]
    if not isinstance(serial, core.Void) and serial.native is not None and int(
            serial["serial_number"].native) != cert.serial_number:
        return "the ESS signing-certificate serial does not match the TSA certificate"
    return None


def _tsa_certificate_problem(cert: Certificate) -> str | None:
    ext = cert.extensions
    if "time_stamping" not in ext.extended_key_usage:
        return "the TSA certificate lacks the timeStamping extended key usage"
    if not ext.extended_key_usage_critical or len(ext.extended_key_usage) != 1:
        return "the TSA certificate's extended key usage must be critical and timeStamping only"
    return None


def verify_token(
    token: bytes,
    *,
    data: bytes | None = None,
    digest: bytes | None = None,
    request: TimestampRequest | None = None,
    trust_roots: Sequence[Certificate] | None = None,
    intermediates: Sequence[Certificate] = (),
    certificates: Sequence[Certificate] = (),
    at: dt.datetime | None = None,
) -> TimestampVerification:
    """Verify a time-stamp token (a CMS ContentInfo).  Raises DecodeError for unparseable input.

    The imprint is checked against ``data`` (hashed with the token's algorithm), ``digest`` or
    ``request`` (which also fixes nonce and policy).  The TSA chain is validated at ``at``, by
    default the token's own genTime.  One of ``data``, ``digest`` or ``request`` is required: a
    token is only evidence about the data it was issued for.
    """
    if data is None and digest is None and request is None:
        raise ValueError("give the time-stamped data, its digest or the request")
    info = parse_token(token)
    problems: list[str] = []
    expected = _expected_imprint(info, data, digest, request, problems)
    if not hashes.constant_time_equal(expected, info.message_imprint):
        problems.append("the message imprint does not match the time-stamped data")
    if request is not None:
        if request.nonce != info.nonce:
            problems.append("the nonce does not match the request")
        if request.policy and request.policy != info.policy:
            problems.append("the TSA used a policy other than the one requested")
    result = cms.verify(token, trust_roots=trust_roots, intermediates=intermediates,
                        certificates=certificates, at=at or info.gen_time,
                        required_eku="time_stamping")
    if len(result.signers) != 1:
        problems.append("a time-stamp token must have exactly one signer")
        return TimestampVerification(info, None, None, False if trust_roots else None,
                                     tuple(problems))
    signer = result.signers[0]
    problems.extend(signer.problems)
    cert = signer.signer_certificate
    if cert is not None:
        for problem in (_ess_matches(signer.signed_attributes, cert),
                        _tsa_certificate_problem(cert)):
            if problem:
                problems.append(problem)
    return TimestampVerification(info, cert, signer.chain, signer.trusted, tuple(problems))


def _expected_imprint(info: TimestampInfo, data: bytes | None, digest: bytes | None,
                      request: TimestampRequest | None, problems: list[str]) -> bytes:
    if request is not None:
        if request.hash_algorithm is not info.hash_algorithm:
            problems.append("the token's hash algorithm differs from the request's")
        return request.message_imprint
    if data is not None:
        return hashes.digest(info.hash_algorithm, data)
    assert digest is not None  # verify_token requires one of the three
    return digest


def verify_response(
    response: bytes,
    request: TimestampRequest,
    *,
    trust_roots: Sequence[Certificate] | None = None,
    intermediates: Sequence[Certificate] = (),
    certificates: Sequence[Certificate] = (),
) -> TimestampVerification:
    """Parse a TimeStampResp and verify its token against the request that asked for it."""
    parsed = load_response(response)
    if not parsed.granted or parsed.token is None:
        details = [parsed.status, *parsed.failure_info]
        if parsed.status_text:
            details.append(parsed.status_text)
        raise SigncoreError(f"the TSA refused the request: {'; '.join(details)}")
    return verify_token(parsed.token, request=request, trust_roots=trust_roots,
                        intermediates=intermediates, certificates=certificates)


# ---------------------------------------------------------------------------------------------
# Issuing (the format half of a TSA)


def _ess_attribute(cert: Certificate) -> asn1_cms.CMSAttribute:
    sm2 = cert.public_key().key_type is KeyType.SM2
    cert_hash = hashes.sm3(cert.der) if sm2 else hashlib.sha256(cert.der).digest()
    ess_id: dict[str, object] = {
        "cert_hash": cert_hash,
        "issuer_serial": {
            "issuer": [x509.GeneralName(name="directory_name", value=cert.issuer_name)],
            "serial_number": cert.serial_number,
        },
    }
    if sm2:
        ess_id["hash_algorithm"] = algids.digest_algorithm_id(HashAlgorithm.SM3)
    return asn1_cms.CMSAttribute({
        "type": "signing_certificate_v2",
        "values": [tsp.SigningCertificateV2({"certs": [tsp.ESSCertIDv2(ess_id)]})],
    })


def build_token(
    *,
    hash_algorithm: HashAlgorithm,
    message_imprint: bytes,
    signer: Signer,
    certificate: Certificate,
    serial_number: int,
    policy: str,
    gen_time: dt.datetime | None = None,
    accuracy: dt.timedelta | None = dt.timedelta(seconds=1),
    nonce: int | None = None,
    extra_certificates: Sequence[Certificate] = (),
    signer_id: bytes = DEFAULT_SM2_ID,
) -> bytes:
    """Sign a TSTInfo: a CMS ContentInfo with the ESS signing-certificate-v2 attribute."""
    if len(message_imprint) != hash_algorithm.digest_size:
        raise ValueError("message imprint length does not match its hash algorithm")
    if _tsa_certificate_problem(certificate):
        raise UnsupportedAlgorithm(_tsa_certificate_problem(certificate) or "")
    when = (gen_time or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    info: dict[str, object] = {
        "version": "v1",
        "policy": policy,
        "message_imprint": {"hash_algorithm": algids.digest_algorithm_id(hash_algorithm),
                            "hashed_message": message_imprint},
        "serial_number": serial_number,
        "gen_time": when,
    }
    if accuracy is not None:
        millis = int(accuracy.total_seconds() * 1000)
        acc: dict[str, int] = {}
        if millis // 1000:
            acc["seconds"] = millis // 1000
        if millis % 1000:
            acc["millis"] = millis % 1000
        info["accuracy"] = acc
    if nonce is not None:
        info["nonce"] = nonce
    tst_der = tsp.TSTInfo(info).dump()
    return cms.sign(tst_der, signer, certificate, extra_certificates=extra_certificates,
                    content_type=OID_TST_INFO, include_signing_time=False, signer_id=signer_id,
                    extra_signed_attributes=[_ess_attribute(certificate)])


def build_response(
    token: bytes | None = None,
    *,
    status: str = "granted",
    status_text: str | None = None,
    failure_info: Sequence[str] = (),
) -> bytes:
    """A TimeStampResp carrying ``token``, or a rejection with failure info."""
    status_info: dict[str, object] = {"status": status}
    if status_text:
        status_info["status_string"] = [status_text]
    if failure_info:
        status_info["fail_info"] = set(failure_info)
    response: dict[str, object] = {"status": status_info}
    if token is not None:
        load(asn1_cms.ContentInfo, token, "token")  # DecodeError for a malformed token
        # Embed a fresh, lazily parsed copy: once .native has been read, asn1crypto re-encodes
        # the whole tree on dump (hundreds of ms for an RSA token), and a re-encoding need not
        # reproduce the signed bytes.
        response["time_stamp_token"] = asn1_cms.ContentInfo.load(token)
    return bytes(_TimeStampResp(response).dump())

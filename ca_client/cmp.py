"""A CMP server as a channel (``kind = "cmp"``): RFC 4210 over HTTP (RFC 6712), in the shape of
the lightweight CMP profile (RFC 9483).

Transactions.  Each is one or two HTTP POSTs of ``application/pkixcmp`` DER to the configured
URL, each on a new connection::

    ir | cr | kur  -> ip | cp | kup       certificate request (kur: renewal, with oldCertId)
    certConf       -> pkiConf             confirms the certificate by its hash
    rr             -> rp                  revocation (issuer + serial, CRL reason code)
    genm           -> genp                status(): is the CA there and does it authenticate?

Enrollment is two-phase (:mod:`ca_client.channel`): :meth:`CmpChannel.prepare` builds the CRMF
``CertRequest`` (certReqId 0; the template carries the subject, the public key, the profile's
extensions and, given ``validity_days``, notAfter; a kur also the ``oldCertId`` control naming
the certificate it renews) and hands out its DER, which is exactly what the key holder signs for
the signature proof of possession (RFC 4211 section 4.1, no ``poposkInput``).
:meth:`CmpChannel.complete` checks that signature itself before anything is sent, then runs the
transaction.  Implicit confirmation is never requested; polling is not done (``waiting`` and
``pollRep`` raise :class:`~ca_client.errors.ChannelUnavailable`, retry later).

Protection.  Outgoing messages are protected in one of two ways (:class:`CmpConfig`): a MAC
with a pre-shared secret (PasswordBasedMac, RFC 4210 section 5.1.3.1: random 16-byte salt,
OWF SHA-256, ``pbm_iterations`` rounds, HMAC-SHA256; the ``reference`` goes in senderKID), or a
signature by a protection certificate's key (any :class:`~signcore.keys.Signer`; the
certificate and its chain go in extraCerts, its subject in sender, its key identifier in
senderKID).  A response is accepted only when protected with the shared secret (the PBM
parameters of the response are honoured within bounds: OWF SHA-2, HMAC-SHA1 or HMAC-SHA2, 100
to 100000 iterations -- OpenSSL answers with HMAC-SHA1, which is still a sound MAC) or signed
by the configured ``server_certificate``'s key.  Anything else is refused.

Threat model.  The adversary sits on the network between the appliance and the CA, may read,
drop, replay, reorder and alter messages, and may answer in the CA's place.

- Alteration and impersonation: every response must carry valid protection (above); one that
  is unprotected or whose protection does not verify is refused with ``ChannelUnavailable``
  ("no usable answer": nothing is concluded from it, not even that the CA refused).  Such an
  answer's error text, if any, is shown marked as unauthenticated, for diagnosis only.
- Replay and splicing: every transaction has a fresh random 16-byte transactionID and every
  message a fresh 16-byte senderNonce; a response must echo both (transactionID, recipNonce),
  so an old or another transaction's answer is refused.  certConf echoes the CA's senderNonce.
- Substitution: the certificate returned must carry exactly the public key we asked to
  certify (so nobody can bind the doctor's name to another key, nor hand back someone else's
  certificate) and must not be a CA certificate; otherwise it is refused and the refusal is
  confirmed to the CA in certConf (status rejection), as RFC 4210 section 5.3.18 intends.  The
  chain is ordered from the issuing CA upwards by names and signatures; validating it to a
  trust anchor is the caller's job.
- Exhaustion: answers are bounded in size (``max_response_bytes``, also against a lying
  Content-Length) and time (connect timeout, and a read deadline for the whole answer), PBM
  iteration counts are bounded, and redirects and proxies are not followed.
- Secrets: a PBM MAC lets anyone who sees one message try passwords offline, so the shared
  secret must be random (16 bytes or more), not a word; it never appears in a repr or an error.
  Message protection gives integrity and authentication, not confidentiality: the subject
  fields travel in clear over ``http``, so use ``https`` where that matters.
- Text from the CA is stripped of control characters and cut to 200 characters before it
  reaches an error message (and so a log).

A ``kur`` is protected like every other message (the appliance's RA credentials), not with the
key being renewed: that key may be a split key whose every signature needs the doctor's phone.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac as _hmac
import http.client
import secrets
import ssl
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NoReturn

from asn1crypto import algos, core, crl, csr, keys, x509

from ca_client._common import (
    check_channel_name,
    check_endpoint,
    clean,
    exchange,
    ordered_chain,
)
from ca_client.builtin import REVOCATION_REASONS, CaUrls
from ca_client.channel import ChannelStatus, Enrollment, EnrollmentRequest, PendingEnrollment
from ca_client.errors import AlreadyRevoked, ChannelUnavailable, RequestRejected
from ca_client.profiles import profile
from signcore.algorithms import SignatureAlgorithm
from signcore.der import load_strict as load
from signcore.der import signature_algorithm_from_id, signature_algorithm_id
from signcore.errors import DecodeError, InvalidSignature, SigncoreError
from signcore.hashes import HashAlgorithm, digest
from signcore.keys import PublicKey, Signer
from signcore.x509 import (
    Certificate,
    load_certificate,
    parse_name,
    prepare_csr,
)

__all__ = ["CmpChannel", "CmpConfig"]

MEDIA_TYPE = "application/pkixcmp"
PVNO_CMP2000 = 2
PVNO_CMP2021 = 3
NONCE_BYTES = 16
CERT_REQ_ID = 0
MIN_SECRET_BYTES = 8

OID_PBM = "1.2.840.113533.7.66.13"
OID_REG_CTRL_OLD_CERT_ID = "1.3.6.1.5.5.7.5.1.5"
OID_IT_CA_CERTS = "1.3.6.1.5.5.7.4.17"  # RFC 9483 section 4.3.1
#: PBM one-way functions we accept (and SHA-256, which we use)
PBM_OWFS = {"2.16.840.1.101.3.4.2.1": "sha256", "2.16.840.1.101.3.4.2.2": "sha384",
            "2.16.840.1.101.3.4.2.3": "sha512"}
#: PBM MACs we accept; we send hmacWithSHA256
PBM_MACS = {"1.3.6.1.5.5.8.1.2": "sha1", "1.2.840.113549.2.7": "sha1",
            "1.2.840.113549.2.9": "sha256", "1.2.840.113549.2.10": "sha384",
            "1.2.840.113549.2.11": "sha512"}
OID_HMAC_SHA256 = "1.2.840.113549.2.9"
OID_SHA256 = "2.16.840.1.101.3.4.2.1"
PBM_MIN_ITERATIONS = 100
PBM_MAX_ITERATIONS = 100_000
PBM_MAX_SALT = 128

_RETRY_FAILURES = frozenset({"system_unavail", "system_failure", "transaction_id_in_use"})


# -- ASN.1: RFC 4210 (PKIXCMP, EXPLICIT TAGS) and RFC 4211 (CRMF, IMPLICIT TAGS) ---------------

class AlgorithmIdentifier(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("algorithm", core.ObjectIdentifier),
        ("parameters", core.Any, {"optional": True}),
    ]


class PBMParameter(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("salt", core.OctetString),
        ("owf", AlgorithmIdentifier),
        ("iteration_count", core.Integer),
        ("mac", AlgorithmIdentifier),
    ]


class PKIFreeText(core.SequenceOf):  # type: ignore[misc]
    _child_spec = core.UTF8String


class PKIStatus(core.Integer):  # type: ignore[misc]
    _map: ClassVar[dict[int, str]] = {
        0: "accepted", 1: "granted_with_mods", 2: "rejection", 3: "waiting",
        4: "revocation_warning", 5: "revocation_notification", 6: "key_update_warning",
    }


class PKIFailureInfo(core.BitString):  # type: ignore[misc]
    _map: ClassVar[dict[int, str]] = {
        0: "bad_alg", 1: "bad_message_check", 2: "bad_request", 3: "bad_time", 4: "bad_cert_id",
        5: "bad_data_format", 6: "wrong_authority", 7: "incorrect_data", 8: "missing_time_stamp",
        9: "bad_pop", 10: "cert_revoked", 11: "cert_confirmed", 12: "wrong_integrity",
        13: "bad_recipient_nonce", 14: "time_not_available", 15: "unaccepted_policy",
        16: "unaccepted_extension", 17: "add_info_not_available", 18: "bad_sender_nonce",
        19: "bad_cert_template", 20: "signer_not_trusted", 21: "transaction_id_in_use",
        22: "unsupported_version", 23: "not_authorized", 24: "system_unavail",
        25: "system_failure", 26: "duplicate_cert_req",
    }


class PKIStatusInfo(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("status", PKIStatus),
        ("status_string", PKIFreeText, {"optional": True}),
        ("fail_info", PKIFailureInfo, {"optional": True}),
    ]


class InfoTypeAndValue(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("info_type", core.ObjectIdentifier),
        ("info_value", core.Any, {"optional": True}),
    ]


class InfoTypeAndValues(core.SequenceOf):  # type: ignore[misc]
    _child_spec = InfoTypeAndValue


class PKIHeader(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("pvno", core.Integer),
        ("sender", x509.GeneralName),
        ("recipient", x509.GeneralName),
        ("message_time", core.GeneralizedTime, {"explicit": 0, "optional": True}),
        ("protection_alg", AlgorithmIdentifier, {"explicit": 1, "optional": True}),
        ("sender_kid", core.OctetString, {"explicit": 2, "optional": True}),
        ("recip_kid", core.OctetString, {"explicit": 3, "optional": True}),
        ("transaction_id", core.OctetString, {"explicit": 4, "optional": True}),
        ("sender_nonce", core.OctetString, {"explicit": 5, "optional": True}),
        ("recip_nonce", core.OctetString, {"explicit": 6, "optional": True}),
        ("free_text", PKIFreeText, {"explicit": 7, "optional": True}),
        ("general_info", InfoTypeAndValues, {"explicit": 8, "optional": True}),
    ]


class AttributeTypeAndValue(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("type", core.ObjectIdentifier),
        ("value", core.Any),
    ]


class Controls(core.SequenceOf):  # type: ignore[misc]
    _child_spec = AttributeTypeAndValue


class CertId(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("issuer", x509.GeneralName),
        ("serial_number", core.Integer),
    ]


class OptionalValidity(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("not_before", x509.Time, {"explicit": 0, "optional": True}),
        ("not_after", x509.Time, {"explicit": 1, "optional": True}),
    ]


class CertTemplate(core.Sequence):  # type: ignore[misc]
    # Name and Time are CHOICEs: their tags are explicit even in an IMPLICIT TAGS module.
    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("version", x509.Version, {"implicit": 0, "optional": True}),
        ("serial_number", core.Integer, {"implicit": 1, "optional": True}),
        ("signing_alg", AlgorithmIdentifier, {"implicit": 2, "optional": True}),
        ("issuer", x509.Name, {"explicit": 3, "optional": True}),
        ("validity", OptionalValidity, {"implicit": 4, "optional": True}),
        ("subject", x509.Name, {"explicit": 5, "optional": True}),
        ("public_key", keys.PublicKeyInfo, {"implicit": 6, "optional": True}),
        ("issuer_uid", core.OctetBitString, {"implicit": 7, "optional": True}),
        ("subject_uid", core.OctetBitString, {"implicit": 8, "optional": True}),
        ("extensions", x509.Extensions, {"implicit": 9, "optional": True}),
    ]


class CertRequest(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("cert_req_id", core.Integer),
        ("cert_template", CertTemplate),
        ("controls", Controls, {"optional": True}),
    ]


class PKMACValue(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("alg_id", AlgorithmIdentifier),
        ("value", core.OctetBitString),
    ]


class POPOAuthInfo(core.Choice):  # type: ignore[misc]
    _alternatives: ClassVar[list[tuple[Any, ...]]] = [
        ("sender", x509.GeneralName, {"explicit": 0}),
        ("public_key_mac", PKMACValue),
    ]


class POPOSigningKeyInput(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("auth_info", POPOAuthInfo),
        ("public_key", keys.PublicKeyInfo),
    ]


class POPOSigningKey(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("poposk_input", POPOSigningKeyInput, {"implicit": 0, "optional": True}),
        ("algorithm_identifier", AlgorithmIdentifier),
        ("signature", core.OctetBitString),
    ]


class ProofOfPossession(core.Choice):  # type: ignore[misc]
    _alternatives: ClassVar[list[tuple[Any, ...]]] = [
        ("ra_verified", core.Null, {"implicit": 0}),
        ("signature", POPOSigningKey, {"implicit": 1}),
        ("key_encipherment", core.Any, {"explicit": 2}),
        ("key_agreement", core.Any, {"explicit": 3}),
    ]


class CertReqMsg(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("cert_req", CertRequest),
        ("popo", ProofOfPossession, {"optional": True}),
        ("reg_info", Controls, {"optional": True}),
    ]


class CertReqMessages(core.SequenceOf):  # type: ignore[misc]
    _child_spec = CertReqMsg


class CMPCertificates(core.SequenceOf):  # type: ignore[misc]
    _child_spec = x509.Certificate


class CertOrEncCert(core.Choice):  # type: ignore[misc]
    _alternatives: ClassVar[list[tuple[Any, ...]]] = [
        ("certificate", x509.Certificate, {"explicit": 0}),
        ("encrypted_cert", core.Any, {"explicit": 1}),
    ]


class CertifiedKeyPair(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("cert_or_enc_cert", CertOrEncCert),
        ("private_key", core.Any, {"explicit": 0, "optional": True}),
        ("publication_info", core.Any, {"explicit": 1, "optional": True}),
    ]


class CertResponse(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("cert_req_id", core.Integer),
        ("status", PKIStatusInfo),
        ("certified_key_pair", CertifiedKeyPair, {"optional": True}),
        ("rsp_info", core.OctetString, {"optional": True}),
    ]


class CertResponses(core.SequenceOf):  # type: ignore[misc]
    _child_spec = CertResponse


class CertRepMessage(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("ca_pubs", CMPCertificates, {"explicit": 1, "optional": True}),
        ("response", CertResponses),
    ]


class CertStatus(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("cert_hash", core.OctetString),
        ("cert_req_id", core.Integer),
        ("status_info", PKIStatusInfo, {"optional": True}),
        ("hash_alg", AlgorithmIdentifier, {"explicit": 0, "optional": True}),
    ]


class CertConfirmContent(core.SequenceOf):  # type: ignore[misc]
    _child_spec = CertStatus


class RevDetails(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("cert_details", CertTemplate),
        ("crl_entry_details", crl.CRLEntryExtensions, {"optional": True}),
    ]


class RevReqContent(core.SequenceOf):  # type: ignore[misc]
    _child_spec = RevDetails


class PKIStatusInfos(core.SequenceOf):  # type: ignore[misc]
    _child_spec = PKIStatusInfo


class CertIds(core.SequenceOf):  # type: ignore[misc]
    _child_spec = CertId


class CertificateLists(core.SequenceOf):  # type: ignore[misc]
    _child_spec = crl.CertificateList


class RevRepContent(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("status", PKIStatusInfos),
        ("rev_certs", CertIds, {"explicit": 0, "optional": True}),
        ("crls", CertificateLists, {"explicit": 1, "optional": True}),
    ]


class ErrorMsgContent(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("pki_status_info", PKIStatusInfo),
        ("error_code", core.Integer, {"optional": True}),
        ("error_details", PKIFreeText, {"optional": True}),
    ]


class PollReq(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("cert_req_id", core.Integer),
    ]


class PollReqContent(core.SequenceOf):  # type: ignore[misc]
    _child_spec = PollReq


class PollRep(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("cert_req_id", core.Integer),
        ("check_after", core.Integer),
        ("reason", PKIFreeText, {"optional": True}),
    ]


class PollRepContent(core.SequenceOf):  # type: ignore[misc]
    _child_spec = PollRep


class PKIBody(core.Choice):  # type: ignore[misc]
    _alternatives: ClassVar[list[tuple[Any, ...]]] = [
        ("ir", CertReqMessages, {"explicit": 0}),
        ("ip", CertRepMessage, {"explicit": 1}),
        ("cr", CertReqMessages, {"explicit": 2}),
        ("cp", CertRepMessage, {"explicit": 3}),
        ("p10cr", csr.CertificationRequest, {"explicit": 4}),
        ("popdecc", core.Any, {"explicit": 5}),
        ("popdecr", core.Any, {"explicit": 6}),
        ("kur", CertReqMessages, {"explicit": 7}),
        ("kup", CertRepMessage, {"explicit": 8}),
        ("krr", core.Any, {"explicit": 9}),
        ("krp", core.Any, {"explicit": 10}),
        ("rr", RevReqContent, {"explicit": 11}),
        ("rp", RevRepContent, {"explicit": 12}),
        ("ccr", core.Any, {"explicit": 13}),
        ("ccp", core.Any, {"explicit": 14}),
        ("ckuann", core.Any, {"explicit": 15}),
        ("cann", core.Any, {"explicit": 16}),
        ("rann", core.Any, {"explicit": 17}),
        ("crlann", core.Any, {"explicit": 18}),
        ("pkiconf", core.Null, {"explicit": 19}),
        ("nested", core.Any, {"explicit": 20}),
        ("genm", InfoTypeAndValues, {"explicit": 21}),
        ("genp", InfoTypeAndValues, {"explicit": 22}),
        ("error", ErrorMsgContent, {"explicit": 23}),
        ("cert_conf", CertConfirmContent, {"explicit": 24}),
        ("poll_req", PollReqContent, {"explicit": 25}),
        ("poll_rep", PollRepContent, {"explicit": 26}),
    ]


class PKIMessage(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("header", PKIHeader),
        ("body", PKIBody),
        ("protection", core.OctetBitString, {"explicit": 0, "optional": True}),
        ("extra_certs", CMPCertificates, {"explicit": 1, "optional": True}),
    ]


def protected_part(message: PKIMessage) -> bytes:
    """DER of ``ProtectedPart ::= SEQUENCE { header, body }``: the bytes the protection covers
    (of a parsed message: exactly the bytes received)."""
    content = bytes(message["header"].dump()) + bytes(message["body"].dump())
    size = len(content)
    if size < 0x80:
        length = bytes([size])
    else:
        octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(octets)]) + octets
    return b"\x30" + length + content


def pbm_mac(secret: bytes, parameters: PBMParameter, data: bytes) -> bytes:
    """RFC 4210 section 5.1.3.1: K = OWF^iterationCount(secret || salt), MAC = HMAC_K(data).
    Unsupported or out-of-bounds parameters raise :class:`~signcore.errors.DecodeError`."""
    owf = PBM_OWFS.get(parameters["owf"]["algorithm"].dotted)
    mac = PBM_MACS.get(parameters["mac"]["algorithm"].dotted)
    iterations = parameters["iteration_count"].native
    salt = parameters["salt"].native
    if owf is None or mac is None:
        raise DecodeError(f"unsupported PBM algorithms (OWF {parameters['owf']['algorithm'].dotted}"
                          f", MAC {parameters['mac']['algorithm'].dotted})")
    if not PBM_MIN_ITERATIONS <= iterations <= PBM_MAX_ITERATIONS:
        raise DecodeError(f"PBM iteration count {iterations} outside {PBM_MIN_ITERATIONS} to "
                          f"{PBM_MAX_ITERATIONS}")
    if not 0 < len(salt) <= PBM_MAX_SALT:
        raise DecodeError("PBM salt missing or too long")
    key = hashlib.new(owf, secret + salt).digest()
    for _ in range(iterations - 1):
        key = hashlib.new(owf, key).digest()
    return bytes(_hmac.new(key, data, mac).digest())


# -- configuration ----------------------------------------------------------------------------

@dataclass(frozen=True)
class CmpConfig:
    """One CMP server.  Exactly one way of protecting our requests: ``secret`` (+ ``reference``)
    for PBM, or ``protection_certificate`` + ``protection_signer`` (+ ``protection_chain``, the
    CA certificates above it) for signatures.  Responses are accepted when protected with
    ``secret`` (if set) or signed by ``server_certificate`` (if set); signature-protected
    requests need a ``server_certificate``.  ``sender`` / ``recipient``: RFC 4514 DNs for the
    header (default: the protection certificate's subject, or NULL-DN; the server
    certificate's subject, or NULL-DN).  ``initial_body``: ``ir`` (default) or ``cr`` for a
    first enrollment.  Invalid values raise :class:`RequestRejected`."""

    name: str
    url: str
    secret: bytes | None = field(default=None, repr=False)
    reference: bytes = b""
    protection_certificate: Certificate | None = None
    protection_signer: Signer | None = field(default=None, repr=False)
    protection_chain: tuple[Certificate, ...] = ()
    server_certificate: Certificate | None = None
    sender: str = ""
    recipient: str = ""
    initial_body: str = "ir"
    pbm_iterations: int = 500
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    max_response_bytes: int = 1 << 20
    tls_context: ssl.SSLContext | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "protection_chain", tuple(self.protection_chain))
        self._validate()

    def _validate(self) -> None:  # noqa: PLR0912 -- one flat list of checks reads best
        check_channel_name(self.name, _bad)
        check_endpoint("url", self.url, _bad)
        pbm = self.secret is not None
        signing = self.protection_certificate is not None or self.protection_signer is not None
        if pbm == signing:
            _bad("protection", "give either a shared secret or a protection certificate and "
                               "signer, not both or neither")
        if pbm:
            if not isinstance(self.secret, bytes) or len(self.secret) < MIN_SECRET_BYTES:
                _bad("secret", f"must be at least {MIN_SECRET_BYTES} bytes (use 16 random "
                               f"bytes or more)")
            if not isinstance(self.reference, bytes) or not 0 < len(self.reference) <= 128:
                _bad("reference", "(senderKID) must be 1 to 128 bytes with a shared secret")
        else:
            if self.protection_certificate is None or self.protection_signer is None:
                _bad("protection", "signature protection needs both the certificate and a "
                                   "signer")
            if self.protection_signer.public_key() != self.protection_certificate.public_key():
                _bad("protection_signer", "does not hold the protection certificate's key")
            if self.server_certificate is None:
                _bad("server_certificate", "is needed to verify signed responses")
        if not PBM_MIN_ITERATIONS <= self.pbm_iterations <= PBM_MAX_ITERATIONS:
            _bad("pbm_iterations", f"must be {PBM_MIN_ITERATIONS} to {PBM_MAX_ITERATIONS}")
        if self.initial_body not in ("ir", "cr"):
            _bad("initial_body", "must be ir or cr")
        for name in ("connect_timeout", "read_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or \
                    not 0 < value <= 600:
                _bad(name, "must be a number of seconds above 0 and at most 600")
        if isinstance(self.max_response_bytes, bool) or not isinstance(
                self.max_response_bytes, int) or not 1024 <= self.max_response_bytes <= 1 << 24:
            _bad("max_response_bytes", "must be an integer from 1024 to 16777216")
        for name in ("sender", "recipient"):
            if getattr(self, name):
                try:
                    parse_name(getattr(self, name))
                except ValueError as exc:
                    _bad(name, f"is not a distinguished name: {exc}")


def _bad(name: str, reason: str) -> NoReturn:
    raise RequestRejected(f"CMP configuration: {name} {reason}")


# -- the channel ------------------------------------------------------------------------------

@dataclass
class _Transaction:
    transaction_id: bytes = field(default_factory=lambda: secrets.token_bytes(NONCE_BYTES))
    sender_nonce: bytes = b""  # of our last message
    recip_nonce: bytes | None = None  # the CA's last senderNonce, echoed in our next message


class CmpChannel:
    """A CMP server as a :class:`~ca_client.channel.Channel` (module docstring).

    Stateless between calls (a transaction lives inside one call), so one instance serves
    every thread.  ``clock`` gives the messageTime and the requested validity (tests).
    """

    kind = "cmp"

    def __init__(self, config: CmpConfig, *,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        self.name = config.name
        self.config = config
        self._clock = clock
        url = urllib.parse.urlsplit(config.url)
        self._https = url.scheme == "https"
        self._host = url.hostname or ""
        self._port = url.port
        self._path = url.path or "/"
        self._ssl: ssl.SSLContext | None = None
        if self._https:
            self._ssl = config.tls_context or ssl.create_default_context()
        if config.protection_certificate is not None:
            self._sender = config.protection_certificate.subject_name
        else:
            self._sender = parse_name(config.sender) if config.sender else _null_dn()
        if config.recipient:
            self._recipient = parse_name(config.recipient)
        elif config.server_certificate is not None:
            self._recipient = config.server_certificate.subject_name
        else:
            self._recipient = _null_dn()

    def __repr__(self) -> str:
        return f"<CmpChannel {self.name} {self.config.url}>"

    # -- the Channel protocol

    def prepare(self, request: EnrollmentRequest, *,
                renewal_of: Certificate | None = None) -> PendingEnrollment:
        chosen = profile(request.profile)
        subject = request.subject.checked(chosen)
        days = request.validity_days
        if days is not None and not 0 < days <= chosen.validity_days:
            raise RequestRejected(f"validity must be 1 to {chosen.validity_days} days")
        algorithm = request.public_key.resolve_algorithm(None)
        template: dict[str, Any] = {
            "subject": subject.name(),
            "public_key": load(keys.PublicKeyInfo, request.public_key.to_der(), "public key"),
        }
        requested = _requested_extensions(request.public_key, chosen.extensions(
            subject, urls=CaUrls()))
        if requested is not None:
            template["extensions"] = requested
        if days is not None:
            not_after = self._clock().astimezone(dt.UTC).replace(microsecond=0) + \
                dt.timedelta(days=days)
            template["validity"] = {"not_after": _time(not_after)}
        cert_request: dict[str, Any] = {"cert_req_id": CERT_REQ_ID,
                                        "cert_template": template}
        body = self.config.initial_body
        if renewal_of is not None:
            body = "kur"
            old = CertId({"issuer": x509.GeneralName(name="directory_name",
                                                     value=renewal_of.issuer_name),
                          "serial_number": renewal_of.serial_number})
            cert_request["controls"] = [{"type": OID_REG_CTRL_OLD_CERT_ID, "value": old}]
        der = CertRequest(cert_request).dump()
        return PendingEnrollment(self.name, request, der, algorithm, renewal_of,
                                 {"cert_request": der.hex(), "body": body})

    def complete(self, pending: PendingEnrollment, signature: bytes) -> Enrollment:
        if pending.channel != self.name:
            raise RequestRejected(f"the pending enrollment belongs to channel "
                                  f"{pending.channel}, not {self.name}")
        cert_request, body = self._pending_request(pending)
        request = pending.request
        try:
            request.public_key.verify(signature, cert_request.dump(), pending.algorithm)
        except (InvalidSignature, SigncoreError):
            raise RequestRejected("the proof-of-possession signature does not verify"
                                  ) from None
        message = CertReqMsg({"cert_req": cert_request, "popo": ProofOfPossession(
            name="signature", value=POPOSigningKey({
                "algorithm_identifier": _algorithm_id(pending.algorithm),
                "signature": signature}))})
        transaction = _Transaction()
        answer = self._exchange(transaction, PKIBody(name=body, value=[message]),
                                {"ir": "ip", "cr": "cp", "kur": "kup"}[body])
        content = answer["body"].chosen
        certificate = self._accepted_certificate(content)
        pool = [_certificate(c) for c in (*_sequence(content["ca_pubs"]),
                                          *_sequence(answer["extra_certs"]))]
        problem = _problem_with(certificate, request.public_key)
        chain: tuple[Certificate, ...] = ()
        if problem is None:
            chain = ordered_chain(certificate, pool)
            if pool and not chain:
                problem = "no CA certificate of the answer signed it"
        if problem is not None:
            self._reject_certificate(transaction, certificate, problem)
            raise ChannelUnavailable(f"CMP server {self.name} issued a certificate that is "
                                     f"refused: {problem}; the refusal was sent in certConf")
        self._confirm(transaction, certificate, None)
        return Enrollment(certificate, chain, self.name, transaction.transaction_id.hex())

    def revoke(self, certificate: Certificate, reason: str) -> None:
        if reason not in REVOCATION_REASONS:
            raise RequestRejected(f"unknown revocation reason {reason!r}; one of "
                                  f"{', '.join(REVOCATION_REASONS)}")
        details = RevDetails({
            "cert_details": {"issuer": certificate.issuer_name,
                             "serial_number": certificate.serial_number},
            "crl_entry_details": [{"extn_id": "crl_reason", "critical": False,
                                   "extn_value": reason}],
        })
        answer = self._exchange(_Transaction(), PKIBody(name="rr", value=[details]), "rp")
        statuses = answer["body"].chosen["status"]
        if len(statuses) != 1:
            raise ChannelUnavailable(f"CMP server {self.name} answered {len(statuses)} "
                                     f"revocation statuses to one request")
        info = statuses[0]
        status = info["status"].native
        if status in ("accepted", "granted_with_mods", "revocation_warning",
                      "revocation_notification"):
            return
        text = _status_text(info)
        if "cert_revoked" in _failures(info):
            raise AlreadyRevoked(f"CMP server {self.name}: certificate "
                                 f"{certificate.serial_number:x} is revoked already{text}")
        self._refuse(info, "refused the revocation")

    def status(self) -> ChannelStatus:
        genm = PKIBody(name="genm", value=[{"info_type": OID_IT_CA_CERTS}])
        try:
            self._exchange(_Transaction(), genm, "genp")
        except ChannelUnavailable as exc:
            return ChannelStatus(self.name, self.kind, False, str(exc))
        except RequestRejected as exc:
            return ChannelStatus(self.name, self.kind, False, f"refused: {exc}")
        return ChannelStatus(self.name, self.kind, True, self.config.url)

    # -- enrollment steps

    def _pending_request(self, pending: PendingEnrollment) -> tuple[CertRequest, str]:
        body = pending.state.get("body", "")
        if body not in ("ir", "cr", "kur") or (body == "kur") != (pending.renewal_of is not None):
            raise RequestRejected("the pending enrollment's state is not a CMP request")
        try:
            cert_request = load(CertRequest, bytes.fromhex(pending.state.get("cert_request", "")),
                                "CRMF CertRequest")
        except (DecodeError, ValueError):
            raise RequestRejected("the pending enrollment's state is not a CMP request"
                                  ) from None
        template = cert_request["cert_template"]
        if cert_request.dump() != pending.to_be_signed or \
                _untagged(template["public_key"]) != pending.request.public_key.to_der():
            raise RequestRejected("the pending enrollment does not match its key")
        return cert_request, body

    def _accepted_certificate(self, content: CertRepMessage) -> Certificate:
        responses = [r for r in content["response"] if r["cert_req_id"].native == CERT_REQ_ID]
        if not responses and len(content["response"]) == 1:
            responses = list(content["response"])  # a refusal may carry certReqId -1
        if len(responses) != 1:
            raise ChannelUnavailable(f"CMP server {self.name} sent no single answer to our "
                                     f"certificate request")
        response = responses[0]
        info = response["status"]
        if info["status"].native not in ("accepted", "granted_with_mods"):
            self._refuse(info, "refused the certificate request")
        if response["cert_req_id"].native != CERT_REQ_ID:
            raise ChannelUnavailable(f"CMP server {self.name} answered another certReqId "
                                     f"({response['cert_req_id'].native})")
        pair = response["certified_key_pair"]
        if isinstance(pair, core.Void) or pair["cert_or_enc_cert"].name != "certificate":
            raise ChannelUnavailable(f"CMP server {self.name} accepted the request but sent "
                                     f"no (plain) certificate")
        return _certificate(pair["cert_or_enc_cert"].chosen)

    def _confirm(self, transaction: _Transaction, certificate: Certificate,
                 refusal: str | None) -> None:
        try:
            hash_algorithm = certificate.signature_algorithm.hash_algorithm
        except SigncoreError:  # only for a certificate being refused already
            hash_algorithm = HashAlgorithm.SHA256
        status: dict[str, Any] = {"cert_hash": digest(hash_algorithm, certificate.der),
                                  "cert_req_id": CERT_REQ_ID}
        if refusal is not None:
            status["status_info"] = {"status": "rejection", "status_string": [refusal],
                                     "fail_info": {"bad_cert_template"}}
        self._exchange(transaction, PKIBody(name="cert_conf", value=[status]), "pkiconf")

    def _reject_certificate(self, transaction: _Transaction, certificate: Certificate,
                            problem: str) -> None:
        """Tell the CA we do not accept the certificate; its answer changes nothing."""
        with contextlib.suppress(ChannelUnavailable, RequestRejected):
            self._confirm(transaction, certificate, f"refused by the client: {problem}")

    def _refuse(self, info: PKIStatusInfo, what: str) -> NoReturn:
        text = _status_text(info)
        status = info["status"].native
        if status == "waiting":
            raise ChannelUnavailable(f"CMP server {self.name} has not decided yet (waiting); "
                                     f"try again later{text}")
        if _failures(info) & _RETRY_FAILURES:
            raise ChannelUnavailable(f"CMP server {self.name} cannot answer now{text}")
        raise RequestRejected(f"CMP server {self.name} {what} (status {status}){text}")

    # -- messages

    def _exchange(self, transaction: _Transaction, body: PKIBody, expected: str) -> PKIMessage:
        """Send ``body`` in ``transaction``; the checked answer, whose body is ``expected``.
        A CMP error answer raises RequestRejected (or ChannelUnavailable if retryable)."""
        transaction.sender_nonce = secrets.token_bytes(NONCE_BYTES)
        request_der = self._protect(transaction, body).dump()
        answer = self._parse(self._post(request_der))
        self._check(transaction, answer)
        transaction.recip_nonce = bytes(answer["header"]["sender_nonce"].native)
        kind = answer["body"].name
        if kind == "error":
            self._refuse(answer["body"].chosen["pki_status_info"], "answered with an error")
        if kind == "poll_rep":
            raise ChannelUnavailable(f"CMP server {self.name} asks to poll later; polling is "
                                     f"not supported, try again later")
        if kind != expected:
            raise ChannelUnavailable(f"CMP server {self.name} answered {kind} where {expected} "
                                     f"was expected")
        return answer

    def _protect(self, transaction: _Transaction, body: PKIBody) -> PKIMessage:
        config = self.config
        header: dict[str, Any] = {
            "pvno": PVNO_CMP2000,
            "sender": x509.GeneralName(name="directory_name", value=self._sender),
            "recipient": x509.GeneralName(name="directory_name", value=self._recipient),
            "message_time": self._clock().astimezone(dt.UTC).replace(microsecond=0),
            "transaction_id": transaction.transaction_id,
            "sender_nonce": transaction.sender_nonce,
        }
        if transaction.recip_nonce is not None:
            header["recip_nonce"] = transaction.recip_nonce
        if config.secret is not None:
            parameters = PBMParameter({
                "salt": secrets.token_bytes(16), "owf": {"algorithm": OID_SHA256},
                "iteration_count": config.pbm_iterations,
                "mac": {"algorithm": OID_HMAC_SHA256}})
            header["protection_alg"] = {"algorithm": OID_PBM, "parameters": parameters}
            header["sender_kid"] = config.reference
            message = PKIMessage({"header": header, "body": body})
            message["protection"] = pbm_mac(config.secret, parameters, protected_part(message))
            return message
        certificate, signer = config.protection_certificate, config.protection_signer
        assert certificate is not None and signer is not None  # CmpConfig checked it
        algorithm = certificate.public_key().resolve_algorithm(None)
        header["protection_alg"] = _algorithm_id(algorithm)
        if certificate.subject_key_identifier is not None:
            header["sender_kid"] = certificate.subject_key_identifier
        message = PKIMessage({"header": header, "body": body, "extra_certs": [
            c.asn1 for c in (certificate, *config.protection_chain)]})
        message["protection"] = signer.sign(protected_part(message), algorithm)
        return message

    def _parse(self, der: bytes) -> PKIMessage:
        try:
            return load(PKIMessage, der, "CMP message")
        except DecodeError as exc:
            raise ChannelUnavailable(f"CMP server {self.name} sent a malformed CMP message: "
                                     f"{clean(str(exc))}") from None

    def _check(self, transaction: _Transaction, answer: PKIMessage) -> None:
        """Protection first (nothing else of an unauthenticated answer counts), then version,
        transactionID and recipNonce (module docstring)."""
        where = f"CMP server {self.name}"
        problem = self._protection_problem(answer)
        if problem is not None:
            raise ChannelUnavailable(f"{where}: {problem}; the answer is refused"
                                     f"{_unauthenticated(answer)}")
        header = answer["header"]
        if header["pvno"].native not in (PVNO_CMP2000, PVNO_CMP2021):
            raise ChannelUnavailable(f"{where} speaks CMP version {header['pvno'].native}")
        if _octets(header["transaction_id"]) != transaction.transaction_id:
            raise ChannelUnavailable(f"{where} answered with another transactionID (a replayed "
                                     f"or misdirected answer); refused")
        if _octets(header["recip_nonce"]) != transaction.sender_nonce:
            raise ChannelUnavailable(f"{where} answered without our nonce in recipNonce (a "
                                     f"replayed or misdirected answer); refused")
        if not _octets(header["sender_nonce"]):
            raise ChannelUnavailable(f"{where} answered without a senderNonce")

    def _protection_problem(self, answer: PKIMessage) -> str | None:  # noqa: PLR0911
        algorithm = answer["header"]["protection_alg"]
        protection = answer["protection"]
        if isinstance(algorithm, core.Void) or isinstance(protection, core.Void):
            return "the answer is not protected"
        contents = protection.contents or b""
        if not contents or contents[0] != 0:
            return "the answer's protection is malformed"
        value = bytes(contents[1:])
        data = protected_part(answer)
        if algorithm["algorithm"].dotted == OID_PBM:
            if self.config.secret is None:
                return "the answer is MAC-protected but no shared secret is configured"
            try:
                parameters = load(PBMParameter, algorithm["parameters"].dump(), "PBMParameter")
                expected = pbm_mac(self.config.secret, parameters, data)
            except (DecodeError, ValueError) as exc:
                return f"the answer's PBM parameters are refused ({clean(str(exc))})"
            if not _hmac.compare_digest(expected, value):
                return ("the answer's MAC does not verify with our shared secret (a wrong "
                        "secret, or not from the CA)")
            return None
        server = self.config.server_certificate
        if server is None:
            return "the answer is signed but no server certificate is configured to check it"
        try:
            signed = signature_algorithm_from_id(
                algos.SignedDigestAlgorithm.load(_untagged(algorithm)))
            signed.require_key_type(server.public_key().key_type)
            server.public_key().verify(value, data, signed)
        except (InvalidSignature, SigncoreError, ValueError):
            return ("the answer's signature does not verify with the configured server "
                    "certificate")
        return None

    # -- HTTP

    def _post(self, body: bytes) -> bytes:
        config = self.config
        where = f"CMP server {self.name} ({config.url})"
        connection: http.client.HTTPConnection
        if self._https:
            connection = http.client.HTTPSConnection(self._host, self._port,
                                                     timeout=config.connect_timeout,
                                                     context=self._ssl)
        else:
            connection = http.client.HTTPConnection(self._host, self._port,
                                                    timeout=config.connect_timeout)
        answer = exchange(connection, "POST", self._path, body=body, headers={
            "Content-Type": MEDIA_TYPE, "Accept": MEDIA_TYPE,
            "User-Agent": "medsign-ca-client", "Connection": "close"},
            connect_timeout=config.connect_timeout, read_timeout=config.read_timeout,
            limit=config.max_response_bytes, where=where)
        raw, status = answer.body, answer.status
        media = (answer.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if media == MEDIA_TYPE and raw:
            return raw  # a CMP answer, error messages included, whatever the HTTP status
        if 300 <= status < 400:
            raise ChannelUnavailable(f"{where} answered with a redirect (HTTP {status}), which "
                                     f"is not followed; check the URL")
        if status >= 500 or status in (408, 425, 429):
            raise ChannelUnavailable(f"{where} answered HTTP {status}")
        if 400 <= status < 500:
            raise RequestRejected(f"{where} refused the request (HTTP {status})")
        raise ChannelUnavailable(f"{where} answered HTTP {status} without a CMP message "
                                 f"(Content-Type {clean(media) or 'none'})")


# -- helpers ----------------------------------------------------------------------------------

def _null_dn() -> x509.Name:
    return x509.Name.build({})


def _time(value: dt.datetime) -> x509.Time:
    return x509.Time(name="utc_time" if value.year < 2050 else "general_time", value=value)


def _algorithm_id(algorithm: SignatureAlgorithm) -> AlgorithmIdentifier:
    value: AlgorithmIdentifier = AlgorithmIdentifier.load(
        signature_algorithm_id(algorithm).dump())
    return value


def _requested_extensions(public_key: PublicKey, extensions: Any) -> x509.Extensions | None:
    """The profile's extensions as the template's Extensions: signcore encodes them for a
    PKCS#10 extensionRequest, which is the same structure."""
    info = prepare_csr(public_key, "CN=medsign enrollment", extensions).info
    for attribute in info["attributes"]:
        if attribute["type"].native == "extension_request":
            return x509.Extensions.load(attribute["values"][0].dump())
    return None


def _untagged(value: Any) -> bytes:
    """DER of an implicitly tagged field as its own type (the [6] publicKey as an SPKI)."""
    return b"" if isinstance(value, core.Void) else bytes(value.untag().dump())


def _sequence(value: Any) -> Sequence[Any]:
    return () if isinstance(value, core.Void) else list(value)


def _octets(value: Any) -> bytes:
    return b"" if isinstance(value, core.Void) else bytes(value.native)


def _certificate(value: x509.Certificate) -> Certificate:
    """A certificate of the answer, re-parsed strictly (untagged: certOrEncCert's is [0])."""
    try:
        return load_certificate(bytes(value.untag().dump()))
    except (DecodeError, ValueError):
        raise ChannelUnavailable("the CMP server sent an unreadable certificate") from None


def _problem_with(certificate: Certificate, public_key: PublicKey) -> str | None:
    try:
        key = certificate.public_key()
        certificate.signature_algorithm  # noqa: B018 -- its hash goes into certConf
    except (SigncoreError, ValueError):
        return "its key or signature algorithm is not supported"
    if key != public_key:
        return "it certifies another public key than the one enrolled"
    if certificate.is_ca:
        return "it is a CA certificate"
    return None


def _failures(info: PKIStatusInfo) -> set[str]:
    fail_info = info["fail_info"]
    if isinstance(fail_info, core.Void):
        return set()
    return {str(name) for name in fail_info.native}


def _status_text(info: PKIStatusInfo) -> str:
    parts = []
    strings = info["status_string"]
    if not isinstance(strings, core.Void):
        said = "; ".join(str(s) for s in strings.native if s)
        if said.strip():
            parts.append(clean(said))
    failures = sorted(_failures(info))
    if failures:
        parts.append("failInfo " + ", ".join(failures))
    return ": " + "; ".join(parts) if parts else ""


def _unauthenticated(answer: PKIMessage) -> str:
    """What an answer that failed its checks says, for diagnosis, marked as unauthenticated."""
    body = answer["body"]
    if body.name == "error":
        return f" (it says, unauthenticated: error{_status_text(body.chosen['pki_status_info'])})"
    return f" (an unauthenticated {body.name})"


"""pyHanko plumbing: a ``Signer`` over signcore keys, and time-stamping clients.

:class:`SigncoreSigner` is the pyHanko :class:`~pyhanko.sign.signers.pdf_cms.Signer` of every
PDF signature pdfsign makes.  Given a signcore :class:`~signcore.keys.Signer` (a server key, or
anything with the same ``sign``), it signs the DER of the signed attributes:

- SM2: SM2-with-SM3 (``1.2.156.10197.1.501``) over ``Z || attributes`` with the signer ID
  (default ``1234567812345678``), digest algorithm SM3 (``1.2.156.10197.1.401``);
- RSA: PKCS#1 v1.5 with SHA-256 (``sha256WithRSAEncryption``);
- ECDSA P-256: ``ecdsa-with-SHA256``.

Without a key (``key=None``) it only produces placeholders for pyHanko's size estimate, or the
fixed ``signature`` given: the two halves of a split-key signature (:mod:`pdfsign.sign`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from asn1crypto import algos, tsp
from asn1crypto import cms as asn1_cms
from pyhanko.sign.signers.pdf_cms import Signer as PyHankoSigner
from pyhanko.sign.timestamps.api import TimeStamper
from pyhanko.sign.timestamps.common_utils import TimestampRequestError
from pyhanko.sign.timestamps.requests_client import RequestsHTTPTimeStamper
from pyhanko_certvalidator.registry import SimpleCertificateStore

from pdfsign._gm import sm2_mechanism
from signcore.algorithms import DEFAULT_SM2_ID, KeyType, SignatureAlgorithm
from signcore.keys import Signer
from signcore.x509 import Certificate

__all__ = [
    "CallableTimeStamper",
    "SigncoreSigner",
    "TimestampSource",
    "algorithm_for",
    "digest_name",
    "make_timestamper",
]

#: A TSA: its URL, a callable from TimeStampReq DER to TimeStampResp DER, or a pyHanko
#: TimeStamper.
TimestampSource = str | Callable[[bytes], bytes] | TimeStamper

_MECHANISMS = {
    SignatureAlgorithm.RSA_PKCS1_SHA256: "sha256_rsa",
    SignatureAlgorithm.ECDSA_SHA256: "sha256_ecdsa",
}
_DIGESTS = {
    SignatureAlgorithm.SM2_SM3: "sm3",
    SignatureAlgorithm.RSA_PKCS1_SHA256: "sha256",
    SignatureAlgorithm.ECDSA_SHA256: "sha256",
}


def algorithm_for(certificate: Certificate) -> SignatureAlgorithm:
    """The one signature algorithm pdfsign uses for a certificate's key type."""
    return SignatureAlgorithm.default_for(certificate.public_key().key_type)


def digest_name(algorithm: SignatureAlgorithm) -> str:
    """pyHanko's name of the document digest for ``algorithm`` (``sm3``, ``sha256``)."""
    return _DIGESTS[algorithm]


def _mechanism(algorithm: SignatureAlgorithm) -> algos.SignedDigestAlgorithm:
    if algorithm is SignatureAlgorithm.SM2_SM3:
        return sm2_mechanism()
    return algos.SignedDigestAlgorithm({"algorithm": _MECHANISMS[algorithm]})


def _placeholder_size(certificate: Certificate) -> int:
    public = certificate.public_key()
    if public.key_type is KeyType.RSA:
        return (public.key_size + 7) // 8
    return 72  # DER SEQUENCE { r, s } of a 256-bit curve, at most


class SigncoreSigner(PyHankoSigner):
    """A pyHanko signer backed by signcore (see the module docstring)."""

    def __init__(
        self,
        certificate: Certificate,
        *,
        key: Signer | None = None,
        chain: Sequence[Certificate] = (),
        signer_id: bytes = DEFAULT_SM2_ID,
        signature: bytes | None = None,
    ) -> None:
        self.algorithm = algorithm_for(certificate)
        store = SimpleCertificateStore()  # type: ignore[no-untyped-call]
        # The chain only: pyHanko adds the signing certificate itself, and its set of
        # certificates does not deduplicate equal asn1crypto objects (the signer certificate
        # would be in the CMS twice, which endesive refuses).
        store.register_multiple([c.asn1 for c in chain if c != certificate])
        super().__init__(signing_cert=certificate.asn1, cert_registry=store,
                         signature_mechanism=_mechanism(self.algorithm), embed_roots=True)
        self.certificate = certificate
        self.key = key
        self.signer_id = bytes(signer_id)
        self.fixed_signature = signature

    @property
    def md_algorithm(self) -> str:
        return digest_name(self.algorithm)

    async def async_sign_raw(self, data: bytes, digest_algorithm: str,
                             dry_run: bool = False) -> bytes:
        if dry_run:
            return bytes(_placeholder_size(self.certificate))
        if self.fixed_signature is not None:
            return self.fixed_signature
        if self.key is None:
            raise RuntimeError("SigncoreSigner without a key signs only placeholders")
        if digest_algorithm.lower() != self.md_algorithm:
            raise ValueError(f"{self.algorithm.value} signs with {self.md_algorithm}, "
                             f"not {digest_algorithm}")
        return self.key.sign(data, self.algorithm, signer_id=self.signer_id)


class _TimeStampResp(tsp.TimeStampResp):  # type: ignore[misc]
    """TimeStampResp with the token OPTIONAL, as RFC 3161 2.4.2 has it (asn1crypto requires it,
    so a rejection would not even parse)."""

    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", asn1_cms.ContentInfo, {"optional": True}),
    ]


class CallableTimeStamper(TimeStamper):
    """A pyHanko TimeStamper over a callable: TimeStampReq DER in, TimeStampResp DER out (an
    in-process TSA, or any transport the appliance has).  Whatever the callable raises, and an
    answer that does not parse, become pyHanko's ``TimestampRequestError``."""

    def __init__(self, request: Callable[[bytes], bytes], include_nonce: bool = True) -> None:
        super().__init__(include_nonce=include_nonce)  # type: ignore[no-untyped-call]
        self._request = request

    async def async_request_tsa_response(self, req: tsp.TimeStampReq) -> Any:
        try:
            # Called on the loop's thread: pdfsign runs one signature per event loop
            # (asyncio.run in sign_pdf / finish), so nothing else waits, and a worker thread
            # per signature (a new executor per loop) cost more than most in-process TSAs.
            der = self._request(bytes(req.dump()))
            response = _TimeStampResp.load(bytes(der))
            # Parse the status here (not .native of it all: that makes asn1crypto re-encode
            # the token on dump, which need not reproduce the signed bytes).
            response["status"]["status"].native  # noqa: B018
        except Exception as exc:  # the TSA's transport is the caller's: any failure is a failure
            raise TimestampRequestError(f"the TSA failed: {exc}") from exc
        return response


def make_timestamper(source: TimestampSource) -> TimeStamper:
    """A pyHanko TimeStamper for a URL, a callable or an existing TimeStamper.  The same
    source gives the same TimeStamper: pyHanko keeps the dummy token it sizes the signature
    container with per instance, so a fresh one per document would ask the TSA twice."""
    if isinstance(source, TimeStamper):
        return source
    return _cached_timestamper(source)


@functools.lru_cache(maxsize=64)
def _cached_timestamper(source: str | Callable[[bytes], bytes]) -> TimeStamper:
    if isinstance(source, str):
        return RequestsHTTPTimeStamper(source, timeout=10)  # type: ignore[no-untyped-call]
    return CallableTimeStamper(source)

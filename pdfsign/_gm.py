"""Teach pyHanko and pyhanko-certvalidator SM2-with-SM3, through signcore.

- asn1crypto already knows the GM names (signcore registers them on import): ``sm3`` and
  ``sm2sign_with_sm3``.  pyHanko hashes with ``cryptography``'s ``hashes.SM3`` by name, so the
  document digest and the message-digest attribute need nothing more.
- pyHanko's table of the digests each signature mechanism allows gets
  ``sm2sign_with_sm3 -> {sm3}`` (a SignerInfo claiming SM2-with-SM3 over a SHA-256 message
  digest is then refused as an algorithm mismatch, as for ECDSA).
- :class:`SM2SignatureValidator` is the pyhanko-certvalidator ``SignatureValidator`` handed to
  every ``ValidationContext`` pdfsign makes: it verifies SM2-with-SM3 signatures (CMS
  SignerInfos, certificates, CRLs, OCSP responses, timestamp tokens) with signcore and the
  GM/T 0009 signer ID, and defers every other algorithm to pyHanko's default validator.

Duplication: ``ca_client.trust.SM2SignatureValidator`` is the same ~30 lines; pdfsign may not
import ca_client (DESIGN section 2).  The shared piece belongs in signcore (a follow-up).
"""

from __future__ import annotations

from typing import Any

from asn1crypto import algos
from cryptography.exceptions import InvalidSignature as PycaInvalidSignature
from cryptography.exceptions import UnsupportedAlgorithm as PycaUnsupportedAlgorithm
from pyhanko.sign.validation import utils as _validation_utils
from pyhanko_certvalidator.errors import AlgorithmNotSupported
from pyhanko_certvalidator.sig_validate import (
    DefaultSignatureValidator,
    SignatureValidationContext,
)

import signcore.keys  # noqa: F401  (registers the GM OIDs in asn1crypto)
from signcore.algorithms import (
    DEFAULT_SM2_ID,
    OID_SM2_SIGN,
    OID_SM2_WITH_SM3,
    SignatureAlgorithm,
)
from signcore.errors import SigncoreError
from signcore.keys import SM2PublicKey, load_public_key

__all__ = ["SM2_MECHANISM", "SM2SignatureValidator", "sm2_mechanism"]

SM2_MECHANISM = "sm2sign_with_sm3"
_SM2_SIGNATURE_OIDS = frozenset({OID_SM2_WITH_SM3, OID_SM2_SIGN})

_lut: dict[str, frozenset[str]] = _validation_utils._SIG_ALGO_ALLOWED_DIGEST_LUT
_lut.setdefault(SM2_MECHANISM, frozenset({"sm3"}))


def sm2_mechanism() -> algos.SignedDigestAlgorithm:
    """The CMS signatureAlgorithm of our SM2 SignerInfos: SM2-with-SM3, no parameters."""
    return algos.SignedDigestAlgorithm({"algorithm": SM2_MECHANISM})


class SM2SignatureValidator(DefaultSignatureValidator):
    """SM2-with-SM3 through signcore (signer ID ``signer_id``); the rest through pyHanko.
    Raises ``cryptography.exceptions.InvalidSignature`` (what pyHanko catches) for a signature
    that does not verify."""

    def __init__(self, signer_id: bytes = DEFAULT_SM2_ID) -> None:
        self.signer_id = bytes(signer_id)

    def validate_signature(
        self,
        signature: bytes,
        signed_data: bytes,
        public_key_info: Any,
        signature_algorithm: Any,
        context: SignatureValidationContext | None = None,
    ) -> None:
        context = context or SignatureValidationContext()
        if signature_algorithm["algorithm"].dotted not in _SM2_SIGNATURE_OIDS:
            try:
                super().validate_signature(signature, signed_data, public_key_info,
                                           signature_algorithm, context)
            except (PycaUnsupportedAlgorithm, ValueError, TypeError) as exc:
                raise AlgorithmNotSupported(f"cannot verify: {exc}") from exc
            return
        if context.prehashed:
            raise AlgorithmNotSupported("SM2 signatures over a pre-hashed payload cannot be "
                                        "verified (Z depends on the key)")
        try:
            key = load_public_key(public_key_info.dump())
        except (SigncoreError, ValueError) as exc:
            raise PycaInvalidSignature(f"unusable public key: {exc}") from exc
        if not isinstance(key, SM2PublicKey):
            raise PycaInvalidSignature("an SM2 signature needs an SM2 public key")
        try:
            key.verify(bytes(signature), bytes(signed_data), SignatureAlgorithm.SM2_SM3,
                       signer_id=self.signer_id)
        except (SigncoreError, ValueError) as exc:
            raise PycaInvalidSignature(str(exc)) from exc


SM2_SIGNATURE_VALIDATOR = SM2SignatureValidator()

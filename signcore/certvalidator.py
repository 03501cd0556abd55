"""SM2 for pyhanko-certvalidator: the ``SignatureValidator`` that ``ca_client.trust`` (path
validation) and ``pdfsign`` (PAdES validation) hand to pyHanko.

SM2-with-SM3 signatures (certificates, CRLs, OCSP responses, CMS SignerInfos, time-stamp
tokens) are verified with signcore and the signer ID (default: the GM/T 0009 ID
``1234567812345678``); every other algorithm goes to pyhanko-certvalidator's default
validator.  A signature that does not verify raises ``cryptography.exceptions.InvalidSignature``
(what pyHanko catches); an algorithm that cannot be checked raises ``AlgorithmNotSupported``.
SM2 over a pre-hashed payload is refused: Z depends on the key, so the hash cannot be reused.
"""

from __future__ import annotations

from typing import Any

from cryptography.exceptions import InvalidSignature as PycaInvalidSignature
from cryptography.exceptions import UnsupportedAlgorithm as PycaUnsupportedAlgorithm
from pyhanko_certvalidator.errors import AlgorithmNotSupported
from pyhanko_certvalidator.sig_validate import (
    DefaultSignatureValidator,
    SignatureValidationContext,
)

from signcore.algorithms import DEFAULT_SM2_ID, OID_SM2_SIGN, OID_SM2_WITH_SM3, SignatureAlgorithm
from signcore.errors import SigncoreError
from signcore.keys import SM2PublicKey, load_public_key

__all__ = ["SM2_SIGNATURE_VALIDATOR", "SM2SignatureValidator"]

_SM2_SIGNATURE_OIDS = frozenset({OID_SM2_WITH_SM3, OID_SM2_SIGN})


class SM2SignatureValidator(DefaultSignatureValidator):
    """SM2-with-SM3 through signcore (signer ID ``signer_id``); the rest through pyHanko."""

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
                # An SM2 key under a non-SM2 algorithm, an unknown curve, garbage: pyca raises
                # these, pyhanko only expects InvalidSignature.
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

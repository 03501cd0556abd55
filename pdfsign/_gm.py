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

The validator itself is :mod:`signcore.certvalidator` (``ca_client.trust`` uses the same one).
"""

from __future__ import annotations

from asn1crypto import algos
from pyhanko.sign.validation import utils as _validation_utils

import signcore.keys  # noqa: F401  (registers the GM OIDs in asn1crypto)
from signcore.certvalidator import SM2SignatureValidator

__all__ = ["SM2_MECHANISM", "SM2SignatureValidator", "sm2_mechanism"]

SM2_MECHANISM = "sm2sign_with_sm3"

_lut: dict[str, frozenset[str]] = _validation_utils._SIG_ALGO_ALLOWED_DIGEST_LUT
_lut.setdefault(SM2_MECHANISM, frozenset({"sm3"}))


def sm2_mechanism() -> algos.SignedDigestAlgorithm:
    """The CMS signatureAlgorithm of our SM2 SignerInfos: SM2-with-SM3, no parameters."""
    return algos.SignedDigestAlgorithm({"algorithm": SM2_MECHANISM})



"""The exceptions signcore raises.

A flat tree in the style of pyca/cryptography: callers catch :class:`SigncoreError` for "anything
signcore refused", or one of the leaves to tell the cases apart.  Every leaf that describes bad
*input* is also a :class:`ValueError`, so generic input-validation code can treat it as such.
"""

from __future__ import annotations


class SigncoreError(Exception):
    """Base class of every error signcore raises on purpose."""


class BackendError(SigncoreError):
    """The platform libcrypto is missing, lacks SM2/SM3/SM4, or failed unexpectedly."""


class UnsupportedAlgorithm(SigncoreError, ValueError):
    """The input names an algorithm, curve or structure signcore does not implement."""


class DecodeError(SigncoreError, ValueError):
    """Malformed, truncated, oversize or otherwise undecodable DER/PEM/ASN.1 input.

    Also raised for an encrypted private key whose password is wrong: OpenSSL cannot tell a wrong
    password from a corrupted ciphertext, and neither can we.
    """


class InvalidKey(SigncoreError, ValueError):
    """A key that decodes but is not acceptable: a point off the curve or at infinity, a private
    scalar outside [1, n-2] for SM2, a key too small, or a key of the wrong type for the call."""


class InvalidSignature(SigncoreError):
    """A signature did not verify (raised by ``verify`` methods; never for malformed keys)."""


class DecryptionError(SigncoreError):
    """Authenticated decryption failed: wrong key, tampered ciphertext or tag, or bad padding."""


class PathValidationError(SigncoreError):
    """A certificate chain does not validate: no path to a trust root, a bad signature on the
    way, a certificate outside its validity period, a non-CA issuer, a path too long, a missing
    key usage or EKU, or an unknown critical extension."""

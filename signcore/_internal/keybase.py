"""Abstract key interfaces shared by the SM2 (libcrypto) and RSA/ECDSA (pyca) implementations."""

from __future__ import annotations

import abc
from typing import Protocol, runtime_checkable

from signcore._internal.pem import pem_encode
from signcore.algorithms import DEFAULT_SM2_ID, KeyType, SignatureAlgorithm
from signcore.errors import InvalidSignature


class PublicKey(abc.ABC):
    """A public key that verifies signatures and serializes as SubjectPublicKeyInfo."""

    key_type: KeyType

    @property
    def default_signature_algorithm(self) -> SignatureAlgorithm:
        return SignatureAlgorithm.default_for(self.key_type)

    def resolve_algorithm(self, algorithm: SignatureAlgorithm | None) -> SignatureAlgorithm:
        """``algorithm`` or this key type's default; UnsupportedAlgorithm if it does not fit."""
        algorithm = algorithm or self.default_signature_algorithm
        algorithm.require_key_type(self.key_type)
        return algorithm

    @property
    @abc.abstractmethod
    def key_size(self) -> int:
        """Bits of the modulus (RSA) or of the group order (EC)."""

    @abc.abstractmethod
    def verify(
        self,
        signature: bytes,
        data: bytes,
        algorithm: SignatureAlgorithm | None = None,
        *,
        signer_id: bytes = DEFAULT_SM2_ID,
    ) -> None:
        """Raise :class:`InvalidSignature` unless ``signature`` is valid over ``data``.

        ``signer_id`` is the SM2 user ID that enters Z; other key types ignore it.
        """

    @abc.abstractmethod
    def verify_digest(
        self, signature: bytes, digest: bytes, algorithm: SignatureAlgorithm | None = None
    ) -> None:
        """Verify over a precomputed digest: ``e = SM3(Z || M)`` for SM2, ``H(M)`` otherwise."""

    def is_valid(
        self,
        signature: bytes,
        data: bytes,
        algorithm: SignatureAlgorithm | None = None,
        *,
        signer_id: bytes = DEFAULT_SM2_ID,
    ) -> bool:
        try:
            self.verify(signature, data, algorithm, signer_id=signer_id)
        except InvalidSignature:
            return False
        return True

    @abc.abstractmethod
    def to_der(self) -> bytes:
        """SubjectPublicKeyInfo, DER."""

    def to_pem(self) -> bytes:
        return pem_encode("PUBLIC KEY", self.to_der())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and self.to_der() == other.to_der()

    def __hash__(self) -> int:
        return hash(self.to_der())


class PrivateKey(abc.ABC):
    """A private key that signs and serializes as (optionally encrypted) PKCS#8."""

    key_type: KeyType

    @property
    def default_signature_algorithm(self) -> SignatureAlgorithm:
        return SignatureAlgorithm.default_for(self.key_type)

    @abc.abstractmethod
    def public_key(self) -> PublicKey: ...

    @abc.abstractmethod
    def sign(
        self,
        data: bytes,
        algorithm: SignatureAlgorithm | None = None,
        *,
        signer_id: bytes = DEFAULT_SM2_ID,
    ) -> bytes:
        """Sign ``data``; the result is DER (SM2/ECDSA ``SEQUENCE {r, s}``) or the RSA block."""

    @abc.abstractmethod
    def sign_digest(self, digest: bytes, algorithm: SignatureAlgorithm | None = None) -> bytes:
        """Sign a precomputed digest: ``e = SM3(Z || M)`` for SM2, ``H(M)`` otherwise."""

    @abc.abstractmethod
    def to_der(self, password: bytes | None = None) -> bytes:
        """PKCS#8 DER; encrypted (PBES2: AES-256-CBC, PBKDF2-HMAC-SHA256) given a password."""

    def to_pem(self, password: bytes | None = None) -> bytes:
        label = "ENCRYPTED PRIVATE KEY" if password else "PRIVATE KEY"
        return pem_encode(label, self.to_der(password))

    def __repr__(self) -> str:  # never print key material
        return f"<{type(self).__name__} {self.key_type.value} {self.public_key().key_size} bits>"


@runtime_checkable
class Signer(Protocol):
    """Anything that can produce a signature for a public key: a :class:`PrivateKey`, or a
    two-party co-signer (keysplit) whose private key never exists in one place."""

    def public_key(self) -> PublicKey: ...

    def sign(
        self,
        data: bytes,
        algorithm: SignatureAlgorithm | None = None,
        *,
        signer_id: bytes = DEFAULT_SM2_ID,
    ) -> bytes: ...

"""Names of the key types and signature algorithms signcore implements, and the GM OIDs.

Everything that maps an algorithm to an ASN.1 identifier lives here, so X.509, CMS and RFC 3161
agree on what they emit and accept.
"""

from __future__ import annotations

import enum

from signcore.errors import UnsupportedAlgorithm
from signcore.hashes import HashAlgorithm

#: GM/T 0009 default signer ID. OpenSSL 3.0 defaults to an EMPTY ID: always pass this one.
DEFAULT_SM2_ID = b"1234567812345678"

# GM identifiers (GM/T 0006).
OID_SM2_CURVE = "1.2.156.10197.1.301"
OID_SM2_SIGN = "1.2.156.10197.1.301.1"  # "SM2-1" signature, as GM/T 0010 names it
OID_SM2_ENCRYPT = "1.2.156.10197.1.301.3"
OID_SM3 = "1.2.156.10197.1.401"
OID_SM2_WITH_SM3 = "1.2.156.10197.1.501"
OID_SM4 = "1.2.156.10197.1.104"
OID_GM_DATA = "1.2.156.10197.6.1.4.2.1"
OID_GM_SIGNED_DATA = "1.2.156.10197.6.1.4.2.2"


class KeyType(enum.Enum):
    SM2 = "sm2"
    RSA = "rsa"
    EC_P256 = "ec-p256"


class KeySpec(enum.Enum):
    """What ``generate_private_key`` and ``medsign crypto keygen --alg`` can make."""

    SM2 = "sm2"
    RSA2048 = "rsa2048"
    RSA3072 = "rsa3072"
    ECDSA_P256 = "ecdsa-p256"

    @property
    def key_type(self) -> KeyType:
        return {
            KeySpec.SM2: KeyType.SM2,
            KeySpec.RSA2048: KeyType.RSA,
            KeySpec.RSA3072: KeyType.RSA,
            KeySpec.ECDSA_P256: KeyType.EC_P256,
        }[self]


class SignatureAlgorithm(enum.Enum):
    """A complete signature scheme: key type, digest and (for RSA) padding."""

    SM2_SM3 = "sm2-sm3"
    RSA_PKCS1_SHA256 = "rsa-pkcs1-sha256"
    RSA_PKCS1_SHA384 = "rsa-pkcs1-sha384"
    RSA_PKCS1_SHA512 = "rsa-pkcs1-sha512"
    RSA_PSS_SHA256 = "rsa-pss-sha256"
    ECDSA_SHA256 = "ecdsa-sha256"

    @property
    def key_type(self) -> KeyType:
        if self is SignatureAlgorithm.SM2_SM3:
            return KeyType.SM2
        if self is SignatureAlgorithm.ECDSA_SHA256:
            return KeyType.EC_P256
        return KeyType.RSA

    @property
    def hash_algorithm(self) -> HashAlgorithm:
        return {
            SignatureAlgorithm.SM2_SM3: HashAlgorithm.SM3,
            SignatureAlgorithm.RSA_PKCS1_SHA256: HashAlgorithm.SHA256,
            SignatureAlgorithm.RSA_PKCS1_SHA384: HashAlgorithm.SHA384,
            SignatureAlgorithm.RSA_PKCS1_SHA512: HashAlgorithm.SHA512,
            SignatureAlgorithm.RSA_PSS_SHA256: HashAlgorithm.SHA256,
            SignatureAlgorithm.ECDSA_SHA256: HashAlgorithm.SHA256,
        }[self]

    @property
    def is_pss(self) -> bool:
        return self is SignatureAlgorithm.RSA_PSS_SHA256

    @classmethod
    def default_for(cls, key_type: KeyType) -> SignatureAlgorithm:
        return {
            KeyType.SM2: cls.SM2_SM3,
            KeyType.RSA: cls.RSA_PKCS1_SHA256,
            KeyType.EC_P256: cls.ECDSA_SHA256,
        }[key_type]

    def require_key_type(self, key_type: KeyType) -> None:
        if self.key_type is not key_type:
            raise UnsupportedAlgorithm(
                f"signature algorithm {self.value} cannot be used with a {key_type.value} key"
            )

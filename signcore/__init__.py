"""signcore: the algorithms and formats every other medsign package stands on.

- SM2 (GB/T 32918) signatures with SM3 and a signer ID, SM2 encryption; SM3 and HMAC-SM3;
  SM4-CBC and SM4-GCM -- on the platform OpenSSL 3 libcrypto (constant-time, patched by Debian).
- RSA-2048/3072 (PKCS#1 v1.5 and PSS) and ECDSA P-256 through pyca/cryptography.
- Keys as PKCS#8 / SubjectPublicKeyInfo, PEM or DER, encrypted PKCS#8.
- X.509 certificates, CSRs and CRLs (``x509``), path validation (``path``), CMS SignedData in
  the RFC 5652 and GM/T 0010 flavours (``cms``), RFC 3161 time stamps (``tsp``).

The package keeps no global state besides the load-once libcrypto handle.
"""

from signcore import cms, ec, hashes, keys, ocsp, path, sm4, tsp, x509
from signcore._internal.libcrypto import backend as _backend
from signcore.algorithms import DEFAULT_SM2_ID, KeySpec, KeyType, SignatureAlgorithm
from signcore.errors import (
    BackendError,
    DecodeError,
    DecryptionError,
    InvalidKey,
    InvalidSignature,
    SigncoreError,
    UnsupportedAlgorithm,
)
from signcore.hashes import HashAlgorithm
from signcore.keys import (
    PrivateKey,
    PublicKey,
    generate_private_key,
    load_private_key,
    load_public_key,
)
from signcore.sm2 import SM2PrivateKey, SM2PublicKey

__all__ = [
    "DEFAULT_SM2_ID",
    "BackendError",
    "DecodeError",
    "DecryptionError",
    "HashAlgorithm",
    "InvalidKey",
    "InvalidSignature",
    "KeySpec",
    "KeyType",
    "PrivateKey",
    "PublicKey",
    "SM2PrivateKey",
    "SM2PublicKey",
    "SignatureAlgorithm",
    "SigncoreError",
    "UnsupportedAlgorithm",
    "backend_version",
    "cms",
    "ec",
    "generate_private_key",
    "hashes",
    "keys",
    "load_private_key",
    "load_public_key",
    "ocsp",
    "path",
    "sm4",
    "tsp",
    "x509",
]


def backend_version() -> str:
    """The platform OpenSSL version string; loading it runs the SM2/SM3/SM4 start-up check."""
    return _backend().version

"""Generate, load and save keys: SM2 (platform libcrypto), RSA-2048/3072 and ECDSA P-256 (pyca).

Private keys are PKCS#8 (PEM or DER), optionally encrypted with PBES2 (AES-256-CBC, PBKDF2);
public keys are SubjectPublicKeyInfo.  SM2 keys use the encoding OpenSSL reads and writes:
``id-ecPublicKey`` with the SM2 curve OID ``1.2.156.10197.1.301`` as parameters.  On input we also
accept SEC1 ``EC PRIVATE KEY`` and PKCS#1 ``RSA PRIVATE KEY`` files, and SubjectPublicKeyInfo that
names the SM2 OID as the algorithm (some Chinese toolkits write that).
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature as _PycaInvalidSignature
from cryptography.exceptions import UnsupportedAlgorithm as PycaUnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes as pyca_hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec as pyca_ec
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

from signcore import ec
from signcore._internal import asn1, evp
from signcore._internal.keybase import PrivateKey, PublicKey, Signer
from signcore._internal.pem import is_pem, to_der
from signcore.algorithms import (
    DEFAULT_SM2_ID,
    OID_SM2_CURVE,
    KeySpec,
    KeyType,
    SignatureAlgorithm,
)
from signcore.errors import DecodeError, InvalidKey, InvalidSignature, UnsupportedAlgorithm
from signcore.hashes import HashAlgorithm
from signcore.sm2 import SM2PrivateKey, SM2PublicKey

__all__ = [
    "ECPrivateKey",
    "ECPublicKey",
    "PrivateKey",
    "PublicKey",
    "RSAPrivateKey",
    "RSAPublicKey",
    "SM2PrivateKey",
    "SM2PublicKey",
    "Signer",
    "generate_private_key",
    "load_private_key",
    "load_public_key",
]

MIN_RSA_BITS = 2048
_OID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"

_PYCA_HASHES: dict[HashAlgorithm, type[pyca_hashes.HashAlgorithm]] = {
    HashAlgorithm.SHA256: pyca_hashes.SHA256,
    HashAlgorithm.SHA384: pyca_hashes.SHA384,
    HashAlgorithm.SHA512: pyca_hashes.SHA512,
}


def _pyca_hash(algorithm: SignatureAlgorithm) -> pyca_hashes.HashAlgorithm:
    try:
        return _PYCA_HASHES[algorithm.hash_algorithm]()
    except KeyError:
        raise UnsupportedAlgorithm(f"{algorithm.value} has no RSA/ECDSA hash") from None


def _rsa_padding(algorithm: SignatureAlgorithm, *, verify: bool = False
                 ) -> padding.AsymmetricPadding:
    if algorithm.is_pss:
        # We sign with salt length = digest length (what RFC 4055 parameters and CMS peers
        # expect); we verify any salt length, which PSS recovers (OpenSSL's default is the max).
        salt = padding.PSS.AUTO if verify else algorithm.hash_algorithm.digest_size
        return padding.PSS(mgf=padding.MGF1(_pyca_hash(algorithm)), salt_length=salt)
    return padding.PKCS1v15()


def _pkcs8(
    key: rsa.RSAPrivateKey | pyca_ec.EllipticCurvePrivateKey, password: bytes | None
) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             encryption)


def _spki(key: rsa.RSAPublicKey | pyca_ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


class RSAPublicKey(PublicKey):
    key_type = KeyType.RSA

    def __init__(self, key: rsa.RSAPublicKey) -> None:
        if key.key_size < MIN_RSA_BITS:
            raise InvalidKey(f"RSA keys shorter than {MIN_RSA_BITS} bits are refused")
        self._key = key

    @property
    def key_size(self) -> int:
        return self._key.key_size

    @property
    def pyca(self) -> rsa.RSAPublicKey:
        return self._key

    def verify(self, signature: bytes, data: bytes, algorithm: SignatureAlgorithm | None = None,
               *, signer_id: bytes = DEFAULT_SM2_ID) -> None:
        alg = self.resolve_algorithm(algorithm)
        try:
            self._key.verify(signature, data, _rsa_padding(alg, verify=True), _pyca_hash(alg))
        except _PycaInvalidSignature:
            raise InvalidSignature("RSA signature does not verify") from None

    def verify_digest(self, signature: bytes, digest: bytes,
                      algorithm: SignatureAlgorithm | None = None) -> None:
        alg = self.resolve_algorithm(algorithm)
        try:
            self._key.verify(signature, digest, _rsa_padding(alg, verify=True),
                             utils.Prehashed(_pyca_hash(alg)))
        except (_PycaInvalidSignature, ValueError):
            raise InvalidSignature("RSA signature does not verify") from None

    def to_der(self) -> bytes:
        return _spki(self._key)


class RSAPrivateKey(PrivateKey):
    key_type = KeyType.RSA

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        self._key = key
        self._public = RSAPublicKey(key.public_key())

    @classmethod
    def generate(cls, bits: int) -> RSAPrivateKey:
        if bits not in (2048, 3072, 4096):
            raise UnsupportedAlgorithm(f"RSA-{bits} is not offered (2048, 3072 or 4096)")
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=bits))

    @property
    def pyca(self) -> rsa.RSAPrivateKey:
        return self._key

    def public_key(self) -> RSAPublicKey:
        return self._public

    def sign(self, data: bytes, algorithm: SignatureAlgorithm | None = None, *,
             signer_id: bytes = DEFAULT_SM2_ID) -> bytes:
        alg = self._public.resolve_algorithm(algorithm)
        return self._key.sign(data, _rsa_padding(alg), _pyca_hash(alg))

    def sign_digest(self, digest: bytes, algorithm: SignatureAlgorithm | None = None) -> bytes:
        alg = self._public.resolve_algorithm(algorithm)
        return self._key.sign(digest, _rsa_padding(alg), utils.Prehashed(_pyca_hash(alg)))

    def to_der(self, password: bytes | None = None) -> bytes:
        return _pkcs8(self._key, password)


class ECPublicKey(PublicKey):
    """ECDSA on NIST P-256 (for TLS and interop; SM2 is the default curve here)."""

    key_type = KeyType.EC_P256

    def __init__(self, key: pyca_ec.EllipticCurvePublicKey) -> None:
        if not isinstance(key.curve, pyca_ec.SECP256R1):
            raise UnsupportedAlgorithm(f"EC curve {key.curve.name} is not supported (P-256 only)")
        self._key = key

    @property
    def key_size(self) -> int:
        return 256

    @property
    def pyca(self) -> pyca_ec.EllipticCurvePublicKey:
        return self._key

    def verify(self, signature: bytes, data: bytes, algorithm: SignatureAlgorithm | None = None,
               *, signer_id: bytes = DEFAULT_SM2_ID) -> None:
        alg = self.resolve_algorithm(algorithm)
        try:
            self._key.verify(signature, data, pyca_ec.ECDSA(_pyca_hash(alg)))
        except _PycaInvalidSignature:
            raise InvalidSignature("ECDSA signature does not verify") from None

    def verify_digest(self, signature: bytes, digest: bytes,
                      algorithm: SignatureAlgorithm | None = None) -> None:
        alg = self.resolve_algorithm(algorithm)
        try:
            self._key.verify(signature, digest, pyca_ec.ECDSA(utils.Prehashed(_pyca_hash(alg))))
        except (_PycaInvalidSignature, ValueError):
            raise InvalidSignature("ECDSA signature does not verify") from None

    def to_der(self) -> bytes:
        return _spki(self._key)


class ECPrivateKey(PrivateKey):
    key_type = KeyType.EC_P256

    def __init__(self, key: pyca_ec.EllipticCurvePrivateKey) -> None:
        self._public = ECPublicKey(key.public_key())
        self._key = key

    @classmethod
    def generate(cls) -> ECPrivateKey:
        return cls(pyca_ec.generate_private_key(pyca_ec.SECP256R1()))

    @property
    def pyca(self) -> pyca_ec.EllipticCurvePrivateKey:
        return self._key

    def public_key(self) -> ECPublicKey:
        return self._public

    def sign(self, data: bytes, algorithm: SignatureAlgorithm | None = None, *,
             signer_id: bytes = DEFAULT_SM2_ID) -> bytes:
        alg = self._public.resolve_algorithm(algorithm)
        return self._key.sign(data, pyca_ec.ECDSA(_pyca_hash(alg)))

    def sign_digest(self, digest: bytes, algorithm: SignatureAlgorithm | None = None) -> bytes:
        alg = self._public.resolve_algorithm(algorithm)
        return self._key.sign(digest, pyca_ec.ECDSA(utils.Prehashed(_pyca_hash(alg))))

    def to_der(self, password: bytes | None = None) -> bytes:
        return _pkcs8(self._key, password)


def generate_private_key(spec: KeySpec | str) -> PrivateKey:
    """A fresh key: ``sm2``, ``rsa2048``, ``rsa3072`` or ``ecdsa-p256``."""
    try:
        spec = KeySpec(spec)
    except ValueError:
        raise UnsupportedAlgorithm(f"unknown key algorithm {spec!r}") from None
    if spec is KeySpec.SM2:
        return SM2PrivateKey.generate()
    if spec is KeySpec.ECDSA_P256:
        return ECPrivateKey.generate()
    return RSAPrivateKey.generate(2048 if spec is KeySpec.RSA2048 else 3072)


def load_private_key(data: bytes, password: bytes | None = None) -> PrivateKey:
    """Load a private key from PEM or DER (PKCS#8, encrypted PKCS#8, SEC1, PKCS#1).

    Raises DecodeError for malformed input or a wrong password, InvalidKey for a key that decodes
    but is unacceptable, UnsupportedAlgorithm for other key types or curves.
    """
    pkey = evp.decode_private(data, password)
    if evp.is_a(pkey, b"SM2"):
        return SM2PrivateKey(pkey)
    if not (evp.is_a(pkey, b"RSA") or evp.is_a(pkey, b"EC")):
        raise UnsupportedAlgorithm("only SM2, RSA and EC P-256 private keys are supported")
    # The platform libcrypto decoded (and, if needed, decrypted) it; pyca does RSA and ECDSA.
    plain = evp.encode(pkey, private=True, der=True)
    try:
        key = serialization.load_der_private_key(plain, password=None)
    except (ValueError, TypeError) as exc:
        raise InvalidKey(f"unusable private key: {exc}") from exc
    except PycaUnsupportedAlgorithm as exc:
        raise UnsupportedAlgorithm(str(exc)) from exc
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise InvalidKey(f"RSA keys shorter than {MIN_RSA_BITS} bits are refused")
        return RSAPrivateKey(key)
    if isinstance(key, pyca_ec.EllipticCurvePrivateKey):
        return ECPrivateKey(key)
    raise UnsupportedAlgorithm(f"unsupported private key type {type(key).__name__}")


def load_public_key(data: bytes) -> PublicKey:
    """Load a SubjectPublicKeyInfo from PEM or DER."""
    if len(data) > evp.MAX_KEY_INPUT:
        raise DecodeError(f"key input of {len(data)} bytes is larger than {evp.MAX_KEY_INPUT}")
    der = to_der(data, "PUBLIC KEY") if is_pem(data) else data
    info = asn1.load(asn1.keys.PublicKeyInfo, der, "SubjectPublicKeyInfo")
    return public_key_from_info(info)


def public_key_from_info(info: asn1.keys.PublicKeyInfo) -> PublicKey:
    """The key of a parsed SubjectPublicKeyInfo (as found in certificates and CSRs)."""
    algorithm = info["algorithm"]
    oid = algorithm["algorithm"].dotted
    params = algorithm["parameters"]
    is_sm2 = oid == OID_SM2_CURVE or (
        # Parameters may be absent or of the wrong type in hostile input: check, do not assume.
        oid == _OID_EC_PUBLIC_KEY and isinstance(params, asn1.keys.ECDomainParameters)
        and params.name == "named" and params.chosen.dotted == OID_SM2_CURVE
    )
    if is_sm2:
        # Validate the point ourselves so an off-curve point is InvalidKey, not a decode failure.
        return SM2PublicKey.from_point(ec.decode_point(bytes(info["public_key"])))
    try:
        key = serialization.load_der_public_key(info.dump())
    except ValueError as exc:
        raise InvalidKey(f"invalid public key: {exc}") from exc
    except PycaUnsupportedAlgorithm as exc:
        raise UnsupportedAlgorithm(f"unsupported public key: {exc}") from exc
    if isinstance(key, rsa.RSAPublicKey):
        return RSAPublicKey(key)
    if isinstance(key, pyca_ec.EllipticCurvePublicKey):
        return ECPublicKey(key)
    raise UnsupportedAlgorithm(f"unsupported public key type {type(key).__name__}")


def as_private_key(key: PrivateKey | bytes, password: bytes | None = None) -> PrivateKey:
    """Accept a key object or its serialized form."""
    return key if isinstance(key, PrivateKey) else load_private_key(key, password)

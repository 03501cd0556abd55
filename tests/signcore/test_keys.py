"""Key generation, PKCS#8 / SubjectPublicKeyInfo round trips and structure (signcore.keys)."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator

import pytest
from asn1crypto import keys as asn1_keys
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec as pyca_ec
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from signcore import ec
from signcore.algorithms import KeyType, SignatureAlgorithm
from signcore.errors import DecodeError, InvalidKey, InvalidSignature, UnsupportedAlgorithm
from signcore.keys import (
    ECPrivateKey,
    PrivateKey,
    PublicKey,
    RSAPrivateKey,
    SM2PrivateKey,
    SM2PublicKey,
    as_private_key,
    generate_private_key,
    load_private_key,
    load_public_key,
)
from tests.support import gmssl_oracle

OID_SM2 = "1.2.156.10197.1.301"
OID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
PASSWORD = b"correct horse battery staple"
SPECS = ["sm2", "rsa2048", "ecdsa-p256"]
_KEYS: dict[str, PrivateKey] = {}


def _key(spec: str) -> PrivateKey:
    """One key per spec for the whole module (RSA generation is slow)."""
    if spec not in _KEYS:
        _KEYS[spec] = generate_private_key(spec)
    return _KEYS[spec]


@pytest.fixture(params=SPECS)
def key(request: pytest.FixtureRequest) -> Iterator[PrivateKey]:
    yield _key(request.param)


def _assert_same_private(original: PrivateKey, loaded: PrivateKey) -> None:
    assert type(loaded) is type(original)
    assert loaded.public_key() == original.public_key()
    # the loaded key signs, and the original's public key accepts it
    signature = loaded.sign(b"round trip")
    original.public_key().verify(signature, b"round trip")
    if isinstance(loaded, SM2PrivateKey):
        assert gmssl_oracle.verify(loaded.public_key(), signature, b"round trip")


def test_generate_types() -> None:
    assert isinstance(_key("sm2"), SM2PrivateKey)
    assert isinstance(_key("rsa2048"), RSAPrivateKey)
    assert isinstance(_key("ecdsa-p256"), ECPrivateKey)
    assert _key("rsa2048").public_key().key_size == 2048
    assert _key("sm2").public_key().key_type is KeyType.SM2
    assert _key("ecdsa-p256").public_key().key_type is KeyType.EC_P256


@pytest.mark.parametrize("spec", ["rsa", "rsa1024", "ed25519", "p384", "SM2 ", ""])
def test_generate_unknown_spec(spec: str) -> None:
    with pytest.raises(UnsupportedAlgorithm):
        generate_private_key(spec)


def test_private_pem_and_der_round_trip(key: PrivateKey) -> None:
    pem = key.to_pem()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")
    der = key.to_der()
    assert der[0] == 0x30
    _assert_same_private(key, load_private_key(pem))
    _assert_same_private(key, load_private_key(der))
    assert load_private_key(pem).to_der() == der
    assert as_private_key(pem).public_key() == key.public_key()
    assert as_private_key(key) is key


def test_public_pem_and_der_round_trip(key: PrivateKey) -> None:
    public = key.public_key()
    pem, der = public.to_pem(), public.to_der()
    assert pem.startswith(b"-----BEGIN PUBLIC KEY-----\n")
    for data in (pem, der):
        loaded = load_public_key(data)
        assert loaded == public
        assert loaded.to_der() == der
        loaded.verify(key.sign(b"public"), b"public")
        with pytest.raises(InvalidSignature):
            loaded.verify(key.sign(b"public"), b"publik")


def test_encrypted_pkcs8_round_trip(key: PrivateKey) -> None:
    pem = key.to_pem(PASSWORD)
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
    der = key.to_der(PASSWORD)
    assert der != key.to_der()
    _assert_same_private(key, load_private_key(pem, PASSWORD))
    _assert_same_private(key, load_private_key(der, PASSWORD))
    # PBES2 with PBKDF2 and AES-256-CBC, as documented
    info = asn1_keys.EncryptedPrivateKeyInfo.load(der)
    algorithm = info["encryption_algorithm"]
    assert algorithm["algorithm"].native == "pbes2"
    assert algorithm.encryption_cipher == "aes"
    assert algorithm.key_length == 32
    assert algorithm.kdf == "pbkdf2"
    # the plaintext key is not in the file
    assert key.to_der()[-20:] not in der


def test_encrypted_pkcs8_wrong_or_missing_password(key: PrivateKey) -> None:
    for data in (key.to_pem(PASSWORD), key.to_der(PASSWORD)):
        with pytest.raises(DecodeError):
            load_private_key(data, PASSWORD + b"!")
        with pytest.raises(DecodeError):
            load_private_key(data, b"")
        with pytest.raises(DecodeError):
            load_private_key(data)
    with pytest.raises(DecodeError, match="password is required"):
        load_private_key(key.to_pem(PASSWORD))
    with pytest.raises(DecodeError, match="wrong password"):
        load_private_key(key.to_pem(PASSWORD), b"nope")


def test_rsa3072_once() -> None:
    key = generate_private_key("rsa3072")
    assert key.public_key().key_size == 3072
    _assert_same_private(key, load_private_key(key.to_pem()))
    _assert_same_private(key, load_private_key(key.to_der(PASSWORD), PASSWORD))
    assert load_public_key(key.public_key().to_pem()) == key.public_key()
    with pytest.raises(DecodeError):
        load_private_key(key.to_der(PASSWORD), b"x")


def test_sm2_pkcs8_structure() -> None:
    d = secrets.randbelow(ec.N - 2) + 1
    key = SM2PrivateKey.from_scalar(d)
    info = asn1_keys.PrivateKeyInfo.load(key.to_der())
    algorithm = info["private_key_algorithm"]
    assert algorithm["algorithm"].dotted == OID_EC_PUBLIC_KEY
    params = algorithm["parameters"]
    assert params.name == "named"
    assert params.chosen.dotted == OID_SM2
    ec_private = info["private_key"].parsed
    assert ec_private["version"].native == "ecPrivkeyVer1"
    assert ec_private["private_key"].native == d
    # the SPKI of the same key
    spki = asn1_keys.PublicKeyInfo.load(key.public_key().to_der())
    assert spki["algorithm"]["algorithm"].dotted == OID_EC_PUBLIC_KEY
    assert spki["algorithm"]["parameters"].chosen.dotted == OID_SM2
    point = ec.mul_base(d)
    assert bytes(spki["public_key"]) == point.encode()


def _spki(algorithm_der: bytes, point: bytes) -> bytes:
    bit_string = b"\x03" + bytes([len(point) + 1]) + b"\x00" + point
    body = algorithm_der + bit_string
    return b"\x30" + bytes([len(body)]) + body


@pytest.mark.parametrize("with_null", [False, True], ids=["no-params", "null-params"])
def test_spki_with_bare_sm2_oid_accepted(with_null: bool) -> None:
    key = SM2PrivateKey.generate()
    oid = bytes.fromhex("06082a811ccf5501822d")  # 1.2.156.10197.1.301
    inner = oid + (b"\x05\x00" if with_null else b"")
    spki = _spki(b"\x30" + bytes([len(inner)]) + inner, key.public_key().encoded_point)
    loaded = load_public_key(spki)
    assert isinstance(loaded, SM2PublicKey)
    assert loaded == key.public_key()  # re-encoded the way OpenSSL writes it
    loaded.verify(key.sign(b"bare oid"), b"bare oid")
    # the same point off the curve is still an invalid key, not a decode error
    bad_point = bytearray(key.public_key().encoded_point)
    bad_point[-1] ^= 1
    with pytest.raises(InvalidKey):
        load_public_key(_spki(b"\x30" + bytes([len(inner)]) + inner, bytes(bad_point)))


def test_sm2_compressed_point_in_spki_accepted() -> None:
    key = SM2PrivateKey.generate()
    p = key.public_key().point
    compressed = bytes([2 + (p.y & 1)]) + p.x.to_bytes(32, "big")
    algorithm = bytes.fromhex("301306072a8648ce3d020106082a811ccf5501822d")
    assert load_public_key(_spki(algorithm, compressed)) == key.public_key()


def test_rsa_1024_refused() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    for fmt in (serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL):
        data = small.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
        with pytest.raises(InvalidKey, match="2048"):
            load_private_key(data)
    public = small.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(InvalidKey):
        load_public_key(public)


def test_p384_refused() -> None:
    p384 = pyca_ec.generate_private_key(pyca_ec.SECP384R1())
    data = p384.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    with pytest.raises(UnsupportedAlgorithm):
        load_private_key(data)
    public = p384.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(UnsupportedAlgorithm):
        load_public_key(public)


def test_ed25519_refused() -> None:
    ed = ed25519.Ed25519PrivateKey.generate()
    data = ed.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    with pytest.raises(UnsupportedAlgorithm):
        load_private_key(data)
    public = ed.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(UnsupportedAlgorithm):
        load_public_key(public)


def test_sec1_and_pkcs1_inputs_accepted() -> None:
    rsa_key = _key("rsa2048")
    assert isinstance(rsa_key, RSAPrivateKey)
    pkcs1 = rsa_key.pyca.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption())
    assert pkcs1.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    _assert_same_private(rsa_key, load_private_key(pkcs1))
    ec_key = _key("ecdsa-p256")
    assert isinstance(ec_key, ECPrivateKey)
    sec1 = ec_key.pyca.private_bytes(serialization.Encoding.DER,
                                     serialization.PrivateFormat.TraditionalOpenSSL,
                                     serialization.NoEncryption())
    _assert_same_private(ec_key, load_private_key(sec1))


def test_plain_key_loads_even_if_password_given(key: PrivateKey) -> None:
    assert load_private_key(key.to_pem(), PASSWORD).public_key() == key.public_key()


def test_rsa_signature_algorithms() -> None:
    key = _key("rsa2048")
    public = key.public_key()
    message = b"rsa message"
    for alg in (SignatureAlgorithm.RSA_PKCS1_SHA256, SignatureAlgorithm.RSA_PKCS1_SHA384,
                SignatureAlgorithm.RSA_PKCS1_SHA512, SignatureAlgorithm.RSA_PSS_SHA256):
        sig = key.sign(message, alg)
        assert len(sig) == 256
        public.verify(sig, message, alg)
        with pytest.raises(InvalidSignature):
            public.verify(sig, message + b"!", alg)
        digest = hashlib.new(alg.hash_algorithm.value, message).digest()
        public.verify_digest(sig, digest, alg)
        public.verify(key.sign_digest(digest, alg), message, alg)
    # PKCS#1 v1.5 is deterministic, PSS is not; a PKCS#1 signature is not a PSS one
    pkcs1 = key.sign(message)
    assert pkcs1 == key.sign(message, SignatureAlgorithm.RSA_PKCS1_SHA256)
    assert key.sign(message, SignatureAlgorithm.RSA_PSS_SHA256) != key.sign(
        message, SignatureAlgorithm.RSA_PSS_SHA256)
    with pytest.raises(InvalidSignature):
        public.verify(pkcs1, message, SignatureAlgorithm.RSA_PSS_SHA256)
    with pytest.raises(InvalidSignature):
        public.verify_digest(pkcs1, bytes(31))
    for wrong in (SignatureAlgorithm.SM2_SM3, SignatureAlgorithm.ECDSA_SHA256):
        with pytest.raises(UnsupportedAlgorithm):
            key.sign(message, wrong)


def test_ecdsa_signatures() -> None:
    key = _key("ecdsa-p256")
    public = key.public_key()
    sig = key.sign(b"ec message")
    public.verify(sig, b"ec message", SignatureAlgorithm.ECDSA_SHA256)
    with pytest.raises(InvalidSignature):
        public.verify(sig, b"ec messagE")
    digest = hashlib.sha256(b"ec message").digest()
    public.verify_digest(key.sign_digest(digest), digest)
    public.verify_digest(sig, digest)
    with pytest.raises(InvalidSignature):
        public.verify_digest(sig, bytes(32))
    with pytest.raises(UnsupportedAlgorithm):
        key.sign(b"x", SignatureAlgorithm.RSA_PKCS1_SHA256)


def test_cross_type_verification_fails() -> None:
    sm2_sig = _key("sm2").sign(b"m")
    for spec in ("rsa2048", "ecdsa-p256"):
        public: PublicKey = _key(spec).public_key()
        with pytest.raises((InvalidSignature, UnsupportedAlgorithm)):
            public.verify(sm2_sig, b"m")


def test_repr_hides_key_material(key: PrivateKey) -> None:
    text = repr(key)
    assert key.key_type.value in text
    assert "BEGIN" not in text

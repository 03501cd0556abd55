"""Hostile and malformed input: every failure is a typed signcore error, never a crash or "valid".

DESIGN.md section 10: bad input gets a clear error and changes nothing.  For keys that means
DecodeError / InvalidKey / UnsupportedAlgorithm (all ValueErrors); for signatures
InvalidSignature; for ciphertexts DecryptionError.
"""

from __future__ import annotations

import base64
import contextlib
import secrets

import pytest
from asn1crypto import core
from asn1crypto import keys as asn1_keys
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signcore import ec
from signcore.der import decode_ecdsa_signature, encode_ecdsa_signature
from signcore.errors import (
    DecodeError,
    DecryptionError,
    InvalidKey,
    InvalidSignature,
    SigncoreError,
    UnsupportedAlgorithm,
)
from signcore.keys import (
    PrivateKey,
    RSAPrivateKey,
    generate_private_key,
    load_private_key,
    load_public_key,
)
from signcore.sm2 import SM2PrivateKey, SM2PublicKey
from tests.support import gmssl_oracle
from tests.support.gmssl_oracle import CheckedSM2Key

KEY_ERRORS = (DecodeError, InvalidKey, UnsupportedAlgorithm)
OID_SM2 = "1.2.156.10197.1.301"
MESSAGE = b"e-prescription #2024-000123: amoxicillin 500 mg"

_SM2 = CheckedSM2Key(SM2PrivateKey.generate())
_SIG = _SM2.sign(MESSAGE)
_R, _S = decode_ecdsa_signature(_SIG)
_KEYS: dict[str, PrivateKey] = {}


def _key(spec: str) -> PrivateKey:
    if spec not in _KEYS:
        _KEYS[spec] = generate_private_key(spec)
    return _KEYS[spec]


def _samples() -> list[tuple[str, bytes, bool]]:
    """(name, serialized key, is_private) for every format the loaders accept."""
    out: list[tuple[str, bytes, bool]] = []
    for spec in ("sm2", "rsa2048", "ecdsa-p256"):
        key = _key(spec)
        out += [
            (f"{spec}-priv-der", key.to_der(), True),
            (f"{spec}-priv-pem", key.to_pem(), True),
            (f"{spec}-pub-der", key.public_key().to_der(), False),
            (f"{spec}-pub-pem", key.public_key().to_pem(), False),
        ]
    return out


SAMPLES = _samples()
SAMPLE_IDS = [name for name, _, _ in SAMPLES]  # stable across xdist workers (keys are random)


def _load(data: bytes, private: bool) -> object:
    return load_private_key(data) if private else load_public_key(data)


def _der_seq(*parts: bytes) -> bytes:
    body = b"".join(parts)
    length = len(body)
    if length < 0x80:
        return b"\x30" + bytes([length]) + body
    raw = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return b"\x30" + bytes([0x80 | len(raw)]) + raw + body


# --- key files -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "data", "private"), SAMPLES, ids=SAMPLE_IDS)
def test_truncated_keys(name: str, data: bytes, private: bool) -> None:
    _load(data, private)  # the whole input loads
    # (a PEM file without its final newline is still complete, so PEM is cut one byte earlier)
    last = len(data) - (2 if data.startswith(b"-----") else 1)
    cuts = sorted({0, 1, 2, len(data) // 3, len(data) // 2, len(data) - 30, last})
    for cut in cuts:
        with pytest.raises(KEY_ERRORS):
            _load(data[:cut], private)


@pytest.mark.parametrize(("name", "data", "private"), SAMPLES, ids=SAMPLE_IDS)
def test_oversize_keys(name: str, data: bytes, private: bool) -> None:
    big = 64 * 1024 + 1
    for padded in (data + b"\n" * big, b"\n" * big + data, data + secrets.token_bytes(big)):
        with pytest.raises(DecodeError):
            _load(padded, private)


def test_oversize_random_input() -> None:
    blob = secrets.token_bytes(70 * 1024)
    with pytest.raises(DecodeError):
        load_private_key(blob)
    with pytest.raises(DecodeError):
        load_public_key(blob)
    pem = b"-----BEGIN PUBLIC KEY-----\n" + base64.encodebytes(blob) + b"-----END PUBLIC KEY-----\n"
    with pytest.raises(DecodeError):
        load_public_key(pem)


@pytest.mark.parametrize(("name", "data", "private"), SAMPLES, ids=SAMPLE_IDS)
def test_wrong_type(name: str, data: bytes, private: bool) -> None:
    """A public key given to the private loader and vice versa."""
    with pytest.raises(KEY_ERRORS):
        _load(data, not private)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00",
        b"\x30",
        b"\x30\x00",
        b"\x30\x80\x00\x00",
        b"\x05\x00",
        b"not a key at all",
        b"-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n",
        b"-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n",
        b"-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n",
        b"-----BEGIN PRIVATE KEY-----\nMIIBVAIBADANBgkqhkiG9w0BAQEFAA==\n",  # no END line
        b"-----BEGIN PUBLIC KEY-----\nProc-Type: 4,ENCRYPTED\n\nMAA=\n-----END PUBLIC KEY-----\n",
        b"\xff" * 100,
        bytes(range(256)),
    ],
    ids=lambda d: repr(d[:12]),
)
def test_garbage_keys(data: bytes) -> None:
    with pytest.raises(KEY_ERRORS):
        load_private_key(data)
    with pytest.raises(KEY_ERRORS):
        load_public_key(data)
    with pytest.raises(KEY_ERRORS):
        load_private_key(data, b"password")


def test_pkcs1_rsa_public_key_is_not_spki() -> None:
    key = _key("rsa2048")
    assert isinstance(key, RSAPrivateKey)
    pkcs1 = key.public_key().pyca.public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.PKCS1)
    assert pkcs1.startswith(b"-----BEGIN RSA PUBLIC KEY-----")
    with pytest.raises(DecodeError):
        load_public_key(pkcs1)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_as_keys(data: bytes) -> None:
    for private in (True, False):
        with contextlib.suppress(*KEY_ERRORS):
            _load(data, private)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(SAMPLES), st.data())
def test_mutated_keys_never_crash(sample: tuple[str, bytes, bool], data: st.DataObject) -> None:
    """Flip, delete or insert a byte anywhere: a typed error, or a key that still loads."""
    _name, raw, private = sample
    pos = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    action = data.draw(st.sampled_from(["flip", "delete", "insert"]))
    if action == "flip":
        mutated = raw[:pos] + bytes([raw[pos] ^ data.draw(st.integers(1, 255))]) + raw[pos + 1 :]
    elif action == "delete":
        mutated = raw[:pos] + raw[pos + 1 :]
    else:
        mutated = raw[:pos] + bytes([data.draw(st.integers(0, 255))]) + raw[pos:]
    with contextlib.suppress(*KEY_ERRORS):
        _load(mutated, private)


# --- SM2 public points in SPKI -------------------------------------------------------------------

_EC_ALG = bytes.fromhex("301306072a8648ce3d020106082a811ccf5501822d")
_BARE_ALG = bytes.fromhex("300a06082a811ccf5501822d")


def _spki(algorithm: bytes, point: bytes) -> bytes:
    return _der_seq(algorithm, core.BitString.load(
        b"\x03" + bytes([len(point) + 1]) + b"\x00" + point).dump())


@pytest.mark.parametrize("algorithm", [_EC_ALG, _BARE_ALG], ids=["ecPublicKey", "bare-oid"])
@pytest.mark.parametrize(
    "point",
    [
        ec.Point(ec.GX, ec.GY ^ 1).encode(),
        b"\x04" + bytes(64),
        b"\x04" + ec.P.to_bytes(32, "big") + ec.GY.to_bytes(32, "big"),
        b"\x00",
        ec.G.encode()[:-1],
        ec.G.encode() + b"\x00",
        b"\x05" + ec.G.encode()[1:33],
    ],
    ids=["off-curve", "zero", "x=p", "infinity", "short", "long", "bad-prefix"],
)
def test_bad_points_in_spki(algorithm: bytes, point: bytes) -> None:
    spki = _spki(algorithm, point)
    assert load_public_key(_spki(algorithm, ec.G.encode())) == SM2PublicKey.from_point(ec.G)
    with pytest.raises(InvalidKey):
        load_public_key(spki)


@settings(max_examples=60, deadline=None)
@given(x=st.integers(0, 2**256 - 1), y=st.integers(0, 2**256 - 1))
def test_random_points_in_spki(x: int, y: int) -> None:
    point = b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")
    with pytest.raises(InvalidKey):  # a random (x, y) is on the curve with probability ~2^-256
        load_public_key(_spki(_EC_ALG, point))


def test_ec_spki_with_missing_or_odd_parameters() -> None:
    point = ec.G.encode()
    no_params = _der_seq(bytes.fromhex("06072a8648ce3d0201"))
    null_params = _der_seq(bytes.fromhex("06072a8648ce3d02010500"))
    other_curve = _der_seq(bytes.fromhex("06072a8648ce3d0201" "06082a8648ce3d030107"))  # P-256
    for algorithm in (no_params, null_params, other_curve):
        with pytest.raises(KEY_ERRORS):
            load_public_key(_spki(algorithm, point))


def test_unknown_algorithm_oid() -> None:
    algorithm = _der_seq(bytes.fromhex("06032a0304"))  # 1.2.3.4
    with pytest.raises(KEY_ERRORS):
        load_public_key(_spki(algorithm, ec.G.encode()))


# --- SM2 private scalars -------------------------------------------------------------------------


def _sm2_pkcs8(d: int, public: bytes | None = None) -> bytes:
    """PrivateKeyInfo { 0, {id-ecPublicKey, SM2}, ECPrivateKey { 1, d [, publicKey] } } by hand."""
    ec_private = [core.Integer(1).dump(), core.OctetString(d.to_bytes(32, "big")).dump()]
    if public is not None:
        bit_string = core.BitString.load(b"\x03" + bytes([len(public) + 1]) + b"\x00" + public)
        ec_private.append(b"\xa1" + bytes([len(bit_string.dump())]) + bit_string.dump())
    algorithm = _der_seq(core.ObjectIdentifier("1.2.840.10045.2.1").dump(),
                         core.ObjectIdentifier(OID_SM2).dump())
    der = _der_seq(core.Integer(0).dump(), algorithm,
                   core.OctetString(_der_seq(*ec_private)).dump())
    # the hand-built structure is what asn1crypto reads as an SM2 EC private key
    info = asn1_keys.PrivateKeyInfo.load(der)
    assert info["private_key_algorithm"]["parameters"].chosen.dotted == OID_SM2
    return der


def test_hand_built_pkcs8_is_valid_for_good_scalar() -> None:
    d = secrets.randbelow(ec.N - 3) + 2
    key = load_private_key(_sm2_pkcs8(d))
    assert isinstance(key, SM2PrivateKey)
    assert key.public_key().point == ec.mul_base(d)
    assert load_private_key(_sm2_pkcs8(d, ec.mul_base(d).encode())).public_key() == key.public_key()
    assert load_private_key(_sm2_pkcs8(ec.N - 2)).public_key().point == ec.mul_base(ec.N - 2)


@pytest.mark.parametrize("d", [0, ec.N - 1, ec.N, ec.N + 1, 2**256 - 1], ids=["0", "n-1", "n",
                                                                             "n+1", "max"])
def test_sm2_private_scalars_out_of_range(d: int) -> None:
    with pytest.raises(InvalidKey):
        load_private_key(_sm2_pkcs8(d))
    with pytest.raises(InvalidKey):
        SM2PrivateKey.from_scalar(d)


def test_sm2_private_key_with_mismatched_public_point() -> None:
    d = secrets.randbelow(ec.N - 3) + 2
    with pytest.raises(InvalidKey):
        load_private_key(_sm2_pkcs8(d, ec.mul_base(d + 1).encode()))
    with pytest.raises(KEY_ERRORS):
        load_private_key(_sm2_pkcs8(d, ec.Point(ec.GX, ec.GY ^ 1).encode()))


# --- SM2 signatures ------------------------------------------------------------------------------


def _int(value: int) -> bytes:
    return bytes(core.Integer(value).dump())


def _rejected(signature: bytes, message: bytes = MESSAGE) -> None:
    with pytest.raises(InvalidSignature):
        _SM2.public.verify(signature, message)
    assert not _SM2.public.is_valid(signature, message)
    assert not gmssl_oracle.verify(_SM2.public, signature, message)


def test_the_reference_signature_is_valid() -> None:
    _SM2.public.verify(_SIG, MESSAGE)


@pytest.mark.parametrize(
    ("r", "s"),
    [(0, _S), (_R, 0), (0, 0), (ec.N, _S), (_R, ec.N), (_R + ec.N, _S), (_R, _S + ec.N),
     (-_R, _S), (_R, -_S), (ec.N - _R, _S), (_R, ec.N - _S), (2**256 + _R, _S), (_S, _R)],
    ids=["r=0", "s=0", "both0", "r=n", "s=n", "r+n", "s+n", "r<0", "s<0", "n-r", "n-s", "r+2^256",
         "swapped"],
)
def test_out_of_range_r_s(r: int, s: int) -> None:
    _rejected(_der_seq(_int(r), _int(s)))


def test_non_canonical_der() -> None:
    r_bytes, s_bytes = _int(_R), _int(_S)
    body = r_bytes + s_bytes
    padded_r = b"\x02" + bytes([r_bytes[1] + 1]) + b"\x00" + r_bytes[2:]  # extra leading zero
    variants = [
        b"\x30\x81" + bytes([len(body)]) + body,  # long-form length where short form fits
        b"\x30\x80" + body + b"\x00\x00",  # BER indefinite length
        _der_seq(padded_r, s_bytes),
        b"\x31" + _SIG[1:],  # SET instead of SEQUENCE
        _der_seq(s_bytes),  # one integer only
        _der_seq(r_bytes, s_bytes, _int(1)),  # three integers
        _der_seq(r_bytes, b"\x04" + s_bytes[1:]),  # OCTET STRING for s
        _SIG + b"\x00",  # trailing bytes
        _SIG + _SIG,
        b"\x00" + _SIG,
        _SIG[:-1],
    ]
    for variant in variants:
        _rejected(variant)


def test_every_truncation_rejected() -> None:
    for cut in range(len(_SIG)):
        _rejected(_SIG[:cut])


def test_raw_and_oversize_signatures() -> None:
    _rejected(_R.to_bytes(32, "big") + _S.to_bytes(32, "big"))  # r||s, not DER
    _rejected(b"")
    _rejected(bytes(200))
    _rejected(_der_seq(_int(_R), _int(_S)) + bytes(10_000))


def test_verify_with_wrong_signature_types() -> None:
    with pytest.raises(InvalidSignature):
        _SM2.public.verify_digest(_SIG, b"\x00" * 32)
    with pytest.raises(InvalidSignature):
        _SM2.public.verify_digest(_SIG, _SM2.public.digest(MESSAGE) + b"\x00")


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=120))
def test_random_signatures_rejected(signature: bytes) -> None:
    with pytest.raises(InvalidSignature):
        _SM2.public.verify(signature, MESSAGE)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_flipping_any_bit_of_signature_or_message_fails(data: st.DataObject) -> None:
    target = data.draw(st.sampled_from(["signature", "message"]))
    original = _SIG if target == "signature" else MESSAGE
    pos = data.draw(st.integers(0, len(original) - 1))
    bit = data.draw(st.integers(0, 7))
    flipped = bytearray(original)
    flipped[pos] ^= 1 << bit
    if target == "signature":
        _rejected(bytes(flipped))
    else:
        _rejected(_SIG, bytes(flipped))


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_flipping_any_byte_of_signature_fails(data: st.DataObject) -> None:
    pos = data.draw(st.integers(0, len(_SIG) - 1))
    delta = data.draw(st.integers(1, 255))
    flipped = bytearray(_SIG)
    flipped[pos] ^= delta
    with pytest.raises(InvalidSignature):
        _SM2.public.verify(bytes(flipped), MESSAGE)


def test_signature_of_other_signer_id_or_key() -> None:
    _rejected(_SM2.sign(MESSAGE, signer_id=b"someone else"))
    other = CheckedSM2Key(SM2PrivateKey.generate())
    _rejected(other.sign(MESSAGE))


def test_der_helpers_refuse_bad_values() -> None:
    with pytest.raises(ValueError, match="positive"):
        encode_ecdsa_signature(0, 1)
    for bad in (b"", _SIG + b"\x00", _SIG[:-1], b"\x30\x80" + _SIG[2:] + b"\x00\x00"):
        with pytest.raises(DecodeError):
            decode_ecdsa_signature(bad)


# --- SM2 ciphertexts -----------------------------------------------------------------------------

_CT = _SM2.public.encrypt(b"share of the signing key")


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_mutated_ciphertext_never_decrypts(data: st.DataObject) -> None:
    pos = data.draw(st.integers(0, len(_CT) - 1))
    action = data.draw(st.sampled_from(["flip", "delete", "insert", "truncate", "append"]))
    if action == "flip":
        mutated = _CT[:pos] + bytes([_CT[pos] ^ data.draw(st.integers(1, 255))]) + _CT[pos + 1 :]
    elif action == "delete":
        mutated = _CT[:pos] + _CT[pos + 1 :]
    elif action == "insert":
        mutated = _CT[:pos] + bytes([data.draw(st.integers(0, 255))]) + _CT[pos:]
    elif action == "truncate":
        mutated = _CT[:pos]
    else:
        mutated = _CT + data.draw(st.binary(min_size=1, max_size=20))
    with pytest.raises(DecryptionError):
        _SM2.key.decrypt(mutated)


@settings(max_examples=80, deadline=None)
@given(st.binary(max_size=200))
def test_random_ciphertexts(data: bytes) -> None:
    with pytest.raises(DecryptionError):
        _SM2.key.decrypt(data)


def test_every_error_is_a_signcore_error() -> None:
    for exc in (DecodeError, InvalidKey, UnsupportedAlgorithm, InvalidSignature, DecryptionError):
        assert issubclass(exc, SigncoreError)
    for exc in (DecodeError, InvalidKey, UnsupportedAlgorithm):
        assert issubclass(exc, ValueError)

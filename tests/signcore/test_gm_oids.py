"""The GM identifiers registered in asn1crypto: certificates whose SubjectPublicKeyInfo names the
bare SM2 OID ``1.2.156.10197.1.301`` as the algorithm (written by some Chinese toolkits) parse
and yield the same SM2 key as the standard ``id-ecPublicKey`` + SM2-curve encoding."""

from __future__ import annotations

from asn1crypto import x509 as asn1_x509

from signcore import keys, x509
from signcore.sm2 import SM2PrivateKey

_STANDARD_ALG = bytes.fromhex("301306072a8648ce3d020106082a811ccf5501822d")
_BARE_SM2_ALG = bytes.fromhex("300a06082a811ccf5501822d")


def _bare_spki(key: SM2PrivateKey) -> bytes:
    standard = key.public_key().to_der()
    body = standard[2:].replace(_STANDARD_ALG, _BARE_SM2_ALG)
    return bytes([0x30, len(body)]) + body


def test_bare_sm2_spki_loads_as_the_same_key() -> None:
    key = SM2PrivateKey.generate()
    assert keys.load_public_key(_bare_spki(key)) == key.public_key()


def test_certificate_with_bare_sm2_spki_parses_and_verifies() -> None:
    key = SM2PrivateKey.generate()
    cert = x509.issue_certificate(subject="CN=bare", public_key=key.public_key(), signer=key,
                                  days=1)
    tbs = asn1_x509.TbsCertificate.load(cert.tbs.dump())
    tbs["subject_public_key_info"] = asn1_x509.PublicKeyInfo.load(_bare_spki(key))
    rebuilt = asn1_x509.Certificate({
        "tbs_certificate": tbs,
        "signature_algorithm": cert.asn1["signature_algorithm"],
        "signature_value": key.sign(tbs.dump()),
    })
    loaded = x509.load_certificate(rebuilt.dump())
    assert loaded.public_key() == key.public_key()
    loaded.verify_signature(key.public_key())

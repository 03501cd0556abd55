"""Known-answer start-up self-test (the appliance runs it before serving, as GM/T 0028 asks of
cryptographic modules): each algorithm against a published vector, plus a sign/verify round trip.
"""

from __future__ import annotations

from dataclasses import dataclass

from signcore import ec, hashes, sm4
from signcore.der import encode_ecdsa_signature
from signcore.errors import SigncoreError
from signcore.sm2 import SM2PrivateKey, SM2PublicKey


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str = ""


def _sm3() -> None:
    # GB/T 32905-2016 Annex A, example 1.
    expected = "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    if hashes.sm3(b"abc").hex() != expected:
        raise SigncoreError("SM3 known answer mismatch")


def _sm4() -> None:
    # GB/T 32907-2016 Appendix A.1: key = plaintext = 0123456789abcdeffedcba9876543210.
    key = bytes.fromhex("0123456789abcdeffedcba9876543210")
    if sm4.ecb_encrypt_block(key, key).hex() != "681edf34d206965e86b3e94f536e4246":
        raise SigncoreError("SM4 known answer mismatch")


def _sm2_verify_vector() -> None:
    # GB/T 32918.5-2017 Annex A signature example (also in ../shared/vectors/sm2-sm3.json).
    public = SM2PublicKey.from_point(ec.Point(
        0x09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020,
        0xCCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13,
    ))
    r = 0xF5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3
    s = 0xB1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA
    public.verify(encode_ecdsa_signature(r, s), b"message digest")


def _sm2_round_trip() -> None:
    key = SM2PrivateKey.generate()
    sig = key.sign(b"medsign self-test")
    key.public_key().verify(sig, b"medsign self-test")


def run() -> list[Check]:
    """Run every check; never raises for a failing algorithm, reports it instead."""
    results = []
    checks = (
        ("SM3", _sm3),
        ("SM4", _sm4),
        ("SM2 verify (GB/T 32918.5 A)", _sm2_verify_vector),
        ("SM2 sign/verify", _sm2_round_trip),
    )
    for name, fn in checks:
        try:
            fn()
            results.append(Check(name, True))
        except SigncoreError as exc:
            results.append(Check(name, False, str(exc)))
    return results

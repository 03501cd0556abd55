"""The SDK's cryptography against the server's implementations as oracles: SM2 (signcore,
libcrypto), the PIN construction and the share wrap (keysplit.pin), SM4-GCM (RFC 8998, signcore,
both the native and the portable path), the keysplit worked example byte for byte, and the
two-party protocol between the SDK's phone steps and keysplit.sm2's server in-process, with the
server's own strict message decoder reading what the SDK sends."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from keysplit import messages as m
from keysplit import pin as kpin
from keysplit import sm2 as ksm2
from keysplit.errors import WrongPin
from keysplit.phone import PhoneShare
from medsign_sdk import _pin, _protocol, _sm2
from medsign_sdk.errors import ProtocolError
from signcore import ec, sm4
from signcore.der import encode_ecdsa_signature
from signcore.hashes import sm3
from signcore.sm2 import SM2PrivateKey, SM2PublicKey, compute_z
from tests.support import gmssl_oracle

ROOT = Path(__file__).resolve().parents[3]
VECTORS = ROOT / "tests" / "vectors"
PIN = "246810"


def _vectors(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    return data


# --- SM2 -------------------------------------------------------------------------------------


def test_sm3_and_the_standard_sm2_example() -> None:
    data = _vectors("sm2-sm3.json")
    for item in data["sm3"]:
        assert _sm2.sm3(item["message_ascii"].encode()).hex() == item["digest"]
    (vector,) = data["sm2_sign"]
    d = int(vector["private_key"], 16)
    point = _sm2.public_point(d)
    assert point.hex() == "04" + vector["public_key_x"] + vector["public_key_y"]
    e = _sm2.message_digest(point, vector["message_ascii"].encode(),
                            vector["id_ascii"].encode())
    assert e.hex() == vector["e"]
    signature = _sm2.sign_digest(d, e, k=int(vector["k"], 16))
    assert _sm2.decode_signature(signature) == (int(vector["r"], 16), int(vector["s"], 16))
    assert _sm2.verify_digest(point, e, signature)
    SM2PublicKey.from_point(point).verify_digest(signature, e)  # libcrypto agrees


def test_curve_arithmetic_matches_libcrypto() -> None:
    for _ in range(8):
        k = _sm2.random_scalar()
        base = ec.mul_base(k)
        assert _sm2.mul_base(k) == (base.x, base.y)
        other = ec.mul_base(_sm2.random_scalar())
        product = ec.mul(other, k)
        assert _sm2.mul((other.x, other.y), k) == (product.x, product.y)
    assert _sm2.mul_base(_sm2.N) is None
    assert _sm2.mul_base(_sm2.N - 1) == (_sm2.GX, (-_sm2.GY) % _sm2.P)


def test_device_signatures_verify_with_signcore_and_gmssl() -> None:
    for message in (b"", b"GET\n/api/v1/mobile/me\n\n" + bytes(64), "处方".encode() * 50):
        d = _sm2.new_private_key()
        point = _sm2.public_point(d)
        signature = _sm2.sign(d, message)
        public = SM2PublicKey.from_point(point)
        public.verify(signature, message)
        assert gmssl_oracle.verify(public, signature, message)
        assert _sm2.verify(point, message, signature)
        assert not _sm2.verify(point, message + b"x", signature)
    # and the SDK verifies what libcrypto signs
    key = SM2PrivateKey.generate()
    signed = key.sign(b"abc")
    assert _sm2.verify(key.public_key().encoded_point, b"abc", signed)


def test_z_spki_and_der_match_signcore() -> None:
    key = SM2PrivateKey.generate()
    point = key.public_key().encoded_point
    assert _sm2.compute_z(point) == compute_z(point)
    assert _sm2.spki_der(point) == key.public_key().to_der()
    for r, s in ((1, 1), (0x80, 0x7F), (_sm2.N - 1, 2**255), (2**247, 5)):
        der = _sm2.encode_signature(r, s)
        assert der == encode_ecdsa_signature(r, s)
        assert _sm2.decode_signature(der) == (r, s)


@pytest.mark.parametrize("der", [
    "3006020100020101",            # r = 0
    "300702020001020101",          # a needless leading zero
    "30060201ff020101",            # negative
    "3007020101020101ff",          # trailing byte inside the SEQUENCE length mismatch
    "31060201010201 01".replace(" ", ""),  # not a SEQUENCE
])
def test_non_canonical_der_is_refused(der: str) -> None:
    with pytest.raises(ValueError):
        _sm2.decode_signature(bytes.fromhex(der))


def test_point_validation() -> None:
    good = _sm2.public_point(_sm2.new_private_key())
    _sm2.decode_point(good)
    off_curve = good[:-1] + bytes([good[-1] ^ 1])
    too_big = b"\x04" + _sm2.P.to_bytes(32, "big") + good[33:]
    for bad in (off_curve, too_big, b"\x02" + good[1:33], good[:64], b"\x00", b"\x03" + good[1:]):
        with pytest.raises(_sm2.PointError):
            _sm2.decode_point(bad)


# --- PIN and share wrap ----------------------------------------------------------------------


def test_pin_proof_and_share_key_equal_keysplit() -> None:
    salt = os.urandom(16)
    for pin in ("2468", "246810", "口令-çà-" * 4):
        assert _pin.pin_proof(pin, salt) == kpin.pin_proof(pin, salt)
    unwrap = os.urandom(32)
    assert _pin.share_key(unwrap, salt) == kpin._share_key(unwrap, salt)
    point = _sm2.public_point(_sm2.new_private_key())
    assert _pin.key_id(point) == ksm2.key_id(point)
    for bad in ("123", "1" * 65):
        with pytest.raises(ValueError):
            _pin.pin_proof(bad, salt)


@pytest.mark.parametrize("portable", [False, True])
def test_share_wrap_is_compatible_with_keysplit(portable: bool, monkeypatch: pytest.MonkeyPatch
                                                ) -> None:
    monkeypatch.setattr(_pin, "NATIVE_GCM", not portable)
    salt, unwrap, key_id = os.urandom(16), os.urandom(32), os.urandom(16)
    share = _sm2.encode_scalar(_sm2.random_scalar())
    nonce = os.urandom(12)
    ours = _pin.wrap_share(share, unwrap=unwrap, salt=salt, key_id=key_id, nonce=nonce)
    assert ours == nonce + sm4.gcm_encrypt(kpin._share_key(unwrap, salt), nonce, share, key_id)
    assert kpin.unwrap_share(ours, unwrap=unwrap, salt=salt, key_id=key_id) == share
    theirs = kpin.wrap_share(share, unwrap=unwrap, salt=salt, key_id=key_id)
    assert _pin.unwrap_share(theirs, unwrap=unwrap, salt=salt, key_id=key_id) == share
    for tampered in (theirs[:-1] + bytes([theirs[-1] ^ 1]),
                     theirs[:20] + bytes([theirs[20] ^ 1]) + theirs[21:]):
        with pytest.raises(_pin.UnwrapError):
            _pin.unwrap_share(tampered, unwrap=unwrap, salt=salt, key_id=key_id)
    with pytest.raises(_pin.UnwrapError):
        _pin.unwrap_share(theirs, unwrap=os.urandom(32), salt=salt, key_id=key_id)
    with pytest.raises(_pin.UnwrapError):
        _pin.unwrap_share(theirs, unwrap=unwrap, salt=salt, key_id=os.urandom(16))


@pytest.mark.parametrize("portable", [False, True])
def test_sm4_gcm_rfc8998_and_lengths(portable: bool) -> None:
    (vector,) = _vectors("sm4.json")["gcm"]
    key, iv, aad, plaintext = (bytes.fromhex(vector[k])
                               for k in ("key", "iv", "aad", "plaintext"))
    sealed = _pin.gcm_encrypt(key, iv, plaintext, aad, portable=portable)
    assert sealed.hex() == vector["ciphertext"] + vector["tag"]
    assert _pin.gcm_decrypt(key, iv, sealed, aad, portable=portable) == plaintext
    for size in (0, 1, 15, 16, 17, 31, 32, 33, 100):
        data, extra = os.urandom(size), os.urandom(size % 7)
        expected = sm4.gcm_encrypt(key, iv, data, extra)
        assert _pin.gcm_encrypt(key, iv, data, extra, portable=portable) == expected
        assert _pin.gcm_decrypt(key, iv, expected, extra, portable=portable) == data


# --- the worked example of keysplit/README.md section 13 -------------------------------------


def _worked_example() -> tuple[dict[str, dict[str, Any]], dict[str, bytes]]:
    text = (ROOT / "keysplit" / "README.md").read_text(encoding="utf-8")
    sm2_part = text[text.index("### 13.1"):text.index("### 13.4")]
    found: dict[str, dict[str, Any]] = {}
    for kind, body in re.findall(r"\*\*((?:keygen|cosign)\.\w+)\*\* \([^)]*\):\s*```json\n"
                                 r"(.*?)```", sm2_part, re.S):
        found.setdefault(kind, json.loads(body))
    table = sm2_part[sm2_part.index("### 13.3"):]
    block = table[table.index("```text") + 7:table.index("```", table.index("```text") + 7)]
    values = {}
    for line in block.strip().splitlines():
        name, value = re.split(r"\s{2,}", line.strip(), maxsplit=1)
        values[name] = bytes.fromhex(value)
    return found, values


def test_the_worked_example_byte_for_byte() -> None:
    msgs, v = _worked_example()
    salt = v["salt"]
    proof = _pin.pin_proof(PIN, salt)
    assert proof == v["pin_proof = HMAC-SM3(salt, 'medsign/pin/v1' || PIN)"]
    assert _protocol.b64url(proof) == msgs["keygen.commit"]["pin_proof"]
    unwrap = v["unwrap (from keygen.result)"]
    assert _pin.share_key(unwrap, salt) == v[
        "K = HMAC-SM3(unwrap, 'medsign/share-key/v1' || salt)[:16]"]
    result = _protocol.KeygenResult.parse(msgs["keygen.result"])
    public = result.public_key
    assert _pin.key_id(public) == v["key_id = SM3(public_key)[:16]"]
    share = _protocol.StoredShare(public, salt,
                                  v["wrapped = nonce || SM4-GCM(K, d1, aad=key_id) || tag"])
    d1 = share.open(unwrap)
    assert _sm2.encode_scalar(d1) == v["d1"]
    assert _protocol.b64url(_sm2.keygen_commit(d1)) == msgs["keygen.commit"]["p1"]
    offer = _protocol.CosignOffer.parse(msgs["cosign.offer"])
    commit = msgs["cosign.commit"]
    response = _protocol.CosignResponse.parse(msgs["cosign.response"])
    for i, document in enumerate((v["M[0] (UTF-8)"], v["M[1] (UTF-8)"])):
        assert _sm2.compute_z(public) == v["Z (ID 1234567812345678)"]
        e = _sm2.message_digest(public, document)
        assert e == v[f"e[{i}] = SM3(Z || M[{i}])"] == offer.digests[i]
        k1 = _sm2.decode_scalar(v[f"k1[{i}]"])
        assert _protocol.b64url(_sm2.cosign_commit([k1])[0]) == commit["q1"][i]
        r, s2, s3 = (_sm2.decode_scalar(x[i]) for x in (response.r, response.s2, response.s3))
        s = _sm2.cosign_finish(d1, k1, r, s2, s3)
        assert s is not None
        assert _sm2.encode_scalar(s) == v[f"s[{i}] = d1*k1[{i}]*s2[{i}] + d1*s3[{i}] - r[{i}]"]
        signature = _sm2.encode_signature(r, s)
        assert signature == v[f"signature[{i}] (DER)"]
        assert _protocol.b64url(signature) == msgs["cosign.result"]["signatures"][i]


# --- two-party SM2 against keysplit's server, in-process -------------------------------------


def _wire(message: m.Message) -> Any:
    """A server message as the phone receives it: the JSON object."""
    return json.loads(message.encode())


@dataclasses.dataclass
class _Server:
    share: ksm2.ServerShare
    record: kpin.PinRecord

    def unlock(self, proof: bytes | None) -> bytes | None:
        outcome = self.record.verify(proof)
        self.record = outcome.record
        outcome.raise_for_error()
        return outcome.unwrap


def _keygen(pin: str = PIN) -> tuple[_Server, _protocol.StoredShare]:
    state, offer = ksm2.open_keygen()
    keygen = _protocol.Keygen(pin)
    commit = keygen.commit(_protocol.KeygenOffer.parse(_wire(offer)))
    outcome = ksm2.complete_keygen(state, m.decode(commit, m.KeygenCommit))
    share = keygen.finish(_protocol.KeygenResult.parse(_wire(outcome.reply)))
    return _Server(outcome.share, outcome.pin_record), share


def _cosign(server: _Server, shares: list[_protocol.StoredShare], digests: list[bytes], *,
            pin: str | None = PIN, unwrap: bytes | None = None
            ) -> tuple[tuple[bytes, ...], _protocol.Cosigner]:
    signer = ksm2.SM2Server(server.share)
    state, offer = signer.open_cosign(digests, require_pin=unwrap is None)
    cosigner = _protocol.Cosigner(shares, pin=pin, unwrap=unwrap)
    commit = cosigner.commit(_protocol.CosignOffer.parse(_wire(offer)), digests)
    response = signer.respond(state, m.decode(commit, m.CosignCommit), unlock=server.unlock)
    step = cosigner.finish(_protocol.CosignResponse.parse(_wire(response.reply)))
    assert step.kind == "cosign.result"
    accepted = signer.accept(response.state, m.decode(step.wire, m.CosignResult))
    signatures = cosigner.close(_protocol.CosignDone.parse(_wire(accepted.reply)))
    assert signatures == accepted.signatures
    return signatures, cosigner


def test_keygen_and_batch_cosign_with_the_keysplit_server() -> None:
    server, share = _keygen()
    assert share.public_key == server.share.public_key
    # keysplit's own phone reads the share the SDK stored, and opens it like the SDK does
    theirs = PhoneShare.from_json(share.to_json())
    public = SM2PublicKey.from_point(share.public_key)
    documents = [f"处方 RX-{i:04d}".encode() for i in range(5)]
    digests = [public.digest(d) for d in documents]
    signatures, cosigner = _cosign(server, [share], digests)
    for document, signature in zip(documents, signatures, strict=True):
        public.verify(signature, document)
        assert gmssl_oracle.verify(public, signature, document)
    assert cosigner.unwrap_used is not None
    assert theirs.open(cosigner.unwrap_used) == share.open(cosigner.unwrap_used)
    # an auto-sign session: no PIN, the cached unwrap key opens the share
    signatures, _ = _cosign(server, [share], digests[:1], pin=None,
                            unwrap=cosigner.unwrap_used)
    public.verify(signatures[0], documents[0])


def test_the_sdk_writes_messages_exactly_as_keysplit_does() -> None:
    session, nonces = os.urandom(16), [os.urandom(16) for _ in range(3)]
    offer_nonce = os.urandom(16)
    keygen = _protocol.Keygen(PIN, random_scalar=lambda: 12345, salt=bytes(16),
                              new_nonce=lambda: nonces[0])
    wire = keygen.commit(_protocol.KeygenOffer(session, offer_nonce, None))
    expected = m.KeygenCommit(session=session, nonce=nonces[0], reply_to=offer_nonce,
                              p1=ec.mul_base(pow(12345, -1, ec.N)).encode(),
                              pin_proof=kpin.pin_proof(PIN, bytes(16)))
    assert wire == expected.encode()


def test_a_retry_round_then_success() -> None:
    """s = 0 for one digest: the phone commits again for every digest, the server answers the
    retry, and the signatures verify."""
    server, share = _keygen()
    public = SM2PublicKey.from_point(share.public_key)
    digests = [public.digest(b"doc 1"), public.digest(b"doc 2")]
    k1 = [_sm2.random_scalar() for _ in range(4)]
    cosigner = _protocol.Cosigner([share], pin=PIN, random_scalar=lambda: k1.pop(0))
    signer = ksm2.SM2Server(server.share)
    state, offer = signer.open_cosign(digests)
    first_k1 = k1[:2]
    commit = cosigner.commit(_protocol.CosignOffer.parse(_wire(offer)))
    response = signer.respond(state, m.decode(commit, m.CosignCommit), unlock=server.unlock)
    reply = response.reply
    assert reply.unwrap is not None
    d1 = share.open(reply.unwrap)
    s3 = 7
    r = (d1 * first_k1[0] * 1 + d1 * s3) % _sm2.N  # makes s = 0 for digest 0
    forged = dataclasses.replace(reply, r=(_sm2.encode_scalar(r), *reply.r[1:]),
                                 s2=(_sm2.encode_scalar(1), *reply.s2[1:]),
                                 s3=(_sm2.encode_scalar(s3), *reply.s3[1:]))
    step = cosigner.finish(_protocol.CosignResponse.parse(_wire(forged)))
    assert step.kind == "cosign.commit" and cosigner.rounds == 2
    retry = m.decode(step.wire, m.CosignCommit)
    assert retry.reply_to == reply.nonce and retry.pin_proof == commit_proof(share)
    response = signer.respond(response.state, retry, unlock=server.unlock)
    step = cosigner.finish(_protocol.CosignResponse.parse(_wire(response.reply)))
    assert step.kind == "cosign.result"
    accepted = signer.accept(response.state, m.decode(step.wire, m.CosignResult))
    for digest, signature in zip(digests, accepted.signatures, strict=True):
        public.verify_digest(signature, digest)


def commit_proof(share: _protocol.StoredShare) -> bytes:
    return _pin.pin_proof(PIN, share.salt)


def test_wrong_pin_is_counted_by_the_server_and_the_phone_sends_nothing_more() -> None:
    server, share = _keygen()
    digests = [sm3(b"x")]
    signer = ksm2.SM2Server(server.share)
    state, offer = signer.open_cosign(digests)
    commit = _protocol.Cosigner([share], pin="000000").commit(
        _protocol.CosignOffer.parse(_wire(offer)))
    with pytest.raises(WrongPin) as wrong:
        signer.respond(state, m.decode(commit, m.CosignCommit), unlock=server.unlock)
    assert wrong.value.attempts_left == 9


def _session_messages() -> tuple[_Server, _protocol.StoredShare, _protocol.Cosigner,
                                 m.CosignResponse, list[bytes]]:
    server, share = _keygen()
    digests = [sm3(b"a"), sm3(b"b")]
    signer = ksm2.SM2Server(server.share)
    state, offer = signer.open_cosign(digests)
    cosigner = _protocol.Cosigner([share], pin=PIN)
    commit = cosigner.commit(_protocol.CosignOffer.parse(_wire(offer)))
    response = signer.respond(state, m.decode(commit, m.CosignCommit), unlock=server.unlock)
    return server, share, cosigner, response.reply, digests


def _mutations(reply: m.CosignResponse) -> dict[str, Any]:
    body = _wire(reply)
    out: dict[str, Any] = {
        "wrong reply_to": {**body, "reply_to": _protocol.b64url(os.urandom(16))},
        "other session": {**body, "session": _protocol.b64url(os.urandom(16))},
        "padded base64": {**body, "nonce": body["nonce"] + "=="},
        "unknown member": {**body, "extra": "x"},
        "null member": {**body, "unwrap": None},
        "version 1.0": {**body, "v": 1.0},
        "version true": {**body, "v": True},
        "wrong type": {**body, "type": "cosign.done"},
        "short list": {**body, "r": body["r"][:1]},
        "r = 0": {**body, "r": [_protocol.b64url(bytes(32)), body["r"][1]]},
        "r = n": {**body, "r": [_protocol.b64url(_sm2.encode_scalar(_sm2.N)), body["r"][1]]},
        "tampered s3": {**body, "s3": [body["s2"][0], body["s3"][1]]},
        "wrong unwrap": {**body, "unwrap": _protocol.b64url(os.urandom(32))},
        "not an object": [body],
        "other protocol": {**body, "protocol": "other"},
        "no nonce": {k: v for k, v in body.items() if k != "nonce"},
    }
    return out


def test_server_messages_that_do_not_check_out_are_refused() -> None:
    _server, _share, cosigner, reply, _digests = _session_messages()
    for name, message in _mutations(reply).items():
        with pytest.raises(ProtocolError):
            cosigner.finish(_protocol.CosignResponse.parse(message))
            pytest.fail(f"accepted: {name}")
    # a refused message leaves the phone's state as it was: the genuine one still works
    step = cosigner.finish(_protocol.CosignResponse.parse(_wire(reply)))
    assert step.kind == "cosign.result"
    # a replay of the same response is refused now
    with pytest.raises(ProtocolError):
        cosigner.finish(_protocol.CosignResponse.parse(_wire(reply)))


def test_offers_that_do_not_check_out_are_refused() -> None:
    server, share = _keygen()
    signer = ksm2.SM2Server(server.share)
    _state, offer = signer.open_cosign([sm3(b"a")])
    body = _wire(offer)
    other_key = _protocol.b64url(_sm2.public_point(_sm2.new_private_key()))
    with pytest.raises(ProtocolError):
        _protocol.Cosigner([share], pin=PIN).commit(
            _protocol.CosignOffer.parse({**body, "public_key": other_key}))
    with pytest.raises(ProtocolError):  # the documents shown are not the offer's
        _protocol.Cosigner([share], pin=PIN).commit(_protocol.CosignOffer.parse(body),
                                                    [sm3(b"b")])
    with pytest.raises(ProtocolError):
        _protocol.CosignOffer.parse({**body, "digests": []})
    with pytest.raises(ProtocolError):
        _protocol.CosignOffer.parse({**body, "require_pin": "yes"})
    state, keygen_offer = ksm2.open_keygen()
    keygen = _protocol.Keygen(PIN)
    commit = keygen.commit(_protocol.KeygenOffer.parse(_wire(keygen_offer)))
    result = _wire(ksm2.complete_keygen(state, m.decode(commit, m.KeygenCommit)).reply)
    off_curve = bytearray(m.decode(json.dumps(result), m.KeygenResult).public_key)
    off_curve[-1] ^= 1
    with pytest.raises(ProtocolError):
        keygen.finish(_protocol.KeygenResult.parse(
            {**result, "public_key": _protocol.b64url(bytes(off_curve))}))

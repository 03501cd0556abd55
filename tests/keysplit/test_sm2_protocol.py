"""Two-party SM2 (keysplit.sm2 + the reference phone): keygen and co-sign produce ordinary SM2
signatures that signcore and gmssl accept, single and batch, with the rare retries forced, and the
server state survives a trip through the database at every step.

The 2,000 random co-signatures checked by signcore, gmssl and the OpenSSL CLI are in
tests/peers/test_keysplit_sm2_openssl.py.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keysplit._internal import scalars
from keysplit.messages import MAX_ITEMS, CosignCommit, CosignResult
from keysplit.phone import PhoneCosigner, PhoneKeygen
from keysplit.pin import PinRecord, pin_proof
from keysplit.sm2 import (
    CosignState,
    KeygenState,
    ServerShare,
    SM2Server,
    complete_keygen,
    key_id,
    open_keygen,
)
from signcore import ec
from signcore.algorithms import DEFAULT_SM2_ID
from signcore.der import decode_ecdsa_signature
from signcore.sm2 import SM2PrivateKey, SM2PublicKey
from tests.keysplit.conftest import (
    Enrollment,
    Recorder,
    cosign,
    enroll,
    fixed_scalars,
    persisted_keygen,
    wire,
)
from tests.support import gmssl_oracle

N = scalars.N


def public(en: Enrollment) -> SM2PublicKey:
    return en.share.sm2_public_key()


def joint_d(en: Enrollment) -> int:
    """The joint private key d = (d1*d2)^-1 - 1 (only a test knows both shares)."""
    return (scalars.inverse(en.d1 * en.d2 % N) - 1) % N


def check(en: Enrollment, signature: bytes, digest: bytes) -> None:
    """Verify with signcore and with gmssl."""
    public(en).verify_digest(signature, digest)
    assert gmssl_oracle.verify_digest(public(en), signature, digest), signature.hex()


def rs(signature: bytes) -> tuple[int, int]:
    r, s = decode_ecdsa_signature(signature)
    return r, s


# --- keygen ----------------------------------------------------------------------------------


def test_keygen_makes_the_joint_key_of_both_shares(enrollment: Enrollment) -> None:
    en = enrollment
    d = joint_d(en)
    assert 0 < d < N - 1
    assert ec.mul_base(d).encode() == en.share.public_key == en.phone.public_key
    assert SM2PrivateKey.from_scalar(d).public_key().encoded_point == en.share.public_key
    assert en.phone.open(en.unwrap) == en.d1  # the phone share is d1, wrapped under the PIN
    assert en.share.key_id == en.phone.key_id == key_id(en.share.public_key)
    assert en.pins.record.verify(pin_proof(en.pin, en.phone.salt)).unwrap == en.unwrap
    assert repr(en.share) == f"ServerShare(key_id={en.share.key_id.hex()})"  # never d2
    assert ServerShare.from_dict(json.loads(json.dumps(en.share.to_dict()))) == en.share


def test_keygen_messages_and_state() -> None:
    state, offer = open_keygen()
    assert not state.done and offer.session == state.session and offer.nonce == state.nonce
    state = persisted_keygen(state)
    phone = PhoneKeygen("135790", random_scalar=fixed_scalars(12345))
    commit = wire(phone.commit(wire(offer)))
    assert commit.reply_to == offer.nonce and commit.session == offer.session
    assert commit.p1 == ec.mul_base(scalars.inverse(12345)).encode()
    outcome = complete_keygen(state, commit, random_scalar=fixed_scalars(777))
    assert outcome.share.d2 == 777
    assert outcome.state.done and persisted_keygen(outcome.state) == outcome.state
    assert outcome.reply.reply_to == commit.nonce
    assert len({offer.nonce, commit.nonce, outcome.reply.nonce}) == 3
    share = phone.finish(wire(outcome.reply))
    d = (scalars.inverse(12345 * 777 % N) - 1) % N
    assert share.public_key == ec.mul_base(d).encode()
    assert share.open(outcome.reply.unwrap) == 12345


def test_keygen_retries_a_server_share_that_would_make_the_identity() -> None:
    """d1*d2 = 1 would make P the point at infinity: the server draws another d2."""
    d1 = 0x1234567890ABCDEF
    state, offer = open_keygen()
    phone = PhoneKeygen("135790", random_scalar=fixed_scalars(d1))
    commit = wire(phone.commit(offer))
    drawn = Recorder(fixed_scalars(scalars.inverse(d1), 99))
    outcome = complete_keygen(state, commit, random_scalar=drawn)
    assert drawn.drawn == [scalars.inverse(d1), 99] and outcome.share.d2 == 99
    assert phone.finish(outcome.reply).public_key == outcome.share.public_key


# --- co-sign ---------------------------------------------------------------------------------


def test_single_cosign_transcript(enrollment: Enrollment) -> None:
    en = enrollment
    message, signer_id = b"Rx: amoxicillin 500 mg", b"dr.li@hospital"
    digest = public(en).digest(message, signer_id)
    run = cosign(en, [digest])
    (signature,) = run.signatures
    public(en).verify(signature, message, signer_id=signer_id)
    assert gmssl_oracle.verify(public(en), signature, message, signer_id)
    with pytest.raises(Exception, match=r"(?i)signature"):
        public(en).verify(signature, message, signer_id=DEFAULT_SM2_ID)  # the ID matters
    assert [s.phase for s in run.states] == ["await_commit", "await_result", "done"]
    assert run.state.rounds == 1 and run.state.signatures == run.signatures
    assert len(run.commits) == len(run.responses) == 1
    commit, response = run.commits[0], run.responses[0]
    chain = [run.states[0].nonce, commit.nonce, response.nonce, run.result.nonce, run.done.nonce]
    assert len(set(chain)) == 5  # every message has a fresh nonce
    assert commit.reply_to == chain[0] and response.reply_to == chain[1]
    assert run.result.reply_to == chain[2] and run.done.reply_to == chain[3]
    assert {m.session for m in (commit, response, run.result, run.done)} == {run.state.session}
    assert run.state.seen == (commit.nonce, run.result.nonce)
    assert response.unwrap == en.unwrap and commit.pin_proof is not None
    assert len(en.pins.outcomes) == 1 and en.pins.outcomes[0].error is None


def test_batch_cosign_one_round_trip(shared_enrollment: Enrollment) -> None:
    en = shared_enrollment
    messages = [os.urandom(i * 13) for i in range(7)] + [b"same", b"same"]
    digests = [public(en).digest(m) for m in messages]
    run = cosign(en, digests)
    assert len(run.commits) == len(run.responses) == 1  # one round trip for all nine
    assert run.commits[0].item_count == run.responses[0].item_count == 9
    for signature, message in zip(run.signatures, messages, strict=True):
        public(en).verify(signature, message)
        assert gmssl_oracle.verify(public(en), signature, message)
    assert run.signatures[-1] != run.signatures[-2]  # fresh nonces for the same document
    assert len({rs(s)[0] for s in run.signatures}) == 9


def test_batch_of_max_items(shared_enrollment: Enrollment) -> None:
    en = shared_enrollment
    digests = [os.urandom(32) for _ in range(MAX_ITEMS)]
    run = cosign(en, digests, require_pin=False)
    for signature, digest in zip(run.signatures, digests, strict=True):
        public(en).verify_digest(signature, digest)
    for i in range(0, MAX_ITEMS, 50):  # gmssl is slow: a sample of ten
        assert gmssl_oracle.verify_digest(public(en), run.signatures[i], digests[i])
    with pytest.raises(ValueError, match="1 to"):
        SM2Server(en.share).open_cosign([os.urandom(32)] * (MAX_ITEMS + 1))
    with pytest.raises(ValueError, match="1 to"):
        SM2Server(en.share).open_cosign([])
    with pytest.raises(ValueError, match="1 to"):
        SM2Server(en.share).open_cosign([os.urandom(31)])


def test_a_cosignature_is_the_textbook_sm2_signature_with_k_k1k3_plus_k2(
        shared_enrollment: Enrollment) -> None:
    en = shared_enrollment
    k1, k2, k3 = (scalars.random_scalar() for _ in range(3))
    digest = os.urandom(32)
    run = cosign(en, [digest], phone_random=fixed_scalars(k1),
                 server_random=fixed_scalars(k2, k3))
    d, e, k = joint_d(en), int.from_bytes(digest, "big"), (k1 * k3 + k2) % N
    r = (e + ec.mul_base(k).x) % N
    s = scalars.inverse(1 + d) * (k - r * d) % N
    assert rs(run.signatures[0]) == (r, s)
    check(en, run.signatures[0], digest)


def test_pinless_session_uses_the_cached_unwrap_and_no_pin_check(
        enrollment: Enrollment) -> None:
    en = enrollment
    digests = [os.urandom(32) for _ in range(3)]
    run = cosign(en, digests, require_pin=False)
    assert run.commits[0].pin_proof is None and run.responses[0].unwrap is None
    assert en.pins.outcomes == []  # the PIN record was not consulted
    for signature, digest in zip(run.signatures, digests, strict=True):
        check(en, signature, digest)


# --- forced retries --------------------------------------------------------------------------


def first_k(k1: int, k2: int, k3: int) -> tuple[int, int]:
    k = (k1 * k3 + k2) % N
    return k, ec.mul_base(k).x


def test_r_zero_the_server_draws_new_k2_k3(enrollment: Enrollment) -> None:
    en = enrollment
    k1, k2, k3 = 0x1111, 0x2222, 0x3333
    _, x1 = first_k(k1, k2, k3)
    e = -x1 % N  # r = e + x1 = 0 with the first k2, k3
    digest = scalars.encode(e)
    server = Recorder(fixed_scalars(k2, k3, then=scalars.random_scalar))
    run = cosign(en, [digest], phone_random=fixed_scalars(k1), server_random=server)
    assert len(server.drawn) == 4  # the retry happened inside the server's response
    assert len(run.commits) == len(run.responses) == 1 and run.state.rounds == 1
    k2b, k3b = server.drawn[2:]
    r = scalars.decode(run.responses[0].r[0])
    assert r == (e + first_k(k1, k2b, k3b)[1]) % N != 0
    assert rs(run.signatures[0])[0] == r
    check(en, run.signatures[0], digest)


def test_s3_zero_the_server_draws_new_k2_k3(enrollment: Enrollment) -> None:
    """r + k2 = 0 would make s3 = d2*(r + k2) = 0, which the phone must refuse as a scalar:
    the server picks new k2, k3 instead of sending it."""
    en = enrollment
    k1, k2, k3 = 0x4444, 0x5555, 0x6666
    _, x1 = first_k(k1, k2, k3)
    e = (-k2 - x1) % N  # r = e + x1 = -k2 with the first k2, k3
    digest = scalars.encode(e)
    server = Recorder(fixed_scalars(k2, k3, then=scalars.random_scalar))
    run = cosign(en, [digest], phone_random=fixed_scalars(k1), server_random=server)
    assert len(server.drawn) == 4
    assert scalars.decode(run.responses[0].s3[0]) != 0
    check(en, run.signatures[0], digest)


def forced_phone_retry(en: Enrollment, r_of_k: str) -> None:
    """Make the phone's first s equal 0 or n - r; it must send a second commit."""
    k1, k2, k3 = (scalars.random_scalar() for _ in range(3))
    k, x1 = first_k(k1, k2, k3)
    big_d = en.d1 * en.d2 % N  # D = (1 + d)^-1; the phone's s = D*(k + r) - r
    assert big_d != 1
    r = big_d * k * scalars.inverse(1 - big_d) % N if r_of_k == "s=0" else -k % N
    digest = scalars.encode((r - x1) % N)
    phone = Recorder(fixed_scalars(k1, then=scalars.random_scalar))
    run = cosign(en, [digest], phone_random=phone,
                 server_random=fixed_scalars(k2, k3, then=scalars.random_scalar))
    # Round one really produced the degenerate s ...
    first = run.responses[0]
    assert scalars.decode(first.r[0]) == r
    s = (en.d1 * k1 * scalars.decode(first.s2[0]) + en.d1 * scalars.decode(first.s3[0]) - r) % N
    assert s == (0 if r_of_k == "s=0" else N - r)
    # ... so the phone committed again with a fresh k1 and the server answered a second round.
    assert len(run.commits) == len(run.responses) == 2 and len(phone.drawn) == 2
    assert run.commits[1].reply_to == first.nonce and run.commits[1].q1 != run.commits[0].q1
    assert run.state.rounds == 2
    assert [s.phase for s in run.states] == ["await_commit", "await_result", "await_result",
                                             "done"]
    assert rs(run.signatures[0])[0] != r
    check(en, run.signatures[0], digest)


def test_s_zero_the_phone_starts_a_new_round(enrollment: Enrollment) -> None:
    forced_phone_retry(enrollment, "s=0")


def test_s_n_minus_r_the_phone_starts_a_new_round(enrollment: Enrollment) -> None:
    forced_phone_retry(enrollment, "s=n-r")


def test_one_degenerate_item_retries_the_whole_batch(enrollment: Enrollment) -> None:
    en = enrollment
    ks = [tuple(scalars.random_scalar() for _ in range(3)) for _ in range(3)]
    digests = [os.urandom(32), b"", os.urandom(32)]
    k, x1 = first_k(*ks[1])
    digests[1] = scalars.encode((-k - x1) % N)  # s = n - r for the middle one
    run = cosign(en, digests, phone_random=fixed_scalars(*(k[0] for k in ks),
                                                         then=scalars.random_scalar),
                 server_random=fixed_scalars(*(v for k in ks for v in k[1:]),
                                             then=scalars.random_scalar))
    assert len(run.commits) == 2 and run.commits[1].item_count == 3
    for signature, digest in zip(run.signatures, digests, strict=True):
        check(en, signature, digest)


# --- properties ------------------------------------------------------------------------------

ids = st.one_of(st.just(DEFAULT_SM2_ID), st.binary(max_size=64))


@settings(max_examples=25)
@given(message=st.binary(max_size=4096), signer_id=ids, require_pin=st.booleans())
def test_property_keygen_then_cosign_verifies(message: bytes, signer_id: bytes,
                                              require_pin: bool) -> None:
    en = enroll()
    digest = public(en).digest(message, signer_id)
    assert digest == gmssl_oracle.e(public(en), message, signer_id)
    (signature,) = cosign(en, [digest], require_pin=require_pin).signatures
    public(en).verify(signature, message, signer_id=signer_id)
    assert gmssl_oracle.verify(public(en), signature, message, signer_id)
    assert SM2PrivateKey.from_scalar(joint_d(en)).public_key().encoded_point == \
        en.share.public_key


def through_db(data: Mapping[str, Any]) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(json.dumps(data))
    return loaded


@settings(max_examples=15)
@given(messages=st.lists(st.binary(max_size=256), min_size=1, max_size=5),
       signer_id=ids, require_pin=st.booleans())
def test_property_stateless_server_nodes(messages: list[bytes], signer_id: bytes,
                                         require_pin: bool) -> None:
    """Every step runs on a fresh SM2Server built from the stored share, with the state and the
    PIN record loaded from their stored (JSON) form, as on a stateless appliance node."""
    en = enroll()
    db: dict[str, dict[str, Any]] = {"share": through_db(en.share.to_dict()),
                                        "pin": through_db(en.pins.record.to_dict())}

    def node() -> SM2Server:
        return SM2Server(ServerShare.from_dict(through_db(db["share"])))

    def load() -> CosignState:
        return CosignState.from_dict(through_db(db["state"]))

    def unlock(proof: bytes | None) -> bytes | None:
        outcome = PinRecord.from_dict(through_db(db["pin"])).verify(proof)
        db["pin"] = through_db(outcome.record.to_dict())
        outcome.raise_for_error()
        return outcome.unwrap

    digests = [public(en).digest(m, signer_id) for m in messages]
    state, offer = node().open_cosign(digests, require_pin=require_pin)
    db["state"] = through_db(state.to_dict())
    phone = PhoneCosigner(en.phone, pin=en.pin if require_pin else None,
                          unwrap=None if require_pin else en.unwrap)
    commit = wire(phone.commit(wire(offer), digests))
    answered = node().respond(load(), commit, unlock=unlock)
    db["state"] = through_db(answered.state.to_dict())
    assert load() == answered.state
    result = phone.finish(wire(answered.reply))
    assert isinstance(result, CosignResult) and not isinstance(result, CosignCommit)
    accepted = node().accept(load(), wire(result))
    db["state"] = through_db(accepted.state.to_dict())
    assert load().phase == "done" and load().signatures == result.signatures
    assert phone.close(wire(accepted.reply)) == result.signatures
    for signature, message in zip(result.signatures, messages, strict=True):
        public(en).verify(signature, message, signer_id=signer_id)
        assert gmssl_oracle.verify(public(en), signature, message, signer_id)


@settings(max_examples=10)
@given(pin=st.text(min_size=4, max_size=64))
def test_property_keygen_state_round_trip(pin: str) -> None:
    state, offer = open_keygen()
    restored = KeygenState.from_dict(through_db(state.to_dict()))
    assert restored == state
    phone = PhoneKeygen(pin)
    outcome = complete_keygen(restored, phone.commit(offer))
    assert KeygenState.from_dict(through_db(outcome.state.to_dict())) == outcome.state
    share = phone.finish(outcome.reply)
    assert share.public_key == outcome.share.public_key

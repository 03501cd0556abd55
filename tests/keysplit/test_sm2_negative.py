"""Two-party SM2, refused messages: every refusal is a typed error and leaves the server state as
it was (the same state object then finishes the protocol normally); wrong PINs count and lock;
neither share alone can sign."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence

import pytest

from keysplit._internal import scalars
from keysplit.errors import (
    DigestMismatch,
    InvalidPoint,
    InvalidScalar,
    KeysplitError,
    MalformedMessage,
    OutOfOrder,
    PinError,
    ProtocolError,
    ReplayError,
    ShareLocked,
    SignatureRejected,
    WrongPin,
)
from keysplit.messages import (
    CosignCommit,
    CosignDone,
    CosignOffer,
    CosignResponse,
    CosignResult,
    KeygenResult,
    decode,
)
from keysplit.phone import PhoneCosigner, PhoneKeygen
from keysplit.pin import pin_proof
from keysplit.sm2 import (
    MAX_ROUNDS,
    CosignState,
    ServerShare,
    SM2Server,
    complete_keygen,
    open_keygen,
)
from signcore import ec
from signcore.der import decode_ecdsa_signature, encode_ecdsa_signature
from signcore.errors import InvalidKey, InvalidSignature
from signcore.sm2 import SM2PrivateKey
from tests.keysplit.conftest import Enrollment, Recorder, cosign, enroll, wire
from tests.support import gmssl_oracle

N = scalars.N

# Points that are not in the SM2 group, as 65-byte uncompressed encodings (the codec's size).
P256_G = bytes.fromhex(
    "04"
    "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"
    "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5")
SM2_G = ec.mul_base(1).encode()
BAD_POINTS = {
    "off-curve": SM2_G[:-1] + bytes([SM2_G[-1] ^ 1]),
    "p256-generator": P256_G,
    "infinity-04-0-0": b"\x04" + bytes(64),
    "hybrid-prefix": b"\x06" + SM2_G[1:],
    "x-equals-p": b"\x04" + ec.P.to_bytes(32, "big") + SM2_G[33:],
    "all-ff": b"\x04" + b"\xff" * 64,
}


@dataclasses.dataclass
class Live:
    """An open co-sign session with the phone's first commit (not yet answered)."""

    en: Enrollment
    server: SM2Server
    state: CosignState
    offer: CosignOffer
    phone: PhoneCosigner
    phone_k1: Recorder
    commit: CosignCommit
    digests: tuple[bytes, ...]


def open_live(en: Enrollment, items: int = 2, *, require_pin: bool = True,
              pin: str | None = None) -> Live:
    digests = tuple(en.share.sm2_public_key().digest(os.urandom(40)) for _ in range(items))
    server = SM2Server(en.share)
    state, offer = server.open_cosign(digests, require_pin=require_pin)
    k1 = Recorder()
    phone = PhoneCosigner(en.phone, pin=(pin or en.pin) if require_pin else None,
                          unwrap=None if require_pin else en.unwrap, random_scalar=k1)
    commit = wire(phone.commit(wire(offer), digests))
    return Live(en, server, state, offer, phone, k1, commit, digests)


def refused(error: type[Exception], state: CosignState, action: Callable[[], object]) -> None:
    """``action`` raises ``error`` and the state is unchanged (and was not mutated)."""
    before = state.to_dict()
    with pytest.raises(error):
        action()
    assert state.to_dict() == before


def craft_commit(live: Live, reply_to: bytes, k1s: Sequence[int], *, nonce: bytes | None = None,
                 digests: Sequence[bytes] | None = None, q1: Sequence[bytes] | None = None,
                 with_pin: bool = True) -> CosignCommit:
    """A commit made by hand (a misbehaving or replaying phone), through the wire."""
    return commit_by_hand(live.en, live.state.session, tuple(digests or live.digests), reply_to,
                          k1s, nonce=nonce, q1=q1, with_pin=with_pin)


def commit_by_hand(en: Enrollment, session: bytes, digests: tuple[bytes, ...], reply_to: bytes,
                   k1s: Sequence[int], *, nonce: bytes | None = None,
                   q1: Sequence[bytes] | None = None, with_pin: bool = True) -> CosignCommit:
    return wire(CosignCommit(
        session=session, nonce=nonce or os.urandom(16), reply_to=reply_to, digests=digests,
        q1=tuple(q1 or (ec.mul_base(k).encode() for k in k1s)),
        pin_proof=pin_proof(en.pin, en.phone.salt) if with_pin else None))


def craft_result(en: Enrollment, k1s: Sequence[int], response: CosignResponse,
                 nonce: bytes | None = None) -> CosignResult:
    """The phone's result computed by hand from known k1 values (the test knows d1)."""
    signatures = []
    for k1, r_raw, s2_raw, s3_raw in zip(k1s, response.r, response.s2, response.s3, strict=True):
        r, s2, s3 = (scalars.decode(v) for v in (r_raw, s2_raw, s3_raw))
        signatures.append(encode_ecdsa_signature(r, (en.d1 * k1 * s2 + en.d1 * s3 - r) % N))
    return wire(CosignResult(session=response.session, nonce=nonce or os.urandom(16),
                             reply_to=response.nonce, signatures=tuple(signatures)))


def finish(live: Live, state: CosignState) -> tuple[bytes, ...]:
    """Run the phone's own commit through to the end from ``state`` (proves it still works)."""
    answered = live.server.respond(state, live.commit, unlock=live.en.pins.unlock)
    result = live.phone.finish(wire(answered.reply))
    assert isinstance(result, CosignResult)
    accepted = live.server.accept(answered.state, wire(result))
    signatures = live.phone.close(wire(accepted.reply))
    check_all(live.en, signatures, live.digests)
    return signatures


def check_all(en: Enrollment, signatures: Sequence[bytes], digests: Sequence[bytes]) -> None:
    public = en.share.sm2_public_key()
    for signature, digest in zip(signatures, digests, strict=True):
        public.verify_digest(signature, digest)
        assert gmssl_oracle.verify_digest(public, signature, digest)


@pytest.fixture
def live(enrollment: Enrollment) -> Live:
    return open_live(enrollment)


# --- replay and order ------------------------------------------------------------------------


def test_the_same_commit_twice(live: Live) -> None:
    answered = live.server.respond(live.state, live.commit, unlock=live.en.pins.unlock)
    refused(ReplayError, answered.state,
            lambda: live.server.respond(answered.state, live.commit, unlock=live.en.pins.unlock))
    assert len(live.en.pins.outcomes) == 1  # the replay did not reach the PIN check
    result = live.phone.finish(wire(answered.reply))
    assert isinstance(result, CosignResult)
    accepted = live.server.accept(answered.state, result)
    check_all(live.en, accepted.signatures, live.digests)
    refused(OutOfOrder, accepted.state,
            lambda: live.server.respond(accepted.state, live.commit, unlock=live.en.pins.unlock))


def test_an_old_commit_after_a_new_one(live: Live) -> None:
    round1 = live.server.respond(live.state, live.commit, unlock=live.en.pins.unlock)
    k1s = [scalars.random_scalar() for _ in live.digests]
    second = craft_commit(live, round1.reply.nonce, k1s)
    round2 = live.server.respond(round1.state, second, unlock=live.en.pins.unlock)
    assert round2.state.rounds == 2
    for old in (live.commit, second):
        refused(ReplayError, round2.state,
                lambda old=old: live.server.respond(round2.state, old,  # type: ignore[misc]
                                                    unlock=live.en.pins.unlock))
    # a result for the superseded round-one response is refused too
    stale = live.phone.finish(round1.reply)
    assert isinstance(stale, CosignResult)
    refused(ReplayError, round2.state, lambda: live.server.accept(round2.state, stale))
    accepted = live.server.accept(round2.state, craft_result(live.en, k1s, round2.reply))
    check_all(live.en, accepted.signatures, live.digests)


def test_a_commit_that_reuses_a_nonce(live: Live) -> None:
    round1 = live.server.respond(live.state, live.commit, unlock=live.en.pins.unlock)
    k1s = [scalars.random_scalar() for _ in live.digests]
    for nonce in (live.commit.nonce, round1.state.nonce):  # its own old nonce; an echo
        reused = craft_commit(live, round1.reply.nonce, k1s, nonce=nonce)
        refused(ReplayError, round1.state,
                lambda reused=reused: live.server.respond(  # type: ignore[misc]
                    round1.state, reused, unlock=live.en.pins.unlock))
    echo = craft_commit(live, live.state.nonce, k1s, nonce=live.state.nonce)
    refused(ReplayError, live.state,
            lambda: live.server.respond(live.state, echo, unlock=live.en.pins.unlock))
    result = live.phone.finish(round1.reply)
    assert isinstance(result, CosignResult)
    live.server.accept(round1.state, result)


def test_a_result_before_the_commit(live: Live) -> None:
    other = cosign(live.en, live.digests)  # valid signatures on the very same digests
    early = wire(CosignResult(session=live.state.session, nonce=os.urandom(16),
                              reply_to=live.state.nonce, signatures=other.signatures))
    refused(OutOfOrder, live.state, lambda: live.server.accept(live.state, early))
    finish(live, live.state)


def test_a_commit_or_result_after_done(live: Live) -> None:
    answered = live.server.respond(live.state, live.commit, unlock=live.en.pins.unlock)
    result = live.phone.finish(answered.reply)
    assert isinstance(result, CosignResult)
    done = live.server.accept(answered.state, result).state
    assert done.phase == "done"
    fresh = craft_commit(live, done.nonce, [scalars.random_scalar() for _ in live.digests])
    refused(OutOfOrder, done, lambda: live.server.respond(done, fresh,
                                                          unlock=live.en.pins.unlock))
    refused(OutOfOrder, done, lambda: live.server.accept(done, result))
    assert done.signatures == result.signatures


def test_a_finished_session_cannot_be_reused(live: Live) -> None:
    signatures = finish(live, live.state)
    # the same offer, taken up again by a new phone run
    phone = PhoneCosigner(live.en.phone, pin=live.en.pin)
    again = wire(phone.commit(live.offer))
    answered = live.server.respond(live.state, again, unlock=live.en.pins.unlock)
    result = phone.finish(answered.reply)
    assert isinstance(result, CosignResult)
    done = live.server.accept(answered.state, result).state
    refused(OutOfOrder, done, lambda: live.server.respond(done, again,
                                                          unlock=live.en.pins.unlock))
    assert done.signatures != signatures
    # the phone refuses to restart a co-sign or to take a second response
    with pytest.raises(OutOfOrder):
        phone.commit(live.offer)
    with pytest.raises(OutOfOrder):
        phone.finish(answered.reply)
    with pytest.raises(OutOfOrder):
        live.phone.commit(live.offer)


def test_a_finished_keygen_session_cannot_be_reused() -> None:
    state, offer = open_keygen()
    phone = PhoneKeygen("1357")
    commit = wire(phone.commit(offer))
    done = complete_keygen(state, commit).state
    with pytest.raises(OutOfOrder):
        complete_keygen(done, commit)
    with pytest.raises(OutOfOrder):
        complete_keygen(done, wire(PhoneKeygen("1357").commit(offer)))
    with pytest.raises(OutOfOrder):
        phone.commit(offer)


def test_a_foreign_session(live: Live) -> None:
    other = open_live(live.en)
    # the other session's commit, and one rewritten to answer this session's nonce
    for foreign in (other.commit, dataclasses.replace(other.commit, reply_to=live.state.nonce)):
        refused(OutOfOrder, live.state,
                lambda foreign=foreign: live.server.respond(  # type: ignore[misc]
                    live.state, foreign, unlock=live.en.pins.unlock))
    answered = live.server.respond(live.state, live.commit, unlock=live.en.pins.unlock)
    other_answered = other.server.respond(other.state, other.commit, unlock=live.en.pins.unlock)
    # the phone refuses the other session's response
    with pytest.raises(OutOfOrder):
        live.phone.finish(other_answered.reply)
    other_result = other.phone.finish(other_answered.reply)
    assert isinstance(other_result, CosignResult)
    refused(OutOfOrder, answered.state, lambda: live.server.accept(
        answered.state, dataclasses.replace(other_result, reply_to=answered.state.nonce)))
    result = live.phone.finish(answered.reply)
    assert isinstance(result, CosignResult)
    live.server.accept(answered.state, result)


def test_the_phone_refuses_replayed_and_early_messages(live: Live) -> None:
    round1 = live.server.respond(live.state, live.commit, unlock=live.en.pins.unlock)
    with pytest.raises(OutOfOrder):
        live.phone.close(CosignDone(session=live.state.session, nonce=os.urandom(16),
                                    reply_to=live.commit.nonce))
    with pytest.raises(ReplayError):
        live.phone.finish(dataclasses.replace(round1.reply, reply_to=live.offer.nonce))
    with pytest.raises(MalformedMessage):
        live.phone.finish(dataclasses.replace(round1.reply, r=round1.reply.r[:1],
                                              s2=round1.reply.s2[:1], s3=round1.reply.s3[:1]))
    result = live.phone.finish(round1.reply)
    assert isinstance(result, CosignResult)
    with pytest.raises(OutOfOrder):
        live.phone.finish(round1.reply)  # the k1 values are gone: one response per commit
    accepted = live.server.accept(round1.state, result)
    with pytest.raises(ReplayError):
        live.phone.close(dataclasses.replace(accepted.reply, reply_to=round1.reply.nonce))
    assert live.phone.close(accepted.reply) == result.signatures


# --- wrong digests ---------------------------------------------------------------------------


def test_digests_other_than_the_sessions(live: Live) -> None:
    k1s = [scalars.random_scalar() for _ in live.digests]
    for digests in ([os.urandom(32), live.digests[1]], live.digests[::-1],
                    [live.digests[0], live.digests[0]], [live.digests[0]],
                    [*live.digests, os.urandom(32)]):
        changed = craft_commit(live, live.state.nonce, [k1s[0]] * len(digests), digests=digests)
        refused(DigestMismatch, live.state,
                lambda changed=changed: live.server.respond(  # type: ignore[misc]
                    live.state, changed, unlock=live.en.pins.unlock))
    assert live.en.pins.outcomes == []
    finish(live, live.state)


def test_the_phone_refuses_an_offer_for_other_documents(enrollment: Enrollment) -> None:
    shown = [os.urandom(32)]
    _, offer = SM2Server(enrollment.share).open_cosign([os.urandom(32)])
    with pytest.raises(DigestMismatch):
        PhoneCosigner(enrollment.phone, pin=enrollment.pin).commit(offer, shown)
    other = enroll()
    with pytest.raises(MalformedMessage, match="another key"):
        PhoneCosigner(other.phone, pin=other.pin).commit(offer)


# --- invalid points --------------------------------------------------------------------------


@pytest.mark.parametrize("bad", BAD_POINTS.values(), ids=BAD_POINTS.keys())
def test_an_invalid_q1(live: Live, bad: bytes) -> None:
    with pytest.raises(InvalidKey):
        ec.decode_point(bad)
    k1s = [scalars.random_scalar() for _ in live.digests]
    q1 = [ec.mul_base(k1s[0]).encode(), bad]  # one bad point in the batch is enough
    commit = craft_commit(live, live.state.nonce, k1s, q1=q1)
    assert commit.q1[1] == bad  # the codec carries it: checking points is the server's job
    refused(InvalidPoint, live.state,
            lambda: live.server.respond(live.state, commit, unlock=live.en.pins.unlock))
    assert live.en.pins.outcomes == []  # refused before the PIN check
    finish(live, live.state)


def test_the_identity_encoding_is_refused_by_the_codec(live: Live) -> None:
    unchecked = dataclasses.replace(live.commit, q1=(b"\x00", live.commit.q1[1]))
    with pytest.raises(MalformedMessage, match="65 bytes"):
        decode(unchecked.encode(), CosignCommit)


@pytest.mark.parametrize("bad", BAD_POINTS.values(), ids=BAD_POINTS.keys())
def test_an_invalid_p1(bad: bytes) -> None:
    state, offer = open_keygen()
    phone = PhoneKeygen("1357")
    genuine = wire(phone.commit(offer))
    forged = wire(dataclasses.replace(genuine, p1=bad, nonce=os.urandom(16)))
    with pytest.raises(InvalidPoint):
        complete_keygen(state, forged)
    assert not state.done
    outcome = complete_keygen(state, genuine)  # the same state still completes
    assert phone.finish(outcome.reply).public_key == outcome.share.public_key


@pytest.mark.parametrize("bad", BAD_POINTS.values(), ids=BAD_POINTS.keys())
def test_the_phone_refuses_an_invalid_joint_key(bad: bytes) -> None:
    state, offer = open_keygen()
    phone = PhoneKeygen("1357")
    outcome = complete_keygen(state, phone.commit(offer))
    with pytest.raises(InvalidPoint):
        phone.finish(wire(dataclasses.replace(outcome.reply, public_key=bad)))
    assert isinstance(outcome.reply, KeygenResult)
    assert phone.finish(outcome.reply).public_key == outcome.share.public_key


def test_keygen_replay_and_foreign_session() -> None:
    state, offer = open_keygen()
    other_state, other_offer = open_keygen()
    phone = PhoneKeygen("1357")
    commit = phone.commit(offer)
    with pytest.raises(OutOfOrder):
        complete_keygen(other_state, commit)
    with pytest.raises(ReplayError):
        complete_keygen(state, dataclasses.replace(commit, reply_to=os.urandom(16)))
    with pytest.raises(ReplayError):
        complete_keygen(state, dataclasses.replace(commit, nonce=state.nonce))
    outcome = complete_keygen(state, commit)
    with pytest.raises(ReplayError):
        phone.finish(dataclasses.replace(outcome.reply, reply_to=offer.nonce))
    with pytest.raises(OutOfOrder):
        phone.finish(dataclasses.replace(outcome.reply, session=other_offer.session))
    phone.finish(outcome.reply)


# --- scalars out of range, server -> phone ---------------------------------------------------


@pytest.mark.parametrize("field", ["r", "s2", "s3"])
@pytest.mark.parametrize("value", [0, N, N + 1, 2**256 - 1], ids=["0", "n", "n+1", "max"])
def test_scalars_out_of_range_reach_the_phone(live: Live, field: str, value: int) -> None:
    answered = live.server.respond(live.state, live.commit, unlock=live.en.pins.unlock)
    genuine = answered.reply
    items = list(getattr(genuine, field))
    items[-1] = scalars.encode(value)
    forged = wire(dataclasses.replace(genuine, **{field: tuple(items)}))  # type: ignore[arg-type]
    with pytest.raises(InvalidScalar):
        live.phone.finish(forged)
    result = live.phone.finish(genuine)  # the phone's state is unchanged too
    assert isinstance(result, CosignResult)
    check_all(live.en, live.server.accept(answered.state, result).signatures, live.digests)


# --- rounds ----------------------------------------------------------------------------------


def test_no_more_than_max_rounds(live: Live) -> None:
    state, reply = live.state, None
    k1s: list[int] = []
    for round_ in range(1, MAX_ROUNDS + 1):
        k1s = [scalars.random_scalar() for _ in live.digests]
        commit = craft_commit(live, state.nonce, k1s)
        answered = live.server.respond(state, commit, unlock=live.en.pins.unlock)
        state, reply = answered.state, answered.reply
        assert state.rounds == round_ and state.phase == "await_result"
    assert reply is not None
    extra = craft_commit(live, state.nonce, [scalars.random_scalar() for _ in live.digests])
    refused(OutOfOrder, state, lambda: live.server.respond(state, extra,
                                                           unlock=live.en.pins.unlock))
    assert len(live.en.pins.outcomes) == MAX_ROUNDS
    accepted = live.server.accept(state, craft_result(live.en, k1s, reply))
    check_all(live.en, accepted.signatures, live.digests)


# --- wrong results ---------------------------------------------------------------------------


def test_a_result_with_a_wrong_signature(live: Live) -> None:
    answered = live.server.respond(live.state, live.commit, unlock=live.en.pins.unlock)
    genuine = live.phone.finish(answered.reply)
    assert isinstance(genuine, CosignResult)
    first, second = genuine.signatures
    other_key = SM2PrivateKey.generate()
    r, s = decode_ecdsa_signature(first)
    wrong = {
        "swapped": (second, first),
        "other-digest": (first, cosign(live.en, [os.urandom(32)]).signatures[0]),
        "other-key": (first, other_key.sign_digest(live.digests[1])),
        "s-plus-1": (first, encode_ecdsa_signature(r, s % (N - 1) + 1)),
        "n-minus-s": (encode_ecdsa_signature(r, N - s), second),
        "garbage-der": (first, b"\x30\x06\x02\x01\x01\x02\x01\x01"),
        "not-der": (first, b"\x00" * 70),
    }
    for name, signatures in wrong.items():
        forged = wire(dataclasses.replace(genuine, signatures=signatures))
        before = answered.state.to_dict()
        with pytest.raises(SignatureRejected):
            live.server.accept(answered.state, forged)
        assert answered.state.to_dict() == before, name
    refused(MalformedMessage, answered.state, lambda: live.server.accept(
        answered.state, dataclasses.replace(genuine, signatures=genuine.signatures[:1])))
    accepted = live.server.accept(answered.state, genuine)
    assert accepted.signatures == genuine.signatures


# --- PIN -------------------------------------------------------------------------------------


def test_missing_pin_proof(live: Live) -> None:
    k1s = [scalars.random_scalar() for _ in live.digests]
    bare = craft_commit(live, live.state.nonce, k1s, with_pin=False)
    refused(MalformedMessage, live.state,
            lambda: live.server.respond(live.state, bare, unlock=live.en.pins.unlock))
    refused(ValueError, live.state, lambda: live.server.respond(live.state, live.commit))
    assert live.en.pins.outcomes == []
    with pytest.raises(MalformedMessage, match="requires the PIN"):
        PhoneCosigner(live.en.phone).commit(live.offer)
    finish(live, live.state)


def test_wrong_pin_counts_locks_and_refuses_the_right_pin_after() -> None:
    en = enroll(max_failures=3)
    pins = en.pins
    # a wrong PIN, then the right one: the counter goes up and back to zero
    wrong = open_live(en, pin="0000")
    refused(WrongPin, wrong.state, lambda: wrong.server.respond(wrong.state, wrong.commit,
                                                                unlock=pins.unlock))
    assert pins.record.failures == 1 and pins.record.attempts_left == 2
    right = open_live(en)
    finish(right, right.state)
    assert pins.record.failures == 0
    # three wrong PINs lock the share; each refusal leaves the session as it was
    attempts = []
    for _ in range(3):
        wrong = open_live(en, pin="9999")
        with pytest.raises((WrongPin, ShareLocked)) as info:
            wrong.server.respond(wrong.state, wrong.commit, unlock=pins.unlock)
        attempts.append(info.value)
        assert wrong.state.phase == "await_commit" and wrong.state.rounds == 0
    assert [type(a).__name__ for a in attempts] == ["WrongPin", "WrongPin", "ShareLocked"]
    assert [a.attempts_left for a in attempts[:2] if isinstance(a, WrongPin)] == [2, 1]
    assert pins.record.locked and pins.record.failures == 3 and pins.record.attempts_left == 0
    # the right PIN is refused now, and nothing is co-signed
    right = open_live(en)
    refused(ShareLocked, right.state, lambda: right.server.respond(right.state, right.commit,
                                                                   unlock=pins.unlock))
    assert all(o.unwrap is None for o in pins.outcomes[-4:])
    assert pins.record.failures == 3
    # only an identity re-check unlocks it
    pins.record = pins.record.unlock_after_identity_check()
    assert finish(right, right.state)


def test_a_wrong_pin_does_not_open_the_phone_share(enrollment: Enrollment) -> None:
    en = enrollment
    wrong = open_live(en, pin="0000")
    with pytest.raises(WrongPin):
        wrong.server.respond(wrong.state, wrong.commit, unlock=en.pins.unlock)
    # without the server's unwrap key for the right PIN, the share blob stays closed
    wrong_unwrap = en.pins.record.verify(pin_proof("0000", en.phone.salt)).unwrap
    assert wrong_unwrap is None
    for unwrap in (os.urandom(32), bytes(32)):
        with pytest.raises(PinError):
            en.phone.open(unwrap)


# --- neither share alone signs ---------------------------------------------------------------


def test_the_server_share_alone_cannot_sign(enrollment: Enrollment) -> None:
    en = enrollment
    public = en.share.sm2_public_key()
    message = b"prescription 42"
    # d2, or d2 as if d1 were 1, used as the private key: not the joint key's signatures
    for guess in (en.d2, (scalars.inverse(en.d2) - 1) % N):
        signature = SM2PrivateKey.from_scalar(guess).sign(message)
        with pytest.raises(InvalidSignature):
            public.verify(signature, message)
        assert not gmssl_oracle.verify(public, signature, message)
    # control: the joint d (which only this test can compute) does sign
    d = (scalars.inverse(en.d1 * en.d2 % N) - 1) % N
    public.verify(SM2PrivateKey.from_scalar(d).sign(message), message)
    # the server playing the phone: it picks k1 itself but has no d1 to finish s
    digest = public.digest(message)
    server = SM2Server(en.share)
    state, offer = server.open_cosign([digest], require_pin=False)
    k1 = scalars.random_scalar()
    fake_phone = dataclasses.replace(en, d1=1)
    commit = commit_by_hand(en, state.session, offer.digests, state.nonce, [k1], with_pin=False)
    answered = server.respond(state, commit)
    for d1_guess in (1, en.d2, scalars.random_scalar()):
        fake_phone.d1 = d1_guess
        attempt = craft_result(fake_phone, [k1], answered.reply)
        refused(SignatureRejected, answered.state,
                lambda attempt=attempt: server.accept(answered.state,  # type: ignore[misc]
                                                      attempt))
    # ... and the real d1 would have worked (the test is able to pass)
    server.accept(answered.state, craft_result(en, [k1], answered.reply))
    # without the phone's message and PIN proof, the server does not even answer
    live = open_live(en)
    bare = dataclasses.replace(live.commit, pin_proof=None)
    refused(MalformedMessage, live.state,
            lambda: live.server.respond(live.state, bare, unlock=en.pins.unlock))


def test_the_phone_share_alone_cannot_sign(enrollment: Enrollment) -> None:
    en = enrollment
    public = en.share.sm2_public_key()
    message = b"prescription 43"
    d1 = en.phone.open(en.unwrap)  # the phone's share, decrypted with the right unwrap key
    assert d1 == en.d1
    for guess in (d1, (scalars.inverse(d1) - 1) % N):
        signature = SM2PrivateKey.from_scalar(guess).sign(message)
        with pytest.raises(InvalidSignature):
            public.verify(signature, message)
        assert not gmssl_oracle.verify(public, signature, message)
    # a server that does not hold d2 (same public key, another share) cannot complete it
    impostor = SM2Server(ServerShare(scalars.random_scalar(), en.share.public_key))
    digest = public.digest(message)
    state, offer = impostor.open_cosign([digest])
    phone = PhoneCosigner(en.phone, pin=en.pin)
    commit = wire(phone.commit(offer))
    answered = impostor.respond(state, commit, unlock=en.pins.unlock)
    with pytest.raises(SignatureRejected):
        phone.finish(wire(answered.reply))
    # the phone cannot finish without any server response at all
    with pytest.raises(OutOfOrder):
        PhoneCosigner(en.phone, pin=en.pin).finish(answered.reply)


def test_every_refusal_is_a_keysplit_error() -> None:
    protocol: list[type[Exception]] = [DigestMismatch, InvalidPoint, InvalidScalar,
                                       MalformedMessage, OutOfOrder, ReplayError,
                                       SignatureRejected]
    for error in protocol:
        assert issubclass(error, ProtocolError) and issubclass(error, KeysplitError)
    for error in (WrongPin, ShareLocked):
        assert issubclass(error, PinError) and issubclass(error, KeysplitError)

"""Split RSA signing (keysplit.rsa + the reference phone): keygen splits d additively and drops
the key, a session produces ordinary PKCS#1 v1.5 signatures, neither share signs alone, and
every refused message (replayed, reordered, foreign, wrong or out-of-range partials, PIN
problems) is a typed error that leaves the server state as it was.

Every message goes through its JSON wire form (``wire``); server states go through the JSON of
``to_dict`` between steps, as a stateless appliance node would keep them.  The OpenSSL CLI
checks of the same signatures are in ``tests/peers/test_keysplit_rsa_csr.py``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import secrets
from collections.abc import Sequence

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, utils
from cryptography.hazmat.primitives.asymmetric import rsa as pyca_rsa

from keysplit import messages
from keysplit.errors import (
    DigestMismatch,
    InvalidScalar,
    KeysplitError,
    MalformedMessage,
    OutOfOrder,
    PinError,
    ReplayError,
    ShareLocked,
    SignatureRejected,
    WrongPin,
)
from keysplit.messages import RsaCommit, RsaOffer, RsaUnlock, RsaUnlocked
from keysplit.phone import PhoneRsaEnrollment, PhoneRsaSigner, PhoneShare
from keysplit.pin import PinRecord, pin_proof
from keysplit.rsa import (
    PUBLIC_EXPONENT,
    RsaPhoneSecret,
    RsaServer,
    RsaServerShare,
    RsaState,
    emsa_pkcs1_v15,
    split_keygen,
)
from signcore.algorithms import SignatureAlgorithm
from signcore.errors import DecryptionError, InvalidSignature
from signcore.sm2 import SM2PrivateKey
from tests.keysplit.conftest import PinStore, wire

PIN = "135790"
WRONG_PIN = "000000"
RSA_SHA256 = SignatureAlgorithm.RSA_PKCS1_SHA256


# --- the split key and its enrolled phone -------------------------------------------------------


@dataclasses.dataclass
class RsaSigner:
    """One doctor's split RSA key: server share, persisted PIN record, phone share."""

    server_share: RsaServerShare
    secret: RsaPhoneSecret  # what keygen handed to the phone (kept here for the algebra tests)
    pins: PinStore
    phone: PhoneShare
    unwrap: bytes  # the unwrap key released at enrollment (the phone's cached one)

    @property
    def n(self) -> int:
        return self.server_share.modulus

    @property
    def size(self) -> int:
        return self.server_share.size


def enroll_rsa(bits: int = 2048, *, pin: str = PIN, max_failures: int = 10) -> RsaSigner:
    server_share, secret = split_keygen(bits)
    enrollment = PhoneRsaEnrollment(pin)
    record, unwrap = PinRecord.create(enrollment.pin_proof, max_failures)
    phone = enrollment.finish(secret, unwrap)
    phone = PhoneShare.from_json(phone.to_json())  # what the phone stored
    return RsaSigner(server_share, secret, PinStore(record), phone, unwrap)


@pytest.fixture(scope="module")
def signer() -> RsaSigner:
    """One RSA-2048 split key for the module (do not use it for PIN-counter tests)."""
    return enroll_rsa()


@pytest.fixture(scope="module")
def other_signer() -> RsaSigner:
    return enroll_rsa()


def fresh_pins(signer: RsaSigner, max_failures: int = 10) -> RsaSigner:
    """The module's key with a PIN record of its own (for tests that count failures)."""
    enrollment = PhoneRsaEnrollment(PIN)
    record, unwrap = PinRecord.create(enrollment.pin_proof, max_failures)
    phone = enrollment.finish(signer.secret, unwrap)
    return dataclasses.replace(signer, pins=PinStore(record), phone=phone, unwrap=unwrap)


def digests(count: int) -> list[bytes]:
    return [hashlib.sha256(secrets.token_bytes(40)).digest() for _ in range(count)]


def persisted(state: RsaState) -> RsaState:
    restored = RsaState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert restored == state
    return restored


@dataclasses.dataclass
class Session:
    """A session stepped by hand: the server's states and the phone, message by message."""

    server: RsaServer
    phone: PhoneRsaSigner
    signer: RsaSigner
    digests: tuple[bytes, ...]
    opened: RsaState
    offer: RsaOffer
    unlock_msg: RsaUnlock | None = None
    unlocked_state: RsaState | None = None
    unlocked: RsaUnlocked | None = None
    commit: RsaCommit | None = None

    def do_unlock(self) -> RsaState:
        self.unlock_msg = wire(self.phone.unlock(self.offer, self.digests))
        state, unlocked = self.server.unlock(self.opened, self.unlock_msg,
                                             unlock=self.signer.pins.unlock)
        self.unlocked_state, self.unlocked = persisted(state), wire(unlocked)
        return self.unlocked_state

    def do_commit(self) -> RsaCommit:
        assert self.unlocked is not None
        self.commit = wire(self.phone.commit(self.unlocked))
        return self.commit

    def partials(self) -> list[int]:
        assert self.commit is not None
        return [int.from_bytes(p, "big") for p in self.commit.partials]


def open_session(signer: RsaSigner, items: Sequence[bytes], *, pin: str | None = PIN,
                 require_pin: bool = True, unwrap: bytes | None = None) -> Session:
    server = RsaServer(signer.server_share)
    state, offer = server.open(items, require_pin=require_pin)
    phone = PhoneRsaSigner(signer.phone, pin=pin, unwrap=unwrap)
    return Session(server, phone, signer, tuple(items), persisted(state), wire(offer))


def sign(signer: RsaSigner, items: Sequence[bytes], **kwargs: object) -> tuple[bytes, ...]:
    """A whole session through the wire format; the signatures both sides agree on."""
    session = open_session(signer, items, **kwargs)  # type: ignore[arg-type]
    state = session.do_unlock()
    commit = session.do_commit()
    done, result, signatures = session.server.finish(state, commit)
    assert persisted(done).phase == "done"
    closed = session.phone.close(wire(result))
    assert closed == signatures
    assert len(signatures) == len(items)
    return signatures


def assert_pkcs1(signer: RsaSigner, signature: bytes, digest: bytes) -> None:
    """An ordinary PKCS#1 v1.5 SHA-256 signature, by three independent checks."""
    assert len(signature) == signer.size
    signer.server_share.public_key().verify_digest(signature, digest, RSA_SHA256)
    assert pow(int.from_bytes(signature, "big"), PUBLIC_EXPONENT, signer.n) == emsa_pkcs1_v15(
        digest, signer.size)
    pyca_public = pyca_rsa.RSAPublicNumbers(PUBLIC_EXPONENT, signer.n).public_key()
    pyca_public.verify(signature, digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))


def refused_then_fine(session: Session, state: RsaState, bad: RsaCommit,
                      error: type[Exception]) -> None:
    """``bad`` is refused with ``error``; the same state then accepts the phone's real commit."""
    before = state.to_dict()
    with pytest.raises(error):
        session.server.finish(state, wire(bad))
    assert state.to_dict() == before
    assert session.commit is not None
    done, _, signatures = session.server.finish(state, session.commit)
    assert done.phase == "done"
    for signature, digest in zip(signatures, session.digests, strict=True):
        assert_pkcs1(session.signer, signature, digest)


def forged_commit(session: Session, partials: Sequence[bytes]) -> RsaCommit:
    assert session.commit is not None
    return dataclasses.replace(session.commit, partials=tuple(partials))


# --- keygen ------------------------------------------------------------------------------------


def test_keygen_shapes(signer: RsaSigner) -> None:
    share, secret = signer.server_share, signer.secret
    assert share.modulus == secret.modulus and share.modulus.bit_length() == 2048
    assert share.public_exponent == secret.public_exponent == PUBLIC_EXPONENT
    assert 0 < secret.d1 < share.modulus and 0 <= share.d2 < share.modulus
    # Only (n, e, share) in either half: no p, q, d, lambda anywhere.
    assert {f.name for f in dataclasses.fields(share)} == {"modulus", "public_exponent", "d2"}
    assert {f.name for f in dataclasses.fields(secret)} == {"modulus", "public_exponent", "d1"}
    assert set(share.to_dict()) == {"modulus", "public_exponent", "d2"}
    assert RsaServerShare.from_dict(json.loads(json.dumps(share.to_dict()))) == share
    assert hex(share.d2)[2:] not in repr(share) and hex(secret.d1)[2:] not in repr(secret)
    assert share.public_key().key_size == 2048
    # The phone stores the modulus as its "public key" and the share only wrapped.
    assert signer.phone.algorithm == "rsa"
    assert int.from_bytes(signer.phone.public_key, "big") == share.modulus
    assert secret.d1.to_bytes(256, "big") not in signer.phone.to_json().encode()
    assert secret.d1.to_bytes(256, "big").hex() not in signer.phone.to_json()


def test_shares_add_up_to_a_private_exponent(signer: RsaSigner) -> None:
    """(m^(d1+d2))^e = m mod n for random m: d1 + d2 is an inverse of e mod lambda(n)."""
    n = signer.n
    d = signer.secret.d1 + signer.server_share.d2
    for m in (2, n - 2, *(secrets.randbelow(n - 3) + 2 for _ in range(3))):
        assert pow(pow(m, d, n), PUBLIC_EXPONENT, n) == m
        assert pow(m, signer.secret.d1, n) * pow(m, signer.server_share.d2, n) % n == pow(
            m, d, n)
    # Neither share alone is an inverse of e.
    m = secrets.randbelow(n - 3) + 2
    assert pow(pow(m, signer.secret.d1, n), PUBLIC_EXPONENT, n) != m
    assert pow(pow(m, signer.server_share.d2, n), PUBLIC_EXPONENT, n) != m


def test_split_of_the_same_key_is_random(monkeypatch: pytest.MonkeyPatch) -> None:
    """Splitting one key twice gives unrelated shares that each add up to d mod lambda, and
    neither share is d itself (the test knows the key only because it made it)."""
    key = pyca_rsa.generate_private_key(public_exponent=PUBLIC_EXPONENT, key_size=2048)
    numbers = key.private_numbers()
    lam = math.lcm(numbers.p - 1, numbers.q - 1)
    d = numbers.d % lam
    monkeypatch.setattr(pyca_rsa, "generate_private_key", lambda **_: key)
    first_server, first_phone = split_keygen(2048)
    second_server, second_phone = split_keygen(2048)
    assert first_server.modulus == second_server.modulus == numbers.public_numbers.n
    assert first_phone.d1 != second_phone.d1
    assert first_server.d2 != second_server.d2
    for server, phone in ((first_server, first_phone), (second_server, second_phone)):
        assert (phone.d1 + server.d2) % lam == d
        assert phone.d1 % lam != d and server.d2 % lam != d
        assert 0 < phone.d1 < lam and 0 <= server.d2 < lam
        # Not small, not related to d by anything simpler than a random mask.
        assert phone.d1.bit_length() > 1900 and server.d2.bit_length() > 1900


def test_two_keygens_differ(signer: RsaSigner, other_signer: RsaSigner) -> None:
    assert signer.n != other_signer.n
    assert signer.secret.d1 != other_signer.secret.d1


@pytest.mark.parametrize("bits", [512, 1024, 2047, 8192])
def test_keygen_sizes_refused(bits: int) -> None:
    with pytest.raises(ValueError, match="RSA"):
        split_keygen(bits)


# --- signing -----------------------------------------------------------------------------------


def test_sign_one(signer: RsaSigner) -> None:
    digest = hashlib.sha256(b"prescription 1").digest()
    (signature,) = sign(signer, [digest])
    assert_pkcs1(signer, signature, digest)
    # The message form verifies too (SHA-256 of the document, as a relying party computes it).
    signer.server_share.public_key().verify(signature, b"prescription 1", RSA_SHA256)


def test_sign_batch(signer: RsaSigner) -> None:
    items = digests(20)
    signatures = sign(signer, items)
    for signature, digest in zip(signatures, items, strict=True):
        assert_pkcs1(signer, signature, digest)
    # PKCS#1 v1.5 is deterministic: signing the same digest again gives the same bytes.
    assert sign(signer, items[:3]) == signatures[:3]


def test_same_digest_twice_in_a_batch(signer: RsaSigner) -> None:
    digest = hashlib.sha256(b"twice").digest()
    first, second = sign(signer, [digest, digest])
    assert first == second
    assert_pkcs1(signer, first, digest)


def test_sign_3072() -> None:
    big = enroll_rsa(3072)
    assert big.n.bit_length() == 3072 and big.size == 384
    items = digests(3)
    for signature, digest in zip(sign(big, items), items, strict=True):
        assert_pkcs1(big, signature, digest)


def test_signature_equals_standard_pkcs1_encoding(signer: RsaSigner) -> None:
    """sig^e mod n is EMSA-PKCS1-v1_5(digest): exactly what an ordinary RSA key would sign."""
    digest = hashlib.sha256(b"emsa").digest()
    (signature,) = sign(signer, [digest])
    recovered = pow(int.from_bytes(signature, "big"), PUBLIC_EXPONENT, signer.n)
    encoded = recovered.to_bytes(signer.size, "big")
    assert encoded[:2] == b"\x00\x01"
    padding_end = encoded.index(b"\x00", 2)
    assert set(encoded[2:padding_end]) == {0xFF} and padding_end - 2 >= 8
    assert encoded[padding_end + 1:] == bytes.fromhex(
        "3031300d060960864801650304020105000420") + digest


def test_emsa_matches_a_normal_rsa_key() -> None:
    """The encoding equals what pyca (OpenSSL) signs with a whole key: sig^e = EMSA(digest)."""
    key = pyca_rsa.generate_private_key(public_exponent=PUBLIC_EXPONENT, key_size=2048)
    n = key.public_key().public_numbers().n
    for data in (b"", b"a", secrets.token_bytes(1000)):
        signature = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        digest = hashlib.sha256(data).digest()
        assert pow(int.from_bytes(signature, "big"), PUBLIC_EXPONENT, n) == emsa_pkcs1_v15(
            digest, 256)


def test_emsa_bad_input() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        emsa_pkcs1_v15(b"\x00" * 31, 256)
    with pytest.raises(ValueError, match="32 bytes"):
        emsa_pkcs1_v15(b"\x00" * 48, 256)
    with pytest.raises(ValueError, match="too short"):
        emsa_pkcs1_v15(b"\x00" * 32, 61)
    assert emsa_pkcs1_v15(b"\x00" * 32, 62).bit_length() == 62 * 8 - 15  # 00 01 ...


# --- neither share signs alone -----------------------------------------------------------------


def test_phone_share_alone_does_not_sign(signer: RsaSigner) -> None:
    digest = hashlib.sha256(b"phone alone").digest()
    public = signer.server_share.public_key()
    alone = signer.secret.partial(digest).to_bytes(signer.size, "big")
    with pytest.raises(InvalidSignature):
        public.verify_digest(alone, digest, RSA_SHA256)
    # The phone's partial is not even close: sig^e is not the padded digest.
    assert pow(int.from_bytes(alone, "big"), PUBLIC_EXPONENT, signer.n) != emsa_pkcs1_v15(
        digest, signer.size)


def test_server_share_alone_does_not_sign(signer: RsaSigner) -> None:
    """The server's share alone, and the server completing a session with a partial it made up
    (1 * m^d2, or its own m^d2 squared), never gives a signature."""
    digest = hashlib.sha256(b"server alone").digest()
    public = signer.server_share.public_key()
    alone = signer.server_share.partial(digest).to_bytes(signer.size, "big")
    with pytest.raises(InvalidSignature):
        public.verify_digest(alone, digest, RSA_SHA256)
    session = open_session(signer, [digest])
    state = session.do_unlock()
    session.do_commit()
    m_d2 = signer.server_share.partial(digest)
    for made_up in (2, m_d2, m_d2 * m_d2 % signer.n):
        refused = forged_commit(session, [made_up.to_bytes(signer.size, "big")])
        with pytest.raises(SignatureRejected):
            session.server.finish(state, refused)


# --- wrong and out-of-range partials -----------------------------------------------------------


@pytest.fixture
def committed(signer: RsaSigner) -> tuple[Session, RsaState]:
    """A session of three digests at the commit step (the phone's real commit in hand)."""
    session = open_session(signer, digests(3))
    state = session.do_unlock()
    session.do_commit()
    return session, state


def test_random_partial_rejected(committed: tuple[Session, RsaState]) -> None:
    session, state = committed
    size, n = session.signer.size, session.signer.n
    real = list(session.commit.partials)  # type: ignore[union-attr]
    for index in range(3):
        bad = list(real)
        bad[index] = (secrets.randbelow(n - 3) + 2).to_bytes(size, "big")
        refused_then_fine(session, state, forged_commit(session, bad), SignatureRejected)


def test_partial_of_another_digest_rejected(signer: RsaSigner,
                                            committed: tuple[Session, RsaState]) -> None:
    session, state = committed
    other = signer.secret.partial(hashlib.sha256(b"another document").digest())
    bad = [other.to_bytes(signer.size, "big"), *session.commit.partials[1:]]  # type: ignore[union-attr]
    refused_then_fine(session, state, forged_commit(session, bad), SignatureRejected)
    # Partials in the wrong order are partials of other digests too.
    swapped = list(reversed(session.commit.partials))  # type: ignore[union-attr]
    refused_then_fine(session, state, forged_commit(session, swapped), SignatureRejected)


def test_partial_of_another_key_rejected(other_signer: RsaSigner,
                                         committed: tuple[Session, RsaState]) -> None:
    session, state = committed
    n, size = session.signer.n, session.signer.size
    bad = [(other_signer.secret.partial(d) % n).to_bytes(size, "big") for d in session.digests]
    refused_then_fine(session, state, forged_commit(session, bad), SignatureRejected)


def test_partial_count_mismatch(committed: tuple[Session, RsaState]) -> None:
    session, state = committed
    partials = session.commit.partials  # type: ignore[union-attr]
    refused_then_fine(session, state, forged_commit(session, partials[:2]), DigestMismatch)
    refused_then_fine(session, state, forged_commit(session, (*partials, partials[0])),
                      DigestMismatch)


def _out_of_range(n: int, size: int) -> list[bytes]:
    return [
        (0).to_bytes(size, "big"),
        (1).to_bytes(size, "big"),
        (n - 1).to_bytes(size, "big"),
        n.to_bytes(size, "big"),
        (n + 1).to_bytes(size, "big"),
        ((1 << (8 * size)) - 1).to_bytes(size, "big"),
        (2).to_bytes(size - 1, "big"),  # wrong length, in range
        (2).to_bytes(size + 1, "big"),  # leading zero byte
        secrets.token_bytes(8),
    ]


@pytest.mark.parametrize("which", range(9))
def test_out_of_range_partial(committed: tuple[Session, RsaState], which: int) -> None:
    session, state = committed
    raw = _out_of_range(session.signer.n, session.signer.size)[which]
    partials = list(session.commit.partials)  # type: ignore[union-attr]
    partials[1] = raw
    refused_then_fine(session, state, forged_commit(session, partials), InvalidScalar)


def test_empty_or_oversized_partial_is_malformed(committed: tuple[Session, RsaState]) -> None:
    session, _ = committed
    for raw in (b"", b"\x01" * (messages.MAX_RSA_BYTES + 1)):
        bad = forged_commit(session, [raw, *session.commit.partials[1:]])  # type: ignore[union-attr]
        with pytest.raises(MalformedMessage):
            messages.decode(bad.encode(), RsaCommit)


# --- replay, reorder, foreign session ----------------------------------------------------------


def test_unlock_twice(signer: RsaSigner) -> None:
    session = open_session(signer, digests(1))
    state = session.do_unlock()
    assert session.unlock_msg is not None
    with pytest.raises(OutOfOrder):
        session.server.unlock(state, session.unlock_msg, unlock=signer.pins.unlock)
    # A second unlock of the phone (a fresh nonce) is refused as well.
    again = dataclasses.replace(session.unlock_msg, nonce=secrets.token_bytes(16),
                                reply_to=state.nonce)
    with pytest.raises(OutOfOrder):
        session.server.unlock(state, again, unlock=signer.pins.unlock)
    # ... and the phone does not unlock twice either.
    with pytest.raises(OutOfOrder):
        session.phone.unlock(session.offer)


def test_commit_before_unlock(signer: RsaSigner) -> None:
    session = open_session(signer, digests(1))
    opened = session.opened
    # A commit that answers the offer directly, skipping the PIN step.
    early = RsaCommit(session=opened.session, nonce=secrets.token_bytes(16),
                      reply_to=opened.nonce,
                      partials=(signer.secret.partial(session.digests[0]).to_bytes(256, "big"),))
    with pytest.raises(OutOfOrder):
        session.server.finish(opened, wire(early))
    # The phone refuses to commit before it unlocked.
    with pytest.raises(OutOfOrder):
        PhoneRsaSigner(signer.phone, pin=PIN).commit(RsaUnlocked(
            session=opened.session, nonce=secrets.token_bytes(16), reply_to=opened.nonce))
    # The session still goes ahead normally.
    state = session.do_unlock()
    done, _, signatures = session.server.finish(state, session.do_commit())
    assert_pkcs1(signer, signatures[0], session.digests[0])
    assert done.phase == "done"


def test_commit_after_done(signer: RsaSigner) -> None:
    session = open_session(signer, digests(2))
    state = session.do_unlock()
    commit = session.do_commit()
    done, _, _ = session.server.finish(state, commit)
    done = persisted(done)
    with pytest.raises(OutOfOrder):
        session.server.finish(done, commit)
    fresh_nonce = dataclasses.replace(commit, nonce=secrets.token_bytes(16), reply_to=done.nonce)
    with pytest.raises(OutOfOrder):
        session.server.finish(done, fresh_nonce)
    assert session.unlock_msg is not None
    with pytest.raises(OutOfOrder):
        session.server.unlock(done, session.unlock_msg, unlock=signer.pins.unlock)


def test_commit_replay_and_stale_reply(committed: tuple[Session, RsaState]) -> None:
    session, state = committed
    assert session.commit is not None and session.unlock_msg is not None
    # Answers the offer's nonce rather than the server's latest one.
    stale = dataclasses.replace(session.commit, reply_to=session.opened.nonce)
    refused_then_fine(session, state, stale, ReplayError)
    # Reuses the nonce of the phone's own unlock message.
    reused = dataclasses.replace(session.commit, nonce=session.unlock_msg.nonce)
    refused_then_fine(session, state, reused, ReplayError)
    # Uses the server's own nonce as its nonce.
    echoed = dataclasses.replace(session.commit, nonce=state.nonce)
    refused_then_fine(session, state, echoed, ReplayError)


def test_unlock_replay(signer: RsaSigner) -> None:
    session = open_session(signer, digests(1))
    unlock = wire(session.phone.unlock(session.offer))
    stale = dataclasses.replace(unlock, reply_to=secrets.token_bytes(16))
    with pytest.raises(ReplayError):
        session.server.unlock(session.opened, stale, unlock=signer.pins.unlock)
    echoed = dataclasses.replace(unlock, nonce=session.opened.nonce)
    with pytest.raises(ReplayError):
        session.server.unlock(session.opened, echoed, unlock=signer.pins.unlock)
    state, _ = session.server.unlock(session.opened, unlock, unlock=signer.pins.unlock)
    assert state.phase == "await_commit"


def test_foreign_session(signer: RsaSigner) -> None:
    first = open_session(signer, digests(1))
    second = open_session(signer, first.digests)  # same digests, another session
    first_state = first.do_unlock()
    second_state = second.do_unlock()
    first_commit, second_commit = first.do_commit(), second.do_commit()
    with pytest.raises(OutOfOrder):
        first.server.finish(first_state, second_commit)
    # Even rewritten to answer this session's nonce, the session id gives it away.
    rewritten = dataclasses.replace(second_commit, reply_to=first_state.nonce)
    with pytest.raises(OutOfOrder):
        first.server.finish(first_state, rewritten)
    with pytest.raises(OutOfOrder):
        first.server.unlock(first.opened, second.unlock_msg,  # type: ignore[arg-type]
                            unlock=signer.pins.unlock)
    # Both sessions still complete with their own messages.
    for session, state, commit in ((first, first_state, first_commit),
                                   (second, second_state, second_commit)):
        _, result, _ = session.server.finish(state, commit)
        assert session.phone.close(wire(result))


def test_phone_checks_the_server(signer: RsaSigner, other_signer: RsaSigner) -> None:
    items = digests(2)
    session = open_session(signer, items)
    state = session.do_unlock()
    commit = session.do_commit()
    _, result, signatures = session.server.finish(state, commit)
    # A result for another session, a stale reply, a tampered signature, a missing one.
    with pytest.raises(OutOfOrder):
        session.phone.close(dataclasses.replace(result, session=secrets.token_bytes(16)))
    with pytest.raises(ReplayError):
        session.phone.close(dataclasses.replace(result, reply_to=commit.reply_to))
    tampered = bytearray(signatures[1])
    tampered[-1] ^= 1
    with pytest.raises(SignatureRejected):
        session.phone.close(dataclasses.replace(result, signatures=(signatures[0],
                                                                    bytes(tampered))))
    with pytest.raises(MalformedMessage):
        session.phone.close(dataclasses.replace(result, signatures=signatures[:1]))
    assert session.phone.close(result) == signatures
    # An offer for another key, or for documents other than the ones shown.
    _, foreign_offer = RsaServer(other_signer.server_share).open(items)
    with pytest.raises(MalformedMessage):
        PhoneRsaSigner(signer.phone, pin=PIN).unlock(foreign_offer)
    _, offer = RsaServer(signer.server_share).open(items)
    with pytest.raises(DigestMismatch):
        PhoneRsaSigner(signer.phone, pin=PIN).unlock(offer, list(reversed(items)))


def test_open_refuses_bad_digest_lists(signer: RsaSigner) -> None:
    server = RsaServer(signer.server_share)
    for bad in ([], [b"\x00" * 31], [b"\x00" * 32] * (messages.MAX_ITEMS + 1)):
        with pytest.raises(ValueError, match="digests"):
            server.open(bad)
    _, offer = server.open([b"\x00" * 32] * messages.MAX_ITEMS)
    assert len(wire(offer).digests) == messages.MAX_ITEMS


def test_phone_refuses_a_sm2_share(signer: RsaSigner) -> None:
    sm2_like = dataclasses.replace(signer.phone, algorithm="sm2")
    with pytest.raises(ValueError, match="RSA"):
        PhoneRsaSigner(sm2_like, pin=PIN)


# --- PIN through the unlock callback -----------------------------------------------------------


def test_wrong_pin_counts_and_leaves_the_session_open(signer: RsaSigner) -> None:
    own = fresh_pins(signer)
    items = digests(1)
    session = open_session(own, items, pin=WRONG_PIN)
    unlock = wire(session.phone.unlock(session.offer))
    before = session.opened.to_dict()
    with pytest.raises(WrongPin) as caught:
        session.server.unlock(session.opened, unlock, unlock=own.pins.unlock)
    assert caught.value.attempts_left == 9
    assert own.pins.record.failures == 1 and not own.pins.record.locked
    assert session.opened.to_dict() == before
    # The doctor retypes the PIN: a new phone message on the same server state succeeds.
    retry = PhoneRsaSigner(own.phone, pin=PIN)
    state, unlocked = session.server.unlock(session.opened, wire(retry.unlock(session.offer)),
                                            unlock=own.pins.unlock)
    assert own.pins.record.failures == 0
    _, result, signatures = session.server.finish(state, wire(retry.commit(wire(unlocked))))
    assert retry.close(wire(result)) == signatures
    assert_pkcs1(own, signatures[0], items[0])


def test_locked_share_refuses_the_correct_pin(signer: RsaSigner) -> None:
    own = fresh_pins(signer, max_failures=3)
    items = digests(1)
    for attempt in range(3):
        session = open_session(own, items, pin=WRONG_PIN)
        unlock = wire(session.phone.unlock(session.offer))
        with pytest.raises(ShareLocked if attempt == 2 else WrongPin):
            session.server.unlock(session.opened, unlock, unlock=own.pins.unlock)
    assert own.pins.record.locked and own.pins.record.failures == 3
    session = open_session(own, items, pin=PIN)
    with pytest.raises(ShareLocked):
        session.do_unlock()
    assert own.pins.record.locked
    # After the identity check the correct PIN works again.
    own.pins.record = own.pins.record.unlock_after_identity_check()
    (signature,) = sign(own, items)
    assert_pkcs1(own, signature, items[0])


def test_missing_pin_proof(signer: RsaSigner) -> None:
    own = fresh_pins(signer)
    session = open_session(own, digests(1))
    # The reference phone will not even build an unlock without the PIN ...
    with pytest.raises(MalformedMessage):
        PhoneRsaSigner(own.phone).unlock(session.offer)
    # ... and a hand-made one without a proof is refused before the PIN counter is touched.
    bare = RsaUnlock(session=session.opened.session, nonce=secrets.token_bytes(16),
                     reply_to=session.opened.nonce)
    assert b"pin_proof" not in bare.encode()
    with pytest.raises(MalformedMessage):
        session.server.unlock(session.opened, wire(bare), unlock=own.pins.unlock)
    assert own.pins.outcomes == [] and own.pins.record.failures == 0
    # A PIN-protected session with no way to check the PIN is a programming error.
    with pytest.raises(ValueError, match="unlock function"):
        session.server.unlock(session.opened, wire(session.phone.unlock(session.offer)))


def test_pin_less_session_with_cached_unwrap(signer: RsaSigner) -> None:
    items = digests(4)
    signatures = sign(signer, items, pin=None, require_pin=False, unwrap=signer.unwrap)
    for signature, digest in zip(signatures, items, strict=True):
        assert_pkcs1(signer, signature, digest)
    # No PIN proof crossed the wire, no unwrap key came back, the PIN record was not touched.
    session = open_session(signer, items, pin=None, require_pin=False, unwrap=signer.unwrap)
    calls = len(signer.pins.outcomes)
    state = session.do_unlock()
    assert session.unlock_msg is not None and session.unlock_msg.pin_proof is None
    assert session.unlocked is not None and session.unlocked.unwrap is None
    assert len(signer.pins.outcomes) == calls
    session.server.finish(state, session.do_commit())


def test_pin_less_session_needs_the_cached_unwrap(signer: RsaSigner) -> None:
    session = open_session(signer, digests(1), pin=None, require_pin=False)
    session.do_unlock()
    with pytest.raises(KeysplitError, match="unwrap"):
        session.do_commit()
    wrong = open_session(signer, digests(1), pin=None, require_pin=False,
                         unwrap=secrets.token_bytes(32))
    wrong.do_unlock()
    with pytest.raises(PinError):
        wrong.do_commit()


def test_pin_of_the_phone_that_did_not_enroll(signer: RsaSigner) -> None:
    """A PIN proof made with another phone's salt (the right digits) is a wrong PIN."""
    own = fresh_pins(signer)
    stranger = PhoneRsaEnrollment(PIN)  # same PIN, another salt
    session = open_session(own, digests(1))
    unlock = dataclasses.replace(wire(session.phone.unlock(session.offer)),
                                 pin_proof=stranger.pin_proof)
    with pytest.raises(WrongPin):
        session.server.unlock(session.opened, unlock, unlock=own.pins.unlock)
    assert own.pins.record.failures == 1


# --- the phone secret in transit: sealed to the device's SM2 key -------------------------------


def test_seal_unseal_round_trip(signer: RsaSigner) -> None:
    device = SM2PrivateKey.generate()
    sealed = signer.secret.seal(device.public_key())
    assert signer.secret.d1.to_bytes(signer.size, "big") not in sealed
    opened = RsaPhoneSecret.unseal(sealed, device, signer.n)
    assert opened == signer.secret
    assert signer.secret.seal(device.public_key()) != sealed  # randomized encryption
    # The unsealed secret enrolls and signs like the original.
    enrollment = PhoneRsaEnrollment(PIN)
    record, unwrap = PinRecord.create(enrollment.pin_proof)
    enrolled = dataclasses.replace(signer, secret=opened, pins=PinStore(record),
                                   phone=enrollment.finish(opened, unwrap), unwrap=unwrap)
    digest = hashlib.sha256(b"after unseal").digest()
    (signature,) = sign(enrolled, [digest])
    assert_pkcs1(signer, signature, digest)


def test_sealed_secret_tampered_or_wrong_device(signer: RsaSigner) -> None:
    device = SM2PrivateKey.generate()
    sealed = signer.secret.seal(device.public_key())
    for index in (len(sealed) // 3, len(sealed) // 2, len(sealed) - 1):
        tampered = bytearray(sealed)
        tampered[index] ^= 0x01
        with pytest.raises(DecryptionError):
            RsaPhoneSecret.unseal(bytes(tampered), device, signer.n)
    with pytest.raises(DecryptionError):
        RsaPhoneSecret.unseal(sealed[:-1], device, signer.n)
    with pytest.raises(DecryptionError):
        RsaPhoneSecret.unseal(sealed, SM2PrivateKey.generate(), signer.n)


def test_pin_change_keeps_the_rsa_key(signer: RsaSigner) -> None:
    """A PIN change re-wraps the same d1: the modulus stays, signing works with the new PIN,
    and once the new PIN was used the old one is a wrong PIN."""
    own = fresh_pins(signer)
    salt = own.phone.salt
    outcome = own.pins.record.begin_change(pin_proof(PIN, salt), pin_proof("246810", salt))
    own.pins.record = outcome.record
    outcome.raise_for_error()
    assert outcome.unwrap is not None and outcome.new_unwrap is not None
    rewrapped = own.phone.rewrap(outcome.unwrap, outcome.new_unwrap)
    assert rewrapped.public_key == own.phone.public_key and rewrapped.algorithm == "rsa"
    assert rewrapped.open(outcome.new_unwrap) == signer.secret.d1
    changed = dataclasses.replace(own, phone=rewrapped)
    items = digests(2)
    for signature, digest in zip(sign(changed, items, pin="246810"), items, strict=True):
        assert_pkcs1(signer, signature, digest)
    assert own.pins.record.pending_pin_key is None
    with pytest.raises(WrongPin):
        sign(changed, items, pin=PIN)
    assert own.pins.record.failures == 1

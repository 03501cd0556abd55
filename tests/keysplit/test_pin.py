"""Phone-share protection (keysplit.pin): PIN proofs, the server's failure counter and lock, PIN
change without a key change, and the two offline brute-force claims of the threat model:

- the server's record alone (pin_key, verifier) does not give the PIN away: without the phone's
  salt, trying every 4-digit PIN finds nothing;
- the phone's blob alone (blob, salt) does not open for any guessable key: every candidate
  derived from the 4-digit PINs without the server's pin_key fails.

Positive controls show each search *would* find the PIN with the missing half, so the negative
results mean something.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets

import pytest

from keysplit.errors import PinError, ShareLocked, WrongPin
from keysplit.phone import PhoneShare, seal_share
from keysplit.pin import (
    DEFAULT_MAX_FAILURES,
    MAX_PIN_LENGTH,
    MIN_PIN_LENGTH,
    SALT_SIZE,
    PinOutcome,
    PinRecord,
    new_salt,
    pin_proof,
    unwrap_share,
    wrap_share,
)
from keysplit.sm2 import key_id
from signcore.hashes import hmac_sm3, sm3
from signcore.sm2 import SM2PublicKey
from tests.keysplit.conftest import Enrollment, cosign, enroll

PIN, OTHER_PIN, NEW_PIN = "482913", "000000", "736251"
ALL_4_DIGIT = [f"{i:04d}" for i in range(10_000)]

# The construction as documented in keysplit.pin's docstring, computed independently here.
_VERIFY_LABEL = b"medsign/verify/v1"
_UNWRAP_LABEL = b"medsign/unwrap/v1"
_SHARE_KEY_LABEL = b"medsign/share-key/v1"


def documented_verifier(pin_key: bytes, proof: bytes) -> bytes:
    return hmac_sm3(pin_key, _VERIFY_LABEL + proof)


def documented_unwrap(pin_key: bytes, proof: bytes) -> bytes:
    return hmac_sm3(pin_key, _UNWRAP_LABEL + proof)


def new_record(pin: str = PIN, max_failures: int = DEFAULT_MAX_FAILURES
               ) -> tuple[PinRecord, bytes, bytes]:
    """A record, the unwrap key it released, and the phone's salt."""
    salt = new_salt()
    record, unwrap = PinRecord.create(pin_proof(pin, salt), max_failures)
    return record, unwrap, salt


def check(record: PinRecord, pin: str, salt: bytes) -> PinOutcome:
    return record.verify(pin_proof(pin, salt))


# --- pin_proof ---------------------------------------------------------------------------------


def test_pin_proof_depends_on_pin_and_salt() -> None:
    salt = new_salt()
    assert len(salt) == SALT_SIZE and new_salt() != salt
    proof = pin_proof(PIN, salt)
    assert len(proof) == 32
    assert pin_proof(PIN, salt) == proof  # deterministic
    assert pin_proof(OTHER_PIN, salt) != proof
    assert pin_proof(PIN + "0", salt) != proof
    assert pin_proof(PIN, new_salt()) != proof
    flipped = bytes([salt[0] ^ 1]) + salt[1:]
    assert pin_proof(PIN, flipped) != proof
    # The PIN itself does not appear in the proof, and the proof is a keyed hash (HMAC-SM3).
    assert PIN.encode() not in proof
    assert proof == hmac_sm3(salt, b"medsign/pin/v1" + PIN.encode())
    # Non-ASCII PINs (a passphrase) work and are distinct.
    assert pin_proof("密码1234", salt) != pin_proof("密码1235", salt)
    # All 4-digit PINs give distinct proofs under one salt.
    assert len({pin_proof(p, salt) for p in ALL_4_DIGIT[:2000]}) == 2000


def test_pin_proof_argument_checks() -> None:
    salt = new_salt()
    pin_proof("1" * MIN_PIN_LENGTH, salt)
    pin_proof("1" * MAX_PIN_LENGTH, salt)
    for bad_pin in ("", "1" * (MIN_PIN_LENGTH - 1), "1" * (MAX_PIN_LENGTH + 1)):
        with pytest.raises(ValueError, match="PIN"):
            pin_proof(bad_pin, salt)
    for bad_salt in (b"", salt[:-1], salt + b"\x00"):
        with pytest.raises(ValueError, match="salt"):
            pin_proof(PIN, bad_salt)


# --- create and verify -------------------------------------------------------------------------


def test_create_and_verify() -> None:
    record, unwrap, salt = new_record()
    assert record.failures == 0 and not record.locked
    assert record.max_failures == DEFAULT_MAX_FAILURES == 10
    assert record.attempts_left == 10 and record.pending_pin_key is None
    assert len(record.pin_key) == 32 and len(unwrap) == 32
    outcome = check(record, PIN, salt)
    assert outcome.error is None and outcome.unwrap == unwrap and outcome.new_unwrap is None
    outcome.raise_for_error()
    assert outcome.record == record  # nothing to change after a correct first PIN
    wrong = check(record, OTHER_PIN, salt)
    assert isinstance(wrong.error, WrongPin) and wrong.unwrap is None
    assert wrong.error.attempts_left == 9 and wrong.record.failures == 1
    with pytest.raises(WrongPin, match="9 attempts left"):
        wrong.raise_for_error()
    # The record is a value: checking did not change the original.
    assert record.failures == 0


def test_two_records_for_the_same_pin_differ() -> None:
    """pin_key is random per record: the same PIN (even with the same salt) gives unrelated
    verifiers and unwrap keys, and one record's unwrap key says nothing about another's."""
    salt = new_salt()
    first, first_unwrap = PinRecord.create(pin_proof(PIN, salt))
    second, second_unwrap = PinRecord.create(pin_proof(PIN, salt))
    assert first.pin_key != second.pin_key and first.verifier != second.verifier
    assert first_unwrap != second_unwrap
    assert second.verify(pin_proof(PIN, salt)).unwrap == second_unwrap


def test_missing_proof_is_a_failure() -> None:
    record, _, _ = new_record()
    outcome = record.verify(None)
    assert isinstance(outcome.error, WrongPin) and outcome.record.failures == 1


def test_counter_increments_and_resets() -> None:
    record, unwrap, salt = new_record()
    for expected in range(1, 6):
        outcome = check(record, f"{expected:06d}", salt)
        assert isinstance(outcome.error, WrongPin)
        assert outcome.record.failures == expected
        assert outcome.error.attempts_left == 10 - expected == outcome.record.attempts_left
        record = outcome.record
    correct = check(record, PIN, salt)
    assert correct.error is None and correct.unwrap == unwrap
    assert correct.record.failures == 0 and correct.record.attempts_left == 10
    # Counting starts over: nine more wrong PINs still do not lock.
    record = correct.record
    for _ in range(9):
        record = check(record, OTHER_PIN, salt).record
    assert record.failures == 9 and not record.locked
    assert check(record, PIN, salt).error is None


@pytest.mark.parametrize("max_failures", [1, 3, DEFAULT_MAX_FAILURES])
def test_lock_after_max_failures(max_failures: int) -> None:
    if max_failures == DEFAULT_MAX_FAILURES:
        record, unwrap, salt = new_record()  # the default
    else:
        record, unwrap, salt = new_record(max_failures=max_failures)
    for attempt in range(1, max_failures + 1):
        outcome = check(record, OTHER_PIN, salt)
        record = outcome.record
        if attempt < max_failures:
            assert isinstance(outcome.error, WrongPin) and not record.locked
        else:
            assert isinstance(outcome.error, ShareLocked)
    assert record.locked and record.failures == max_failures and record.attempts_left == 0
    # The correct PIN after the lock is refused, and does not reset or move the counter.
    locked = check(record, PIN, salt)
    assert isinstance(locked.error, ShareLocked) and locked.unwrap is None
    assert locked.record == record
    with pytest.raises(ShareLocked, match="identity"):
        locked.raise_for_error()
    assert isinstance(record.verify(None).error, ShareLocked)
    assert isinstance(check(record, OTHER_PIN, salt).error, ShareLocked)
    # Unlocking needs the identity re-verification step; then the PIN works again.
    unlocked = record.unlock_after_identity_check()
    assert not unlocked.locked and unlocked.failures == 0
    assert unlocked.attempts_left == max_failures
    assert unlocked.pin_key == record.pin_key and unlocked.verifier == record.verifier
    again = check(unlocked, PIN, salt)
    assert again.error is None and again.unwrap == unwrap


def test_max_failures_must_be_positive() -> None:
    for bad in (0, -1):
        with pytest.raises(ValueError, match="max_failures"):
            PinRecord.create(pin_proof(PIN, new_salt()), bad)


# --- persistence -------------------------------------------------------------------------------


def _round_trip(record: PinRecord) -> PinRecord:
    restored = PinRecord.from_dict(json.loads(json.dumps(record.to_dict())))
    assert restored == record
    return restored


def test_to_dict_round_trip() -> None:
    record, unwrap, salt = new_record(max_failures=4)
    _round_trip(record)
    failed = _round_trip(check(record, OTHER_PIN, salt).record)
    assert failed.failures == 1 and failed.max_failures == 4
    locked = failed
    for _ in range(3):
        locked = check(locked, OTHER_PIN, salt).record
    assert _round_trip(locked).locked
    changing = record.begin_change(pin_proof(PIN, salt), pin_proof(NEW_PIN, salt)).record
    restored = _round_trip(changing)
    assert restored.pending_pin_key is not None
    # The restored record behaves like the original: old PIN works, new PIN commits.
    assert check(restored, PIN, salt).unwrap == unwrap
    assert check(restored, NEW_PIN, salt).record.pending_pin_key is None


# --- PIN change --------------------------------------------------------------------------------


def test_begin_change_with_wrong_old_pin_counts_a_failure() -> None:
    record, _, salt = new_record()
    outcome = record.begin_change(pin_proof(OTHER_PIN, salt), pin_proof(NEW_PIN, salt))
    assert isinstance(outcome.error, WrongPin)
    assert outcome.unwrap is None and outcome.new_unwrap is None
    assert outcome.record.failures == 1 and outcome.record.pending_pin_key is None
    # A locked record refuses a change even with the right old PIN.
    locked = record
    for _ in range(10):
        locked = check(locked, OTHER_PIN, salt).record
    refused = locked.begin_change(pin_proof(PIN, salt), pin_proof(NEW_PIN, salt))
    assert isinstance(refused.error, ShareLocked) and refused.new_unwrap is None


def test_pin_change_keeps_the_share() -> None:
    """The whole change against a wrapped share: same secret, new unwrap, old PIN valid until
    the new one is used once, then the old PIN is a wrong PIN."""
    salt = new_salt()
    record, unwrap = PinRecord.create(pin_proof(PIN, salt))
    public = bytes.fromhex("04") + os.urandom(64)
    secret = secrets.randbits(256) | 1
    share = seal_share(secret, public, unwrap, salt)
    # A failure before the change is cleared by the correct old PIN.
    record = check(record, OTHER_PIN, salt).record
    assert record.failures == 1
    outcome = record.begin_change(pin_proof(PIN, salt), pin_proof(NEW_PIN, salt))
    assert outcome.error is None and outcome.unwrap == unwrap
    assert outcome.new_unwrap is not None and outcome.new_unwrap != unwrap
    record = outcome.record
    assert record.failures == 0 and record.pending_pin_key is not None
    rewrapped = share.rewrap(unwrap, outcome.new_unwrap)
    assert rewrapped.public_key == share.public_key and rewrapped.salt == share.salt
    assert rewrapped.wrapped != share.wrapped
    assert rewrapped.open(outcome.new_unwrap) == secret == share.open(unwrap)
    with pytest.raises(PinError):
        rewrapped.open(unwrap)
    # Before the new PIN is used: the old PIN still works (a phone that crashed mid-change
    # still has the old blob and opens it), and a wrong PIN still counts.
    old = check(record, PIN, salt)
    assert old.error is None and old.unwrap == unwrap
    assert old.record.pending_pin_key == record.pending_pin_key
    assert share.open(old.unwrap) == secret
    wrong = check(record, OTHER_PIN, salt)
    assert isinstance(wrong.error, WrongPin) and wrong.record.failures == 1
    record = wrong.record
    # The new PIN commits the change (and clears the counter).
    new = check(record, NEW_PIN, salt)
    assert new.error is None and new.unwrap == outcome.new_unwrap
    record = new.record
    assert record.pending_pin_key is None and record.pending_verifier is None
    assert record.failures == 0
    assert rewrapped.open(new.unwrap) == secret
    # From now on the old PIN is a wrong PIN, and the new one keeps working.
    stale = check(record, PIN, salt)
    assert isinstance(stale.error, WrongPin) and stale.record.failures == 1
    assert check(stale.record, NEW_PIN, salt).unwrap == outcome.new_unwrap


def test_pin_change_to_the_same_pin_keeps_the_share_usable() -> None:
    """A "change" to the PIN the signer already has must not strand the re-wrapped share: the
    unwrap key the PIN releases afterwards opens the blob the phone stored."""
    salt = new_salt()
    record, unwrap = PinRecord.create(pin_proof(PIN, salt))
    share = seal_share(12345, b"\x04" + os.urandom(64), unwrap, salt)
    # An earlier change to another PIN that the phone never finished is dropped as well.
    record = record.begin_change(pin_proof(PIN, salt), pin_proof(NEW_PIN, salt)).record
    outcome = record.begin_change(pin_proof(PIN, salt), pin_proof(PIN, salt))
    assert outcome.error is None and outcome.unwrap == unwrap
    assert outcome.new_unwrap is not None
    assert outcome.record.pending_pin_key is None
    assert isinstance(check(outcome.record, NEW_PIN, salt).error, WrongPin)
    rewrapped = share.rewrap(outcome.unwrap, outcome.new_unwrap)
    after = check(outcome.record, PIN, salt)
    assert after.error is None and after.unwrap is not None
    assert rewrapped.open(after.unwrap) == 12345
    # ... and still after the next check as well.
    assert rewrapped.open(check(after.record, PIN, salt).unwrap or b"") == 12345


def test_second_change_replaces_a_pending_one() -> None:
    salt = new_salt()
    record, unwrap = PinRecord.create(pin_proof(PIN, salt))
    first = record.begin_change(pin_proof(PIN, salt), pin_proof(NEW_PIN, salt))
    second = first.record.begin_change(pin_proof(PIN, salt), pin_proof("999999", salt))
    assert second.error is None and second.unwrap == unwrap
    record = second.record
    assert isinstance(check(record, NEW_PIN, salt).error, WrongPin)  # abandoned new PIN
    committed = check(record, "999999", salt)
    assert committed.error is None and committed.unwrap == second.new_unwrap


def _change_pin(enrollment: Enrollment, new_pin: str) -> tuple[PhoneShare, bytes]:
    """The phone's side of a PIN change against the enrollment's PIN store."""
    salt = enrollment.phone.salt
    outcome = enrollment.pins.record.begin_change(pin_proof(enrollment.pin, salt),
                                                  pin_proof(new_pin, salt))
    enrollment.pins.record = outcome.record
    outcome.raise_for_error()
    assert outcome.unwrap is not None and outcome.new_unwrap is not None
    return enrollment.phone.rewrap(outcome.unwrap, outcome.new_unwrap), outcome.new_unwrap


def test_pin_change_keeps_the_sm2_key_and_cosigning_works() -> None:
    enrollment = enroll(PIN)
    public = SM2PublicKey.from_point(enrollment.phone.public_key)
    e = public.digest(b"before the change")
    (signature,) = cosign(enrollment, [e]).signatures
    public.verify_digest(signature, e)

    new_share, new_unwrap = _change_pin(enrollment, NEW_PIN)
    assert new_share.public_key == enrollment.phone.public_key == enrollment.share.public_key
    assert new_share.key_id == enrollment.share.key_id
    assert new_share.open(new_unwrap) == enrollment.d1  # the SAME share, re-wrapped
    stored = PhoneShare.from_json(new_share.to_json())

    # Until the new PIN is used, the old PIN and the old blob still co-sign (a crash mid-change).
    e_old = public.digest(b"old PIN, old blob")
    public.verify_digest(cosign(enrollment, [e_old]).signatures[0], e_old)
    assert enrollment.pins.record.pending_pin_key is not None

    # The new PIN with the new blob co-signs and completes the change.
    changed = dataclasses.replace(enrollment, phone=stored, pin=NEW_PIN)
    items = [public.digest(f"after the change {i}".encode()) for i in range(3)]
    for signature, digest in zip(cosign(changed, items).signatures, items, strict=True):
        public.verify_digest(signature, digest)
    assert enrollment.pins.record.pending_pin_key is None
    assert enrollment.pins.record.failures == 0

    # Now the old PIN is a wrong PIN: the server counts it and co-signing fails.
    with pytest.raises(WrongPin):
        cosign(dataclasses.replace(changed, pin=PIN), [e])
    assert enrollment.pins.record.failures == 1
    # The new PIN keeps working (and resets the counter).
    public.verify_digest(cosign(changed, [e]).signatures[0], e)
    assert enrollment.pins.record.failures == 0


# --- offline brute force: neither half alone reveals the PIN -----------------------------------


def test_server_record_alone_does_not_give_the_pin() -> None:
    """A thief with the server's record (pin_key included, i.e. with the KEK) but without the
    phone's salt cannot test PIN guesses offline: every 4-digit PIN under a guessed salt
    misses.  With the real salt the same search finds the PIN (the search itself works)."""
    pin = "7391"
    salt = new_salt()
    record, unwrap = PinRecord.create(pin_proof(pin, salt))
    stored = json.dumps(record.to_dict())
    assert salt.hex() not in stored and pin not in json.loads(stored).values()
    assert pin_proof(pin, salt).hex() not in stored and unwrap.hex() not in stored

    def search(guessed_salt: bytes) -> list[str]:
        return [p for p in ALL_4_DIGIT
                if documented_verifier(record.pin_key, pin_proof(p, guessed_salt))
                == record.verifier]

    for guessed_salt in (bytes(SALT_SIZE), new_salt()):
        assert search(guessed_salt) == []
    # Without any salt (the PIN fed straight into the documented verifier) nothing either.
    assert not [p for p in ALL_4_DIGIT
                if documented_verifier(record.pin_key, p.encode()) == record.verifier]
    # Positive control: with the phone's salt, the search finds exactly the PIN, and the
    # documented unwrap matches the one the record released.
    assert search(salt) == [pin]
    assert documented_unwrap(record.pin_key, pin_proof(pin, salt)) == unwrap


def test_phone_blob_alone_does_not_open_for_any_4_digit_pin() -> None:
    """A thief with the phone (blob, salt, key id) but not the server's pin_key: no key derived
    from any 4-digit PIN opens the share.  With pin_key (phone AND server) the same search
    opens it, as the threat model says."""
    pin = "0582"
    salt = new_salt()
    record, unwrap = PinRecord.create(pin_proof(pin, salt))
    kid = key_id(b"\x04" + os.urandom(64))
    share = os.urandom(32)
    blob = wrap_share(share, unwrap=unwrap, salt=salt, key_id=kid)
    assert share not in blob

    def opens(candidate: bytes) -> bool:
        try:
            unwrap_share(blob, unwrap=candidate, salt=salt, key_id=kid)
        except PinError:
            return False
        return True

    found = []
    for p in ALL_4_DIGIT:
        proof = pin_proof(p, salt)
        # The proof itself, the documented unwrap under an empty (= all-zero) pin_key, the PIN.
        candidates = (proof, documented_unwrap(b"", proof), sm3(p.encode()))
        found += [p for c in candidates if opens(c)]
    assert found == []
    # Positive control: phone and server together find the PIN by the same kind of search.
    together = next(p for p in ALL_4_DIGIT
                    if opens(documented_unwrap(record.pin_key, pin_proof(p, salt))))
    assert together == pin
    assert unwrap_share(blob, unwrap=unwrap, salt=salt, key_id=kid) == share


# --- wrap_share / unwrap_share -----------------------------------------------------------------


@pytest.fixture
def wrapped() -> tuple[bytes, bytes, bytes, bytes, bytes]:
    share, unwrap, salt, kid = os.urandom(32), os.urandom(32), new_salt(), os.urandom(16)
    return wrap_share(share, unwrap=unwrap, salt=salt, key_id=kid), share, unwrap, salt, kid


def test_wrap_round_trip(wrapped: tuple[bytes, bytes, bytes, bytes, bytes]) -> None:
    blob, share, unwrap, salt, kid = wrapped
    assert unwrap_share(blob, unwrap=unwrap, salt=salt, key_id=kid) == share
    again = wrap_share(share, unwrap=unwrap, salt=salt, key_id=kid)
    assert again != blob  # fresh nonce every time
    assert unwrap_share(again, unwrap=unwrap, salt=salt, key_id=kid) == share


def test_wrong_unwrap_salt_or_key_id(wrapped: tuple[bytes, bytes, bytes, bytes, bytes]) -> None:
    blob, _, unwrap, salt, kid = wrapped
    flip = bytes([unwrap[0] ^ 1]) + unwrap[1:]
    with pytest.raises(PinError):
        unwrap_share(blob, unwrap=flip, salt=salt, key_id=kid)
    with pytest.raises(PinError):
        unwrap_share(blob, unwrap=os.urandom(32), salt=salt, key_id=kid)
    with pytest.raises(PinError):
        unwrap_share(blob, unwrap=unwrap, salt=new_salt(), key_id=kid)
    # The key id is associated data: the blob of one key does not open as another key's.
    with pytest.raises(PinError):
        unwrap_share(blob, unwrap=unwrap, salt=salt, key_id=os.urandom(16))
    with pytest.raises(PinError):
        unwrap_share(blob, unwrap=unwrap, salt=salt, key_id=b"")


def test_tampered_blob(wrapped: tuple[bytes, bytes, bytes, bytes, bytes]) -> None:
    blob, _, unwrap, salt, kid = wrapped
    for index in range(len(blob)):  # nonce, ciphertext and tag alike
        tampered = bytearray(blob)
        tampered[index] ^= 0x80
        with pytest.raises(PinError):
            unwrap_share(bytes(tampered), unwrap=unwrap, salt=salt, key_id=kid)
    for cut in (b"", blob[:5], blob[:12], blob[:28], blob[:-1], blob + b"\x00"):
        with pytest.raises(PinError):
            unwrap_share(cut, unwrap=unwrap, salt=salt, key_id=kid)


def test_phone_share_blob_is_bound_to_its_key(wrapped: tuple[bytes, bytes, bytes, bytes, bytes]
                                              ) -> None:
    """A PhoneShare whose public key was swapped (a blob moved to another key's record) does
    not open: the key id enters the AEAD."""
    _, share, unwrap, salt, _ = wrapped
    secret = int.from_bytes(share, "big")
    phone = seal_share(secret, b"\x04" + os.urandom(64), unwrap, salt)
    assert phone.open(unwrap) == secret
    moved = dataclasses.replace(phone, public_key=b"\x04" + os.urandom(64))
    with pytest.raises(PinError):
        moved.open(unwrap)

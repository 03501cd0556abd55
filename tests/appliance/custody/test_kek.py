"""The KEK: sealing with a passphrase or Shamir shares, envelopes bound to their context, and the
process-local key holder (on both database engines)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from appliance.custody import KekStore, KeyHolder, UnsealFailed, initialize_kek
from appliance.custody.kek import Keyring, new_kek, open_with_passphrase, seal_with_passphrase
from appliance.errors import BadRequest, Conflict, Sealed
from appliance.storage import Database, schema
from signcore.errors import DecryptionError

PASSPHRASE = "correct horse battery staple"


def test_envelopes_round_trip_and_are_bound_to_their_context() -> None:
    ring = Keyring(new_kek())
    envelope = ring.wrap(b"server share d2", b"wrapped_keys:1")
    assert b"server share d2" not in envelope
    assert ring.unwrap(envelope, b"wrapped_keys:1") == b"server share d2"
    assert ring.wrap(b"same", b"c") != ring.wrap(b"same", b"c")  # fresh data key and nonces
    with pytest.raises(DecryptionError):
        ring.unwrap(envelope, b"wrapped_keys:2")  # moved to another row
    with pytest.raises(DecryptionError):
        Keyring(new_kek()).unwrap(envelope, b"wrapped_keys:1")  # another appliance's KEK
    for i in range(len(envelope)):
        tampered = bytearray(envelope)
        tampered[i] ^= 1
        with pytest.raises(DecryptionError):
            ring.unwrap(bytes(tampered), b"wrapped_keys:1")


def test_derived_hmac_keys_differ_by_label_and_never_expose_the_kek() -> None:
    kek = new_kek()
    ring = Keyring(kek)
    assert ring.hmac(b"pii", b"x") != ring.hmac(b"other", b"x")
    assert ring.hmac(b"pii", b"x") == Keyring(kek).hmac(b"pii", b"x")
    assert kek.hex() not in ring.fingerprint and len(ring.fingerprint) == 16


def test_passphrase_sealing() -> None:
    kek = new_kek()
    sealed = seal_with_passphrase(kek, PASSPHRASE)
    assert kek.hex() not in json.dumps(sealed)
    assert open_with_passphrase(sealed, PASSPHRASE) == kek
    with pytest.raises(UnsealFailed):
        open_with_passphrase(sealed, PASSPHRASE + "!")
    with pytest.raises(BadRequest, match="at least"):
        seal_with_passphrase(kek, "short")


def test_key_holder_with_passphrase(database: Database) -> None:
    store = KekStore(database)
    holder = KeyHolder(store)
    with pytest.raises(Conflict, match="not initialized"):
        holder.unseal(passphrase=PASSPHRASE)
    ring, shares = initialize_kek(store, passphrase=PASSPHRASE)
    assert shares == []
    envelope = ring.wrap(b"secret", b"ctx")
    assert holder.sealed
    with pytest.raises(Sealed):
        holder.keyring()
    with pytest.raises(UnsealFailed):
        holder.unseal(passphrase="wrong passphrase here")
    assert holder.sealed
    status = holder.unseal(passphrase=PASSPHRASE)
    assert status["sealed"] is False and status["method"] == "passphrase"
    assert holder.keyring().unwrap(envelope, b"ctx") == b"secret"
    holder.seal()
    assert holder.sealed
    with pytest.raises(Conflict, match="already has a KEK"):
        initialize_kek(store, passphrase=PASSPHRASE)


def test_key_holder_with_shamir_shares(database: Database) -> None:
    store = KekStore(database)
    ring, shares = initialize_kek(store, shamir=(3, 5))
    assert len(shares) == 5 and len(set(shares)) == 5
    envelope = ring.wrap(b"ca key", b"ctx")
    holder = KeyHolder(store)
    assert holder.unseal(share=shares[4])["progress"] == 1
    assert holder.unseal(share=shares[4])["progress"] == 1  # the same share twice counts once
    with pytest.raises(UnsealFailed, match="typo"):
        holder.unseal(share=shares[0][:-1] + ("0" if shares[0][-1] != "0" else "1"))
    assert holder.unseal(share=shares[1])["progress"] == 2
    assert holder.sealed
    status = holder.unseal(share=shares[2])
    assert status["sealed"] is False and status["progress"] == 0
    assert holder.keyring().unwrap(envelope, b"ctx") == b"ca key"
    with pytest.raises(BadRequest, match="Shamir"):
        KeyHolder(store).unseal(passphrase=PASSPHRASE)


def test_shares_of_another_appliance_are_named(database: Database, tmp_path: object) -> None:
    _, ours = initialize_kek(KekStore(database), shamir=(2, 3))
    other_db = Database(f"sqlite:///{tmp_path}/other.db")
    other_db.migrate()
    _, theirs = initialize_kek(KekStore(other_db), shamir=(2, 3))
    holder = KeyHolder(KekStore(database))
    holder.unseal(share=ours[0])
    with pytest.raises(UnsealFailed, match="not one of this appliance's shares"):
        holder.unseal(share=theirs[1])
    assert holder.sealed


def test_the_database_holds_no_kek(database: Database) -> None:
    ring, _ = initialize_kek(KekStore(database), passphrase=PASSPHRASE)
    kek = ring._kek
    with database.transaction() as conn:
        rows = conn.execute(select(schema.kek)).all()
    dump = repr(rows).encode() + b"".join(str(r).encode() for r in rows)
    assert kek not in dump and kek.hex().encode() not in dump

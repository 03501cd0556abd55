"""Sealing the KEK with a PKCS#11 token: SoftHSM2, a real PKCS#11 implementation, in a private
token directory (PEERS.md: SOFTHSM2_CONF, softhsm2-util --init-token)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.custody import KekStore, KeyHolder, Pkcs11Token, UnsealFailed, initialize_kek
from appliance.errors import BadRequest
from appliance.storage import Database
from tests.support.peers import require_tool, run_tool

MODULE_CANDIDATES = ("/usr/lib/softhsm/libsofthsm2.so",
                     "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so")
USER_PIN = "5678"


@pytest.fixture(scope="module")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pkcs11Token]:
    util = require_tool("softhsm2-util")
    module = next((m for m in MODULE_CANDIDATES if Path(m).exists()), None)
    assert module, "libsofthsm2.so not found (Debian package softhsm2)"
    root = tmp_path_factory.mktemp("softhsm")
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\n"
                    "log.level = ERROR\n")
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)  # read by the library when a session starts
    label = f"medsign-{os.getpid()}"
    run_tool([util, "--init-token", "--free", "--label", label, "--so-pin", "1234",
              "--pin", USER_PIN], env={**os.environ})
    yield Pkcs11Token(module=module, token_label=label, key_label="medsign-kek", pin=USER_PIN)
    if previous is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = previous


def test_kek_sealed_by_the_token(database: Database, softhsm: Pkcs11Token) -> None:
    store = KekStore(database)
    ring, shares = initialize_kek(store, pkcs11=softhsm)
    assert shares == []
    sealed = store.load()
    assert sealed is not None and sealed["method"] == "pkcs11"
    envelope = ring.wrap(b"tsa key", b"ctx")

    holder = KeyHolder(store, pkcs11_module=softhsm.module)
    with pytest.raises(UnsealFailed, match="PIN is wrong"):
        holder.unseal(pin="0000")
    assert holder.sealed
    with pytest.raises(BadRequest, match="PKCS#11"):
        KeyHolder(store).unseal(pin=USER_PIN)  # no module configured
    holder.unseal(pin=USER_PIN)
    assert holder.keyring().unwrap(envelope, b"ctx") == b"tsa key"


def test_a_tampered_sealed_kek_does_not_open(database: Database, softhsm: Pkcs11Token,
                                             tmp_path: Path) -> None:
    other = Database(f"sqlite:///{tmp_path / 'other.db'}")
    other.migrate()
    initialize_kek(KekStore(other), pkcs11=softhsm)
    sealed = KekStore(other).load()
    assert sealed is not None
    flipped = bytes.fromhex(sealed["ct"])
    sealed["ct"] = (bytes([flipped[0] ^ 1]) + flipped[1:]).hex()
    KekStore(database).save(sealed)
    with pytest.raises(UnsealFailed, match="does not open"):
        KeyHolder(KekStore(database), pkcs11_module=softhsm.module).unseal(pin=USER_PIN)

"""Issue 4: "a test reads the raw database and finds no private key material".  After the
appliance created its own keys (the SM2 audit-signing key) and secrets, every cell of every
table is scanned for the private scalar, its PKCS#8 encodings and the KEK itself."""

from __future__ import annotations

import base64

from asn1crypto import keys as asn1_keys

from appliance.custody import KekStore, KeyHolder, initialize_kek
from appliance.services.audit import AuditLog
from appliance.storage import Database
from tests.appliance.auth.test_secrets_at_rest import _all_cells


def test_no_private_key_material_in_the_database(database: Database) -> None:
    keyring, _ = initialize_kek(KekStore(database), passphrase="correct horse battery staple")
    holder = KeyHolder(KekStore(database))
    holder.adopt(keyring)
    audit = AuditLog(database, holder)
    try:
        audit.append("system", "test.key-at-rest", "cli:test", "", {"n": 1})
        audit.checkpoint()  # creates and wraps the SM2 audit-signing key
        signing_key = audit._signing_key(keyring)
    finally:
        audit.close()
    pkcs8 = signing_key.to_der()
    info = asn1_keys.PrivateKeyInfo.load(pkcs8)
    scalar = int(info["private_key"].parsed["private_key"].native).to_bytes(32, "big")
    needles = {
        "SM2 private scalar (raw)": scalar,
        "SM2 private scalar (hex)": scalar.hex().encode(),
        "PKCS#8 DER": pkcs8,
        "PKCS#8 PEM body": base64.b64encode(pkcs8)[:40],
        "KEK (raw)": keyring._kek,
        "KEK (hex)": keyring._kek.hex().encode(),
    }
    cells = _all_cells(database)
    assert any(b"audit-signing" in cell for cell in cells)  # the wrapped key row was scanned
    for name, needle in needles.items():
        assert not any(needle in cell for cell in cells), f"{name} found in the database"

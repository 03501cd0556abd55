"""The revocation cache in the appliance's database (both engines): what one process fetched
from an external CA's responder serves another after the responder went away, and a tampered
row is verified again and refused (the same scenario as ca_client's in-memory store)."""

from __future__ import annotations

from appliance.services.verification import DbRevocationStore
from appliance.storage import Database, schema
from tests.ca_client.test_trust import Online, _leaf, server, sm2_online

__all__ = ["server", "sm2_online"]  # fixtures used below


def test_revocation_data_is_shared_through_the_database(sm2_online: Online,
                                                        database: Database) -> None:
    online = sm2_online
    leaf = _leaf(online.ca)
    store = DbRevocationStore(database)
    online.validate(leaf, cache=online.new_cache(store=store))
    with database.engine.connect() as conn:
        rows = conn.execute(schema.revocation_cache.select()).all()
    assert [row.kind for row in rows] == ["ocsp"]
    assert rows[0].key.endswith(f":{leaf.serial_number:x}")
    online.server.stop()
    other_process = online.new_cache(store=DbRevocationStore(database))
    result = online.validate(leaf, cache=other_process)
    assert (result.revocation[0].status, result.revocation[0].source) == ("ocsp", "cache")
    store.put("ocsp", rows[0].key, b"\x30\x00")  # replaced, and garbage
    assert store.get("ocsp", rows[0].key) == b"\x30\x00"
    online.refused("revocation-unknown", leaf,
                   cache=online.new_cache(store=DbRevocationStore(database)))


def test_missing_keys_are_misses(database: Database) -> None:
    assert DbRevocationStore(database).get("crl", "http://nowhere.test/x.crl#00") is None

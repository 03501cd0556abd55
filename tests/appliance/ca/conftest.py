"""Fixtures of the CA suites: an unsealed key holder and the whole app (as the account suites
build it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from appliance.custody import KekStore, KeyHolder, Keyring
from appliance.custody.kek import new_kek
from appliance.storage import Database
from tests.appliance.auth.conftest import Site, make_site


@pytest.fixture
def holder(database: Database) -> KeyHolder:
    key_holder = KeyHolder(KekStore(database))
    key_holder.adopt(Keyring(new_kek()))
    return key_holder


@pytest.fixture
def site(database: Database, holder: KeyHolder) -> Iterator[Site]:
    made = make_site(database, holder)
    yield made
    made.appliance.audit.close()

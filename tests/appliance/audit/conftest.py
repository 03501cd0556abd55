"""Fixtures of the audit suites: an unsealed key holder and the audit log on both engines."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from appliance.config import AuditConfig
from appliance.custody import KekStore, KeyHolder, Keyring
from appliance.services.audit import AuditLog
from appliance.storage import Database

ORIGIN = "medsign.test/audit"


@pytest.fixture
def holder(database: Database) -> KeyHolder:
    key_holder = KeyHolder(KekStore(database))
    key_holder.adopt(Keyring(os.urandom(16)))
    return key_holder


@pytest.fixture
def audit(database: Database, holder: KeyHolder) -> Iterator[AuditLog]:
    log = AuditLog(database, holder, AuditConfig(node_id="node-a", origin=ORIGIN,
                                                 checkpoint_interval_seconds=3600))
    yield log
    log.close()

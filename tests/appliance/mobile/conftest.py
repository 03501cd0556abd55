"""Fixtures of the mobile suites: the whole app with an SM2 built-in CA, active signers, a
backend credential and phones (tests.appliance.mobile.phone)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import pytest

from appliance.api.hmac_signing import sign_request
from appliance.custody import KekStore, KeyHolder, Keyring
from appliance.custody.kek import new_kek
from appliance.services.ca import CaService
from appliance.services.signers import ACTIVE, SignerService, validate
from appliance.storage import Database
from tests.appliance.auth.conftest import Site, make_site
from tests.appliance.ca.test_ca_service import Actor
from tests.appliance.mobile.phone import ApiError, TestPhone

DOCTOR = {"kind": "doctor", "name": "张医生", "id_number": "11010519491231002X",
          "department": "内科", "title": "主治医师"}
PHARMACIST = {"kind": "pharmacist", "name": "李药师", "id_number": "110105198001010016",
              "department": "药剂科", "title": "主管药师"}


@pytest.fixture
def holder(database: Database) -> KeyHolder:
    key_holder = KeyHolder(KekStore(database))
    key_holder.adopt(Keyring(new_kek()))
    return key_holder


@dataclasses.dataclass
class Hospital:
    site: Site
    ca: CaService
    key_id: str
    secret: str
    doctor_id: int
    pharmacist_id: int

    def backend(self, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else b""
        signed = {"Content-Type": "application/json", **(headers or {}),
                  **sign_request(method, path, key_id=self.key_id, secret=self.secret,
                                 body=data)}
        result = self.site.client.simulate_request(method, path, body=data or None,
                                                   headers=signed)
        if result.status_code >= 400:
            raise ApiError(result)
        return result

    def phone_for(self, signer_id: int, *, enroll: bool = True) -> TestPhone:
        code = self.backend("POST", f"/api/v1/signers/{signer_id}/activation-codes",
                            {}).json["code"]
        phone = TestPhone(self.site.client)
        phone.activate(code)
        if enroll:
            phone.enroll()
        return phone


def _signer(service: SignerService, holder: KeyHolder, values: dict[str, str]) -> int:
    record = service.prepare(holder.keyring(), validate(values))
    outcome = service.insert_many([record], Actor(), status=ACTIVE)[0]
    assert isinstance(outcome, int)
    return outcome


@pytest.fixture
def hospital(database: Database, holder: KeyHolder) -> Iterator[Hospital]:
    site = make_site(database, holder)
    ca = CaService(database, holder, public_url="http://127.0.0.1:8080")
    ca.initialize(Actor(), "sm2", "测试医院")
    credential, secret = site.apps.create(
        None, name="互联网医院", scopes="sign:request sign:read signer:read signer:write")
    signers = SignerService(database, holder)
    yield Hospital(site, ca, credential.key_id, secret, _signer(signers, holder, DOCTOR),
                   _signer(signers, holder, PHARMACIST))
    site.appliance.audit.close()

"""Fixtures of the evidence suites: the whole app (composition root) with an NTP-synchronized
TSA (a real chronyd on loopback), the organization seal and TSA certificates of the built-in
CA, a doctor and a pharmacist with bound phones, and the hospital's backend credential."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import falcon.testing
import pytest

from appliance.config import Config, TsaConfig
from appliance.custody import KekStore, KeyHolder, Keyring
from appliance.custody.kek import new_kek
from appliance.services.admins import AdminService
from appliance.services.applications import ApplicationService
from appliance.services.ca import CaService
from appliance.services.channels import ChannelService
from appliance.services.signers import SignerService
from appliance.storage import Database
from appliance.wsgi import build
from ca_client import SubjectInfo
from tests.appliance.auth.conftest import FAST_HASHER, SECURITY, Site
from tests.appliance.ca.test_ca_service import Actor
from tests.appliance.mobile.conftest import DOCTOR, PHARMACIST, Hospital, _signer
from tests.support.chrony import chrony_server
from tests.support.peers import LoopbackProcess

SEAL = SubjectInfo(common_name="测试医院电子印章", organization="测试医院")
TSA = SubjectInfo(common_name="测试医院时间戳服务", organization="测试医院")


@pytest.fixture
def holder(database: Database) -> KeyHolder:
    key_holder = KeyHolder(KekStore(database))
    key_holder.adopt(Keyring(new_kek()))
    return key_holder


@pytest.fixture(scope="module")
def ntp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackProcess]:
    with chrony_server(tmp_path_factory.mktemp("chrony")) as server:
        yield server


def make_hospital(database: Database, holder: KeyHolder, ntp_port: int,
                  algorithm: str = "sm2") -> Hospital:
    """The app, its CA (SM2 for the signers; the seal and TSA of ``algorithm``), two signers
    and a backend credential."""
    config = Config(security=dataclasses.replace(SECURITY),
                    tsa=TsaConfig(ntp_servers=f"127.0.0.1:{ntp_port}"))
    appliance = build(config, database=database, key_holder=holder)
    site = Site(appliance, falcon.testing.TestClient(appliance.app),
                AdminService(database, holder, config.security, hasher=FAST_HASHER),
                ApplicationService(database, holder, config.security))
    ca = CaService(database, holder, public_url="http://127.0.0.1:8080")
    ca.initialize(Actor(), "sm2", "测试医院")
    channels = ChannelService(database, holder, ca)
    if algorithm != "sm2":
        ca.initialize(Actor(), algorithm, "测试医院")
    for profile, subject in (("organization-seal", SEAL), ("tsa", TSA)):
        channels.switch(Actor(), profile, f"builtin-{algorithm}")
        channels.enroll_server_key(Actor(), profile=profile, subject=subject,
                                   algorithm=algorithm)
    credential, secret = site.apps.create(
        None, name="互联网医院", scopes="sign:request sign:read signer:read signer:write")
    signers = SignerService(database, holder)
    return Hospital(site, ca, credential.key_id, secret, _signer(signers, holder, DOCTOR),
                    _signer(signers, holder, PHARMACIST))


@pytest.fixture
def hospital(database: Database, holder: KeyHolder, ntp: LoopbackProcess) -> Iterator[Hospital]:
    assert ntp.port is not None
    made = make_hospital(database, holder, ntp.port)
    yield made
    made.site.appliance.audit.close()

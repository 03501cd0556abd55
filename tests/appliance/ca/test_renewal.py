"""Silent renewal (both engines): the appliance's own certificates are renewed before they
expire through the profile's active channel; a doctor's split-key certificate waits for the
phone; a failure is kept, alerted and reported; ``medsign worker --once`` runs a pass."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from appliance.config import CaConfig
from appliance.custody import KeyHolder
from appliance.services.ca import CaService
from appliance.services.channels import ChannelService
from appliance.services.renewal import RenewalService
from appliance.storage import Database, schema
from ca_client import SubjectInfo
from signcore.keys import generate_private_key
from signcore.x509 import build_csr, load_certificate
from tests.appliance.ca.test_ca_service import DOCTOR, Actor
from tests.appliance.ca.test_channels import AuditRecorder
from tests.appliance.serving import cli
from tests.support.vendor_ca import VendorStyle, closed_port

SEAL = SubjectInfo(common_name="测试医院电子印章", organization="测试医院", department="医务科")
C = schema.certificates


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC).replace(microsecond=0)

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def setup(database: Database, holder: KeyHolder) -> tuple[CaService, ChannelService,
                                                          RenewalService, Clock, AuditRecorder]:
    audit, clock = AuditRecorder(), Clock()
    ca = CaService(database, holder, public_url="http://127.0.0.1:8080", audit=audit,
                   clock=clock)
    ca.initialize(Actor(), "sm2", "测试医院")
    channels = ChannelService(database, holder, ca, audit=audit)
    renewal = RenewalService(database, ca, channels, CaConfig(renew_days_before=30),
                             audit=audit, clock=clock)
    return ca, channels, renewal, clock, audit


def test_the_appliance_renews_its_own_certificates(setup: Any, database: Database) -> None:
    ca, channels, renewal, clock, audit = setup
    seal = channels.enroll_server_key(Actor(), profile="organization-seal", subject=SEAL,
                                      algorithm="sm2")
    assert renewal.due() == [] and renewal.run_once().renewed == []
    clock.now = seal.not_after - dt.timedelta(days=10)
    assert [c.id for c in renewal.due()] == [seal.id]
    result = renewal.run_once()
    assert len(result.renewed) == 1 and result.renewed[0][0] == seal.id
    new = ca.get(result.renewed[0][1])
    old_cert, new_cert = load_certificate(seal.der), load_certificate(new.der)
    assert new_cert.subject == old_cert.subject and new.profile == "organization-seal"
    assert new_cert.public_key() != old_cert.public_key()  # a fresh key
    assert new.not_after > seal.not_after
    with database.engine.connect() as conn:
        assert conn.execute(select(C.c.replaced_by).where(C.c.id == seal.id)).scalar() == new.id
    assert renewal.due() == []  # renewed once, not again
    assert ca.get(seal.id).status == "active"  # the old one stays valid until it expires
    assert any(e[1] == "cert.renew" for e in audit.entries)


def test_a_failed_renewal_is_kept_alerted_and_retried(setup: Any) -> None:
    _ca, channels, renewal, clock, audit = setup
    tsa = channels.enroll_server_key(Actor(), profile="tsa", subject=SEAL, algorithm="sm2")
    config = VendorStyle().channel_config(f"http://127.0.0.1:{closed_port()}/api")
    config.pop("name")
    channels.add(Actor(), name="down", kind="vendor-http", settings=config,
                 secrets={"secret_hex": config.pop("secret_hex")})
    channels.switch(Actor(), "tsa", "down")
    clock.now = tsa.not_after - dt.timedelta(days=3)
    result = renewal.run_once()
    assert list(result.failed) == [tsa.id] and result.renewed == []
    report = renewal.report()
    assert [e["id"] for e in report["failed"]] == [tsa.id]
    assert [e["id"] for e in report["urgent"]] == [tsa.id]
    assert "down" in (report["failed"][0]["error"] or "")
    assert any(e[0] == "system" and e[1] == "cert.renewal-failed" for e in audit.entries)
    channels.switch(Actor(), "tsa", "builtin-sm2")  # the officer reacts: the next pass works
    assert [old for old, _ in renewal.run_once().renewed] == [tsa.id]
    assert renewal.report()["failed"] == []


def test_split_key_certificates_wait_for_the_phone(setup: Any, database: Database) -> None:
    ca, _channels, renewal, clock, _audit = setup
    doctor = ca.issue(Actor(), algorithm="sm2", profile="doctor-signing", subject=DOCTOR,
                      csr_der=build_csr(generate_private_key("sm2"), "CN=x").der)
    with database.transaction() as conn:
        signer_id = _a_signer(conn)
        conn.execute(update(C).where(C.c.id == doctor.id).values(signer_id=signer_id))
    clock.now = doctor.not_after - dt.timedelta(days=5)
    result = renewal.run_once()
    assert result.waiting_for_phone == [doctor.id] and result.renewed == []
    assert [c.id for c in renewal.due_for_signer(signer_id)] == [doctor.id]
    assert renewal.report()["urgent"][0]["holder"] == "signer"


def _a_signer(conn: Any) -> int:
    now = dt.datetime.now(dt.UTC)
    return int(conn.execute(schema.signers.insert().values(
        kind="doctor", name="赵六", id_number_hmac="h" * 64, id_number_wrapped=b"x",
        status="active", created_at=now, updated_at=now).returning(schema.signers.c.id)
    ).scalar_one())


def test_worker_once(tmp_path: Path) -> None:
    config_file = tmp_path / "var" / "medsign.toml"
    assert cli("init", "--demo", "--config", config_file).code == 0
    assert cli("ca", "init", "--config", config_file, "--algorithm", "sm2",
               "--organization", "测试医院").code == 0
    ran = cli("worker", "--config", config_file, "--once")
    assert ran.code == 0, ran.err
    renewal, requests, evidence = (json.loads(line)
                                   for line in ran.out.strip().splitlines()[-3:])
    assert renewal == {"pass": "renewal", "renewed": [], "waiting_for_phone": [], "failed": []}
    assert requests == {"pass": "sign-requests", "expired": 0, "webhooks_delivered": 0,
                        "webhooks_failed": 0}
    assert evidence == {"pass": "evidence", "retimestamped": 0, "failed": []}  # issue 8

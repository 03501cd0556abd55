"""CA channels on the appliance (both engines): the built-in channels, a vendor HTTP channel
(against the local fake vendor CA), a CMP configuration, online switching -- also while
enrollments run -- a channel that is down, and who may configure."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select, update

from appliance.custody import KeyHolder
from appliance.errors import CaChannelDown, Conflict, Forbidden, NotFound, ValidationFailed
from appliance.services.ca import CaService, ServerKeyStore
from appliance.services.channels import DEFAULT_CHANNELS, ChannelService
from appliance.storage import Database, schema
from ca_client import SubjectInfo
from signcore.x509 import load_certificate
from tests.appliance.ca.test_ca_service import Actor
from tests.ca_client.test_cmp import Responder, pki, signed_ca
from tests.support.pki import issue_leaf
from tests.support.vendor_ca import FakeVendorCa, Hierarchies, VendorStyle, closed_port

__all__ = ["pki", "signed_ca"]  # fixtures of the CMP responder

SEAL = SubjectInfo(common_name="测试医院电子印章", organization="测试医院")


class AuditRecorder:
    def __init__(self) -> None:
        self.entries: list[tuple[str, str, str, str, dict[str, Any]]] = []

    def __call__(self, category: str, action: str, actor: str, subject: str,
                 details: dict[str, Any]) -> None:
        self.entries.append((category, action, actor, subject, details))


@pytest.fixture(scope="module")
def hierarchies() -> Hierarchies:
    return Hierarchies.generate()


@pytest.fixture
def vendor(hierarchies: Hierarchies) -> Iterator[FakeVendorCa]:
    served = FakeVendorCa(VendorStyle(), hierarchies).start()
    yield served
    served.stop()


@pytest.fixture
def audit() -> AuditRecorder:
    return AuditRecorder()


@pytest.fixture
def channels(database: Database, holder: KeyHolder, audit: AuditRecorder) -> ChannelService:
    ca = CaService(database, holder, public_url="http://127.0.0.1:8080", audit=audit)
    ca.initialize(Actor(), "sm2", "测试医院")
    return ChannelService(database, holder, ca, audit=audit)


def _vendor_settings(vendor: FakeVendorCa, **overrides: Any) -> tuple[dict[str, Any],
                                                                      dict[str, Any]]:
    config = {**vendor.style.channel_config(vendor.base_url), **overrides}
    config.pop("name")
    secrets = {"secret_hex": config.pop("secret_hex")}
    return config, secrets


def _certificates(database: Database) -> int:
    with database.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(schema.certificates)).scalar()
                   or 0)


def test_builtin_channels_and_defaults(channels: ChannelService) -> None:
    by_name = {c.name: c for c in channels.channels()}
    assert by_name["builtin-sm2"].enabled and not by_name["builtin-rsa"].enabled
    assert channels.assignments() == DEFAULT_CHANNELS
    with pytest.raises(Conflict, match="未启用"):
        channels.switch(Actor(), "organization-seal", "builtin-rsa")


def test_enroll_a_seal_through_the_builtin_channel(channels: ChannelService, database: Database,
                                                  holder: KeyHolder) -> None:
    info = channels.enroll_server_key(Actor(), profile="organization-seal", subject=SEAL,
                                      algorithm="sm2")
    assert info.channel == "builtin-sm2" and info.issuer_id == "sm2-g1"
    with database.engine.connect() as conn:
        key_id = conn.execute(select(schema.certificates.c.key_id)
                              .where(schema.certificates.c.id == info.id)).scalar_one()
    key = ServerKeyStore(database, holder).load(key_id)
    assert key.public_key() == load_certificate(info.der).public_key()
    with pytest.raises(ValidationFailed, match="服务器持有密钥"):
        channels.enroll_server_key(Actor(), profile="doctor-signing", subject=SEAL,
                                   algorithm="sm2")


def test_vendor_channel_switch_and_back(channels: ChannelService, vendor: FakeVendorCa,
                                       database: Database, audit: AuditRecorder) -> None:
    settings, secrets = _vendor_settings(vendor)
    added = channels.add(Actor(), name="bjca", kind="vendor-http", settings=settings,
                         secrets=secrets)
    assert added.has_secrets and "secret_hex" not in added.settings
    assert channels.status("bjca").available
    channels.switch(Actor(), "organization-seal", "bjca")
    via_vendor = channels.enroll_server_key(Actor(), profile="organization-seal",
                                            subject=SEAL, algorithm="sm2")
    assert via_vendor.channel == "bjca" and via_vendor.issuer_id == "bjca"
    assert vendor.cas.sm2.certificate.subject == load_certificate(via_vendor.der).issuer
    with pytest.raises(Conflict, match="正在使用"):
        channels.remove(Actor(), "bjca")
    with pytest.raises(Conflict, match="正在使用"):
        channels.set_enabled(Actor(), "bjca", False)
    channels.switch(Actor(), "organization-seal", "builtin-sm2")
    back = channels.enroll_server_key(Actor(), profile="organization-seal", subject=SEAL,
                                      algorithm="sm2")
    assert back.channel == "builtin-sm2"
    channels.remove(Actor(), "bjca")
    with pytest.raises(NotFound):
        channels.info("bjca")
    switches = [e for e in audit.entries if e[1] == "ca.channel.switch"]
    assert [e[4]["to"] for e in switches] == ["bjca", "builtin-sm2"]


def test_a_channel_that_is_down(channels: ChannelService, vendor: FakeVendorCa,
                                database: Database, audit: AuditRecorder) -> None:
    settings, secrets = _vendor_settings(vendor, base_url=f"http://127.0.0.1:{closed_port()}")
    channels.add(Actor(), name="down", kind="vendor-http", settings=settings, secrets=secrets)
    assert not channels.status("down").available
    channels.switch(Actor(), "tsa", "down")
    before = _certificates(database)
    with pytest.raises(CaChannelDown) as raised:
        channels.enroll_server_key(Actor(), profile="tsa", subject=SEAL, algorithm="sm2")
    assert raised.value.status == 503 and raised.value.code == "ca-channel-unavailable"
    assert _certificates(database) == before
    assert any(e[0] == "system" and e[1] == "ca.channel.unavailable" and e[3] == "down"
               for e in audit.entries)


def test_switching_while_enrollments_run(channels: ChannelService, vendor: FakeVendorCa,
                                         database: Database) -> None:
    settings, secrets = _vendor_settings(vendor)
    channels.add(Actor(), name="cfca", kind="vendor-http", settings=settings, secrets=secrets)
    results: list[str] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def enroll_until_stopped() -> None:
        while not stop.is_set():
            try:
                results.append(channels.enroll_server_key(
                    Actor(), profile="organization-seal", subject=SEAL,
                    algorithm="sm2").channel)
            except BaseException as exc:  # reported below
                errors.append(exc)
                return

    workers = [threading.Thread(target=enroll_until_stopped) for _ in range(3)]
    for worker in workers:
        worker.start()
    for n in range(6):
        channels.switch(Actor(), "organization-seal", "cfca" if n % 2 == 0 else "builtin-sm2")
        while len(results) < 2 * (n + 1) and not errors:
            stop.wait(0.01)
    stop.set()
    for worker in workers:
        worker.join(60)
    assert errors == []
    assert {"cfca", "builtin-sm2"} <= set(results)
    assert _certificates(database) == len(results)


def test_configuration_is_checked(channels: ChannelService, vendor: FakeVendorCa) -> None:
    settings, secrets = _vendor_settings(vendor)
    with pytest.raises(ValidationFailed, match="配置无效"):
        channels.add(Actor(), name="bad", kind="vendor-http",
                     settings={**settings, "colour": "blue"}, secrets=secrets)
    with pytest.raises(ValidationFailed, match="配置无效"):
        channels.add(Actor(), name="cmp1", kind="cmp", settings={"url": "http://127.0.0.1:1/"},
                     secrets={})
    with pytest.raises(ValidationFailed, match="kind"):
        channels.add(Actor(), name="x", kind="est", settings={}, secrets={})
    with pytest.raises(ValidationFailed, match="name"):
        channels.add(Actor(), name="builtin-sm2", kind="cmp", settings={}, secrets={})
    cmp = channels.add(Actor(), name="cmp1", kind="cmp",
                       settings={"url": "http://127.0.0.1:1/pkix/", "reference": "ra-1"},
                       secrets={"secret": "a shared secret of enough length"})
    assert cmp.kind == "cmp" and "secret" not in cmp.settings
    assert not channels.status("cmp1").available  # nothing listens there
    with pytest.raises(Conflict, match="已存在"):
        channels.add(Actor(), name="cmp1", kind="cmp",
                     settings={"url": "http://127.0.0.1:1/", "reference": "ra-2"},
                     secrets={"secret": "another secret of enough length"})
    with pytest.raises(ValidationFailed, match="profile"):
        channels.switch(Actor(), "dentist", "cmp1")
    for role in ("system_admin", "audit_admin", "reviewer"):
        with pytest.raises(Forbidden):
            channels.switch(Actor(role=role), "tsa", "cmp1")


def test_revocation_goes_through_the_issuing_channel(channels: ChannelService,
                                                     vendor: FakeVendorCa, database: Database,
                                                     audit: AuditRecorder) -> None:
    settings, secrets = _vendor_settings(vendor)
    channels.add(Actor(), name="bjca", kind="vendor-http", settings=settings, secrets=secrets)
    channels.switch(Actor(), "organization-seal", "bjca")
    external = channels.enroll_server_key(Actor(), profile="organization-seal", subject=SEAL,
                                          algorithm="sm2")
    channels.switch(Actor(), "organization-seal", "builtin-sm2")
    internal = channels.enroll_server_key(Actor(), profile="organization-seal", subject=SEAL,
                                          algorithm="sm2")
    # Both belong to one signer (as a doctor's certificates will), who is then disabled.
    with database.transaction() as conn:
        now = dt.datetime.now(dt.UTC)
        signer_id = conn.execute(schema.signers.insert().values(
            kind="doctor", name="周九", id_number_hmac="s" * 64, id_number_wrapped=b"x",
            status="active", created_at=now, updated_at=now).returning(schema.signers.c.id)
        ).scalar_one()
        conn.execute(update(schema.certificates).where(
            schema.certificates.c.id.in_([external.id, internal.id])).values(signer_id=signer_id))
    revoked = channels.revoke_for_signer(signer_id, Actor(role="reviewer"))
    assert sorted(revoked) == sorted([external.id, internal.id])
    serial = load_certificate(external.der).serial_number
    vendor_record = vendor.cas.sm2._repository.find_issued(vendor.cas.sm2.ca_id, serial)
    assert vendor_record is not None and vendor_record.revoked_at is not None
    actors = {e[2] for e in audit.entries if e[1] == "cert.revoke"}
    assert actors == {"system:signer-disabled-by:admin:sec"}
    with pytest.raises(Conflict, match="已吊销"):
        channels.revoke(Actor(), external.id, "superseded")


def test_an_external_ca_is_trusted_only_once_its_root_is_added(
        channels: ChannelService, vendor: FakeVendorCa, database: Database,
        holder: KeyHolder) -> None:
    from appliance.services.seals import Document, SealService  # noqa: PLC0415
    from appliance.services.verification import VerificationService  # noqa: PLC0415
    from tests.appliance.ca.test_seals import App  # noqa: PLC0415

    settings, secrets = _vendor_settings(vendor)
    channels.add(Actor(), name="bjca", kind="vendor-http", settings=settings, secrets=secrets)
    channels.switch(Actor(), "organization-seal", "bjca")
    seal = channels.enroll_server_key(Actor(), profile="organization-seal", subject=SEAL,
                                      algorithm="sm2")
    ca = channels._ca
    _info, [sealed] = SealService(database, holder, ca).apply(
        App(), [Document("d", b"referral letter")], seal_id=seal.id, detached=False)
    verify = VerificationService(ca)
    before = verify.verify_cms(sealed.signature, None)["signers"][0]
    assert before["integrity"] and not before["chain"]["trusted"]
    root = vendor.cas.sm2.chain[0]
    with pytest.raises(ValidationFailed, match="根证书"):
        ca.add_trust_anchor(Actor(), vendor.cas.sm2.certificate.to_pem())  # not self-signed
    ca.add_trust_anchor(Actor(), vendor.cas.sm2.certificate.to_pem(), kind="intermediate")
    anchor = ca.add_trust_anchor(Actor(), root.to_pem())
    with pytest.raises(Conflict):
        ca.add_trust_anchor(Actor(), root.to_pem())
    with pytest.raises(ValidationFailed, match="CA"):
        ca.add_trust_anchor(Actor(), load_certificate(seal.der).to_pem())
    after = verify.verify_cms(sealed.signature, None)["signers"][0]
    assert after["chain"]["trusted"], after
    ca.remove_trust_anchor(Actor(), anchor["id"])
    assert not verify.verify_cms(sealed.signature, None)["signers"][0]["chain"]["trusted"]
    with pytest.raises(Forbidden):
        ca.add_trust_anchor(Actor(role="audit_admin"), root.to_pem())


def test_cmp_signature_protection_configured_online(channels: ChannelService,
                                                    signed_ca: Responder) -> None:
    """A CMP channel protected by signatures (an RA certificate and key, the CA above it, the
    server's certificate pinned), configured through the service like the API does: the key
    is stored wrapped, and an appliance key is enrolled through it."""
    pki = signed_ca.pki
    client, client_key = issue_leaf(pki, "CN=medsign RA,O=测试医院,C=CN")
    assert signed_ca.server_certificate is not None
    settings = {"url": signed_ca.url,
                "protection_certificate_pem": client.to_pem().decode(),
                "protection_chain_pem": pki.issuing.to_pem().decode(),
                "server_certificate_pem": signed_ca.server_certificate.to_pem().decode()}
    with pytest.raises(ValidationFailed, match="protection_certificate_pem"):
        channels.add(Actor(), name="cmp-ra", kind="cmp",
                     settings={"url": signed_ca.url},
                     secrets={"protection_key_pem": client_key.to_pem().decode()})
    info = channels.add(Actor(), name="cmp-ra", kind="cmp", settings=settings,
                        secrets={"protection_key_pem": client_key.to_pem().decode()})
    assert info.to_json()["has_secrets"] and "protection_key_pem" not in info.settings
    channels.switch(Actor(), "organization-seal", "cmp-ra")
    algorithm = "rsa" if pki.key_type.startswith("rsa") else "sm2"
    seal = channels.enroll_server_key(Actor(), profile="organization-seal", subject=SEAL,
                                      algorithm=algorithm)
    assert seal.channel == "cmp-ra" and signed_ca.kinds()[:2] == ["ir", "cert_conf"]
    assert not signed_ca.problems

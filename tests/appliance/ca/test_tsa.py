"""The RFC 3161 TSA (both engines): SM2/SM3 and RSA/SHA-256 tokens that verify (signcore; the
RSA ones also with ``openssl ts -verify``), the nonce echoed, a refusal while the clock is not
confirmed by the time source (a real chronyd on loopback, then stopped), and RFC 3161
rejections for bad queries; over HTTP with the RFC 3161 media types."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.config import TsaConfig
from appliance.custody import KeyHolder
from appliance.errors import ClockUnsynchronized, Conflict
from appliance.services.ca import CaService
from appliance.services.channels import ChannelService
from appliance.services.timesync import ClockCheck
from appliance.services.tsa import TsaService
from appliance.storage import Database
from ca_client import SubjectInfo
from signcore import tsp
from signcore.hashes import HashAlgorithm
from tests.appliance.ca.test_ca_service import Actor
from tests.appliance.ca.test_channels import AuditRecorder
from tests.support.chrony import chrony_server
from tests.support.peers import LoopbackProcess, run_tool
from tests.support.pki import write_pem

TSA = SubjectInfo(common_name="测试医院时间戳服务", organization="测试医院")
DOCUMENT = "电子病历 EMR-0007 第 3 页".encode()
POLICY = "2.999.16.1"


@pytest.fixture(scope="module")
def ntp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackProcess]:
    with chrony_server(tmp_path_factory.mktemp("chrony")) as server:
        yield server


def _tsa(database: Database, holder: KeyHolder, ntp_port: int, *algorithms: str) -> tuple[
        CaService, TsaService, AuditRecorder]:
    audit = AuditRecorder()
    ca = CaService(database, holder, public_url="http://127.0.0.1:8080", audit=audit)
    channels = ChannelService(database, holder, ca, audit=audit)
    for algorithm in algorithms:
        ca.initialize(Actor(), algorithm, "测试医院")
        channels.switch(Actor(), "tsa", f"builtin-{algorithm}")
        channels.enroll_server_key(Actor(), profile="tsa", subject=TSA, algorithm=algorithm)
    config = TsaConfig(ntp_servers=f"127.0.0.1:{ntp_port}", policy_oid=POLICY)
    return ca, TsaService(database, holder, ca, config, audit=audit), audit


def test_sm2_and_rsa_tokens(database: Database, holder: KeyHolder, ntp: LoopbackProcess,
                            tmp_path: Path, openssl_bin: str) -> None:
    assert ntp.port is not None
    ca, service, audit = _tsa(database, holder, ntp.port, "sm2", "rsa")
    for algorithm, hash_algorithm in (("sm2", HashAlgorithm.SM3), ("rsa", HashAlgorithm.SHA256),
                                      ("sm2", HashAlgorithm.SHA256)):
        request = tsp.build_request(data=DOCUMENT, hash_algorithm=hash_algorithm)
        response = service.stamp(request.der, algorithm=algorithm)
        authority = ca.active_authority(algorithm)
        verified = tsp.verify_response(response, request, trust_roots=[authority.root],
                                       intermediates=[authority.certificate])
        assert verified.valid, verified.problems
        assert verified.info.nonce == request.nonce and verified.info.policy == POLICY
        assert abs(verified.info.gen_time - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)
        if algorithm == "rsa":
            query = tmp_path / "q.tsq"
            query.write_bytes(request.der)
            reply = tmp_path / "r.tsr"
            reply.write_bytes(response)
            doc = tmp_path / "doc.txt"
            doc.write_bytes(DOCUMENT)
            chain = write_pem(tmp_path / "chain.pem", authority.root)
            untrusted = write_pem(tmp_path / "issuing.pem", authority.certificate)
            out = run_tool([openssl_bin, "ts", "-verify", "-in", reply, "-queryfile", query,
                            "-CAfile", chain, "-untrusted", untrusted])
            assert b"Verification: OK" in out.stdout, out.stdout + out.stderr
    assert len([e for e in audit.entries if e[1] == "tsa.stamp"]) == 3


def test_rejections_and_no_certificate(database: Database, holder: KeyHolder,
                                       ntp: LoopbackProcess) -> None:
    assert ntp.port is not None
    _ca, service, _audit = _tsa(database, holder, ntp.port, "sm2")
    bad = tsp.load_response(service.stamp(b"\x30\x03\x02\x01\x01"))
    assert bad.status == "rejection" and "bad_data_format" in bad.failure_info
    other_policy = tsp.build_request(data=DOCUMENT, hash_algorithm=HashAlgorithm.SM3,
                                     policy="2.999.1")
    refused = tsp.load_response(service.stamp(other_policy.der))
    assert refused.status == "rejection" and "unaccepted_policy" in refused.failure_info
    with pytest.raises(Conflict, match="RSA"):
        service.stamp(tsp.build_request(data=DOCUMENT).der, algorithm="rsa")


def test_refuses_while_the_clock_is_unconfirmed(database: Database, holder: KeyHolder,
                                               tmp_path: Path) -> None:
    with chrony_server(tmp_path / "chrony") as server:
        assert server.port is not None
        ca, service, audit = _tsa(database, holder, server.port, "sm2")
        request = tsp.build_request(data=DOCUMENT, hash_algorithm=HashAlgorithm.SM3)
        assert tsp.load_response(service.stamp(request.der)).granted
        port = server.port
    stopped = TsaService(database, holder, ca, TsaConfig(ntp_servers=f"127.0.0.1:{port}"),
                         clock_check=ClockCheck([("127.0.0.1", port)], max_offset=1.0,
                                                timeout=0.3), audit=audit)
    with pytest.raises(ClockUnsynchronized) as raised:
        stopped.stamp(request.der)
    assert raised.value.status == 503
    with pytest.raises(ClockUnsynchronized):
        stopped.stamp(request.der)
    alerts = [e for e in audit.entries if e[1] == "tsa.clock-unsynchronized"]
    assert len(alerts) == 1  # alerted once, not per request


def test_over_http(database: Database, holder: KeyHolder, ntp: LoopbackProcess) -> None:
    import falcon.testing  # noqa: PLC0415

    from appliance.api import problems  # noqa: PLC0415
    from appliance.api import tsa as tsa_api  # noqa: PLC0415
    from appliance.api.access import AccessControl  # noqa: PLC0415

    assert ntp.port is not None
    _ca, service, _audit = _tsa(database, holder, ntp.port, "sm2")
    app = falcon.App(middleware=[AccessControl([])])
    problems.install(app)
    for path, resource in tsa_api.routes(service).items():
        app.add_route(path, resource)
    client = falcon.testing.TestClient(app)
    request = tsp.build_request(data=DOCUMENT, hash_algorithm=HashAlgorithm.SM3)
    answer = client.simulate_post("/tsa/sm2", body=request.der,
                                  headers={"Content-Type": "application/timestamp-query"})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/timestamp-reply"
    assert tsp.load_response(answer.content).granted
    assert client.simulate_post("/tsa", body=request.der).status_code == 415
    assert client.simulate_post("/tsa/dsa", body=request.der, headers={
        "Content-Type": "application/timestamp-query"}).status_code == 404


def test_sealed_with_a_time_stamp_stays_valid_after_revocation(
        database: Database, holder: KeyHolder, ntp: LoopbackProcess) -> None:
    """A seal whose signature carries the TSA's time stamp proves when it was made: revoking
    the seal certificate afterwards does not invalidate it; without the stamp it would."""
    from appliance.services.seals import Document, SealService  # noqa: PLC0415
    from appliance.services.verification import VerificationService  # noqa: PLC0415
    from tests.appliance.ca.test_seals import App  # noqa: PLC0415

    assert ntp.port is not None
    ca, tsa, _audit = _tsa(database, holder, ntp.port, "sm2")
    channels = ChannelService(database, holder, ca)
    seal = channels.enroll_server_key(Actor(), profile="organization-seal", subject=TSA,
                                      algorithm="sm2")
    seals = SealService(database, holder, ca, tsa=tsa)
    _info, [stamped] = seals.apply(App(), [Document("emr", DOCUMENT)], detached=False,
                                   timestamp=True)
    _info, [plain] = seals.apply(App(), [Document("emr", DOCUMENT)], detached=False)
    verify = VerificationService(ca)
    result = verify.verify_cms(stamped.signature, None)
    signer = result["signers"][0]
    assert result["valid"] and signer["timestamp"]["valid"], signer
    assert signer["checked_at"] == signer["timestamp"]["time"]
    # Revocation times are whole seconds, rounded down: revoke in a later second than the
    # stamp, as a real revocation would be.
    time.sleep(1.1)
    channels.revoke(Actor(), seal.id, "cessation_of_operation")
    after = verify.verify_cms(stamped.signature, None)
    assert after["valid"], after
    assert not verify.verify_cms(plain.signature, None)["valid"]
    assert verify.verify_cms(plain.signature, None)["signers"][0]["timestamp"] is None

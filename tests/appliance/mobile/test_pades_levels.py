"""PAdES sign requests above B-B: each phone's signature gets the appliance's signature time
stamp (B-T), the DSS with validation data (B-LT) and a document time stamp (B-LTA), made
before the transaction that stores it; while the TSA cannot issue, the co-signature is
refused with a 503 and nothing changes (the task stays pending for the phone to try again)."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

import pdfsign
from appliance.config import TsaConfig
from appliance.custody import KeyHolder
from appliance.services.ca import CaService
from appliance.services.channels import ChannelService
from appliance.services.signers import SignerService
from appliance.storage import Database
from tests.appliance.auth.conftest import make_site
from tests.appliance.ca.test_ca_service import Actor
from tests.appliance.ca.test_tsa import TSA
from tests.appliance.mobile.conftest import DOCTOR, PHARMACIST, Hospital, _signer
from tests.appliance.mobile.phone import ApiError
from tests.appliance.mobile.test_flows import _prescription
from tests.pdfsign.pdfs import minimal_pdf
from tests.support.chrony import chrony_server
from tests.support.peers import LoopbackProcess


@pytest.fixture(scope="module")
def ntp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackProcess]:
    with chrony_server(tmp_path_factory.mktemp("chrony")) as server:
        yield server


def _hospital(database: Database, holder: KeyHolder, tsa: TsaConfig) -> Hospital:
    """The mobile suites' hospital, with an SM2 TSA certificate and the given clock check."""
    site = make_site(database, holder, tsa=tsa)
    ca = CaService(database, holder, public_url="http://127.0.0.1:8080")
    ca.initialize(Actor(), "sm2", "测试医院")
    ChannelService(database, holder, ca).enroll_server_key(Actor(), profile="tsa", subject=TSA,
                                                           algorithm="sm2")
    credential, secret = site.apps.create(
        None, name="互联网医院", scopes="sign:request sign:read signer:read signer:write")
    signers = SignerService(database, holder)
    return Hospital(site, ca, credential.key_id, secret, _signer(signers, holder, DOCTOR),
                    _signer(signers, holder, PHARMACIST))


def _pades(hospital: Hospital, level: str, *, review: bool = True) -> dict[str, object]:
    body = {"title": "门诊处方 RX-2026-0901", "format": "pades", "level": level,
            "documents": [{"name": "rx.pdf", "content": base64.b64encode(
                minimal_pdf("e-prescription RX-2026-0901")).decode()}],
            "signers": [{"signer_id": hospital.doctor_id, "action": "sign"},
                        *([{"signer_id": hospital.pharmacist_id, "action": "review"}]
                          if review else [])]}
    answer: dict[str, object] = hospital.backend("POST", "/api/v1/sign-requests", body).json
    return answer


@pytest.mark.parametrize("level", ["B-T", "B-LT", "B-LTA"])
def test_doctor_and_pharmacist_sign_at_the_requested_level(
        database: Database, holder: KeyHolder, ntp: LoopbackProcess, level: str) -> None:
    hospital = _hospital(database, holder, TsaConfig(ntp_servers=f"127.0.0.1:{ntp.port}"))
    try:
        request = _pades(hospital, level)
        assert request["level"] == level
        for signer in (hospital.doctor_id, hospital.pharmacist_id):
            phone = hospital.phone_for(signer)
            phone.sign([phone.tasks()[0]["id"]])
        result = hospital.backend("GET", f"/api/v1/sign-requests/{request['id']}/result").json
        signed = base64.b64decode(result["documents"][0]["signature"])
        authority = hospital.ca.active_authority("sm2")
        reports = pdfsign.validate_pdf(signed, [authority.root], [authority.certificate])
        assert [r.field for r in reports] == ["medsign-step-1", "medsign-step-2"]
        assert all(r.ok and r.timestamp is not None for r in reports), reports
        # B-LT: the DSS answers for every signature, offline; B-LTA adds document time stamps
        expected = {"B-T": "B-T", "B-LT": "B-LT", "B-LTA": "B-LTA"}[level]
        assert reports[-1].level == expected, reports[-1]
    finally:
        hospital.site.appliance.audit.close()


def test_an_unsynchronized_clock_refuses_and_changes_nothing(
        database: Database, holder: KeyHolder) -> None:
    """No time source: the TSA may not issue.  The last co-sign message gets 503 and changes
    nothing; the request and its task stay pending."""
    hospital = _hospital(database, holder, TsaConfig())
    try:
        request = _pades(hospital, "B-T", review=False)
        phone = hospital.phone_for(hospital.doctor_id)
        with pytest.raises(ApiError) as refused:
            phone.sign([phone.tasks()[0]["id"]])
        assert refused.value.status == 503
        assert refused.value.problem["code"] == "clock-unsynchronized"
        state = hospital.backend("GET", f"/api/v1/sign-requests/{request['id']}").json
        assert state["status"] == "pending"
        assert [s["status"] for s in state["signers"]] == ["pending"]
        assert [t["id"] for t in phone.tasks()] == [state["signers"][0]["task_id"]]
    finally:
        hospital.site.appliance.audit.close()


def test_levels_are_for_pades_and_checked(database: Database, holder: KeyHolder) -> None:
    hospital = _hospital(database, holder, TsaConfig())
    try:
        for fmt, level in (("pades", "B-X"), ("cms-detached", "B-T")):
            with pytest.raises(ApiError) as refused:
                body = {"format": fmt, "level": level, "signers": [
                    {"signer_id": hospital.doctor_id}], "documents": [
                    {"name": "rx.pdf", "content": base64.b64encode(
                        minimal_pdf("rx")).decode()}]}
                hospital.backend("POST", "/api/v1/sign-requests", body)
            assert refused.value.status == 400, refused.value.problem
        assert _prescription(hospital, fmt="pades", review=False, documents=[
            {"name": "rx.pdf", "content": base64.b64encode(minimal_pdf("rx")).decode()}]
        )["level"] == "B-B"
    finally:
        hospital.site.appliance.audit.close()

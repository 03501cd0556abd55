"""PAdES B-LT / B-LTA seals from the appliance (both engines): the DSS holds the built-in
CA's own OCSP answers (asked in process, no HTTP) for the seal and the TSA certificates, the
sealed PDF validates offline (pdfsign, no revocation source), POST /api/v1/verify reports the
level, revocation and document timestamps; an archive timestamp from the appliance's TSA
keeps it B-LTA; bad levels are refused."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from asn1crypto import ocsp as asn1_ocsp
from pyhanko.pdf_utils.reader import PdfFileReader

import pdfsign
from appliance.api.hmac_signing import sign_request
from appliance.custody import KeyHolder
from appliance.errors import ValidationFailed
from appliance.services import pdf_ltv
from appliance.services.ca import CaService
from appliance.services.channels import ChannelService
from appliance.services.seals import Document, SealService
from appliance.services.verification import VerificationService
from appliance.storage import Database
from pdfsign.ltv import document_validation_data
from tests.appliance.auth.conftest import Site
from tests.appliance.ca.test_ca_service import Actor
from tests.appliance.ca.test_seals import SEAL, App
from tests.appliance.ca.test_tsa import _tsa
from tests.pdfsign.pdfs import minimal_pdf
from tests.support.chrony import chrony_server
from tests.support.peers import LoopbackProcess


@pytest.fixture(scope="module")
def ntp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackProcess]:
    with chrony_server(tmp_path_factory.mktemp("chrony")) as server:
        yield server


@pytest.mark.parametrize("algorithm", ["sm2", "rsa"])
def test_b_lt_and_b_lta_seals(database: Database, holder: KeyHolder, ntp: LoopbackProcess,
                              algorithm: str) -> None:
    assert ntp.port is not None
    ca, tsa, _audit = _tsa(database, holder, ntp.port, algorithm)
    channels = ChannelService(database, holder, ca)
    if algorithm == "rsa":
        channels.switch(Actor(), "organization-seal", "builtin-rsa")
    seal = channels.enroll_server_key(Actor(), profile="organization-seal", subject=SEAL,
                                      algorithm=algorithm)
    seals = SealService(database, holder, ca, tsa=tsa)
    authority = ca.active_authority(algorithm)
    pdf = minimal_pdf("discharge summary 0001")
    _info, [b_lt] = seals.apply(App(), [Document("a", pdf)], pades=True, level="B-LT")
    _info, [b_lta] = seals.apply(App(), [Document("b", pdf)], pades=True, level="B-LTA")
    for sealed, level in ((b_lt.signature, "B-LT"), (b_lta.signature, "B-LTA")):
        assert sealed.startswith(pdf)
        _certs, info = document_validation_data(PdfFileReader(io.BytesIO(sealed)))
        serials = {int(s["cert_id"]["serial_number"].native)
                   for der in info.ocsp_responses
                   for s in asn1_ocsp.OCSPResponse.load(der).basic_ocsp_response[
                       "tbs_response_data"]["responses"]}
        assert int(seal.serial_hex, 16) in serials and len(serials) == 2  # seal and TSA
        (report,) = pdfsign.validate_pdf(sealed, [authority.root])  # offline: DSS only
        assert report.ok and report.level == level and report.revocation == "good", report
        result = VerificationService(ca).verify_pdf(sealed)
        assert result["valid"] and result["signatures"][0]["level"] == level, result
        assert len(result["document_timestamps"]) == (level == "B-LTA")

    archived = pdfsign.add_archive_timestamp(b_lta.signature, tsa.stamp,
                                             pdf_ltv.validation_data(ca))
    result = VerificationService(ca).verify_pdf(archived)
    assert result["valid"] and result["signatures"][0]["level"] == "B-LTA"
    assert [s["ok"] for s in result["document_timestamps"]] == [True, True]
    assert result["document_timestamps"][0]["revocation"] == "good"

    with pytest.raises(ValidationFailed, match="level"):
        seals.apply(App(), [Document("x", pdf)], pades=True, level="B-X")
    with pytest.raises(ValidationFailed, match="pades"):
        seals.apply(App(), [Document("x", pdf)], level="B-LT")
    with pytest.raises(ValidationFailed, match="B-B"):
        seals.apply(App(), [Document("x", pdf)], pades=True, level="B-B", timestamp=True)


def test_seal_level_over_http(site: Site, database: Database, holder: KeyHolder) -> None:
    """``level`` on POST /api/v1/seal: B-B seals; a bad level, a level for CMS, or a level
    needing the TSA on an appliance without one are refused (problem documents)."""
    ca = CaService(database, holder, public_url="http://127.0.0.1:8080")
    ca.initialize(Actor(), "sm2", "测试医院")
    ChannelService(database, holder, ca).enroll_server_key(
        Actor(), profile="organization-seal", subject=SEAL, algorithm="sm2")
    sealer, secret = site.apps.create(None, name="HIS", scopes="seal")
    pdf = base64.b64encode(minimal_pdf()).decode()

    def post(**fields: Any) -> Any:
        body = json.dumps({"documents": [{"id": "rx-1", "content": pdf}], **fields}).encode()
        headers = {"Content-Type": "application/json",
                   **sign_request("POST", "/api/v1/seal", key_id=sealer.key_id, secret=secret,
                                  body=body)}
        return site.client.simulate_post("/api/v1/seal", body=body, headers=headers)

    answer = post(format="pades", level="B-B")
    assert answer.status_code == 200, answer.text
    (report,) = pdfsign.validate_pdf(base64.b64decode(answer.json["results"][0]["signature"]),
                                     [ca.active_authority("sm2").root])
    assert report.ok and report.level == "B-B"
    for fields, status in (({"format": "pades", "level": "B-Z"}, 400),
                           ({"format": "pades", "level": 3}, 400),
                           ({"format": "cms-detached", "level": "B-T"}, 400)):
        answer = post(**fields)
        assert answer.status_code == status, (fields, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")
    answer = post(format="pades", level="B-LT")  # this site's TSA has no time source
    assert answer.status_code == 503 and answer.json["code"] == "clock-unsynchronized", \
        answer.text

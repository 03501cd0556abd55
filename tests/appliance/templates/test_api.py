"""Templates over HTTP through the whole app, on both engines: the security administrator
uploads, publishes, retires (CSRF-checked console session); an application (scope
``sign:request``) reads and renders; ``POST /api/v1/documents/render`` answers the PDF, or with
``sign_request`` a ``pades`` request whose steps sign into the template's slots -- signed on two
phones, validated, checked by qpdf.  Bad uploads and values are problem documents naming the
field, storing nothing."""

from __future__ import annotations

import base64
import io
import json
import time
from pathlib import Path
from typing import Any

import falcon.testing
import pytest
from pyhanko.pdf_utils.reader import PdfFileReader
from sqlalchemy import func, select

import pdfsign
from appliance.api.access import SECURITY_ADMIN
from appliance.storage import Database, schema
from tests.appliance.mobile.conftest import Hospital
from tests.appliance.mobile.phone import ApiError
from tests.appliance.templates.test_service import sample_spec
from tests.pdfsign.forms import SIDECAR, acroform_pdf
from tests.pdfsign.test_acroform import FORM_VALUES
from tests.pdfsign.test_templates import VALUES
from tests.support.peers import require_tool, run_tool

SECURE_COOKIE = "__Host-medsign_session"


class Console:
    """A signed-in security administrator."""

    def __init__(self, hospital: Hospital, username: str = "sec") -> None:
        site = hospital.site
        enrolment = site.create_account(username, SECURITY_ADMIN)
        login = site.login(username, enrolment)
        assert login.status_code == 200, login.text
        self.client = site.client
        self.cookies = {SECURE_COOKIE: login.cookies[SECURE_COOKIE].value}
        self.csrf = login.json["csrf_token"]

    def call(self, method: str, path: str, body: Any = None) -> falcon.testing.Result:
        return self.client.simulate_request(
            method, path, cookies=self.cookies, json=body,
            headers={"X-CSRF-Token": self.csrf} if method != "GET" else None)


def _problem(result: falcon.testing.Result, status: int, code: str) -> dict[str, Any]:
    assert result.status_code == status, result.text
    assert result.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = result.json
    assert problem["code"] == code
    return problem


def _stored(database: Database) -> int:
    with database.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(
            schema.form_template_versions)).scalar_one())


def test_upload_read_render_and_retire(hospital: Hospital, database: Database) -> None:
    console = Console(hospital)
    created = console.call("POST", "/api/v1/templates", {"layout": sample_spec()})
    assert created.status_code == 201, created.text
    assert created.json["name"] == "e-prescription"
    # applications read and render, but do not upload
    listed = hospital.backend("GET", "/api/v1/templates").json["items"]
    assert [t["name"] for t in listed] == ["e-prescription"]
    with pytest.raises(ApiError) as refused:
        hospital.backend("POST", "/api/v1/templates", {"layout": sample_spec()})
    assert refused.value.status == 403
    answer = hospital.backend("POST", "/api/v1/documents/render",
                              {"template": "e-prescription", "values": VALUES})
    assert answer.headers["content-type"] == "application/pdf"
    assert answer.headers["x-medsign-template"] == "e-prescription@1"
    info = PdfFileReader(io.BytesIO(answer.content)).trailer["/Info"]
    assert str(info["/MedsignTemplate"]) == "e-prescription@1"
    # the console may render too
    by_console = console.call("POST", "/api/v1/documents/render",
                              {"template": "e-prescription", "values": VALUES})
    assert by_console.status_code == 200 and by_console.content.startswith(b"%PDF-")
    source = console.call("GET", "/api/v1/templates/e-prescription/versions/1/source")
    assert json.loads(source.content)["id"] == "e-prescription"
    assert console.call("GET", "/api/v1/templates/e-prescription/versions/9/source"
                        ).status_code == 404
    # a new version, then retirement
    form = {"acroform": base64.b64encode(acroform_pdf()).decode(), "sidecar": SIDECAR}
    assert console.call("POST", "/api/v1/templates", form).status_code == 201
    published = console.call("POST", "/api/v1/templates/consent-form/versions",
                             {"acroform": form["acroform"]})
    assert published.status_code == 201 and published.json["latest_version"] == 2
    rendered = hospital.backend("POST", "/api/v1/documents/render", {
        "template": "consent-form", "version": 1, "values": FORM_VALUES})
    assert rendered.headers["x-medsign-template"] == "consent-form@1"
    retired = console.call("POST", "/api/v1/templates/e-prescription/retire")
    assert retired.status_code == 200 and retired.json["status"] == "retired"
    _problem(console.call("POST", "/api/v1/documents/render",
                          {"template": "e-prescription", "values": VALUES}),
             409, "template-retired")
    got = console.call("GET", "/api/v1/templates/e-prescription").json
    assert got["status"] == "retired" and got["versions"][0]["sm3"]
    assert console.call("GET", "/api/v1/templates?all=true").json["items"][1]["status"] == \
        "retired"
    with database.engine.connect() as conn:
        logged = conn.execute(select(schema.audit_log.c.action, schema.audit_log.c.actor,
                                     schema.audit_log.c.subject).where(
            schema.audit_log.c.subject.like("template:%")).order_by(
            schema.audit_log.c.seq)).all()
    assert [tuple(r) for r in logged] == [
        ("template.upload", "admin:sec", "template:e-prescription"),
        ("template.upload", "admin:sec", "template:consent-form"),
        ("template.publish", "admin:sec", "template:consent-form"),
        ("template.retire", "admin:sec", "template:e-prescription")]


BAD_HTTP_UPLOADS: dict[str, tuple[dict[str, Any], str]] = {
    "unknown field type": ({"layout": {**sample_spec(), "fields": [
        {"name": "x", "type": "slider", "x": 1, "y": 1}]}}, "x"),
    "non-pdf": ({"acroform": base64.b64encode(b"hello").decode(), "name": "x"}, "acroform"),
    "corrupt": ({"acroform": base64.b64encode(acroform_pdf()[:500]).decode(), "name": "x"},
                "acroform"),
}


@pytest.mark.parametrize("case", sorted(BAD_HTTP_UPLOADS))
def test_bad_uploads_are_problems_naming_the_field(hospital: Hospital, database: Database,
                                                   case: str) -> None:
    console = Console(hospital)
    body, field = BAD_HTTP_UPLOADS[case]
    problem = _problem(console.call("POST", "/api/v1/templates", body), 400,
                       "template-invalid")
    assert problem["field"] == field
    assert _stored(database) == 0


def test_huge_bodies_and_wrong_values(hospital: Hospital, database: Database) -> None:
    console = Console(hospital)
    huge = {"acroform": "A" * (11 * 1024 * 1024), "name": "x"}
    assert console.call("POST", "/api/v1/templates", huge).status_code == 413
    assert console.call("POST", "/api/v1/templates", {"layout": sample_spec()}
                        ).status_code == 201
    with pytest.raises(ApiError) as wrong:
        hospital.backend("POST", "/api/v1/documents/render", {
            "template": "e-prescription", "values": {**VALUES, "age": "四十二"}})
    assert wrong.value.status == 400
    assert wrong.value.problem["code"] == "template-values-invalid"
    assert wrong.value.problem["field"] == "age"
    with pytest.raises(ApiError) as missing:
        hospital.backend("POST", "/api/v1/documents/render",
                         {"template": "no-such", "values": {}})
    assert missing.value.status == 404
    # the console cannot create sign requests (they belong to applications)
    _problem(console.call("POST", "/api/v1/documents/render", {
        "template": "e-prescription", "values": VALUES,
        "sign_request": {"signers": [{"signer_id": hospital.doctor_id}]}}), 403, "forbidden")
    assert _stored(database) == 1


def test_render_into_a_sign_request_signed_in_the_slots(hospital: Hospital,
                                                        tmp_path: Path) -> None:
    console = Console(hospital)
    assert console.call("POST", "/api/v1/templates", {"layout": sample_spec()}
                        ).status_code == 201
    doctor = hospital.phone_for(hospital.doctor_id)
    pharmacist = hospital.phone_for(hospital.pharmacist_id)
    body = {"template": "e-prescription", "values": VALUES,
            "sign_request": {"title": "门诊处方 RX-2026-0815", "signers": [
                {"signer_id": hospital.doctor_id},
                {"signer_id": hospital.pharmacist_id, "action": "review"}]}}
    key = {"Idempotency-Key": "rx-2026-0815"}
    created = hospital.backend("POST", "/api/v1/documents/render", body, key)
    assert created.status_code == 201
    request = created.json
    time.sleep(1.05)  # the retry's PDF has another /ModDate: still the same request
    retried = hospital.backend("POST", "/api/v1/documents/render", body, key)
    assert retried.status_code == 200 and retried.json["id"] == request["id"]
    changed = {**body, "values": {**VALUES, "patient_name": "李四"}}
    with pytest.raises(ApiError) as conflict:
        hospital.backend("POST", "/api/v1/documents/render", changed, key)
    assert (conflict.value.status, conflict.value.problem["code"]) == (409,
                                                                        "idempotency-conflict")
    assert request["template"] == "e-prescription@1" and request["status"] == "pending"
    doctor.sign([doctor.tasks()[0]["id"]])
    pharmacist.sign([pharmacist.tasks()[0]["id"]])
    result = hospital.backend("GET", f"/api/v1/sign-requests/{request['id']}/result").json
    signed = base64.b64decode(result["documents"][0]["signature"])
    reports = pdfsign.validate_pdf(signed, [hospital.ca.active_authority("sm2").root])
    assert [r.field for r in reports] == ["medsign-step-1", "medsign-step-2"]
    assert all(r.ok for r in reports), reports
    reader = PdfFileReader(io.BytesIO(signed))
    assert str(reader.trailer["/Info"]["/MedsignTemplate"]) == "e-prescription@1"
    rects = {str(f.get_object()["/T"]): [int(v) for v in f.get_object()["/Rect"]]
             for f in reader.root["/AcroForm"]["/Fields"]}
    slots = {s["name"]: s["rect"] for s in sample_spec()["signatures"]}
    assert rects["medsign-step-1"] == slots["doctor"]  # the doctor signed in the doctor's slot
    assert rects["medsign-step-2"] == slots["pharmacist"]
    (tmp_path / "rx.pdf").write_bytes(signed)
    checked = run_tool([require_tool("qpdf"), "--check", tmp_path / "rx.pdf"], check=False)
    assert checked.returncode == 0, checked.stdout

"""The template service on SQLite and PostgreSQL: uploads (layout JSON/YAML, AcroForm PDF with
a sidecar) make immutable versions with their SM3 digest, uploader and time; new versions;
retirement; renders record id@version; every bad upload or value is a 4xx naming the field
and stores nothing; uploads and retirements are audited."""

from __future__ import annotations

import base64
import copy
import io
import json
from typing import Any

import pytest
import yaml
from pyhanko.pdf_utils.reader import PdfFileReader
from sqlalchemy import func, select

from appliance.errors import ApplianceError, Conflict, NotFound
from appliance.services.templates import (
    SAMPLE,
    TemplateInvalid,
    TemplateRetired,
    TemplateService,
    ValuesInvalid,
)
from appliance.storage import Database, schema
from signcore.hashes import sm3
from tests.appliance.ca.test_ca_service import Actor
from tests.appliance.ca.test_channels import AuditRecorder
from tests.pdfsign.forms import SIDECAR, acroform_pdf
from tests.pdfsign.pdfs import encrypted_pdf, minimal_pdf
from tests.pdfsign.test_acroform import FORM_VALUES
from tests.pdfsign.test_templates import VALUES


def sample_spec() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(SAMPLE.read_text(encoding="utf-8"))
    return spec


def _service(database: Database) -> tuple[TemplateService, AuditRecorder]:
    audit = AuditRecorder()
    return TemplateService(database, audit=audit), audit


def _counts(database: Database) -> tuple[int, int]:
    with database.engine.connect() as conn:
        return (conn.execute(select(func.count()).select_from(schema.form_templates))
                .scalar_one(),
                conn.execute(select(func.count()).select_from(schema.form_template_versions))
                .scalar_one())


def _info(pdf: bytes) -> Any:
    return PdfFileReader(io.BytesIO(pdf)).trailer["/Info"]


def test_layout_upload_versions_and_render(database: Database) -> None:
    service, audit = _service(database)
    created = service.upload(Actor(), {"layout": sample_spec()})
    assert (created["name"], created["latest_version"], created["status"]) == (
        "e-prescription", 1, "active")
    (v1,) = created["versions"]
    assert v1["kind"] == "layout" and v1["created_by"] == "admin:sec"
    assert [s["name"] for s in v1["signatures"]] == ["doctor", "pharmacist", "hospital_seal"]
    assert {f["type"] for f in v1["fields"]} >= {"text", "table", "checkbox", "choice"}
    media, source = service.source("e-prescription", 1)
    assert media == "application/json" and v1["sm3"] == sm3(source).hex()
    assert json.loads(source)["id"] == "e-prescription"
    rendered = service.render("e-prescription", VALUES)
    assert rendered.template == "e-prescription@1"
    assert str(_info(rendered.pdf)["/MedsignTemplate"]) == "e-prescription@1"
    # a new version (YAML text this time); the first stays as it was
    spec = sample_spec()
    spec["title"]["text"] = "门诊电子处方（新版）"
    updated = service.publish(Actor(name="sec2"), "e-prescription",
                              {"layout": yaml.safe_dump(spec, allow_unicode=True)})
    assert updated["latest_version"] == 2 and updated["title"] == "门诊电子处方（新版）"
    assert [v["version"] for v in updated["versions"]] == [2, 1]
    assert updated["versions"][1] == v1
    assert service.source("e-prescription", 1)[1] == source
    assert str(_info(service.render("e-prescription", VALUES).pdf)["/MedsignTemplate"]) == \
        "e-prescription@2"
    old = service.render(str(created["id"]), VALUES, version=1)  # by numeric id too
    assert str(_info(old.pdf)["/Title"]) == "门诊电子处方"
    with pytest.raises(NotFound):
        service.render("e-prescription", VALUES, version=3)
    assert [e[1] for e in audit.entries] == ["template.upload", "template.publish"]
    assert audit.entries[1][2:4] == ("admin:sec2", "template:e-prescription")
    assert audit.entries[1][4]["sm3"] == updated["versions"][0]["sm3"]


def test_acroform_upload_with_a_yaml_sidecar(database: Database) -> None:
    service, _audit = _service(database)
    pdf = acroform_pdf()
    created = service.upload(Actor(), {
        "acroform": base64.b64encode(pdf).decode(),
        "sidecar": yaml.safe_dump(SIDECAR, allow_unicode=True)})
    assert created["name"] == "consent-form" and created["title"] == "知情同意书"
    version = created["versions"][0]
    assert version["kind"] == "acroform"
    assert [s["name"] for s in version["signatures"]] == ["patient_sig", "doctor_sig"]
    assert service.source("consent-form", 1) == ("application/pdf", pdf)
    rendered = service.render("consent-form", FORM_VALUES)
    assert rendered.template == "consent-form@1"
    assert rendered.pdf.startswith(pdf)
    named = service.upload(Actor(), {"acroform": base64.b64encode(pdf).decode(),
                                     "name": "bare-form"})
    assert [f["type"] for f in named["versions"][0]["fields"]][:2] == ["text", "text"]


def test_retired_templates_neither_render_nor_change(database: Database) -> None:
    service, audit = _service(database)
    service.upload(Actor(), {"layout": sample_spec()})
    retired = service.retire(Actor(), "e-prescription")
    assert retired["status"] == "retired" and retired["retired_by"] == "admin:sec"
    assert service.templates() == []
    assert [t["name"] for t in service.templates(include_retired=True)] == ["e-prescription"]
    with pytest.raises(TemplateRetired):
        service.render("e-prescription", VALUES)
    with pytest.raises(TemplateRetired):
        service.publish(Actor(), "e-prescription", {"layout": sample_spec()})
    with pytest.raises(TemplateRetired):
        service.retire(Actor(), "e-prescription")
    assert audit.entries[-1][1] == "template.retire"
    assert _counts(database) == (1, 1)


def _with_field(change: dict[str, Any]) -> dict[str, Any]:
    spec = sample_spec()
    spec["fields"][0] = {**spec["fields"][0], **change}
    return spec


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


BAD_UPLOADS: dict[str, tuple[dict[str, Any], str]] = {
    "unknown field type": ({"layout": _with_field({"type": "slider"})}, "hospital_name"),
    "unknown key": ({"layout": _with_field({"colour": "red"})}, "hospital_name"),
    "bad yaml": ({"layout": "fields: [\n"}, "layout"),
    "not an object": ({"layout": "- a list"}, "layout"),
    "neither": ({"name": "x"}, "layout"),
    "both": ({"layout": sample_spec(), "acroform": _b64(acroform_pdf())}, "layout"),
    "sidecar with layout": ({"layout": sample_spec(), "sidecar": {}}, "sidecar"),
    "non-pdf": ({"acroform": _b64(b"GIF89a" + bytes(64)), "name": "x"}, "acroform"),
    "corrupt pdf": ({"acroform": _b64(acroform_pdf()[:400]), "name": "x"}, "acroform"),
    "encrypted pdf": ({"acroform": _b64(encrypted_pdf()), "name": "x"}, "acroform"),
    "huge pdf": ({"acroform": _b64(acroform_pdf() + b"%" * (5 * 1024 * 1024)), "name": "x"},
                 "acroform"),
    "not base64": ({"acroform": "%%%", "name": "x"}, "acroform"),
    "radio button": ({"acroform": _b64(acroform_pdf(radio=True)), "name": "x"}, "sex"),
    "pdf without a form": ({"acroform": _b64(minimal_pdf()), "name": "x"}, "pdf"),
    "sidecar type": ({"acroform": _b64(acroform_pdf()),
                      "sidecar": {**SIDECAR, "fields": {"weight": {"type": "image"}}}},
                     "weight"),
    "bad name": ({"layout": {**sample_spec(), "id": "Bad Name"}}, "name"),
    "huge spec": ({"layout": {**sample_spec(), "description": "长" * 100_000}}, "layout"),
}


@pytest.mark.parametrize("case", sorted(BAD_UPLOADS))
def test_bad_uploads_store_nothing(database: Database, case: str) -> None:
    service, audit = _service(database)
    body, field = BAD_UPLOADS[case]
    with pytest.raises(TemplateInvalid) as info:
        service.upload(Actor(), copy.deepcopy(body))
    assert info.value.status == 400 and info.value.code == "template-invalid"
    assert field in str(info.value.extensions.get("field")), info.value.extensions
    assert _counts(database) == (0, 0) and audit.entries == []


def test_duplicate_names_and_mismatched_versions(database: Database) -> None:
    service, _audit = _service(database)
    service.upload(Actor(), {"layout": sample_spec()})
    with pytest.raises(Conflict, match="已存在"):
        service.upload(Actor(), {"layout": sample_spec()})
    form = {"acroform": _b64(acroform_pdf()), "sidecar": SIDECAR}  # names consent-form
    with pytest.raises(TemplateInvalid, match="consent-form"):
        service.publish(Actor(), "e-prescription", form)
    with pytest.raises(NotFound):
        service.publish(Actor(), "no-such-template", {"layout": sample_spec()})
    assert _counts(database) == (1, 1)


BAD_VALUES: dict[str, tuple[Any, str]] = {
    "wrong type": ({**VALUES, "age": "42"}, "age"),
    "missing": ({k: v for k, v in VALUES.items() if k != "patient_name"}, "patient_name"),
    "unknown": ({**VALUES, "colour": 1}, "colour"),
    "bad row": ({**VALUES, "drugs": [{"name": "药"}]}, "drugs[1].quantity"),
    "not an object": ([1, 2], "values"),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_values(database: Database, case: str) -> None:
    service, _audit = _service(database)
    service.upload(Actor(), {"layout": sample_spec()})
    values, field = BAD_VALUES[case]
    with pytest.raises(ValuesInvalid) as info:
        service.render("e-prescription", values)
    assert isinstance(info.value, ApplianceError) and info.value.status == 400
    assert info.value.extensions["field"] == field


def test_the_form_size_limit_is_pdfsigns() -> None:
    from appliance.services import templates  # noqa: PLC0415
    from pdfsign import acroform  # noqa: PLC0415

    assert templates.MAX_FORM_BYTES == acroform.MAX_FORM_BYTES


def test_seed_sample_once(database: Database) -> None:
    service, _audit = _service(database)
    assert service.seed_sample(Actor()) is True
    assert service.seed_sample(Actor()) is False
    assert [t["name"] for t in service.templates()] == ["e-prescription"]


def test_image_fields_through_the_service(database: Database) -> None:
    from PIL import Image  # noqa: PLC0415

    from tests.pdfsign.test_templates import image_spec  # noqa: PLC0415

    service, _audit = _service(database)
    service.upload(Actor(), {"layout": image_spec()})
    png = io.BytesIO()
    Image.new("RGB", (40, 80), (0, 90, 200)).save(png, format="PNG")
    rendered = service.render("photo-card", {"name": "王五", "photo": _b64(png.getvalue())})
    page = PdfFileReader(io.BytesIO(rendered.pdf)).root["/Pages"]["/Kids"][0]
    assert page["/Resources"]["/XObject"]["/Im1"]["/Width"] == 40
    with pytest.raises(ValuesInvalid) as info:
        service.render("photo-card", {"name": "王五", "photo": _b64(b"not an image")})
    assert info.value.extensions["field"] == "photo"

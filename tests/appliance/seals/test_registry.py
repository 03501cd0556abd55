"""Seal management (both engines): a seal is created with a server-held key certified through
the active channel, gets an image (bad uploads change nothing), is bound to another key, is
enabled/disabled and scoped to applications; ``SealService.apply`` then enforces it (unknown
404, disabled 409, out of scope 403), shows the image in PAdES seals (template slot or box),
and logs every use (usage rows with paging, audit entries)."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from PIL import Image
from pyhanko.pdf_utils.reader import PdfFileReader
from sqlalchemy import update

import pdfsign
from appliance.custody import KeyHolder
from appliance.errors import Conflict, Forbidden, NotFound, ValidationFailed
from appliance.services.ca import CaService
from appliance.services.channels import ChannelService
from appliance.services.seal_registry import MAX_IMAGE_BYTES, SealRegistry
from appliance.services.seals import Document, Placement, SealService
from appliance.storage import Database, schema
from ca_client import SubjectInfo
from signcore.hashes import HashAlgorithm, digest
from tests.appliance.ca.test_ca_service import Actor
from tests.appliance.ca.test_channels import AuditRecorder
from tests.pdfsign.pdfs import minimal_pdf
from tests.pdfsign.test_appearance import seal_png
from tests.pdfsign.test_templates import rendered

RX = "处方 RX-0001".encode()


class App:
    kind, name, role, scopes = "app", "app_his", None, frozenset({"seal"})

    def __init__(self, app_id: int) -> None:
        self.id = app_id


class Auditor:
    kind, name, id, role = "admin", "aud", 2, "audit_admin"


class Env:
    def __init__(self, database: Database, holder: KeyHolder, algorithm: str) -> None:
        self.audit = AuditRecorder()
        self.ca = CaService(database, holder, public_url="http://127.0.0.1:8080",
                            audit=self.audit)
        self.ca.initialize(Actor(), algorithm, "测试医院")
        self.channels = ChannelService(database, holder, self.ca, audit=self.audit)
        if algorithm == "rsa":
            self.channels.switch(Actor(), "organization-seal", "builtin-rsa")
        self.registry = SealRegistry(database, self.ca, self.channels, audit=self.audit)
        self.seals = SealService(database, holder, self.ca, audit=self.audit)
        self.seals.set_registry(self.registry)
        self.database, self.holder, self.algorithm = database, holder, algorithm

    def create(self, name: str = "hospital", **kwargs: Any) -> Any:
        arguments: dict[str, Any] = {
            "name": name, "kind": "hospital", "department": None,
            "common_name": "测试医院电子印章", "organization": "测试医院",
            "algorithm": self.algorithm, **kwargs}
        return self.registry.create(Actor(), **arguments)

    def applications(self, *names: str) -> list[int]:
        from appliance.services.applications import ApplicationService  # noqa: PLC0415
        from tests.appliance.auth.conftest import SECURITY  # noqa: PLC0415

        apps = ApplicationService(self.database, self.holder, SECURITY)
        return [apps.create(None, name=n, scopes="seal")[0].id for n in names]

    def actions(self, action: str) -> list[Any]:
        return [e for e in self.audit.entries if e[1] == action]


@pytest.fixture(params=["sm2", "rsa"])
def env(request: pytest.FixtureRequest, database: Database, holder: KeyHolder) -> Env:
    return Env(database, holder, request.param)


def _png(size: tuple[int, int] = (120, 120)) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", size, (200, 0, 0, 128)).save(out, format="PNG")
    return out.getvalue()


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 40), (200, 0, 0)).save(out, format="JPEG")
    return out.getvalue()


# --- management ---------------------------------------------------------------------------------


def test_create_issues_a_certificate_through_the_channel(env: Env) -> None:
    seal = env.create(image=seal_png())
    assert seal.enabled and seal.applications == () and seal.kind == "hospital"
    assert seal.image_sm3 == digest(HashAlgorithm.SM3, seal_png()).hex()
    info = env.ca.get(seal.certificate_id)
    assert info.profile == "organization-seal" and "测试医院电子印章" in info.subject
    assert info.key_type.startswith(env.algorithm)
    assert [e[4]["certificate_id"] for e in env.actions("seal.create")] == [info.id]
    assert [s.name for s in env.registry.list(Actor())] == ["hospital"]
    with pytest.raises(Conflict, match="已存在"):
        env.create()
    department = env.create("dept-cardio", kind="department", department="心内科")
    assert department.department == "心内科"
    for bad in ({"name": "Bad Name"}, {"name": "x", "kind": "ward"},
                {"name": "y", "kind": "department"}, {"name": "z", "algorithm": "dsa"}):
        with pytest.raises(ValidationFailed):
            env.create(**bad)
    assert len(env.registry.list(Actor())) == 2


def test_only_the_security_administrator_manages_seals(env: Env) -> None:
    seal = env.create()
    for call in (lambda: env.registry.list(Auditor()),
                 lambda: env.registry.get(Auditor(), seal.id),
                 lambda: env.registry.set_enabled(Auditor(), seal.id, False),
                 lambda: env.registry.set_image(Auditor(), seal.id, _png()),
                 lambda: env.registry.usage(Auditor(), seal.id),
                 lambda: env.create("other") and env.registry.create(
                     Auditor(), name="n", kind="hospital", department=None, common_name="c",
                     organization="o", algorithm="sm2")):
        with pytest.raises(Forbidden):
            call()


BAD_IMAGES = {
    "empty": b"", "text": b"hello", "pdf": b"%PDF-1.7\n", "jpeg": _jpeg(),
    "truncated": _png()[:60], "corrupt": _png()[:-20] + b"\x00" * 20,
    "too-big": b"\x89PNG\r\n\x1a\n" + b"\x00" * MAX_IMAGE_BYTES,
    "too-many-pixels": _png((3000, 3000)),
}


def test_bad_images_are_refused_and_nothing_is_stored(env: Env) -> None:
    seal = env.create(image=_png())
    empty = env.create("empty")
    for name, image in BAD_IMAGES.items():
        with pytest.raises(ValidationFailed, match="image"):
            env.registry.set_image(Actor(), seal.id, image)
        with pytest.raises(ValidationFailed, match="image"):
            env.registry.set_image(Actor(), empty.id, image)
        assert env.registry.get(Actor(), seal.id).image_sm3 == seal.image_sm3, name
        assert env.registry.image(Actor(), seal.id) == _png()
        with pytest.raises(NotFound, match="图片"):
            env.registry.image(Actor(), empty.id)
        with pytest.raises(ValidationFailed, match="image"):
            env.create("second", image=image)
    assert [s.name for s in env.registry.list(Actor())] == ["hospital", "empty"]
    assert len(env.actions("seal.image")) == 0


def test_bind_another_certificate(env: Env) -> None:
    seal = env.create()
    renewed = env.channels.enroll_server_key(
        Actor(), profile="organization-seal", algorithm=env.algorithm,
        subject=SubjectInfo(common_name="测试医院电子印章", organization="测试医院"))
    bound = env.registry.bind(Actor(), seal.id, renewed.id)
    assert bound.certificate_id == renewed.id
    (entry,) = env.actions("seal.bind")
    assert entry[4] == {"old_certificate_id": seal.certificate_id, "certificate_id": renewed.id}
    info, _ = env.seals.apply(Actor(), [Document("rx", RX)], managed_seal=seal.id)
    assert info.id == renewed.id
    with pytest.raises(ValidationFailed, match="organization-seal"):  # not a seal's key
        env.registry.bind(Actor(), seal.id, _tsa_certificate(env))
    with pytest.raises(NotFound):
        env.registry.bind(Actor(), seal.id, 999_999)
    with pytest.raises(NotFound):
        env.registry.bind(Actor(), 999_999, renewed.id)


# --- enforcement on apply -----------------------------------------------------------------------


def test_apply_enforces_enabled_and_scope_and_logs_usage(env: Env) -> None:
    seal = env.create(image=seal_png())
    his, lis = env.applications("HIS", "LIS")
    with pytest.raises(NotFound):
        env.seals.apply(App(his), [Document("rx", RX)], managed_seal=999)
    with pytest.raises(Forbidden):
        env.seals.apply(App(his), [Document("rx", RX)], managed_seal=seal.id)
    with pytest.raises(Forbidden):  # the certificate of a managed seal: the same rules
        env.seals.apply(App(his), [Document("rx", RX)], seal_id=seal.certificate_id)
    env.registry.set_scope(Actor(), seal.id, [his])
    with pytest.raises(ValidationFailed, match="没有编号"):
        env.registry.set_scope(Actor(), seal.id, [his, 424242])
    assert env.registry.get(Actor(), seal.id).applications == (his,)
    for i in range(3):
        env.seals.apply(App(his), [Document(f"rx-{i}", RX), Document(f"lis-{i}", RX)],
                        managed_seal=seal.id, request_id=f"req-{i}")
    with pytest.raises(Forbidden):
        env.seals.apply(App(lis), [Document("rx", RX)], managed_seal=seal.id)
    env.registry.set_enabled(Actor(), seal.id, False)
    with pytest.raises(Conflict, match="停用"):
        env.seals.apply(App(his), [Document("rx", RX)], managed_seal=seal.id)
    with pytest.raises(Conflict, match="停用"):  # nobody seals with a disabled seal
        env.seals.apply(Actor(), [Document("rx", RX)])
    env.registry.set_enabled(Actor(), seal.id, True)
    page = env.registry.usage(Actor(), seal.id, offset=1, limit=2)
    assert page["total"] == 6 and page["offset"] == 1 and page["limit"] == 2
    assert [u["document_id"] for u in page["items"]] == ["rx-2", "lis-1"]
    use = page["items"][0]
    hash_algorithm = HashAlgorithm.SM3 if env.algorithm == "sm2" else HashAlgorithm.SHA256
    assert use["document_digest"] == digest(hash_algorithm, RX).hex()
    assert (use["application_id"], use["format"], use["request_id"]) == (
        his, "cms-detached", "req-2")
    audited = env.actions("seal.use")
    assert [e[4]["request_id"] for e in audited] == ["req-0", "req-1", "req-2"]
    assert audited[0][2] == "app:app_his" and audited[0][3] == f"seal:{seal.id}"
    with pytest.raises(ValidationFailed):
        env.registry.usage(Actor(), seal.id, limit=0)
    # a renewed certificate stays under the seal's rules, whichever id is asked for
    renewed = env.channels.enroll_server_key(
        Actor(), profile="organization-seal", algorithm=env.algorithm,
        subject=SubjectInfo(common_name="测试医院电子印章", organization="测试医院"))
    with env.database.transaction() as conn:
        conn.execute(update(schema.certificates)
                     .where(schema.certificates.c.id == seal.certificate_id)
                     .values(replaced_by=renewed.id))
    with pytest.raises(Forbidden):
        env.seals.apply(App(lis), [Document("rx", RX)], seal_id=renewed.id)
    info, _ = env.seals.apply(App(his), [Document("rx", RX)], managed_seal=seal.id)
    assert info.id == renewed.id


def test_unmanaged_certificates_seal_as_before(env: Env) -> None:
    legacy = env.channels.enroll_server_key(
        Actor(), profile="organization-seal", algorithm=env.algorithm,
        subject=SubjectInfo(common_name="旧印章", organization="测试医院"))
    info, [sealed] = env.seals.apply(App(77), [Document("rx", RX)], seal_id=legacy.id)
    assert info.id == legacy.id and sealed.signature
    assert env.actions("seal.use") == []


def _appearance(pdf: bytes, field: str) -> tuple[bytes, Any]:
    reader = PdfFileReader(io.BytesIO(pdf), strict=False)
    for ref in reader.root["/AcroForm"]["/Fields"]:
        widget = ref.get_object()
        if widget["/T"] == field:
            stream = widget["/AP"]["/N"].get_object()
            return stream.data, stream["/Resources"]
    raise AssertionError(field)


def test_pades_seals_show_the_seal_image(env: Env) -> None:
    seal = env.create(image=seal_png())
    roots = [env.ca.active_authority(env.algorithm).root]
    documents = [Document("box", minimal_pdf())]
    _info, [boxed] = env.seals.apply(Actor(), documents, pades=True, managed_seal=seal.id,
                                     placement=Placement(box=(400, 60, 520, 180)))
    (report,) = pdfsign.validate_pdf(boxed.signature, roots)
    assert report.ok, report.problems
    field = report.field
    content, resources = _appearance(boxed.signature, field)
    (name,) = list(resources["/XObject"])
    image = resources["/XObject"][name].get_object()
    assert "/SMask" in image and image["/Width"] == 160
    assert re.search(rb"cm " + name.encode() + rb" Do", content)
    # into the template's seal slot, found by name
    _info, [slotted] = env.seals.apply(Actor(), [Document("rx", rendered())], pades=True,
                                       managed_seal=seal.id)
    reports = pdfsign.validate_pdf(slotted.signature, roots)
    assert [r.field for r in reports] == ["hospital_seal"] and reports[0].ok
    _content, resources = _appearance(slotted.signature, "hospital_seal")
    assert "/XObject" in resources
    with pytest.raises(ValidationFailed, match="空签名域"):
        env.seals.apply(Actor(), documents, pades=True, managed_seal=seal.id,
                        placement=Placement(field="nope"))


def _tsa_certificate(env: Env) -> int:
    """A certificate with a server-held key that is not a seal's (a TSA's)."""
    if env.algorithm == "rsa":
        env.channels.switch(Actor(), "tsa", "builtin-rsa")
    info = env.channels.enroll_server_key(
        Actor(), profile="tsa", algorithm=env.algorithm,
        subject=SubjectInfo(common_name="测试医院时间戳", organization="测试医院"))
    return int(info.id)

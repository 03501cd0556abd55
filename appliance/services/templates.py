"""PDF form templates: security administrators upload them (a layout spec, JSON or YAML, or an
AcroForm PDF with an optional sidecar), publish new versions and retire them; applications
render a template with values into a PDF, or straight into a ``pades`` sign request.

Every version is immutable once stored: its source (a layout spec as canonical JSON, with the
template's name and the version number the appliance assigned; or the PDF and the sidecar),
the SM3 digest of that source, the uploader and the time.  Uploads, new versions and
retirements are audited (category ``data``); renders are not (a render changes nothing -- the
sign request it may feed is audited by the sign request service).

Threat model: uploads are parsed by :mod:`pdfsign` as hostile input (size limits, encrypted or
corrupt PDFs and unknown field types refused) before anything is stored; values come from
applications and are checked against the field types (4xx naming the field, nothing stored).
A rendered PDF records ``id@version`` in its document information, so a signed document names
the exact template version it was made from.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import yaml
from sqlalchemy import Connection, Row, insert, select, update

import pdfsign
from appliance.errors import Conflict, Forbidden, NotFound, ValidationFailed
from appliance.services._time import aware, utc_now
from appliance.services.admins import Actor, actor_label
from appliance.services.sign_requests import SignRequestService
from appliance.storage import Database, schema
from signcore.hashes import sm3

if TYPE_CHECKING:  # loaded on first use: fontTools and Pillow stay out of idle workers
    from pdfsign.acroform import AcroFormTemplate
    from pdfsign.templates import Template

__all__ = [
    "KINDS",
    "MAX_SPEC_BYTES",
    "RenderedDocument",
    "TemplateInvalid",
    "TemplateRetired",
    "TemplateService",
    "ValuesInvalid",
]

KINDS = ("layout", "acroform")
#: The largest layout spec accepted (JSON or YAML text); AcroForm PDFs: MAX_FORM_BYTES.
MAX_SPEC_BYTES = 256 * 1024
MAX_TITLE = 200
SAMPLE = Path(pdfsign.__file__).parent / "templates" / "e-prescription.json"
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_CACHE_SIZE = 64

T = schema.form_templates
V = schema.form_template_versions
AuditHook = Callable[[str, str, str, str, dict[str, Any]], object]
Loaded: TypeAlias = "Template | AcroFormTemplate"
#: The largest AcroForm PDF accepted (pdfsign.acroform.MAX_FORM_BYTES, checked there too).
MAX_FORM_BYTES = 5 * 1024 * 1024


class TemplateInvalid(ValidationFailed):
    """The uploaded template is not usable; ``field`` names what is wrong."""

    code, title = "template-invalid", "模板无效"


class ValuesInvalid(ValidationFailed):
    """The values do not fit the template's fields; ``field`` names the field."""

    code, title = "template-values-invalid", "模板字段值无效"


class TemplateRetired(Conflict):
    code, title = "template-retired", "模板已停用"


@dataclasses.dataclass(frozen=True)
class Upload:
    """An upload as it will be stored: its kind, source bytes and sidecar (canonical JSON)."""

    kind: str
    source: bytes
    sidecar: str | None

    @property
    def digest(self) -> str:
        data = self.source if self.sidecar is None else (
            self.source + b"\0" + self.sidecar.encode())
        return sm3(data).hex()


@dataclasses.dataclass(frozen=True)
class RenderedDocument:
    pdf: bytes
    template: str  # id@version
    signature_slots: list[str]  # the slots' PDF field names, in signing order


def _canonical(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _iso(value: dt.datetime | None) -> str | None:
    return aware(value).isoformat() if value is not None else None


# --- reading uploads ----------------------------------------------------------------------------


def _structured(value: Any, what: str, limit: int) -> Any:
    """A JSON object given as such, or as JSON/YAML text."""
    if isinstance(value, str):
        if len(value.encode()) > limit:
            raise TemplateInvalid(f"{what}: larger than {limit} bytes", field=what)
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise TemplateInvalid(f"{what}: not valid JSON or YAML ({exc})", field=what) from None
    if not isinstance(value, dict):
        raise TemplateInvalid(f"{what}: expected an object (or JSON/YAML text of one)",
                              field=what)
    if len(_canonical(value).encode()) > limit:
        raise TemplateInvalid(f"{what}: larger than {limit} bytes", field=what)
    return value


def _pdf_bytes(value: Any) -> bytes:
    import base64  # noqa: PLC0415

    if not isinstance(value, str) or len(value) > MAX_FORM_BYTES * 4 // 3 + 4:
        raise TemplateInvalid(f"acroform: a base64 PDF of at most {MAX_FORM_BYTES} bytes",
                              field="acroform")
    try:
        data = base64.b64decode(value, validate=True)
    except ValueError:
        raise TemplateInvalid("acroform: not valid base64", field="acroform") from None
    if len(data) > MAX_FORM_BYTES:
        raise TemplateInvalid(f"acroform: the PDF is larger than {MAX_FORM_BYTES} bytes",
                              field="acroform")
    return data


def _compile(name: str, version: int, upload: Upload) -> Loaded:
    """The template of an upload under ``name``/``version``; :class:`TemplateInvalid` if it is
    not one."""
    from pdfsign.acroform import AcroFormTemplate  # noqa: PLC0415
    from pdfsign.templates import Template  # noqa: PLC0415

    try:
        if upload.kind == "layout":
            spec = json.loads(upload.source)
            return Template.from_spec({**spec, "id": name, "version": version})
        sidecar = json.loads(upload.sidecar) if upload.sidecar else None
        return AcroFormTemplate.from_pdf(upload.source, sidecar, template_id=name,
                                         version=version)
    except pdfsign.EncryptedPdf:
        raise TemplateInvalid("acroform: 不接受加密的 PDF (the PDF is encrypted)",
                              field="acroform") from None
    except pdfsign.TemplateError as exc:
        raise TemplateInvalid(f"模板无效: {exc}", field=exc.field or "") from None
    except pdfsign.PdfSignError as exc:
        raise TemplateInvalid(f"acroform: 无法读取的 PDF ({exc})", field="acroform") from None


def _summary(template: Loaded) -> dict[str, Any]:
    """The fields and signature slots as stored and listed."""
    from pdfsign.templates import Template  # noqa: PLC0415

    if isinstance(template, Template):
        fields = [{"name": f.name, "type": f.type, "label": f.label, "required": f.required,
                   **({"options": list(f.options)} if f.options else {}),
                   **({"columns": [{"name": c.name, "label": c.label, "type": c.type,
                                    "required": c.required} for c in f.columns]}
                      if f.columns else {})}
                  for f in template.fields]
        title = template.title.text if template.title else ""
    else:
        fields = [{"name": f.name, "type": f.type, "label": f.label, "required": f.required,
                   **({"options": list(f.field.options)} if f.field.options else {})}
                  for f in template.fields]
        title = template.description or ""
    slots = [{"name": s.name, "role": s.role, "order": s.order, "kind": s.kind,
              "page": s.page, "rect": list(s.rect)} for s in template.signatures]
    return {"title": title[:MAX_TITLE], "fields": fields, "signatures": slots}


def parse_upload(body: Mapping[str, Any]) -> tuple[str | None, Upload]:
    """(the name the upload gives itself, the upload) from an API body: ``layout`` (an object
    or JSON/YAML text), or ``acroform`` (base64 PDF) with an optional ``sidecar``."""
    if ("layout" in body) == ("acroform" in body):
        raise TemplateInvalid("give either layout (a layout spec) or acroform (a base64 PDF)",
                              field="layout")
    if "layout" in body:
        if "sidecar" in body:
            raise TemplateInvalid("sidecar: only with acroform", field="sidecar")
        spec = _structured(body["layout"], "layout", MAX_SPEC_BYTES)
        name = spec.get("id")
        return (name if isinstance(name, str) else None,
                Upload("layout", _canonical(spec).encode(), None))
    pdf = _pdf_bytes(body["acroform"])
    sidecar = body.get("sidecar")
    parsed = None if sidecar is None else _structured(sidecar, "sidecar", MAX_SPEC_BYTES)
    name = parsed.get("id") if parsed else None
    return (name if isinstance(name, str) else None,
            Upload("acroform", pdf, None if parsed is None else _canonical(parsed)))


# --- the service --------------------------------------------------------------------------------


class TemplateService:
    def __init__(self, database: Database, sign_requests: SignRequestService | None = None, *,
                 audit: AuditHook | None = None,
                 clock: Callable[[], dt.datetime] = utc_now) -> None:
        self._db, self._sign_requests = database, sign_requests
        self._audit, self._clock = audit, clock
        self._cache: dict[tuple[int, int], Loaded] = {}
        self._lock = threading.Lock()

    # -- administration

    def upload(self, actor: Actor, body: Mapping[str, Any]) -> dict[str, Any]:
        """A new template, version 1; its name is ``name`` in the body, else the spec's (or
        sidecar's) ``id``."""
        own_name, upload = parse_upload({k: v for k, v in body.items() if k != "name"})
        name = body.get("name", own_name)
        if not isinstance(name, str) or not _NAME.match(name):
            raise TemplateInvalid("name: a template name (lower-case letters, digits, . _ -; "
                                  "at most 64), in the body or as the spec's id", field="name")
        template = _compile(name, 1, upload)
        summary = _summary(template)
        now = self._clock()
        with self._db.transaction() as conn:
            if conn.execute(select(T.c.id).where(T.c.name == name)).first() is not None:
                raise Conflict(f"模板 {name} 已存在；发布新版本请用 POST "
                               f"/api/v1/templates/{name}/versions")
            template_id = conn.execute(insert(T).values(
                name=name, title=summary["title"], status="active", latest_version=1,
                created_at=now, created_by=actor_label(actor)).returning(T.c.id)).scalar_one()
            self._insert_version(conn, template_id, 1, upload=upload, summary=summary,
                                 actor=actor, now=now)
            answer = self._json(conn, template_id)
        self._record("template.upload", actor, name, {"version": 1, "kind": upload.kind,
                                                      "sm3": upload.digest})
        return answer

    def publish(self, actor: Actor, ref: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """A new version of an active template (the next number)."""
        own_name, upload = parse_upload(body)
        with self._db.engine.connect() as conn:
            row = self._row(conn, ref)
        if own_name is not None and own_name != row.name:
            raise TemplateInvalid(f"id: the upload names template {own_name!r}, not "
                                  f"{row.name!r}", field="id")
        self._check_active(row)
        version = int(row.latest_version) + 1
        summary = _summary(_compile(row.name, version, upload))
        now = self._clock()
        with self._db.transaction() as conn:
            changed = conn.execute(update(T).where(
                T.c.id == row.id, T.c.latest_version == row.latest_version,
                T.c.status == "active").values(latest_version=version,
                                               title=summary["title"])).rowcount
            if changed != 1:
                raise Conflict("模板刚被修改或停用，请重试")
            self._insert_version(conn, row.id, version, upload=upload, summary=summary,
                                 actor=actor, now=now)
            answer = self._json(conn, row.id)
        self._record("template.publish", actor, row.name, {"version": version,
                                                           "kind": upload.kind,
                                                           "sm3": upload.digest})
        return answer

    def retire(self, actor: Actor, ref: str) -> dict[str, Any]:
        """Stop a template from rendering (its versions stay, for the documents made)."""
        now = self._clock()
        with self._db.transaction() as conn:
            row = self._row(conn, ref)
            self._check_active(row)
            conn.execute(update(T).where(T.c.id == row.id).values(
                status="retired", retired_at=now, retired_by=actor_label(actor)))
            answer = self._json(conn, row.id)
        self._record("template.retire", actor, row.name, {"version": int(row.latest_version)})
        return answer

    def _insert_version(self, conn: Connection, template_id: int, version: int, *,
                        upload: Upload, summary: Mapping[str, Any], actor: Actor,
                        now: dt.datetime) -> None:
        conn.execute(insert(V).values(
            template_id=template_id, version=version, kind=upload.kind, source=upload.source,
            sidecar=upload.sidecar, sm3=upload.digest,
            fields=_canonical({"fields": summary["fields"],
                               "signatures": summary["signatures"]}),
            created_at=now, created_by=actor_label(actor)))

    # -- reading

    def templates(self, *, include_retired: bool = False) -> list[dict[str, Any]]:
        with self._db.engine.connect() as conn:
            query = select(T).order_by(T.c.name)
            if not include_retired:
                query = query.where(T.c.status == "active")
            return [self._template_json(row) for row in conn.execute(query)]

    def get(self, ref: str) -> dict[str, Any]:
        with self._db.engine.connect() as conn:
            return self._json(conn, self._row(conn, ref).id)

    def source(self, ref: str, version: int) -> tuple[str, bytes]:
        """(media type, bytes) of a version's uploaded source."""
        with self._db.engine.connect() as conn:
            row = self._row(conn, ref)
            found = conn.execute(select(V.c.kind, V.c.source).where(
                V.c.template_id == row.id, V.c.version == version)).first()
        if found is None:
            raise NotFound(f"模板 {row.name} 没有版本 {version}")
        media = "application/pdf" if found.kind == "acroform" else "application/json"
        return media, bytes(found.source)

    def _row(self, conn: Connection, ref: str) -> Row[Any]:
        """A template by name, or by numeric id."""
        row = conn.execute(select(T).where(T.c.name == ref)).first()
        if row is None and ref.isdigit() and 0 < int(ref) < 2**63:
            row = conn.execute(select(T).where(T.c.id == int(ref))).first()
        if row is None:
            raise NotFound(f"模板 {ref} 不存在")
        return row

    @staticmethod
    def _check_active(row: Row[Any]) -> None:
        if row.status != "active":
            raise TemplateRetired(f"模板 {row.name} 已停用")

    @staticmethod
    def _template_json(row: Row[Any]) -> dict[str, Any]:
        return {"id": int(row.id), "name": row.name, "title": row.title, "status": row.status,
                "latest_version": int(row.latest_version),
                "created_at": _iso(row.created_at), "created_by": row.created_by,
                "retired_at": _iso(row.retired_at), "retired_by": row.retired_by}

    def _json(self, conn: Connection, template_id: int) -> dict[str, Any]:
        row = conn.execute(select(T).where(T.c.id == template_id)).one()
        versions = conn.execute(select(
            V.c.version, V.c.kind, V.c.sm3, V.c.fields, V.c.created_at, V.c.created_by).where(
            V.c.template_id == template_id).order_by(V.c.version.desc())).all()
        return {**self._template_json(row), "versions": [
            {"version": int(v.version), "kind": v.kind, "sm3": v.sm3,
             "created_at": _iso(v.created_at), "created_by": v.created_by,
             **json.loads(v.fields)} for v in versions]}

    # -- rendering

    def _loaded(self, ref: str, version: int | None) -> Loaded:
        """The compiled template (cached: versions never change)."""
        with self._db.engine.connect() as conn:
            row = self._row(conn, ref)
            self._check_active(row)
            wanted = int(row.latest_version) if version is None else version
            key = (int(row.id), wanted)
            with self._lock:
                cached = self._cache.get(key)
            if cached is not None:
                return cached
            stored = conn.execute(select(V).where(V.c.template_id == row.id,
                                                  V.c.version == wanted)).first()
        if stored is None:
            raise NotFound(f"模板 {row.name} 没有版本 {wanted}")
        loaded = _compile(row.name, wanted, Upload(stored.kind, bytes(stored.source),
                                                    stored.sidecar))
        with self._lock:
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = loaded
        return loaded

    def render(self, ref: str, values: Any, *, version: int | None = None,
               slot_names: list[str] | None = None) -> RenderedDocument:
        """The template filled with ``values``; ``slot_names`` renames the signature slots
        (in signing order) in the PDF."""
        template = self._loaded(ref, version)
        if not isinstance(values, Mapping):
            raise ValuesInvalid("values: expected an object", field="values")
        try:
            pdf = template.render(values, slot_names=slot_names)
        except pdfsign.TemplateError as exc:
            raise ValuesInvalid(f"字段值无效: {exc}", field=exc.field or "") from None
        slots = slot_names or template.signature_order
        return RenderedDocument(pdf, template.ref, list(slots[:len(template.signatures)]))

    def render_to_sign_request(self, actor: Actor, ref: str, values: Any, request: Any, *,
                               version: int | None = None,
                               idempotency_key: str | None = None) -> tuple[dict[str, Any],
                                                                            bool]:
        """Render, then create a ``pades`` sign request for the PDF (as ``POST
        /api/v1/sign-requests`` with ``request`` as its body, ``documents`` and ``format``
        filled in).  The template's signature slots become the steps' signature fields: slot
        N (in slot order) is named ``medsign-step-N``, the field step N signs into."""
        if self._sign_requests is None or actor.kind != "app":
            raise Forbidden("sign_request: only an application credential (scope sign:request) "
                            "can create sign requests")
        if not isinstance(request, Mapping):
            raise ValidationFailed("sign_request: expected an object (as the body of POST "
                                   "/api/v1/sign-requests, without documents and format)")
        taken = {"documents", "format"} & set(request)
        if taken:
            raise ValidationFailed(f"sign_request: {', '.join(sorted(taken))} come from the "
                                   "template")
        template = self._loaded(ref, version)
        names = [f"medsign-step-{i}" for i in range(1, len(template.signatures) + 1)]
        rendered = self.render(ref, values, version=version, slot_names=names)
        import base64  # noqa: PLC0415

        title = request.get("title") if isinstance(request.get("title"), str) else None
        body = {**request, "format": "pades", "documents": [{
            "name": f"{title or rendered.template}.pdf"[:200],
            "media_type": "application/pdf",
            "content": base64.b64encode(rendered.pdf).decode()}]}
        # The PDF carries its render time (/ModDate), so a retry is the same request when it
        # asks for the same template version, values and request — not the same bytes.
        identity = {"template": rendered.template, "values": values, "sign_request": request}
        answer, created = self._sign_requests.create(actor, body, idempotency_key,
                                                     identity=identity)
        return {**answer, "template": rendered.template}, created

    # -- demo data

    def seed_sample(self, actor: Actor) -> bool:
        """Upload the sample e-prescription unless a template of that name exists."""
        spec = json.loads(SAMPLE.read_text(encoding="utf-8"))
        with self._db.engine.connect() as conn:
            exists = conn.execute(select(T.c.id).where(T.c.name == spec["id"])).first()
        if exists is not None:
            return False
        self.upload(actor, {"layout": spec})
        return True

    def _record(self, action: str, actor: Actor, subject: str,
                details: dict[str, Any]) -> None:
        if self._audit is not None:
            self._audit("data", action, actor_label(actor), f"template:{subject}", details)

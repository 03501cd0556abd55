"""Handwritten signatures: the phone captures strokes (the mini-program SDK's handwriting module:
points x, y in [0, 1] of the pad, t in ms, pressure p in [0, 1]) and the server renders them
into the signature image used in visible signatures (PNG with a transparent background, and
SVG), kept per signer with the strokes it was drawn from.

The image is an appearance, not a signature: what binds a signer to a document is the
co-signature.  The strokes are kept so that an evidence report can show how the image was
drawn (timing and pressure), and so that it can be rendered again at another size.  In a PAdES
sign request the signer's latest handwriting becomes the visible appearance of their field
(vector paths, name, title, time: :meth:`HandwritingService.appearance`), and the SM3 digest of
the normalized strokes (``pdfsign.Strokes``) is a signed attribute of the co-signature, so the
signature commits to the drawing it shows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import itertools
import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import insert, select

import pdfsign
from appliance.errors import NotFound, ValidationFailed
from appliance.services._time import aware, utc_now
from appliance.storage import Database, schema

H = schema.handwritings
MAX_STROKES = 100
MAX_POINTS = 20_000
MAX_SIDE = 4096
MAX_T_MS = 10 * 60 * 1000
RENDER_WIDTH = 600  # pixels of the stored PNG; the height follows the pad's aspect ratio
AuditHook = Callable[[str, str, str, str, dict[str, Any]], object]

Point = tuple[float, float, float, float]  # x, y, t, p


@dataclasses.dataclass(frozen=True)
class Drawing:
    width: int
    height: int
    strokes: tuple[tuple[Point, ...], ...]

    def to_json(self) -> dict[str, Any]:
        return {"width": self.width, "height": self.height,
                "strokes": [[{"x": x, "y": y, "t": t, "p": p} for x, y, t, p in stroke]
                            for stroke in self.strokes]}


def _number(value: Any, low: float, high: float, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or \
            not math.isfinite(value) or not low <= value <= high:
        raise ValidationFailed(f"{where}: a number from {low:g} to {high:g}")
    return float(value)


def parse_drawing(body: Mapping[str, Any]) -> Drawing:
    width, height, strokes = body.get("width"), body.get("height"), body.get("strokes")
    for name, side in (("width", width), ("height", height)):
        if isinstance(side, bool) or not isinstance(side, int) or not 0 < side <= MAX_SIDE:
            raise ValidationFailed(f"{name}: the pad's size in pixels, 1 to {MAX_SIDE}")
    if not isinstance(strokes, list) or not 0 < len(strokes) <= MAX_STROKES:
        raise ValidationFailed(f"strokes: 1 to {MAX_STROKES} strokes")
    parsed, total = [], 0
    for i, stroke in enumerate(strokes):
        if not isinstance(stroke, list) or not stroke:
            raise ValidationFailed(f"strokes[{i}]: a list of points")
        total += len(stroke)
        if total > MAX_POINTS:
            raise ValidationFailed(f"at most {MAX_POINTS} points in all")
        points = []
        for j, point in enumerate(stroke):
            where = f"strokes[{i}][{j}]"
            if not isinstance(point, dict) or set(point) - {"x", "y", "t", "p"} or \
                    not {"x", "y"} <= set(point):
                raise ValidationFailed(f"{where}: an object with x, y (t, p)")
            points.append((_number(point["x"], 0, 1, f"{where}.x"),
                           _number(point["y"], 0, 1, f"{where}.y"),
                           _number(point.get("t", 0), 0, MAX_T_MS, f"{where}.t"),
                           _number(point.get("p", 0.5), 0, 1, f"{where}.p")))
        parsed.append(tuple(points))
    assert isinstance(width, int) and isinstance(height, int)
    return Drawing(width, height, tuple(parsed))


def _pen(pressure: float, scale: float) -> float:
    """Line width from pressure: 1.5 to 5 px at the stored size (as pdfsign draws it)."""
    return (1.5 + 3.5 * pressure) * scale


def render_png(drawing: Drawing, width: int = RENDER_WIDTH) -> bytes:
    """Black ink on a transparent background: the same ink as the signature appearance
    (``pdfsign.render_strokes_png`` of the normalized strokes)."""
    image = pdfsign.render_strokes_png(to_strokes(drawing), width)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def render_svg(drawing: Drawing, width: int = RENDER_WIDTH) -> bytes:
    height = max(1, round(width * drawing.height / drawing.width))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}">'
             '<g fill="none" stroke="#000" stroke-linecap="round" stroke-linejoin="round">']
    for stroke in drawing.strokes:
        if len(stroke) == 1:
            x, y, _t, p = stroke[0]
            parts.append(f'<circle cx="{x * width:.1f}" cy="{y * height:.1f}" '
                         f'r="{_pen(p, 1) / 2:.2f}" fill="#000" stroke="none"/>')
            continue
        for (x0, y0, _t0, p0), (x1, y1, _t1, p1) in itertools.pairwise(stroke):
            parts.append(f'<line x1="{x0 * width:.1f}" y1="{y0 * height:.1f}" '
                         f'x2="{x1 * width:.1f}" y2="{y1 * height:.1f}" '
                         f'stroke-width="{_pen((p0 + p1) / 2, 1):.2f}"/>')
    parts.append("</g></svg>")
    return "".join(parts).encode()


class HandwritingService:
    def __init__(self, database: Database, *, audit: AuditHook | None = None,
                 clock: Callable[[], dt.datetime] = utc_now) -> None:
        self._db, self._audit, self._clock = database, audit, clock

    def store(self, signer_id: int, device_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        drawing = parse_drawing(body)
        png = render_png(drawing)
        now = self._clock()
        with self._db.transaction() as conn:
            handwriting_id = conn.execute(insert(H).values(
                signer_id=signer_id, device_id=device_id,
                strokes=json.dumps(drawing.to_json(), separators=(",", ":")), png=png,
                created_at=now).returning(H.c.id)).scalar_one()
        if self._audit is not None:
            self._audit("data", "handwriting.store", f"device:{device_id}",
                        f"signer:{signer_id}", {"id": handwriting_id,
                                                "strokes": len(drawing.strokes)})
        return {"id": handwriting_id, "created_at": now.isoformat(),
                "width": drawing.width, "height": drawing.height,
                "strokes": len(drawing.strokes), "points": sum(map(len, drawing.strokes))}

    def latest(self, signer_id: int, kind: str = "png") -> tuple[str, bytes]:
        with self._db.engine.connect() as conn:
            row = conn.execute(select(H).where(H.c.signer_id == signer_id)
                               .order_by(H.c.id.desc()).limit(1)).first()
        if row is None:
            raise NotFound("该签名人尚未登记手写签名")
        if kind == "svg":
            return "image/svg+xml", render_svg(_drawing(json.loads(row.strokes)))
        if kind == "json":
            return "application/json", json.dumps(
                {"id": row.id, "created_at": aware(row.created_at).isoformat(),
                 **json.loads(row.strokes)}).encode()
        return "image/png", bytes(row.png)

    def appearance(self, signer_id: int, step: int, when: dt.datetime,
                   pdf: bytes) -> pdfsign.Appearance | None:
        """The visible signature of a signer's PAdES signature at ``step`` of a sign request
        over ``pdf`` (their latest handwriting, name, title, time; placed by :func:`place`),
        or None without handwriting: the signature is then invisible, as before.  Reads
        outside any transaction."""
        with self._db.engine.connect() as conn:
            row = conn.execute(select(H.c.strokes).where(H.c.signer_id == signer_id)
                               .order_by(H.c.id.desc()).limit(1)).first()
            signer = conn.execute(select(schema.signers.c.name, schema.signers.c.title)
                                  .where(schema.signers.c.id == signer_id)).first()
        if row is None or signer is None:
            return None
        page, box = place(pdf, step)
        return appearance_of(row.strokes, signer.name, signer.title, when, page=page, box=box)


def _drawing(data: Mapping[str, Any]) -> Drawing:
    return parse_drawing(data)


# --- the visible signature of PAdES sign requests ----------------------------------------------

#: China Standard Time (no DST): how the signing time is written under the handwriting.
CST = dt.timezone(dt.timedelta(hours=8), "CST")
#: Where a step's signature goes on the first page when the PDF has no place for it: boxes of
#: 120 x 60 points, three a row from the bottom left (fits A5 and A4).
BOX_WIDTH, BOX_HEIGHT, BOX_MARGIN, BOX_GAP = 120, 60, 20, 5


def to_strokes(drawing: Drawing) -> pdfsign.Strokes:
    """The drawing as pdfsign normalizes it (the strokes digest is over this)."""
    try:
        return pdfsign.Strokes.from_points(drawing.width, drawing.height, drawing.strokes)
    except pdfsign.InvalidAppearance as exc:  # parse_drawing's limits are pdfsign's
        raise ValidationFailed(str(exc)) from None


def step_box(step: int) -> tuple[int, int, int, int]:
    """The rectangle of step ``step`` (0-based): three a row, rows upwards."""
    x = BOX_MARGIN + (step % 3) * (BOX_WIDTH + BOX_GAP)
    y = BOX_MARGIN + (step // 3) * (BOX_HEIGHT + BOX_GAP)
    return (x, y, x + BOX_WIDTH, y + BOX_HEIGHT)


def place(pdf: bytes, step: int) -> tuple[int, tuple[int, int, int, int]]:
    """Where step ``step`` (0-based) of a document signs: over the empty slot a template made
    for it (the ``step``-th of ``/MedsignSignatureOrder``), else :func:`step_box` on the
    first page.  (The field keeps its ``medsign-step-N`` name: evidence reports find the
    steps by it.)"""
    try:
        order = pdfsign.signature_order(pdf)
        slots = {slot.name: slot for slot in pdfsign.signature_slots(pdf)}
    except pdfsign.PdfSignError:
        return 0, step_box(step)  # prepare_pdf reports the PDF itself
    slot = slots.get(order[step]) if step < len(order) else None
    if slot is not None and slot.box is not None:
        return slot.page, slot.box
    return 0, step_box(step)


def appearance_of(strokes_json: str, name: str, title: str, when: dt.datetime, *,
                  page: int, box: tuple[int, int, int, int]) -> pdfsign.Appearance:
    """Handwriting as vector paths, ``name title`` and the signing time (CST) under it."""
    strokes = to_strokes(parse_drawing(json.loads(strokes_json)))
    lines = (f"{name} {title}".strip()[:64], when.astimezone(CST).strftime("%Y-%m-%d %H:%M"))
    return pdfsign.Appearance(box=box, page=page, strokes=strokes, lines=lines)


__all__ = ["Drawing", "HandwritingService", "appearance_of", "parse_drawing", "place",
           "render_png", "render_svg", "step_box", "to_strokes"]

"""Handwritten signatures: the phone captures strokes (the mini-program SDK's handwriting module:
points x, y in [0, 1] of the pad, t in ms, pressure p in [0, 1]) and the server renders them
into the signature image used in visible signatures (PNG with a transparent background, and
SVG), kept per signer with the strokes it was drawn from.

The image is an appearance, not a signature: what binds a signer to a document is the
co-signature.  The strokes are kept so that an evidence report can show how the image was
drawn (timing and pressure), and so that it can be rendered again at another size.
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

from PIL import Image, ImageDraw
from sqlalchemy import insert, select

from appliance.errors import NotFound, ValidationFailed
from appliance.services._time import aware, utc_now
from appliance.storage import Database, schema

H = schema.handwritings
MAX_STROKES = 100
MAX_POINTS = 20_000
MAX_SIDE = 4096
MAX_T_MS = 10 * 60 * 1000
RENDER_WIDTH = 600  # pixels of the stored PNG; the height follows the pad's aspect ratio
SUPERSAMPLE = 4
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
    """Line width from pressure: 1.5 to 5 px at the stored size."""
    return (1.5 + 3.5 * pressure) * scale


def render_png(drawing: Drawing, width: int = RENDER_WIDTH) -> bytes:
    """Black ink on a transparent background, anti-aliased by drawing at SUPERSAMPLE x."""
    height = max(1, round(width * drawing.height / drawing.width))
    big = Image.new("LA", (width * SUPERSAMPLE, height * SUPERSAMPLE), (0, 0))
    pen = ImageDraw.Draw(big)
    sx, sy = width * SUPERSAMPLE, height * SUPERSAMPLE
    for stroke in drawing.strokes:
        for (x0, y0, _t0, p0), (x1, y1, _t1, p1) in itertools.pairwise(stroke):
            line = _pen((p0 + p1) / 2, SUPERSAMPLE)
            pen.line([(x0 * sx, y0 * sy), (x1 * sx, y1 * sy)], fill=(0, 255),
                     width=max(1, round(line)))
        for x, y, _t, p in stroke:  # round caps and joins, and single-point dots
            r = _pen(p, SUPERSAMPLE) / 2
            pen.ellipse([x * sx - r, y * sy - r, x * sx + r, y * sy + r], fill=(0, 255))
    image = big.resize((width, height), Image.Resampling.LANCZOS)
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


def _drawing(data: Mapping[str, Any]) -> Drawing:
    return parse_drawing(data)


__all__ = ["Drawing", "HandwritingService", "parse_drawing", "render_png", "render_svg"]

"""What a visible signature costs (issue 7, appearances): one-page PDFs signed per second at B-B
with an SM2 server key, invisible (the reference, measured in the same run) and with each
appearance pdfsign draws -- a seal image (PNG with alpha: image XObject + SMask) with a Chinese
line, handwriting strokes as vector paths with two Chinese lines (the strokes digest goes into
the signed attributes), the same strokes as a PNG, and pyHanko's Latin text stamp.

The ratio (appearance / invisible) shows what drawing costs on top of signing; the Chinese lines
embed a subset of the CJK font (``pdfsign._fonts.FontFace.subset``) in every document, so the
font's per-process parse is paid once, before timing.  Conventions of ``bench/ca.py``: one CPU
pinned, rounds alternating, best round kept, CPU time unless ``--elapsed``.  Every document is
validated once before timing (exit code 2 if one does not validate).
"""

from __future__ import annotations

import io
import json
import math
import sys
import time

from _common import Bench, measure, parse_single_core, pin_to_cpu, ratio, single_core_arguments
from _common import user_cpu_time as cpu_time
from pdf import build_pki, one_page_pdf
from PIL import Image, ImageDraw

from pdfsign import Appearance, Strokes, sign_pdf, validate_pdf

BOX = (72, 600, 272, 700)


def seal_png() -> bytes:
    image = Image.new("RGBA", (240, 240), (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse([6, 6, 234, 234], outline=(200, 0, 0, 255), width=14)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def strokes() -> Strokes:
    """About 300 points in 5 strokes: a signature of a few characters."""
    drawn = [[(0.05 + s * 0.18 + i / 400, 0.5 + 0.3 * math.sin(i / 6 + s), s * 900 + i * 12,
               0.3 + (i % 10) / 20) for i in range(60)] for s in range(5)]
    return Strokes.from_points(375, 200, drawn)


APPEARANCES: dict[str, Appearance | None] = {
    "invisible": None,
    "latin text stamp": Appearance(BOX),
    "seal image + 1 CJK line": Appearance(BOX, image=seal_png(), lines=("测试医院",)),
    "handwriting vector + 2 CJK lines": Appearance(BOX, strokes=strokes(),
                                                   lines=("张医生 主治医师", "%(ts)s")),
    "handwriting PNG + 1 CJK line": Appearance(BOX, strokes=strokes(), vector=False,
                                               lines=("张医生",)),
}


def main(argv: list[str] | None = None) -> int:
    parser = single_core_arguments(__doc__.splitlines()[0] if __doc__ else None)
    args = parse_single_core(parser, argv)
    cpu = pin_to_cpu(args.cpu)
    pki = build_pki("sm2")
    document = one_page_pdf()
    benches = []
    for name, appearance in APPEARANCES.items():
        def op(appearance: Appearance | None = appearance) -> bytes:
            return sign_pdf(document, pki.key, pki.certificate, chain=[pki.root],
                            appearance=appearance)

        (report,) = validate_pdf(op(), [pki.root])
        if not report.ok:
            print(f"{name}: the signed document does not validate: {report.problems}",
                  file=sys.stderr)
            return 2
        benches.append(Bench(name, op, None if appearance is None else "invisible"))
    clock = time.perf_counter if args.elapsed else cpu_time
    rows = measure(benches, rounds=args.rounds, seconds=args.seconds, clock=clock,
                   verbose=args.verbose)
    if args.json:
        print(json.dumps([{"operation": r.operation, "per_second": r.per_second,
                           "ratio": ratio(r, rows)} for r in rows], indent=2))
        return 0
    print(f"SM2 B-B one-page PDF, CPU {cpu}, {'wall clock' if args.elapsed else 'CPU time'}")
    for row in rows:
        share = ratio(row, rows)
        print(f"  {row.operation:34s} {row.per_second:8.1f} docs/s"
              + (f"   x{share:.2f} of invisible" if share is not None else "   (reference)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

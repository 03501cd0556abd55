"""Test PDFs, generated here (no binary fixtures): a minimal one-page PDF with a Helvetica text
line, written byte by byte with a correct cross-reference table, and an RC4-encrypted variant
(pyHanko's writer) for the bad-input tests."""

from __future__ import annotations

import io

from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.writer import copy_into_new_writer

__all__ = ["encrypted_pdf", "minimal_pdf"]


def minimal_pdf(text: str = "e-prescription 0001", pages: int = 1) -> bytes:
    """A valid PDF 1.7 with ``pages`` A4 pages, each showing ``text`` (ASCII)."""
    content = f"BT /F1 14 Tf 72 770 Td ({text}) Tj ET".encode("ascii")
    kids = " ".join(f"{5 + 2 * i} 0 R" for i in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
    ]
    for _ in range(pages):
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
                       b"/Resources << /Font << /F1 3 0 R >> >> /Contents 4 0 R >>")
        objects.append(b"<< >>")  # a spare object per page keeps the numbering simple
    out = io.BytesIO()
    out.write(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n"
              % (len(objects) + 1, xref))
    return out.getvalue()


def encrypted_pdf() -> bytes:
    """:func:`minimal_pdf` encrypted with a user password (pyHanko's writer, AES-256)."""
    reader = PdfFileReader(io.BytesIO(minimal_pdf()))
    writer = copy_into_new_writer(reader)
    writer.encrypt("owner-secret", "user-secret")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()

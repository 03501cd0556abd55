"""Run endesive's PDF verifier on one file (a peer for tests/peers/test_pdf_endesive.py).

Usage: ``python -m tests.peers.endesive_verify FILE.pdf ROOT.pem``; prints one JSON object per
signature (``/ByteRange``) on stdout: ``hashok``, ``signatureok``, ``certok``, ``tspok``,
``tsp_time``, ``timestamp_only`` (a document timestamp), ``whole_file`` (its byte ranges cover
the whole file).

endesive's certificate path checks go through ``certvalidator`` and ``oscrypto``, whose PyPI
release (1.3.0, 2022) cannot parse an OpenSSL version with a two-digit patch number (3.0.19 ->
"Error detecting the version of libcrypto"; wbond/oscrypto#75 and #78, fixed upstream in
d5f3437 but never released).  Before endesive is imported, this script applies the same
one-line fix (``\\d`` -> ``\\d+`` in the version regex) to oscrypto's source as it is loaded,
in this process only.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import json
import sys
from collections.abc import Sequence
from types import CodeType, ModuleType

_PATCHED = ("oscrypto._openssl._libcrypto_cffi", "oscrypto._openssl._libcrypto_ctypes")
_OLD, _NEW = rb"\\d\\.\\d\\.\\d[a-z]*", rb"\\d\\.\\d\\.\\d+[a-z]*"


class _FixedLoader(importlib.machinery.SourceFileLoader):
    def get_code(self, fullname: str) -> CodeType:
        source = self.get_data(self.path)
        if _OLD not in source and _NEW not in source:
            raise ImportError(f"{fullname}: the oscrypto fix no longer applies; drop it")
        return compile(source.replace(_OLD, _NEW), self.path, "exec")


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _PATCHED:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.origin is None:
            return None
        fixed: importlib.machinery.ModuleSpec | None = importlib.util.spec_from_file_location(
            fullname, spec.origin, loader=_FixedLoader(fullname, spec.origin))
        return fixed


def main(argv: Sequence[str]) -> int:
    pdf_path, root_path = argv
    sys.meta_path.insert(0, _Finder())
    from endesive.pdf.verify import (  # type: ignore[import-untyped]  # noqa: PLC0415
        PDFVerifier,  # imported after the fix
    )

    with open(pdf_path, "rb") as f:
        data = f.read()
    with open(root_path, "rb") as f:
        root = f.read()
    verifier = PDFVerifier(data, [root])
    results = verifier.verify_all_signatures()
    for (start, _a, b, lb), result in zip(verifier.byte_ranges, results, strict=True):
        print(json.dumps({
            "hashok": result.hashok, "signatureok": result.signatureok,
            "certok": result.certok, "tspok": result.tspok,
            "tsp_time": result.tspdata.isoformat() if result.tspdata else None,
            "timestamp_only": result.signed_data is None,
            "whole_file": start == 0 and b + lb == len(data)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

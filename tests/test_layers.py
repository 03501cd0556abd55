"""DESIGN.md section 2: lower packages never import higher ones.  Every import statement of
every module is read (ast), including those inside functions and TYPE_CHECKING blocks."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: package -> the packages of ours it may import (besides itself)
ALLOWED = {
    "signcore": set(),
    "keysplit": {"signcore"},
    "ca_client": {"signcore"},
    "pdfsign": {"signcore"},
    "evidence": {"signcore", "pdfsign"},
    "appliance": {"signcore", "keysplit", "ca_client", "pdfsign", "evidence"},
}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(p for p in ALLOWED if (ROOT / p).is_dir()))
def test_package_imports_only_lower_layers(package: str) -> None:
    directory = ROOT / package
    ours = set(ALLOWED)
    bad = {f"{path.relative_to(ROOT)} imports {name}"
           for path in directory.rglob("*.py")
           for name in _imports(path) & ours - ALLOWED[package] - {package}}
    assert not bad, sorted(bad)

"""medsign_sdk installs and runs on its own: no module of it imports the server's packages
(checked by reading every import statement, and by importing every module in a fresh
interpreter where those packages cannot be imported), and its distribution depends on
``cryptography`` only."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import medsign_sdk

SDK = Path(medsign_sdk.__file__).resolve().parent
SERVER_PACKAGES = ("signcore", "keysplit", "ca_client", "appliance", "evidence", "pdfsign",
                   "webui", "tests")

_BLOCKER = """
import importlib.abc, pkgutil, sys
BLOCKED = set(sys.argv[1].split(","))

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in BLOCKED:
            raise ImportError(f"medsign_sdk must not import {fullname}")
        return None

sys.meta_path.insert(0, Refuse())
for name in list(sys.modules):
    if name.split(".")[0] in BLOCKED:
        del sys.modules[name]
import medsign_sdk
names = ["medsign_sdk"] + [m.name for m in pkgutil.walk_packages(medsign_sdk.__path__,
                                                                   "medsign_sdk.")]
for name in names:
    __import__(name)
loaded = sorted(n for n in sys.modules if n.split(".")[0] in BLOCKED)
assert not loaded, loaded
print(len(names))
"""


def _modules() -> list[str]:
    return ["medsign_sdk"] + [m.name for m in pkgutil.walk_packages(medsign_sdk.__path__,
                                                                      "medsign_sdk.")]


def test_every_module_imports_with_the_server_packages_blocked() -> None:
    result = subprocess.run([sys.executable, "-c", _BLOCKER, ",".join(SERVER_PACKAGES)],
                            capture_output=True, text=True, timeout=120, check=False,
                            cwd=SDK.parent)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) == len(_modules()) >= 10


def test_no_import_statement_names_a_server_package() -> None:
    bad = []
    for path in SDK.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            bad += [f"{path.name}: {n}" for n in names if n.split(".")[0] in SERVER_PACKAGES]
    assert not bad, bad


def test_the_distribution_depends_on_cryptography_only() -> None:
    project = tomllib.loads((SDK.parent / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["name"] == "medsign-sdk"
    assert project["project"]["version"] == medsign_sdk.__version__ == "0.1.0"
    assert project["project"]["requires-python"] == ">=3.11"
    assert project["project"]["dependencies"] == ["cryptography>=42"]

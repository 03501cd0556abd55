"""Start-up: the self-test passes on the platform OpenSSL, and a libcrypto without what medsign
needs makes the command fail clearly (exit 2, one line) instead of running without SM2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

MEDSIGN = str(Path(sys.executable).with_name("medsign"))


def _run(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([MEDSIGN, *args], capture_output=True, text=True, env=env,
                          timeout=60, check=False)


def test_selftest_passes_on_platform_openssl() -> None:
    result = _run("selftest")
    assert result.returncode == 0, result.stderr
    assert "OpenSSL 3" in result.stdout
    for name in ("SM3: ok", "SM4: ok", "SM2 verify (GB/T 32918.5 A): ok", "SM2 sign/verify: ok"):
        assert name in result.stdout


@pytest.mark.parametrize("library", ["/nonexistent/libcrypto.so.3", "libz.so.1"])
def test_missing_or_wrong_libcrypto_fails_clearly(library: str) -> None:
    result = _run("selftest", env_extra={"MEDSIGN_LIBCRYPTO": library})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "cryptographic backend unavailable" in lines[0]
    assert "Traceback" not in result.stderr

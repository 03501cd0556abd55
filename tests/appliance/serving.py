"""Running the real thing in tests: ``medsign init`` in a temporary directory and ``medsign serve``
(gunicorn, several workers) on a loopback port, stopped with its whole process group."""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import re
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.cli import main
from tests.support.peers import LoopbackProcess, free_port

MEDSIGN = str(Path(sys.executable).with_name("medsign"))
SHARE_LINE = re.compile(r"officer (\d+) of (\d+): (\S+)")


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str


def cli(*argv: str | os.PathLike[str]) -> CliResult:
    """``medsign ARGV`` in-process with stdout/stderr captured; no traceback ever."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([os.fspath(a) for a in argv])
    result = CliResult(code, out.getvalue(), err.getvalue())
    assert "Traceback" not in result.err, result.err
    return result


def cli_process(*argv: str | os.PathLike[str], stdin: str = "",
                env: dict[str, str] | None = None) -> CliResult:
    """The installed console script in a subprocess (stdin is a pipe, not a terminal)."""
    proc = subprocess.run([MEDSIGN, *map(os.fspath, argv)], input=stdin, capture_output=True,
                          text=True, timeout=120, check=False, env=env or clean_env())
    assert "Traceback" not in proc.stderr, proc.stderr
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without MEDSIGN_* settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MEDSIGN_") or k == "MEDSIGN_LIBCRYPTO"}
    env.update(extra)
    return env


def shares_of(init_output: str) -> list[str]:
    return [m.group(3) for m in SHARE_LINE.finditer(init_output)]


@dataclass
class Server:
    process: LoopbackProcess
    port: int
    access_log: Path
    tls_context: ssl.SSLContext | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.tls_context else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def connection(self) -> http.client.HTTPConnection:
        if self.tls_context is not None:
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=60,
                                               context=self.tls_context)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def request(self, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
        """One request on a fresh connection; (status, headers, JSON or text body)."""
        conn = self.connection()
        try:
            data = json.dumps(body).encode() if body is not None else None
            all_headers = {"Connection": "close", **(headers or {})}
            if data is not None:
                all_headers.setdefault("Content-Type", "application/json")
            conn.request(method, path, body=data, headers=all_headers)
            response = conn.getresponse()
            raw = response.read()
            kind = response.getheader("Content-Type", "")
            parsed: Any = json.loads(raw) if "json" in kind and raw else raw.decode()
            return response.status, dict(response.getheaders()), parsed
        finally:
            conn.close()

    def worker_pids(self) -> set[int]:
        """The pids of the workers that answered so far (the access log's ``pid=``)."""
        text = self.access_log.read_text() if self.access_log.exists() else ""
        return {int(p) for p in re.findall(r"pid=<?(\d+)", text)}


def _healthy(port: int, tls_context: ssl.SSLContext | None) -> bool:
    try:
        status, _, _ = Server(None, port, Path(), tls_context).request(  # type: ignore[arg-type]
            "GET", "/healthz")
    except (OSError, http.client.HTTPException):
        return False
    return status in (200, 503)


@contextlib.contextmanager
def serving(config_file: Path, *, workers: int = 2, threads: int = 2,
            tls_context: ssl.SSLContext | None = None,
            env: dict[str, str] | None = None) -> Iterator[Server]:
    """``medsign serve`` on a fresh loopback port until the block ends."""
    port = free_port()
    access_log = config_file.parent / f"access-{port}.log"
    process = LoopbackProcess(
        [MEDSIGN, "serve", "--config", config_file, "--bind", f"127.0.0.1:{port}",
         "--access-log", access_log],
        port=port, name="medsign-serve", timeout=60,
        ready=lambda: _healthy(port, tls_context),  # an HTTP answer, not only a bound port
        env=clean_env(MEDSIGN_SERVER_WORKERS=str(workers), MEDSIGN_SERVER_THREADS=str(threads),
                      **(env or {})))
    with process:
        yield Server(process, port, access_log, tls_context)

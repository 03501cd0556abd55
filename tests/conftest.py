"""Suite-wide fixtures: the real peers (see ``tests.support.peers``) and the hypothesis profiles.

Kept small on purpose: helpers live in ``tests/support``, fixtures that only one suite needs live
in that suite's own conftest.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path

import pytest
from hypothesis import settings

from signcore.sm2 import SM2PrivateKey, SM2PublicKey
from tests.support import gmssl_oracle
from tests.support.peers import LoopbackFactory, LoopbackProcess, Ready, StrPath, require_tool

# No deadline anywhere: the CI machines are small and shared, and a timing flake is not a finding.
# "ci" prints the reproduction blob of a failing example, so a CI failure can be replayed locally.
settings.register_profile("dev", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=False, print_blob=True)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE")
    or ("ci" if os.environ.get("CI") == "true" else "dev")
)


@pytest.fixture(scope="session")
def openssl_bin() -> str:
    """Absolute path of the openssl CLI (skipped when missing, a failure under CI=true)."""
    return require_tool("openssl")


@pytest.fixture
def loopback(tmp_path: Path) -> Iterator[LoopbackFactory]:
    """Start loopback servers for this test; every one is stopped at teardown, pass or fail.

    ``loopback(args, port=..., ready=..., env=...)`` returns a started, ready
    :class:`tests.support.peers.LoopbackProcess`; its logs stay under the test's ``tmp_path``.
    """
    with ExitStack() as stack:

        def start(
            args: Sequence[StrPath],
            *,
            port: int | None = None,
            ready: Ready | None = None,
            env: Mapping[str, str] | None = None,
            cwd: StrPath | None = None,
            timeout: float = 30.0,
            name: str | None = None,
        ) -> LoopbackProcess:
            proc = LoopbackProcess(args, port=port, ready=ready, env=env, cwd=cwd,
                                   timeout=timeout, tmpdir=tmp_path, name=name)
            stack.callback(proc.stop)
            return proc.start()

        yield start


# Every SM2 signature the suite makes is also checked by gmssl, an independent implementation:
# all SM2 signing goes through SM2PrivateKey.sign_digest, which is wrapped here for the whole
# session (fixtures included); each test's teardown checks what was signed since the last check.
_SIGNED: list[tuple[SM2PublicKey, bytes, bytes]] = []
_sign_digest = SM2PrivateKey.sign_digest


def _recording_sign_digest(self: SM2PrivateKey, digest: bytes, algorithm: object = None) -> bytes:
    signature = _sign_digest(self, digest, algorithm)  # type: ignore[arg-type]
    _SIGNED.append((self.public_key(), digest, signature))
    return signature


SM2PrivateKey.sign_digest = _recording_sign_digest  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _sm2_signatures_checked_by_gmssl() -> Iterator[None]:
    yield
    made, _SIGNED[:] = list(_SIGNED), []
    rejected = [sig.hex() for public, e, sig in made
                if not gmssl_oracle.verify_digest(public, sig, e)]
    assert not rejected, (f"gmssl rejects {len(rejected)} of {len(made)} SM2 signatures: "
                          f"{rejected[:3]}")

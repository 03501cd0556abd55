"""``medsign init --pkcs11`` and ``medsign unseal`` with the token PIN, on SoftHSM2 (a real
PKCS#11 implementation) in a private token directory, through a running 2-worker server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance import config as config_module
from appliance.custody import KekStore
from appliance.storage import Database
from tests.appliance.serving import clean_env, cli, cli_process, serving
from tests.support.peers import require_tool, run_tool

MODULES = ("/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so")
PIN = "5678"


@pytest.fixture
def token(tmp_path: Path) -> Iterator[tuple[str, str, dict[str, str]]]:
    """(module, token label, environment naming the private token directory)."""
    util = require_tool("softhsm2-util")
    module = next((m for m in MODULES if Path(m).exists()), None)
    assert module, "libsofthsm2.so not found (Debian package softhsm2)"
    (tmp_path / "tokens").mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tmp_path / 'tokens'}\n"
                    "objectstore.backend = file\nlog.level = ERROR\n")
    env = clean_env(SOFTHSM2_CONF=str(conf))
    label = f"medsign-cli-{os.getpid()}"
    run_tool([util, "--init-token", "--free", "--label", label, "--so-pin", "1234",
              "--pin", PIN], env=env)
    yield module, label, env


def test_init_with_a_token_and_unseal_with_its_pin(tmp_path: Path,
                                                   token: tuple[str, str, dict[str, str]]
                                                   ) -> None:
    module, label, env = token
    config_file = tmp_path / "medsign.toml"
    config_file.write_text(f'data_dir = "{tmp_path / "data"}"\n\n[custody]\n'
                           f'pkcs11_module = "{module}"\npkcs11_token_label = "{label}"\n')
    init = cli_process("init", "--config", config_file, "--pkcs11", stdin=PIN + "\n", env=env)
    assert init.code == 0, init.err
    assert label in init.out
    db = Database(config_module.load(config_file, env={}).database_url)
    try:
        sealed = KekStore(db).load()
    finally:
        db.dispose()
    assert sealed is not None and sealed["method"] == "pkcs11"
    with serving(config_file, env={"SOFTHSM2_CONF": env["SOFTHSM2_CONF"]}) as server:
        assert server.request("GET", "/healthz")[2]["sealed"] is True
        wrong = cli_process("unseal", "--url", server.url, stdin="0000\n", env=env)
        assert wrong.code == 2 and "PIN" in wrong.err
        assert len(wrong.err.strip().splitlines()) == 1
        done = cli_process("unseal", "--url", server.url, stdin=PIN + "\n", env=env)
        assert (done.code, done.out.strip()) == (0, "unsealed"), done.err
        assert server.request("GET", "/healthz")[2]["sealed"] is False


def test_pkcs11_refusals(tmp_path: Path) -> None:
    config_file = tmp_path / "medsign.toml"
    unconfigured = cli("init", "--config", config_file, "--pkcs11", "--pin-file", config_file)
    assert unconfigured.code == 2 and "custody.pkcs11_module" in unconfigured.err
    both = cli("init", "--config", config_file, "--pkcs11", "--shamir", "2/3")
    assert both.code == 2 and "mutually exclusive" in both.err
    stray = cli("init", "--config", config_file, "--pin-file", "x", "--shamir", "2/3")
    assert stray.code == 2 and "--pin-file goes with --pkcs11" in stray.err

"""``medsign init``: creates what is missing, seals the KEK once, prints Shamir shares once;
``--demo`` is idempotent; every refusal is one line on stderr with exit code 2."""

from __future__ import annotations

import json
import stat
import tomllib
from pathlib import Path

import pytest

from appliance import config as config_module
from appliance.custody import KekStore, KeyHolder
from appliance.storage import Database
from tests.appliance.serving import clean_env, cli, cli_process, shares_of

PASSPHRASE = "an unseal passphrase for the night shift"


def _sealed(config_file: Path) -> dict[str, object] | None:
    config = config_module.load(config_file, env={})
    db = Database(config.database_url)
    try:
        return KekStore(db).load()
    finally:
        db.dispose()


def _holder(config_file: Path) -> tuple[KeyHolder, Database]:
    db = Database(config_module.load(config_file, env={}).database_url)
    return KeyHolder(KekStore(db)), db


def _refused(result_code: int, err: str, *needles: str) -> None:
    assert result_code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medsign: "), err
    for needle in needles:
        assert needle in err, err


def test_shamir_init_creates_everything_and_prints_each_share_once(tmp_path: Path) -> None:
    config_file = tmp_path / "etc" / "medsign.toml"
    result = cli("init", "--config", config_file, "--shamir", "3/5")
    assert result.code == 0 and result.err == "", result.err
    shares = shares_of(result.out)
    assert len(shares) == 5 and len(set(shares)) == 5
    assert all(result.out.count(share) == 1 for share in shares)
    data_dir = Path(tomllib.loads(config_file.read_text())["data_dir"])
    assert data_dir == (tmp_path / "etc" / "data").resolve()
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    sealed = _sealed(config_file)
    assert sealed is not None and sealed["method"] == "shamir" and sealed["threshold"] == 3
    # Any three shares open it; two do not.
    holder, db = _holder(config_file)
    try:
        for share in shares[3:]:
            assert holder.unseal(share=share)["sealed"] is True
        assert holder.unseal(share=shares[0])["sealed"] is False
        fingerprint = holder.keyring().fingerprint
        assert fingerprint in result.out
    finally:
        db.dispose()
    again = cli("init", "--config", config_file, "--shamir", "3/5")
    _refused(again.code, again.err, "already has a KEK")
    assert again.out == ""  # no new shares, nothing printed
    assert _sealed(config_file) == sealed


def test_passphrase_from_a_file_and_from_stdin(tmp_path: Path) -> None:
    pass_file = tmp_path / "pass"
    pass_file.write_text(PASSPHRASE + "\nsecond line ignored\n")
    from_file = tmp_path / "a" / "medsign.toml"
    result = cli("init", "--config", from_file, "--passphrase-file", pass_file)
    assert result.code == 0, result.err
    from_stdin = tmp_path / "b" / "medsign.toml"
    piped = cli_process("init", "--config", from_stdin, stdin=PASSPHRASE + "\n")
    assert piped.code == 0, piped.err
    assert PASSPHRASE not in piped.out + piped.err  # never echoed
    for config_file in (from_file, from_stdin):
        sealed = _sealed(config_file)
        assert sealed is not None and sealed["method"] == "passphrase"
        holder, db = _holder(config_file)
        try:
            assert holder.unseal(passphrase=PASSPHRASE)["sealed"] is False
        finally:
            db.dispose()


def test_demo_is_idempotent(tmp_path: Path) -> None:
    config_file = tmp_path / "var" / "medsign.toml"
    first = cli("init", "--demo", "--config", config_file)
    assert first.code == 0, first.err
    config = tomllib.loads(config_file.read_text())
    assert config["custody"]["start_sealed"] is False
    pass_file = Path(config["custody"]["unseal_passphrase_file"])
    assert pass_file == (tmp_path / "var" / "demo-unseal-passphrase").resolve()
    assert stat.S_IMODE(pass_file.stat().st_mode) == 0o600
    sealed = _sealed(config_file)
    second = cli("init", "--demo", "--config", config_file)
    assert second.code == 0, second.err
    assert "already initialized" in second.out
    assert _sealed(config_file) == sealed  # the same KEK, not a new one
    holder, db = _holder(config_file)
    try:
        passphrase = pass_file.read_text().strip()
        assert len(passphrase) >= 32
        assert holder.unseal(passphrase=passphrase)["sealed"] is False
    finally:
        db.dispose()


def test_demo_with_a_lost_passphrase_file_is_refused(tmp_path: Path) -> None:
    config_file = tmp_path / "var" / "medsign.toml"
    assert cli("init", "--demo", "--config", config_file).code == 0
    (tmp_path / "var" / "demo-unseal-passphrase").unlink()
    result = cli("init", "--demo", "--config", config_file)
    _refused(result.code, result.err, "demo-unseal-passphrase")


def test_data_dir_option_and_environment_overrides(tmp_path: Path) -> None:
    config_file = tmp_path / "conf" / "medsign.toml"
    result = cli("init", "--config", config_file, "--shamir", "2/2",
                 "--data-dir", tmp_path / "elsewhere")
    assert result.code == 0, result.err
    assert (tmp_path / "elsewhere" / "medsign.db").exists()
    refused = cli("init", "--config", config_file, "--shamir", "2/2", "--data-dir", tmp_path)
    _refused(refused.code, refused.err, "--data-dir", "exists")
    # MEDSIGN_<SECTION>_<KEY> overrides apply to init as to every command.
    other = tmp_path / "other" / "medsign.toml"
    env_data = tmp_path / "from-env"
    proc = cli_process("init", "--config", other, "--shamir", "2/3",
                       env=clean_env(MEDSIGN_DATA_DIR=str(env_data)))
    assert proc.code == 0, proc.err
    assert (env_data / "medsign.db").exists()


@pytest.mark.parametrize(("argv", "needle"), [
    (["--demo", "--shamir", "2/3"], "--demo"),
    (["--passphrase-file", "x", "--shamir", "2/3"], "mutually exclusive"),
    (["--shamir", "1/3"], "--shamir"),
    (["--shamir", "4/3"], "--shamir"),
    (["--shamir", "three/five"], "K/N"),
    (["--shamir", "2/300"], "--shamir"),
    (["--passphrase-file", "{tmp}/missing"], "missing"),
    (["--passphrase-file", "{tmp}/short"], "at least 12"),
    (["--passphrase-file", "{tmp}/empty"], "no passphrase"),
    (["--frobnicate"], "--frobnicate"),
])
def test_refusals_are_one_line(tmp_path: Path, argv: list[str], needle: str) -> None:
    (tmp_path / "short").write_text("short\n")
    (tmp_path / "empty").write_text("\n")
    config_file = tmp_path / "medsign.toml"
    result = cli("init", "--config", config_file, *[a.format(tmp=tmp_path) for a in argv])
    _refused(result.code, result.err, needle)
    if config_file.exists():
        assert _sealed(config_file) is None  # nothing sealed by a refused init


def test_a_broken_configuration_is_one_line(tmp_path: Path) -> None:
    config_file = tmp_path / "medsign.toml"
    config_file.write_text('[server]\nbindd = "127.0.0.1:1"\n')
    result = cli("init", "--config", config_file, "--shamir", "2/3")
    _refused(result.code, result.err, "bindd")
    config_file.write_text("data_dir = [\n")
    result = cli("init", "--config", config_file, "--shamir", "2/3")
    _refused(result.code, result.err, "cannot read")


def test_shares_are_printed_as_json_safe_text(tmp_path: Path) -> None:
    result = cli("init", "--config", tmp_path / "m.toml", "--shamir", "2/3")
    for share in shares_of(result.out):
        assert json.loads(json.dumps(share)) == share and share.isprintable()

"""The CLI contract for every command: help exits 0, bad usage exits 2 with ONE stderr line that
starts with ``medsign:`` and names the problem, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.cli import cli as root
from tests.appliance.serving import cli, cli_process
from tests.support.peers import free_port


def _groups() -> list[list[str]]:
    """Every command path, e.g. ["crypto", "sign"], found by walking the click tree."""
    paths: list[list[str]] = []

    def walk(command: object, prefix: list[str]) -> None:
        paths.append(prefix)
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            walk(sub, [*prefix, name])

    walk(root, [])
    return paths


COMMANDS = _groups()


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) or "medsign" for p in COMMANDS])
def test_help_exits_0(path: list[str]) -> None:
    result = cli(*path, "--help")
    assert result.code == 0 and result.err == ""
    assert result.out.startswith("Usage: medsign")


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) or "medsign" for p in COMMANDS])
def test_unknown_option_is_one_line(path: list[str]) -> None:
    result = cli(*path, "--no-such-option")
    assert result.code == 2, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medsign: error: "), result.err
    assert "--no-such-option" in lines[0] or "command is required" in lines[0]


def test_expected_commands_exist() -> None:
    names = {" ".join(p) for p in COMMANDS}
    assert {"selftest", "init", "serve", "unseal", "crypto", "crypto sign", "crypto verify",
            "admin create", "admin reset-totp", "app create", "signer import", "audit verify",
            "audit export"} <= names


def test_version() -> None:
    result = cli("--version")
    assert result.code == 0 and result.out.startswith("medsign ")


@pytest.mark.parametrize("argv", [[], ["crypto"], ["frobnicate"]])
def test_missing_or_unknown_command(argv: list[str]) -> None:
    result = cli(*argv)
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1, result.err


def test_unseal_without_a_server_is_one_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = cli("unseal", "--url", url)
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1
    assert "cannot reach the appliance" in result.err and url in result.err
    both = cli("unseal", "--url", url, "--share", "--passphrase-file", "x")
    assert both.code == 2 and "mutually exclusive" in both.err


def test_unexpected_errors_are_one_line_unless_debugging(tmp_path: Path) -> None:
    # A data directory that cannot be created (a file is in the way): an OSError deep inside.
    (tmp_path / "blocker").write_text("")
    config_file = tmp_path / "medsign.toml"
    config_file.write_text(f'data_dir = "{tmp_path / "blocker" / "data"}"\n')
    result = cli_process("init", "--config", config_file, "--shamir", "2/3")
    assert result.code == 2, result.err
    assert len(result.err.strip().splitlines()) == 1 and result.err.startswith("medsign: ")

"""``medsign admin create|reset-totp``, ``medsign app create`` and the demo principals of
``medsign init --demo``: what they print really signs in, through the real app."""

from __future__ import annotations

import re
import stat
from collections.abc import Iterator
from pathlib import Path

import falcon.testing
import pyotp
import pytest

from appliance import config as config_module
from appliance.api.hmac_signing import sign_request
from appliance.wsgi import Appliance, build
from tests.appliance.serving import cli

PASSWORD = "correct-horse-7-battery"


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    config_file = tmp_path / "var" / "medsign.toml"
    result = cli("init", "--demo", "--config", config_file)
    assert result.code == 0, result.err
    return config_file


@pytest.fixture
def appliance(demo: Path) -> Iterator[Appliance]:
    """The app on the demo installation, unsealed with the demo passphrase."""
    built = build(config_module.load(demo, env={}))
    built.key_holder.unseal(
        passphrase=(demo.parent / "demo-unseal-passphrase").read_text().strip())
    yield built
    built.database.dispose()


def _login(app: Appliance, username: str, password: str, totp_secret: str) -> falcon.testing.Result:
    client = falcon.testing.TestClient(app.app)
    return client.simulate_post("/api/v1/console/login", json={
        "username": username, "password": password, "totp": pyotp.TOTP(totp_secret).now()})


def _whoami(app: Appliance, key_id: str, secret: str) -> falcon.testing.Result:
    client = falcon.testing.TestClient(app.app)
    return client.simulate_get("/api/v1/whoami",
                               headers=sign_request("GET", "/api/v1/whoami", key_id=key_id,
                                                    secret=secret))


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medsign: "), err
    return lines[0]


def test_demo_principals_sign_in(demo: Path, appliance: Appliance) -> None:
    credentials = demo.parent / "demo-credentials.txt"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    text = credentials.read_text()
    accounts = re.findall(r"console account (\S+) \((\S+)\)\n  password:\s+(\S+)\n"
                          r"  TOTP secret:\s+(\S+)", text)
    assert sorted(role for _, role, _, _ in accounts) == [
        "audit_admin", "reviewer", "security_admin", "system_admin"]
    for username, role, password, secret in accounts:
        result = _login(appliance, username, password, secret)
        assert result.status_code == 200, result.text
        assert result.json["account"]["role"] == role
    key_id = re.search(r"key id:\s+(\S+)", text)
    secret = re.search(r"^  secret:\s+(\S+)", text, re.MULTILINE)
    assert key_id and secret
    who = _whoami(appliance, key_id.group(1), secret.group(1))
    assert who.status_code == 200, who.text
    assert who.json["kind"] == "app" and "signer:write" in who.json["scopes"]
    # Idempotent: nothing new, only where the credentials are.
    again = cli("init", "--demo", "--config", demo)
    assert again.code == 0 and str(credentials) in again.out
    assert "password" not in again.out
    assert credentials.read_text() == text


def test_admin_create_and_reset_totp(demo: Path, tmp_path: Path) -> None:
    password_file = tmp_path / "pw"
    password_file.write_text(PASSWORD + "\n")
    created = cli("admin", "create", "alice", "--role", "reviewer", "--config", demo,
                  "--password-file", password_file, "--display-name", "审核员 Alice")
    assert created.code == 0, created.err
    first = re.search(r"TOTP secret \(shown once\): (\S+)", created.out)
    assert first
    duplicate = cli("admin", "create", "alice", "--role", "reviewer", "--config", demo,
                    "--password-file", password_file)
    assert duplicate.code == 2 and "alice" in _one_line(duplicate.err)
    weak = tmp_path / "weak"
    weak.write_text("bob\n")
    refused = cli("admin", "create", "bob", "--role", "auditor", "--config", demo,
                  "--password-file", weak)
    assert refused.code == 2 and "--role" in _one_line(refused.err)
    refused = cli("admin", "create", "bob", "--role", "audit_admin", "--config", demo,
                  "--password-file", weak)
    assert refused.code == 2, refused.err
    _one_line(refused.err)
    reset = cli("admin", "reset-totp", "alice", "--config", demo)
    assert reset.code == 0, reset.err
    second = re.search(r"TOTP secret \(shown once\): (\S+)", reset.out)
    assert second and second.group(1) != first.group(1)
    unknown = cli("admin", "reset-totp", "nobody", "--config", demo)
    assert unknown.code == 2 and "nobody" in _one_line(unknown.err)
    built = build(config_module.load(demo, env={}))
    try:
        built.key_holder.unseal(
            passphrase=(demo.parent / "demo-unseal-passphrase").read_text().strip())
        assert _login(built, "alice", PASSWORD, first.group(1)).status_code == 401
        ok = _login(built, "alice", PASSWORD, second.group(1))
        assert ok.status_code == 200 and ok.json["account"]["role"] == "reviewer"
    finally:
        built.database.dispose()


def test_app_create(demo: Path, appliance: Appliance) -> None:
    created = cli("app", "create", "his-backend", "--scope", "signer:read", "--scope",
                  "verify", "--config", demo)
    assert created.code == 0, created.err
    key_id = re.search(r"key id: (\S+)", created.out)
    secret = re.search(r"secret \(shown once, base64url\): (\S+)", created.out)
    assert key_id and secret
    who = _whoami(appliance, key_id.group(1), secret.group(1))
    assert who.status_code == 200 and who.json["scopes"] == ["signer:read", "verify"]
    unknown = cli("app", "create", "x", "--scope", "world:domination", "--config", demo)
    assert unknown.code == 2 and "world:domination" in _one_line(unknown.err)
    none = cli("app", "create", "x", "--config", demo)
    assert none.code == 2 and "--scope" in _one_line(none.err)

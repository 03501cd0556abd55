"""``medsign audit verify|export`` on a real installation: intact, then altered."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from sqlalchemy import update

from appliance import config as config_module
from appliance.storage import Database, schema
from signcore import keys
from tests.appliance.serving import cli


@pytest.fixture
def logged(tmp_path: Path) -> Path:
    """A demo installation: its accounts and credential put five entries in the log, the
    sample template's upload a sixth (issue 7)."""
    config_file = tmp_path / "var" / "medsign.toml"
    assert cli("init", "--demo", "--config", config_file).code == 0
    return config_file


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medsign: "), err
    return lines[0]


def test_verify_intact_then_altered(logged: Path) -> None:
    intact = cli("audit", "verify", "--config", logged)
    assert intact.code == 0 and intact.err == "", intact.err
    assert intact.out.startswith("audit log intact: 6 entries")
    as_json = cli("audit", "verify", "--config", logged, "--json")
    report = json.loads(as_json.out)
    assert report["ok"] is True and report["entries"] == 6
    db = Database(config_module.load(logged, env={}).database_url)
    try:
        with db.transaction() as conn:
            conn.execute(update(schema.audit_log).where(schema.audit_log.c.seq == 2)
                         .values(subject="someone-else"))
    finally:
        db.dispose()
    altered = cli("audit", "verify", "--config", logged)
    assert altered.code == 1, altered.err
    assert "INVALID at entry 2" in _one_line(altered.err)
    assert altered.out == ""


def test_verify_refusals(logged: Path, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    bad = cli("audit", "verify", "--config", logged, "--trusted-key", garbage)
    assert bad.code == 2 and "garbage.pem" in _one_line(bad.err)
    rsa = tmp_path / "rsa.pem"
    rsa.write_bytes(keys.generate_private_key("rsa2048").public_key().to_pem())
    not_sm2 = cli("audit", "verify", "--config", logged, "--trusted-key", rsa)
    assert not_sm2.code == 2 and "SM2" in _one_line(not_sm2.err)
    missing = cli("audit", "verify", "--config", tmp_path / "nope.toml")
    assert missing.code == 2
    _one_line(missing.err)


def test_verify_with_a_pinned_key_that_signed_nothing(logged: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.pem"
    other.write_bytes(keys.generate_private_key("sm2").public_key().to_pem())
    # No checkpoint yet: nothing to check the pinned key against, the rows are intact.
    result = cli("audit", "verify", "--config", logged, "--trusted-key", other)
    assert result.code == 0 and "keys: trusted" in result.out


def test_export(logged: Path, tmp_path: Path) -> None:
    to_stdout = cli("audit", "export", "--config", logged)
    assert to_stdout.code == 0, to_stdout.err
    rows = list(csv.DictReader(io.StringIO(to_stdout.out)))
    assert [r["seq"] for r in rows] == ["0", "1", "2", "3", "4", "5"]
    assert {r["action"] for r in rows} == {"admin.create", "app.create", "template.upload"}
    out = tmp_path / "audit.json"
    to_file = cli("audit", "export", "--config", logged, "--format", "json", "--out", out,
                  "--subject", "auditor")
    assert to_file.code == 0 and "exported 1 entries" in to_file.out
    document = json.loads(out.read_text())
    assert [e["subject"] for e in document["entries"]] == ["auditor"]
    none = cli("audit", "export", "--config", logged, "--since", "2999-01-01")
    assert none.code == 0 and len(none.out.strip().splitlines()) == 1  # the header only
    bad = cli("audit", "export", "--config", logged, "--since", "yesterday")
    assert bad.code == 2 and "--since" in _one_line(bad.err)
    unwritable = cli("audit", "export", "--config", logged, "--out", tmp_path)
    assert unwritable.code == 2
    _one_line(unwritable.err)

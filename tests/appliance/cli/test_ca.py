"""``medsign ca``: the operator creates a hierarchy, issues, lists, shows, revokes and writes
CRLs; mistakes are one line on stderr with exit code 2 and change nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from signcore.keys import generate_private_key
from signcore.x509 import build_csr, load_certificate, load_crl
from tests.appliance.serving import cli


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "var" / "medsign.toml"
    assert cli("init", "--demo", "--config", path).code == 0
    return path


def _one_line_error(result: object, fragment: str) -> None:
    code, err = result.code, result.err  # type: ignore[attr-defined]
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("medsign: "), err
    assert fragment in lines[0], err


def test_the_operator_cycle(config_file: Path, tmp_path: Path) -> None:
    made = cli("ca", "init", "--config", config_file, "--algorithm", "sm2", "--organization",
               "测试医院")
    assert made.code == 0 and "created sm2-g1" in made.out, made.err
    csr = tmp_path / "seal.csr"
    csr.write_bytes(build_csr(generate_private_key("sm2"), "CN=x").to_pem())
    out = tmp_path / "seal.pem"
    issued = cli("ca", "issue", "--config", config_file, csr, "--algorithm", "sm2",
                 "--profile", "organization-seal", "--cn", "测试医院电子印章", "--org", "测试医院",
                 "--out", out)
    assert issued.code == 0, issued.err
    cert = load_certificate(out.read_bytes())
    assert "CN=测试医院电子印章" in cert.subject
    listed = json.loads(cli("ca", "list", "--config", config_file, "--json").out)
    assert listed["total"] == 1 and listed["items"][0]["serial"] == f"{cert.serial_number:x}"
    text = cli("ca", "list", "--config", config_file, "--search", "电子印章").out
    assert "organization-seal" in text and "1 of 1" in text
    cert_id = str(listed["items"][0]["id"])
    assert json.loads(cli("ca", "show", "--config", config_file, cert_id).out)["status"] == \
        "active"
    assert cli("ca", "revoke", "--config", config_file, cert_id, "--reason",
               "cessation_of_operation").code == 0
    crl_file = tmp_path / "sm2.crl"
    assert cli("ca", "crl", "--config", config_file, "sm2-g1", "--out", crl_file).code == 0
    entry = load_crl(crl_file.read_bytes()).is_revoked(cert.serial_number)
    assert entry is not None and entry.reason == "cessation_of_operation"
    delta_file = tmp_path / "sm2-delta.crl"
    assert cli("ca", "crl", "--config", config_file, "sm2-g1", "--delta", "--out",
               delta_file).code == 0
    assert load_crl(delta_file.read_bytes()).delta_crl_indicator is not None
    _one_line_error(cli("ca", "revoke", "--config", config_file, cert_id), "已于")


def test_mistakes(config_file: Path, tmp_path: Path) -> None:
    csr = tmp_path / "x.csr"
    csr.write_bytes(build_csr(generate_private_key("sm2"), "CN=x").to_pem())
    common = ["--config", config_file, "--algorithm", "sm2", "--cn", "张三", "--org", "测试医院"]
    _one_line_error(cli("ca", "issue", csr, *common, "--profile", "doctor-signing",
                        "--unique-id", "U1234567890ABCDEF"), "尚未创建")
    assert cli("ca", "init", "--config", config_file, "--algorithm", "sm2",
               "--organization", "测试医院").code == 0
    _one_line_error(cli("ca", "issue", csr, *common, "--profile", "dentist"),
                    "unknown certificate profile")
    _one_line_error(cli("ca", "issue", csr, *common, "--profile", "doctor-signing"),
                    "unique identifier")
    _one_line_error(cli("ca", "issue", tmp_path / "missing.csr", *common, "--profile",
                        "doctor-signing"), "cannot read")
    junk = tmp_path / "junk.csr"
    junk.write_bytes(b"not a csr")
    _one_line_error(cli("ca", "issue", junk, *common, "--profile", "organization-seal"),
                    "CSR")
    _one_line_error(cli("ca", "show", "--config", config_file, "77"), "77")
    _one_line_error(cli("ca", "crl", "--config", config_file, "rsa-g1", "--out",
                        tmp_path / "x.crl"), "rsa-g1")
    assert json.loads(cli("ca", "list", "--config", config_file, "--json").out)["total"] == 0

"""The operator's commands that need the KEK: ``medsign signer import`` (and its KEK sources:
the running server's custodian, the demo passphrase file, unsealing here)."""

from __future__ import annotations

import csv
import io
import os
import pty
import subprocess
from pathlib import Path

from appliance import config as config_module
from appliance.custody import KekStore, KeyHolder
from appliance.services.signers import SignerService
from appliance.storage import Database
from tests.appliance.serving import MEDSIGN, clean_env, cli, cli_process, serving, shares_of
from tests.appliance.signers.conftest import make_phone, unique_id_number

SAMPLE = Path(__file__).parents[1] / "signers" / "data" / "signers.csv"
HEADER = ["姓名", "身份证号", "手机号", "类别", "科室", "职称", "资格证书编号", "执业证书编号"]


def _csv(path: Path, rows: int, start: int = 0) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(HEADER)
    for n in range(start, start + rows):
        writer.writerow([f"医生{chr(0x4E00 + n)}", unique_id_number(n), make_phone(n), "医师",
                         "心内科", "主治医师", f"1998{n:011d}", f"1101{n:011d}"])
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path


def _statuses(config_file: Path, passphrase: str) -> list[str]:
    db = Database(config_module.load(config_file, env={}).database_url)
    try:
        holder = KeyHolder(KekStore(db))
        holder.unseal(passphrase=passphrase)
        return [s.status for s in SignerService(db, holder).search(limit=100).items]
    finally:
        db.dispose()


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medsign: error: "), err
    return lines[0]


def test_import_with_the_demo_passphrase_file(tmp_path: Path) -> None:
    config_file = tmp_path / "var" / "medsign.toml"
    assert cli("init", "--demo", "--config", config_file).code == 0
    good = _csv(tmp_path / "good.csv", 12)
    report = tmp_path / "report.csv"
    dry = cli("signer", "import", "--config", config_file, good, "--dry-run")
    assert dry.code == 0, dry.err
    assert "12 rows, 12 would be created, 0 refused" in dry.out
    done = cli("signer", "import", "--config", config_file, good, "--report", report)
    assert done.code == 0, done.err
    assert "12 rows, 12 created, 0 refused" in done.out
    assert report.read_bytes().startswith("\ufeff".encode())
    again = cli("signer", "import", "--config", config_file, good)
    assert "12 refused" in again.out and again.code == 2
    assert "12 of 12 rows were refused" in _one_line(again.err)
    sample = cli("signer", "import", "--config", config_file, SAMPLE)
    assert sample.code == 2 and "refused" in _one_line(sample.err)
    assert "row 4 身份证号" in sample.out  # the per-row report names row and column
    passphrase = (tmp_path / "var" / "demo-unseal-passphrase").read_text().strip()
    statuses = _statuses(config_file, passphrase)
    assert len(statuses) == 12 + 4 and set(statuses) == {"pending_review"}


def test_import_refusals_are_one_line(tmp_path: Path) -> None:
    config_file = tmp_path / "var" / "medsign.toml"
    missing = cli("signer", "import", "--config", config_file, tmp_path / "nope.csv")
    assert missing.code == 2 and "nope.csv" in _one_line(missing.err)
    _csv(tmp_path / "x.csv", 1)
    not_initialized = cli("signer", "import", "--config", tmp_path / "absent.toml",
                          tmp_path / "x.csv")
    assert not_initialized.code == 2, not_initialized.err
    _one_line(not_initialized.err)
    assert cli("init", "--demo", "--config", config_file).code == 0
    garbage = tmp_path / "garbage.xlsx"
    garbage.write_bytes(b"PK\x03\x04 not really a workbook")
    refused = cli("signer", "import", "--config", config_file, garbage)
    assert refused.code == 2 and "import-refused" in _one_line(refused.err), refused.err


def test_import_unseals_here_with_shamir_shares_from_stdin(tmp_path: Path) -> None:
    config_file = tmp_path / "etc" / "medsign.toml"
    init = cli("init", "--config", config_file, "--shamir", "2/3")
    shares = shares_of(init.out)
    good = _csv(tmp_path / "good.csv", 3, start=100)
    done = cli_process("signer", "import", "--config", config_file, good,
                       stdin=f"{shares[2]}\n{shares[0]}\n")
    assert done.code == 0, done.err
    assert "3 created" in done.out
    wrong = cli_process("signer", "import", "--config", config_file, good,
                        stdin=f"{shares[2]}\nMSS1-nonsense\n")
    assert wrong.code == 2 and len(wrong.err.strip().splitlines()) == 1, wrong.err
    passphrase_file = tmp_path / "p"
    passphrase_file.write_text("whatever it is\n")
    not_passphrase = cli_process("signer", "import", "--config", config_file, good,
                                 "--passphrase-file", passphrase_file)
    assert not_passphrase.code == 2 and "shamir" in not_passphrase.err


def test_import_takes_the_kek_from_the_running_server(tmp_path: Path) -> None:
    config_file = tmp_path / "etc" / "medsign.toml"
    init = cli("init", "--config", config_file, "--shamir", "2/3")
    shares = shares_of(init.out)
    good = _csv(tmp_path / "good.csv", 2, start=200)
    with serving(config_file) as server:
        sealed = cli_process("signer", "import", "--config", config_file, good)
        assert sealed.code == 2 and "sealed" in sealed.err, sealed.err
        for share in shares[:2]:
            assert server.request("POST", "/api/v1/sys/unseal", {"share": share})[0] == 200
        result = cli_process("signer", "import", "--config", config_file, good, stdin="")
        if os.getuid() == 0:  # the custodian hands the KEK to root
            assert result.code == 0, result.err
            assert "2 created" in result.out
        else:
            assert result.code == 2 and "keeps the KEK" in result.err


def test_import_shows_a_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    config_file = tmp_path / "var" / "medsign.toml"
    assert cli("init", "--demo", "--config", config_file).code == 0
    good = _csv(tmp_path / "many.csv", 1200, start=300)  # three batches of 500
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run([MEDSIGN, "signer", "import", "--config", config_file, good],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=follower, env=clean_env(), timeout=300, check=False)
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal has no writer left
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    terminal = b"".join(chunks).decode("utf-8", "replace")
    assert proc.returncode == 0, terminal
    assert "importing" in terminal and "1200/1200" in terminal, terminal
    assert "500/1200" in terminal or "1000/1200" in terminal  # updated per batch
    assert b"1200 created" in proc.stdout

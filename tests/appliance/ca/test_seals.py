"""Seals with server-held keys (both engines): a batch of documents sealed as CMS (attached,
detached, digest-only; RFC 5652 and GM/T 0010), verified by signcore against the built-in
CA; a renewed seal is followed; refusals seal nothing; over HTTP only the ``seal`` scope may,
and the batch is in the audit log."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

import pdfsign
from appliance.api.hmac_signing import sign_request
from appliance.custody import KeyHolder
from appliance.errors import Conflict, NotFound, ValidationFailed
from appliance.services.ca import CaService
from appliance.services.channels import ChannelService
from appliance.services.seals import Document, SealService
from appliance.storage import Database, schema
from ca_client import SubjectInfo
from signcore import cms
from signcore.hashes import HashAlgorithm, digest
from tests.appliance.auth.conftest import Site
from tests.appliance.ca.test_ca_service import Actor
from tests.appliance.ca.test_channels import AuditRecorder
from tests.pdfsign.pdfs import minimal_pdf
from tests.support.peers import run_tool
from tests.support.pki import write_pem

SEAL = SubjectInfo(common_name="测试医院电子印章", organization="测试医院")
PRESCRIPTION = "处方 RX-2026-0001：阿莫西林胶囊 0.25g×24 粒\n".encode()


class App:
    kind, name, id, role, scopes = "app", "app_his", 7, None, frozenset({"seal"})


def _setup(database: Database, holder: KeyHolder, algorithm: str) -> tuple[
        CaService, ChannelService, SealService, AuditRecorder]:
    audit = AuditRecorder()
    ca = CaService(database, holder, public_url="http://127.0.0.1:8080", audit=audit)
    ca.initialize(Actor(), algorithm, "测试医院")
    channels = ChannelService(database, holder, ca, audit=audit)
    if algorithm == "rsa":
        channels.switch(Actor(), "organization-seal", "builtin-rsa")
    return ca, channels, SealService(database, holder, ca, audit=audit), audit


@pytest.mark.parametrize("algorithm", ["sm2", "rsa"])
def test_a_batch_is_sealed_and_verifies(database: Database, holder: KeyHolder,
                                        algorithm: str) -> None:
    ca, channels, seals, audit = _setup(database, holder, algorithm)
    with pytest.raises(Conflict, match="尚无可用"):
        seals.apply(App(), [Document("rx-1", PRESCRIPTION)])
    seal = channels.enroll_server_key(Actor(), profile="organization-seal", subject=SEAL,
                                      algorithm=algorithm)
    hash_algorithm = HashAlgorithm.SM3 if algorithm == "sm2" else HashAlgorithm.SHA256
    other = "检验报告 LIS-0042".encode()
    authority = ca.active_authority(algorithm)
    for detached, flavour in ((True, "rfc5652"), (False, "gmt0010"), (True, "gmt0010")):
        info, results = seals.apply(
            App(), [Document("rx-1", PRESCRIPTION),
                    Document("lis-42", digest=digest(hash_algorithm, other),
                             digest_algorithm=hash_algorithm.value)] if detached
            else [Document("rx-1", PRESCRIPTION)], detached=detached, flavour=flavour)
        assert info.id == seal.id
        for result, content in zip(results, (PRESCRIPTION, other), strict=False):
            verified = cms.verify(result.signature, content=content if detached else None,
                                  trust_roots=[authority.root],
                                  intermediates=[authority.certificate])
            assert verified.valid, verified
            assert result.digest == digest(hash_algorithm, content)
    entry = [e for e in audit.entries if e[1] == "seal.apply"][-1]
    assert entry[0] == "signature" and entry[2] == "app:app_his"
    assert [d["id"] for d in entry[4]["documents"]] == ["rx-1", "lis-42"]


def test_refusals_seal_nothing(database: Database, holder: KeyHolder) -> None:
    _ca, channels, seals, audit = _setup(database, holder, "sm2")
    channels.enroll_server_key(Actor(), profile="organization-seal", subject=SEAL,
                               algorithm="sm2")
    sha = digest(HashAlgorithm.SHA256, PRESCRIPTION)
    bad: list[tuple[dict[str, Any], str]] = [
        ({"documents": []}, "1 to 100"),
        ({"documents": [Document("a", PRESCRIPTION)] * 2}, "unique"),
        ({"documents": [Document("a", digest=sha, digest_algorithm="sha256")]}, "sm3"),
        ({"documents": [Document("a", digest=b"x" * 32, digest_algorithm="sm3")],
          "detached": False}, "cms-detached"),
        ({"documents": [Document("a")]}, "exactly one"),
        ({"documents": [Document("a", PRESCRIPTION)], "flavour": "pkcs7"}, "flavour"),
    ]
    for kwargs, message in bad:
        with pytest.raises(ValidationFailed, match=message):
            seals.apply(App(), **kwargs)
    with pytest.raises(NotFound):
        seals.apply(App(), [Document("a", PRESCRIPTION)], seal_id=999)
    assert not [e for e in audit.entries if e[1] == "seal.apply"]


def test_a_renewed_seal_is_followed(database: Database, holder: KeyHolder) -> None:
    _ca, channels, seals, _audit = _setup(database, holder, "sm2")
    old = channels.enroll_server_key(Actor(), profile="organization-seal", subject=SEAL,
                                     algorithm="sm2")
    new = channels.enroll_server_key(Actor(), profile="organization-seal", subject=SEAL,
                                     algorithm="sm2")
    with database.transaction() as conn:
        conn.execute(update(schema.certificates).where(schema.certificates.c.id == old.id)
                     .values(replaced_by=new.id))
    info, _ = seals.apply(App(), [Document("rx", PRESCRIPTION)], seal_id=old.id)
    assert info.id == new.id
    with database.transaction() as conn:  # an expired seal is refused
        conn.execute(update(schema.certificates).where(schema.certificates.c.id == new.id)
                     .values(not_after=dt.datetime.now(dt.UTC) - dt.timedelta(days=1)))
    with pytest.raises(Conflict, match="不可用"):
        seals.apply(App(), [Document("rx", PRESCRIPTION)], seal_id=old.id)


def test_over_http_with_the_seal_scope_and_openssl_verifies(site: Site, database: Database,
                                                            holder: KeyHolder, tmp_path: Path,
                                                            openssl_bin: str) -> None:
    _ca, channels, _seals, _audit = _setup(database, holder, "rsa")
    channels.enroll_server_key(Actor(), profile="organization-seal", subject=SEAL,
                               algorithm="rsa")
    sealer, secret = site.apps.create(None, name="HIS", scopes="seal")
    reader, reader_secret = site.apps.create(None, name="LIS", scopes="verify")
    body = json.dumps({"format": "cms-attached", "documents": [
        {"id": "rx-1", "content": base64.b64encode(PRESCRIPTION).decode()}]}).encode()

    def post(key_id: str, key: str) -> Any:
        headers = {"Content-Type": "application/json",
                   **sign_request("POST", "/api/v1/seal", key_id=key_id, secret=key, body=body)}
        return site.client.simulate_post("/api/v1/seal", body=body, headers=headers)

    assert post(reader.key_id, reader_secret).status_code == 403
    answer = post(sealer.key_id, secret)
    assert answer.status_code == 200, answer.text
    signature = base64.b64decode(answer.json["results"][0]["signature"])
    authority = _ca.active_authority("rsa")
    sig_file = tmp_path / "rx-1.p7m"
    sig_file.write_bytes(signature)
    roots = write_pem(tmp_path / "root.pem", authority.root)
    out = run_tool([openssl_bin, "cms", "-verify", "-inform", "DER", "-in", sig_file,
                    "-CAfile", roots, "-purpose", "any"])
    assert out.stdout == PRESCRIPTION, out.stderr


@pytest.mark.parametrize("algorithm", ["sm2", "rsa"])
def test_pdfs_are_sealed_as_pades(database: Database, holder: KeyHolder, algorithm: str) -> None:
    ca, channels, seals, audit = _setup(database, holder, algorithm)
    channels.enroll_server_key(Actor(), profile="organization-seal", subject=SEAL,
                               algorithm=algorithm)
    pdfs = [minimal_pdf("discharge summary 0001"), minimal_pdf("lab report 0002", pages=2)]
    _info, results = seals.apply(App(), [Document(f"pdf-{i}", p) for i, p in enumerate(pdfs)],
                                 pades=True)
    authority = ca.active_authority(algorithm)
    for result, pdf in zip(results, pdfs, strict=True):
        assert result.signature.startswith(pdf)  # an incremental update
        (report,) = pdfsign.validate_pdf(result.signature, [authority.root])
        assert report.ok and "测试医院电子印章" in report.signer, report
    assert [e for e in audit.entries if e[1] == "seal.apply"][-1][4]["format"] == "pades"
    with pytest.raises(ValidationFailed, match="PDF"):
        seals.apply(App(), [Document("x", b"%PDF-1.7 not really")], pades=True)
    with pytest.raises(ValidationFailed, match="PDF"):
        seals.apply(App(), [Document("x", digest=b"\0" * 32, digest_algorithm="sm3")],
                    pades=True)

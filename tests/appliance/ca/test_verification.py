"""The verification API (both engines): a seal's CMS signatures (both flavours, attached and
detached) and raw signatures verify against the built-in CA, with their chain and revocation
from the appliance's own CRL; a tampered document, a foreign signer and a revoked certificate
are each reported with the reason; over HTTP only the ``verify`` scope may ask."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from appliance.api.hmac_signing import sign_request
from appliance.custody import KeyHolder
from appliance.errors import ValidationFailed
from appliance.services.ca import CaService, ServerKeyStore
from appliance.services.channels import ChannelService
from appliance.services.seals import Document, SealService
from appliance.services.verification import VerificationService
from appliance.storage import Database
from ca_client import SubjectInfo
from signcore import cms
from tests.appliance.auth.conftest import Site
from tests.appliance.ca.test_ca_service import Actor
from tests.appliance.ca.test_seals import App
from tests.support.pki import cached_pki

SEAL = SubjectInfo(common_name="测试医院电子印章", organization="测试医院")
DOCUMENT = "出院小结 2026-11-26".encode()


def _setup(database: Database, holder: KeyHolder, algorithm: str = "sm2") -> tuple[
        CaService, ChannelService, SealService, VerificationService, Any]:
    ca = CaService(database, holder, public_url="http://127.0.0.1:8080")
    ca.initialize(Actor(), algorithm, "测试医院")
    channels = ChannelService(database, holder, ca)
    if algorithm == "rsa":
        channels.switch(Actor(), "organization-seal", "builtin-rsa")
    seal = channels.enroll_server_key(Actor(), profile="organization-seal", subject=SEAL,
                                      algorithm=algorithm)
    return ca, channels, SealService(database, holder, ca), VerificationService(ca), seal


@pytest.mark.parametrize("algorithm", ["sm2", "rsa"])
def test_cms_attached_and_detached(database: Database, holder: KeyHolder,
                                   algorithm: str) -> None:
    _ca, _channels, seals, verify, _seal = _setup(database, holder, algorithm)
    for detached, flavour in ((False, "gmt0010"), (True, "rfc5652")):
        _info, [sealed] = seals.apply(App(), [Document("d", DOCUMENT)], detached=detached,
                                      flavour=flavour)
        result = verify.verify_cms(sealed.signature, DOCUMENT if detached else None)
        assert result["valid"] and result["flavour"] == flavour, result
        signer = result["signers"][0]
        assert signer["integrity"] and signer["chain"]["trusted"]
        assert signer["chain"]["revocation"] == "crl"
        assert signer["chain"]["path"][0] == SEAL.name().human_friendly or \
            "测试医院电子印章" in signer["chain"]["path"][0]
        if detached:
            tampered = verify.verify_cms(sealed.signature, DOCUMENT + b" ")
            assert not tampered["valid"] and not tampered["signers"][0]["integrity"]


def test_revoked_and_foreign_signers(database: Database, holder: KeyHolder) -> None:
    _ca, channels, seals, verify, seal = _setup(database, holder)
    _info, [sealed] = seals.apply(App(), [Document("d", DOCUMENT)], detached=False)
    channels.revoke(Actor(), seal.id, "key_compromise")
    revoked = verify.verify_cms(sealed.signature, None)
    assert not revoked["valid"]
    assert revoked["signers"][0]["chain"]["revocation"] == "revoked"
    assert revoked["signers"][0]["integrity"]
    pki = cached_pki("sm2")  # a signer from another PKI: intact, but not trusted here
    foreign = cms.sign(DOCUMENT, pki.doctor_key, pki.doctor)
    result = verify.verify_cms(foreign, None)
    assert not result["valid"] and result["signers"][0]["integrity"]
    assert not result["signers"][0]["chain"]["trusted"]
    with pytest.raises(ValidationFailed, match="CMS"):
        verify.verify_cms(b"not a cms", None)


def test_raw_signatures(database: Database, holder: KeyHolder) -> None:
    ca, _channels, _seals, verify, seal = _setup(database, holder)
    key = ServerKeyStore(database, holder).load(_key_id(database, seal.id))
    signature = key.sign(DOCUMENT)
    pem = seal.to_json()["pem"].encode()
    good = verify.verify_raw(signature, DOCUMENT, pem, None)
    assert good["valid"] and good["signers"][0]["signature_algorithm"] == "sm2-sm3"
    bad = verify.verify_raw(signature, DOCUMENT + b"!", pem, None)
    assert not bad["valid"] and bad["signers"][0]["problems"]
    with pytest.raises(ValidationFailed):
        verify.verify_raw(signature, DOCUMENT, b"junk", None)
    del ca


def _key_id(database: Database, certificate_id: int) -> str:
    from sqlalchemy import select  # noqa: PLC0415

    from appliance.storage import schema  # noqa: PLC0415
    with database.engine.connect() as conn:
        return str(conn.execute(select(schema.certificates.c.key_id).where(
            schema.certificates.c.id == certificate_id)).scalar_one())


def test_over_http(site: Site, database: Database, holder: KeyHolder) -> None:
    _ca, _channels, seals, _verify, _seal = _setup(database, holder)
    _info, [sealed] = seals.apply(App(), [Document("d", DOCUMENT)], detached=False)
    verifier, secret = site.apps.create(None, name="HIS", scopes="verify")
    other, other_secret = site.apps.create(None, name="LIS", scopes="seal")
    body = json.dumps({"format": "cms",
                       "signature": base64.b64encode(sealed.signature).decode()}).encode()

    def post(key_id: str, key: str, payload: bytes = body) -> Any:
        headers = {"Content-Type": "application/json", **sign_request(
            "POST", "/api/v1/verify", key_id=key_id, secret=key, body=payload)}
        return site.client.simulate_post("/api/v1/verify", body=payload, headers=headers)

    assert post(other.key_id, other_secret).status_code == 403
    answer = post(verifier.key_id, secret)
    assert answer.status_code == 200 and answer.json["valid"], answer.text
    junk = json.dumps({"format": "cms", "signature": "!!"}).encode()
    assert post(verifier.key_id, secret, junk).status_code == 400


def test_revocation_policy_from_the_configuration() -> None:
    from appliance.config import VerifyConfig  # noqa: PLC0415
    from appliance.errors import ConfigError  # noqa: PLC0415
    from appliance.services.verification import revocation_policy  # noqa: PLC0415
    from ca_client.trust import RevocationMode  # noqa: PLC0415

    hard = revocation_policy(VerifyConfig(revocation="hard", revocation_grace_hours=2))
    assert hard.mode is RevocationMode.HARD_FAIL and hard.grace.total_seconds() == 7200
    assert revocation_policy(VerifyConfig()).mode is RevocationMode.SOFT_FAIL
    for bad in (VerifyConfig(revocation="maybe"), VerifyConfig(revocation_grace_hours=-1)):
        with pytest.raises(ConfigError):
            revocation_policy(bad)

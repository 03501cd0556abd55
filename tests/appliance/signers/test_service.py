"""The signer service on SQLite and PostgreSQL: create, edit, transitions, batch review,
uniqueness by HMAC, masking, and no personal data in clear anywhere in the database."""

from __future__ import annotations

import secrets as secrets_module

import pytest

from appliance.api.access import Principal
from appliance.custody import KeyHolder
from appliance.errors import Conflict, NotFound, Sealed, ValidationFailed
from appliance.services.signers import (
    ACTIVE,
    DISABLED,
    DRAFT,
    PENDING_REVIEW,
    CliActor,
    Decision,
    SignerService,
    pii_hmac,
)
from appliance.storage import Database
from tests.appliance.signers.conftest import (
    AuditRecorder,
    dump_database,
    signer_data,
    unique_id_number,
)

Admins = dict[str, Principal]


def _active(service: SignerService, admins: Admins, n: int) -> int:
    signer = service.create(signer_data(n), admins["security_admin"])
    service.submit(signer.id, admins["security_admin"])
    [result] = service.review([Decision(signer.id, True)], admins["reviewer"])
    assert result.ok
    return signer.id


def test_create_stores_a_draft_with_masked_personal_data(service: SignerService,
                                                         admins: Admins) -> None:
    data = signer_data(1)
    signer = service.create(data, admins["security_admin"])
    assert signer.status == DRAFT and signer.version == 1
    id_number = str(data["id_number"])
    assert signer.id_number_masked == id_number[:6] + "********" + id_number[-4:]
    assert signer.phone_masked == "139****0001"
    assert signer.created_by == "admin:security_admin-user"
    assert service.get(signer.id) == signer
    json = signer.to_json()
    assert json["created_at"].endswith("Z") and "id_number" not in json


def test_lookup_by_id_number_or_phone(service: SignerService, admins: Admins) -> None:
    data = signer_data(2)
    signer = service.create(data, admins["security_admin"])
    assert service.lookup(id_number=str(data["id_number"]).lower()).id == signer.id
    assert service.lookup(phone="+86 " + str(data["phone"])).id == signer.id
    with pytest.raises(NotFound):
        service.lookup(id_number=unique_id_number(999))
    with pytest.raises(ValidationFailed):
        service.lookup(id_number="123")


def test_same_id_number_or_phone_is_a_conflict(service: SignerService, admins: Admins) -> None:
    first = service.create(signer_data(1), admins["security_admin"])
    with pytest.raises(Conflict) as caught:
        service.create(signer_data(2, id_number=signer_data(1)["id_number"]),
                       admins["security_admin"])
    assert caught.value.extensions == {"field": "id_number", "signer_id": first.id}
    with pytest.raises(Conflict) as caught:
        service.create(signer_data(3, phone=signer_data(1)["phone"]), admins["security_admin"])
    assert caught.value.extensions["field"] == "phone"


def test_validation_errors_name_the_fields(service: SignerService, admins: Admins) -> None:
    with pytest.raises(ValidationFailed) as caught:
        service.create(signer_data(1, id_number="110105194912310021", phone="1380013800",
                                   kind="vet", title="职" * 65), admins["security_admin"])
    fields = [e["field"] for e in caught.value.extensions["errors"]]  # type: ignore[attr-defined]
    assert fields == ["kind", "id_number", "phone", "title"]


def test_submit_needs_a_complete_record(service: SignerService, admins: Admins) -> None:
    actor = admins["security_admin"]
    signer = service.create({"kind": "doctor", "name": "张三",
                             "id_number": unique_id_number(5)}, actor)
    with pytest.raises(ValidationFailed) as caught:
        service.submit(signer.id, actor)
    missing = {e["field"] for e in caught.value.extensions["errors"]}  # type: ignore[attr-defined]
    assert missing == {"phone", "department", "title", "practice_no", "qualification_no"}
    service.update(signer.id, {k: v for k, v in signer_data(5).items()
                               if k not in ("id_number", "name")}, actor)
    assert service.submit(signer.id, actor).status == PENDING_REVIEW
    with pytest.raises(Conflict, match="只有草稿可以提交审核"):
        service.submit(signer.id, actor)


def test_the_whole_life_of_a_signer(service: SignerService, admins: Admins,
                                    audit: AuditRecorder) -> None:
    security, reviewer = admins["security_admin"], admins["reviewer"]
    signer = service.create(signer_data(1), security)
    service.submit(signer.id, security)
    [rejected] = service.review([Decision(signer.id, False, "执业证书编号与扫描件不符")], reviewer)
    assert rejected.ok and rejected.status == DRAFT
    again = service.get(signer.id)
    assert again.review_note == "执业证书编号与扫描件不符" and again.reviewed_by == reviewer.id
    service.update(signer.id, {"practice_no": "110100000000999"}, security)
    assert service.submit(signer.id, security).review_note == ""
    [approved] = service.review([Decision(signer.id, True, "")], reviewer)
    assert approved.status == ACTIVE
    assert service.disable(signer.id, security, reason="离职").status == DISABLED
    with pytest.raises(Conflict, match="已停用"):
        service.update(signer.id, {"department": "外科"}, security)
    with pytest.raises(Conflict):
        service.disable(signer.id, security)
    assert service.enable(signer.id, security).status == ACTIVE
    with pytest.raises(Conflict, match="只有已停用"):
        service.enable(signer.id, security)
    assert audit.actions() == ["signer.create", "signer.submit", "signer.reject",
                               "signer.update", "signer.submit", "signer.approve",
                               "signer.disable", "signer.enable"]
    assert all(e["category"] == "data" and e["subject"] == f"signer:{signer.id}"
               for e in audit.entries)


def test_enable_restores_the_status_before_disable(service: SignerService,
                                                   admins: Admins) -> None:
    security = admins["security_admin"]
    signer = service.create(signer_data(1), security)
    service.submit(signer.id, security)
    service.disable(signer.id, security)
    assert service.enable(signer.id, security).status == PENDING_REVIEW


def test_editing_an_active_signer(service: SignerService, admins: Admins) -> None:
    security = admins["security_admin"]
    signer_id = _active(service, admins, 1)
    moved = service.update(signer_id, {"department": "急诊科"}, security)
    assert moved.status == ACTIVE and moved.department == "急诊科"
    unchanged = service.update(signer_id, {"department": "急诊科"}, security)
    assert unchanged.version == moved.version
    renamed = service.update(signer_id, {"title": "副主任医师"}, security)
    assert renamed.status == PENDING_REVIEW and renamed.submitted_at is not None
    signer_id = _active(service, admins, 2)
    new_phone = service.update(signer_id, {"phone": "13700000000"}, security)
    assert new_phone.status == PENDING_REVIEW and new_phone.phone_masked == "137****0000"
    assert service.lookup(phone="13700000000").id == signer_id


def test_edits_keep_records_complete_and_unique(service: SignerService, admins: Admins) -> None:
    security = admins["security_admin"]
    signer_id = _active(service, admins, 1)
    with pytest.raises(ValidationFailed):
        service.update(signer_id, {"phone": ""}, security)
    other = service.create(signer_data(2), security)
    with pytest.raises(Conflict) as caught:
        service.update(other.id, {"id_number": signer_data(1)["id_number"]}, security)
    assert caught.value.extensions["signer_id"] == signer_id
    changed = service.update(other.id, {"id_number": unique_id_number(77)}, security)
    assert service.lookup(id_number=unique_id_number(77)).id == changed.id
    with pytest.raises(NotFound):
        service.lookup(id_number=str(signer_data(2)["id_number"]))


def test_a_stale_version_is_a_conflict(service: SignerService, admins: Admins) -> None:
    security = admins["security_admin"]
    signer = service.create(signer_data(1), security)
    service.update(signer.id, {"department": "外科"}, security, version=1)
    with pytest.raises(Conflict, match="已被他人修改"):
        service.update(signer.id, {"department": "内科"}, security, version=1)


def test_batch_review_with_mixed_results(service: SignerService, admins: Admins,
                                         audit: AuditRecorder) -> None:
    security, reviewer = admins["security_admin"], admins["reviewer"]
    pending = []
    for n in range(4):
        signer = service.create(signer_data(n), security)
        pending.append(service.submit(signer.id, security))
    draft = service.create(signer_data(10), security)
    stale = pending[3]
    service.update(stale.id, {"department": "外科"}, security)
    audit.entries.clear()
    results = service.review([
        Decision(pending[0].id, True),
        Decision(pending[1].id, False, "资格证书编号有误"),
        Decision(pending[2].id, False, "   "),  # a rejection needs a reason
        Decision(draft.id, True),
        Decision(999_999, True),
        Decision(pending[0].id, True),  # twice in one batch
        Decision(stale.id, True, version=stale.version),
    ], reviewer)
    assert [(r.ok, r.status, r.code) for r in results] == [
        (True, ACTIVE, None), (True, DRAFT, None), (False, None, "validation-failed"),
        (False, None, "conflict"), (False, None, "not-found"), (False, None, "conflict"),
        (False, None, "conflict")]
    assert service.get(pending[2].id).status == PENDING_REVIEW
    assert service.get(stale.id).status == PENDING_REVIEW
    assert audit.actions() == ["signer.approve", "signer.reject"]
    assert results[3].detail is not None and "草稿" in results[3].detail


def test_delete_only_never_reviewed_drafts(service: SignerService, admins: Admins) -> None:
    security = admins["security_admin"]
    draft = service.create(signer_data(1), security)
    service.delete(draft.id, security)
    with pytest.raises(NotFound):
        service.get(draft.id)
    signer_id = _active(service, admins, 2)
    with pytest.raises(Conflict):
        service.delete(signer_id, security)


def test_search_filters_and_pages(service: SignerService, admins: Admins) -> None:
    security = admins["security_admin"]
    for n in range(12):
        service.create(signer_data(n, kind=("doctor", "nurse", "pharmacist")[n % 3],
                                   department="外科" if n < 6 else "内科",
                                   name=("王" if n % 2 else "李") + f"{chr(0x4E00 + n)}"),
                       security)
    page = service.search(limit=5)
    assert page.total == 12 and len(page.items) == 5
    assert [s.id for s in service.search(offset=10, limit=5).items] == \
        [s.id for s in service.search().items][10:]
    assert service.search(kind="nurse").total == 4
    assert service.search(department="外科", kind="doctor").total == 2
    assert service.search(name_prefix="王").total == 6
    assert service.search(name_prefix="%").total == 0  # LIKE wildcards are literal
    assert service.search(status=PENDING_REVIEW).total == 0


def test_cli_actor_and_apps_create(service: SignerService, database: Database) -> None:
    signer = service.create(signer_data(1), CliActor("root"))
    assert signer.created_by == "cli:root"


def test_nothing_personal_in_clear_in_the_database(service: SignerService, admins: Admins,
                                                   database: Database,
                                                   holder: KeyHolder,
                                                   audit: AuditRecorder) -> None:
    security = admins["security_admin"]
    secrets = []
    for n in range(5):
        data = signer_data(n, phone=f"15{secrets_module.randbelow(10**9):09d}",
                           qualification_no=f"Q{n}", practice_no=f"P{n}")
        signer = service.create(data, security)
        service.submit(signer.id, security)
        secrets += [str(data["id_number"]), str(data["phone"])]
    service.update(signer.id, {"phone": "13612345678"}, security)
    secrets.append("13612345678")
    dump = dump_database(database)
    for secret in secrets:
        assert secret.encode() not in dump
        assert secret[-8:].encode() not in dump  # not even a tail
        assert secret.encode("utf-16-le") not in dump
    keyring = holder.keyring()
    assert pii_hmac(keyring, secrets[0]).encode() in dump  # found by HMAC, not by value
    assert all(secret not in repr(audit.entries) for secret in secrets)


def test_sealed_appliance_refuses(service: SignerService, holder: KeyHolder,
                                  admins: Admins) -> None:
    holder.seal()
    with pytest.raises(Sealed):
        service.create(signer_data(1), admins["security_admin"])
    with pytest.raises(Sealed):
        service.search()

"""BackendClient and PhoneClient over real HTTP against the whole appliance (both engines):
activation, enrollment, one task and a batch of 50 in one confirmation, review, rejection,
auto-sign, PIN change, QR login, seals, verification, signer records and webhooks; errors arrive
as the SDK's typed exceptions; the resulting CMS verify with signcore against the built-in CA."""

from __future__ import annotations

import contextlib
import http.server
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from appliance.services.channels import ChannelService
from ca_client import SubjectInfo
from medsign_sdk import (
    ApiError,
    BackendClient,
    Conflict,
    Document,
    MedsignError,
    NotFound,
    PinLocked,
    PinWrong,
    SealDocument,
    SignerStep,
    Unauthorized,
    ValidationFailed,
    WebhookError,
    _sm2,
)
from medsign_sdk.models import WebhookEvent
from signcore import cms
from signcore.hashes import sm3
from signcore.sm2 import SM2PublicKey
from signcore.x509 import Certificate
from tests.appliance.ca.test_ca_service import Actor
from tests.sdk.python.conftest import PIN, Served
from tests.support.loopback_http import serve_loopback

PRESCRIPTION = "处方 RX-2026-0001：阿莫西林胶囊 0.25g×24 粒，每次 0.5g，每日三次\n".encode()


def _verify_cms(served: Served, der: bytes | None, content: bytes | None = None,
                signers: int = 1) -> cms.CMSVerification:
    assert der is not None
    authority = served.hospital.ca.active_authority("sm2")
    verified = cms.verify(der, content=content, trust_roots=[authority.root],
                          intermediates=[authority.certificate])
    assert verified.valid and len(verified.signers) == signers, verified
    return verified


class _WebhookReceiver:
    """The hospital backend's webhook endpoint, checking every delivery with the SDK.  Serves
    from construction until :meth:`stop`."""

    def __init__(self, client: BackendClient) -> None:
        self.events: list[WebhookEvent] = []
        self.refused: list[str] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                try:
                    receiver.events.append(client.verify_webhook(dict(self.headers), body))
                    status = 200
                except WebhookError as exc:
                    receiver.refused.append(str(exc))
                    status = 401
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self._serving = contextlib.ExitStack()
        self.url = f"{self._serving.enter_context(serve_loopback(Handler))}/hooks/medsign"

    def stop(self) -> None:
        self._serving.close()


@pytest.fixture
def receiver(served: Served) -> Iterator[_WebhookReceiver]:
    made = _WebhookReceiver(served.backend)
    yield made
    made.stop()


def test_enroll_sign_review_and_verify(served: Served, receiver: _WebhookReceiver) -> None:
    hospital, backend = served.hospital, served.backend
    doctor = served.phone(hospital.doctor_id, enroll=False)
    assert doctor.device_id is not None and doctor.signer_id == hospital.doctor_id
    enrollment = doctor.enroll(PIN)
    certificate = Certificate.from_stored(hospital.ca.get(enrollment.certificate["id"]).der)
    public = certificate.public_key()
    assert isinstance(public, SM2PublicKey)
    assert public.encoded_point == enrollment.public_key == doctor.public_key
    me = doctor.me()
    assert me.pin is not None and (me.pin.attempts_left, me.pin.locked) == (10, False)
    assert [k.status for k in me.keys] == ["active"]
    assert me.keys[0].public_key == public.encoded_point
    assert me.certificate is not None and me.certificate["id"] == enrollment.certificate["id"]
    assert me.device.id == doctor.device_id
    pharmacist = served.phone(hospital.pharmacist_id)

    request = backend.create_sign_request(
        [Document("rx-0001.txt", content=PRESCRIPTION, media_type="text/plain")],
        [SignerStep(hospital.doctor_id), SignerStep(hospital.pharmacist_id, "review")],
        title="门诊处方 RX-2026-0001", format="cms-attached", idempotency_key="sdk-rx-0001",
        callback_url=receiver.url)
    assert request.created and request.status == "pending"
    assert [s.status for s in request.signers] == ["pending", "waiting"]
    again = backend.create_sign_request(
        [Document("rx-0001.txt", content=PRESCRIPTION, media_type="text/plain")],
        [SignerStep(hospital.doctor_id), SignerStep(hospital.pharmacist_id, "review")],
        title="门诊处方 RX-2026-0001", format="cms-attached", idempotency_key="sdk-rx-0001",
        callback_url=receiver.url)
    assert again.id == request.id and not again.created
    with pytest.raises(Conflict) as reused:
        backend.create_sign_request([Document("other", content=b"x")],
                                    [hospital.doctor_id], idempotency_key="sdk-rx-0001")
    assert reused.value.code == "idempotency-conflict"

    assert pharmacist.tasks() == []
    (task,) = doctor.tasks()
    assert task.request_id == request.id and task.action == "sign"
    assert task.documents[0].sm3 == sm3(PRESCRIPTION).hex() and task.documents[0].preview
    assert doctor.task(task.id).id == task.id
    preview = doctor.document(task.id, 0)
    assert preview.content == PRESCRIPTION and preview.media_type == "text/plain"
    signed = doctor.sign([task.id], pin=PIN)
    assert signed.tasks == [{"id": task.id, "status": "signed"}] and len(signed.signatures) == 1
    (review,) = pharmacist.tasks()
    assert review.action == "review"
    (note,) = [n for n in pharmacist.messages() if n.task_id == review.id]
    assert "待审核" in note.title and note.read_at is None
    pharmacist.mark_read(note.id)
    assert note.id not in [n.id for n in pharmacist.messages(unread=True)]
    pharmacist.sign([review.id], pin=PIN)

    done = backend.wait_for(request.id, timeout=30, interval=0.1)
    assert done.status == "completed"
    result = backend.get_result(request.id)
    verified = _verify_cms(served, result.documents[0].signature, signers=2)
    assert verified.content == PRESCRIPTION
    checked = backend.request("GET", f"/api/v1/sign-requests/{request.id}").json()
    assert checked["status"] == "completed"
    deadline = time.monotonic() + 60
    while not receiver.events and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not receiver.refused
    assert [(e.type, e.data["sign_request_id"]) for e in receiver.events] == [
        ("sign_request.completed", request.id)]


def test_a_batch_of_fifty_documents_in_one_confirmation(served: Served) -> None:
    """50 documents of 5 requests (detached CMS of both flavours, content or digest only),
    co-signed in one session with one PIN entry."""
    hospital, backend = served.hospital, served.backend
    doctor = served.phone(hospital.doctor_id)
    contents = [f"处方 RX-{i:04d}：布洛芬缓释胶囊 0.3g×20 粒".encode() for i in range(50)]
    requests = {}
    for start in range(0, 50, 10):
        documents = [Document(f"rx-{i}", content=contents[i]) if i % 2 else
                     Document(f"rx-{i}", digest=sm3(contents[i]))
                     for i in range(start, start + 10)]
        request = backend.create_sign_request(
            documents, [hospital.doctor_id], format="cms-detached",
            flavour="gmt0010" if start % 20 else "rfc5652")
        requests[request.id] = request
    tasks = doctor.tasks()
    assert {t.request_id for t in tasks} == set(requests)
    outcome = doctor.sign([t.id for t in tasks], pin=PIN)
    assert len(outcome.signatures) == 50 and len(outcome.tasks) == 5
    assert {r["status"] for r in outcome.requests} == {"completed"}
    public = doctor.public_key
    for request_id in requests:
        assert backend.get_sign_request(request_id).status == "completed"
        for document in backend.get_result(request_id).documents:
            verified = _verify_cms(served, document.signature,
                                   contents[int(document.name.split("-")[1])])
            certificate = verified.signers[0].signer_certificate
            assert certificate is not None
            assert certificate.public_key().encoded_point == public  # type: ignore[attr-defined]
    assert doctor.tasks() == []


def test_fifty_tasks_of_fifty_requests_in_one_confirmation(served: Served) -> None:
    hospital, backend = served.hospital, served.backend
    doctor = served.phone(hospital.doctor_id)
    ids = {backend.create_sign_request([Document(f"rx-{i}", content=b"rx %d" % i)],
                                       [hospital.doctor_id]).id for i in range(50)}
    tasks = doctor.tasks()
    assert len(tasks) == 50
    try:
        outcome = doctor.sign([t.id for t in tasks], pin=PIN)
    finally:  # what the phone was told or not, the server recorded the signatures
        assert {backend.get_sign_request(i).status for i in ids} == {"completed"}
    assert len(outcome.signatures) == 50


def test_errors_auto_sign_rejection_and_lockout(served: Served) -> None:
    hospital, backend = served.hospital, served.backend
    doctor = served.phone(hospital.doctor_id)
    pharmacist = served.phone(hospital.pharmacist_id)
    with pytest.raises(Unauthorized):
        BackendClient(served.url, hospital.key_id, bytes(32)).get_sign_request("x" * 36)
    with pytest.raises(ValidationFailed) as invalid:
        backend.create_sign_request([Document("rx", content=b"x")], [hospital.doctor_id],
                                    format="pdf")
    assert invalid.value.status == 400 and invalid.value.code == "validation-failed"
    requests = [backend.create_sign_request([Document(f"rx-{i}", content=PRESCRIPTION)],
                                            [hospital.doctor_id], format="raw")
                for i in range(4)]
    by_request = {t.request_id: t for t in doctor.tasks()}
    tasks = [by_request[r.id] for r in requests]
    with pytest.raises(NotFound) as foreign:
        pharmacist.sign([tasks[0].id], pin=PIN)
    assert foreign.value.status == 404
    with pytest.raises(NotFound):
        pharmacist.task(tasks[0].id)
    with pytest.raises(PinWrong) as wrong:
        doctor.sign([tasks[0].id], pin="000000")
    assert wrong.value.attempts_left == 9 and wrong.value.code == "pin-wrong"
    assert doctor.task(tasks[0].id).status == "pending"
    outcome = doctor.sign([tasks[0].id], pin=PIN)  # the right PIN: counter back to 10
    me = doctor.me()
    assert me.pin is not None and me.pin.attempts_left == 10
    raw = backend.get_result(requests[0].id)
    (signature,) = raw.documents[0].signatures
    assert signature.signature == outcome.signatures[0]
    public = doctor.public_key
    assert public is not None and _sm2.verify(public, PRESCRIPTION, outcome.signatures[0])
    SM2PublicKey.from_point(public).verify(outcome.signatures[0], PRESCRIPTION)

    # auto-sign: refused without an authorization, then within its count only
    doctor.forget_unwrap()
    with pytest.raises(MedsignError):
        doctor.sign([tasks[1].id], auto=True)
    grant = doctor.grant_auto_sign(minutes=30, max_count=1, pin=PIN)
    assert grant.status == "active" and grant.max_count == 1
    doctor.sign([tasks[1].id], auto=True)
    with pytest.raises(Conflict):
        doctor.sign([tasks[2].id], auto=True)
    assert {t.auto_sign_id for t in doctor.tasks("signed")} == {None, grant.id}
    assert [g.used_count for g in doctor.auto_sign_grants()] == [1]
    second = doctor.grant_auto_sign(minutes=5, max_count=10, pin=PIN)
    revoked = doctor.revoke_auto_sign(second.id)
    # no authorization stays active: the phone dropped the unwrap key, auto-sign needs a PIN
    assert revoked.status == "revoked" and doctor.cached_unwrap is None
    with pytest.raises(MedsignError, match="sign once with the PIN") as dropped:
        doctor.sign([tasks[2].id], auto=True)
    assert not isinstance(dropped.value, ApiError)

    # a rejection ends the request
    rejected = doctor.reject(tasks[2].id, "剂量需要确认")
    assert rejected.status == "rejected" and rejected.reason == "剂量需要确认"
    status = backend.get_sign_request(requests[2].id)
    assert status.status == "rejected" and status.signers[0].reason == "剂量需要确认"
    with pytest.raises(Conflict):
        backend.get_result(requests[2].id)
    cancelled = backend.cancel_sign_request(requests[3].id)
    assert cancelled.status == "cancelled"
    assert backend.wait_for(requests[3].id, timeout=1).status == "cancelled"

    # ten wrong PINs lock the key; even the right one is refused then
    request = backend.create_sign_request([Document("rx", content=b"x")], [hospital.doctor_id])
    (task,) = [t for t in doctor.tasks() if t.request_id == request.id]
    for attempt in range(10):
        with pytest.raises(PinWrong if attempt < 9 else PinLocked):
            doctor.sign([task.id], pin="000000")
    with pytest.raises(PinLocked) as locked:
        doctor.sign([task.id], pin=PIN)
    assert locked.value.status == 423 and locked.value.code == "pin-locked"


def test_pin_change(served: Served) -> None:
    hospital, backend = served.hospital, served.backend
    doctor = served.phone(hospital.doctor_id)
    for i in range(3):
        backend.create_sign_request([Document(f"rx-{i}", content=PRESCRIPTION)],
                                    [hospital.doctor_id])
    tasks = doctor.tasks()
    with pytest.raises(PinWrong):
        doctor.change_pin("000000", "135790")
    doctor.change_pin(PIN, "135790")
    # until the new PIN is used once, the old one still works (with the previous wrap)
    doctor.sign([tasks[0].id], pin=PIN)
    doctor.sign([tasks[1].id], pin="135790")  # commits the change
    with pytest.raises(PinWrong):
        doctor.sign([tasks[2].id], pin=PIN)
    doctor.sign([tasks[2].id], pin="135790")
    assert doctor.storage.get("previous_share") is None


def test_qr_login_and_qr_sign(served: Served) -> None:
    hospital, backend = served.hospital, served.backend
    doctor = served.phone(hospital.doctor_id)
    session = backend.create_qr_session("login")
    assert session.status == "waiting" and session.uri.endswith(session.id)
    assert backend.qr_image(session.id).lstrip().startswith(b"<svg")
    assert backend.qr_image(session.id, "png").startswith(b"\x89PNG")
    polled: list[Any] = []
    poller = threading.Thread(target=lambda: polled.append(
        backend.get_qr_session(session.id, wait=20)))
    poller.start()
    scan = doctor.qr_scan(session.uri)
    assert scan.purpose == "login" and scan.id == session.id
    confirmed = doctor.qr_confirm(session.id, PIN)
    assert confirmed.extra["qr"] == {"id": session.id, "status": "confirmed"}
    poller.join(30)
    assert polled and polled[0].status in ("scanned", "confirmed")
    final = backend.get_qr_session(session.id)
    assert final.status == "confirmed" and final.assertion is not None
    assertion = final.assertion
    certificate = Certificate.from_stored(assertion.certificate)
    point = certificate.public_key().encoded_point  # type: ignore[attr-defined]
    assert _sm2.verify(point, assertion.signed_bytes(), assertion.signature)
    assert assertion.assertion["session"] == session.id
    assert assertion.assertion["signer_id"] == hospital.doctor_id
    with pytest.raises(Conflict):
        doctor.qr_scan(session.id)

    signing = backend.create_qr_session("sign", title="电子病历签名", format="cms-attached",
                                        documents=[Document("emr.txt", content=PRESCRIPTION)])
    assert doctor.qr_scan(signing.uri).documents[0]["name"] == "emr.txt"
    outcome = doctor.qr_confirm(signing.id, PIN)
    assert len(outcome.signatures) == 1
    final = backend.get_qr_session(signing.id)
    assert final.status == "confirmed" and final.sign_request_id is not None
    result = backend.get_result(final.sign_request_id)
    assert _verify_cms(served, result.documents[0].signature).content == PRESCRIPTION


def test_seal_verify_and_signer_records(served: Served) -> None:
    hospital = served.hospital
    credential, secret = hospital.site.apps.create(
        None, name="LIS", scopes="seal verify signer:read signer:write")
    backend = BackendClient(served.url, credential.key_id, secret, algorithm="SHA256")
    channels = ChannelService(hospital.site.appliance.database, hospital.site.appliance.key_holder,
                              hospital.ca)
    channels.enroll_server_key(Actor(), profile="organization-seal", algorithm="sm2",
                               subject=SubjectInfo(common_name="测试医院电子印章",
                                                   organization="测试医院"))
    report = "检验报告 LIS-0042".encode()
    sealed = backend.seal([SealDocument("rx-1", content=PRESCRIPTION),
                           SealDocument("lis-42", digest=sm3(report))])
    assert [r.id for r in sealed.results] == ["rx-1", "lis-42"]
    _verify_cms(served, sealed.results[1].signature, report)
    assert backend.list_seals()[0]["id"] == sealed.seal["id"]
    checked = backend.verify(sealed.results[0].signature, content=PRESCRIPTION)
    assert checked.valid and checked.format == "cms" and checked.signers[0].integrity
    tampered = backend.verify(sealed.results[0].signature, content=PRESCRIPTION + b"x")
    assert not tampered.valid

    created = backend.create_signer({"kind": "nurse", "name": "王护士",
                                     "id_number": "110105199001010010", "department": "内科"})
    assert created.status == "draft" and created.id_number_masked.endswith("0010")
    assert "110105199001010010" not in str(created.raw)
    assert backend.get_signer(created.id).name == "王护士"
    page = backend.list_signers(kind="nurse", name="王")
    assert [s.id for s in page.items] == [created.id] and page.total == 1
    updated = backend.update_signer(created.id, {"title": "主管护师"}, version=created.version)
    assert updated.title == "主管护师" and updated.version == created.version + 1
    assert backend.lookup_signer(id_number="110105199001010010").id == created.id
    with pytest.raises(NotFound):
        backend.get_signer(10**9)

"""The reference phone: a signer's bound device speaking ``/api/v1/mobile/...``.

::

    phone = PhoneClient("https://medsign.hospital.example", JsonFileStorage("phone.json"))
    phone.activate("ABCD-EFGH-JKMN-PQRS")     # the code the hospital issued
    phone.enroll("246810")                    # co-keygen, then the certificate
    tasks = phone.tasks()
    phone.sign([t.id for t in tasks], pin="246810")   # one confirmation for the batch

The device key (SM2) is created on first use and kept in the storage adapter; every request
after activation is signed with it (MEDSIGN-DEVICE-SM2).  The signing key is split
(keysplit/README.md): the phone keeps its share ``d1`` wrapped under a key only the server can
release after checking the PIN (the PIN itself never leaves the phone, only ``pin_proof``).  The
unwrap key of the latest PIN check is cached in memory (or, with ``persist_unwrap=True``, in
the storage) for auto-sign windows; it opens the share without the PIN until the PIN changes,
so it is dropped when no auto-sign authorization is active any more.

See :mod:`medsign_sdk._sm2` for the threat model of the pure-Python arithmetic.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
import threading
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from medsign_sdk import _pin, _protocol, _signing, _sm2
from medsign_sdk.errors import MedsignError, ProtocolError
from medsign_sdk.models import (
    Activation,
    AutoSignGrant,
    Device,
    DocumentContent,
    DocumentView,
    Enrollment,
    JsonObject,
    Me,
    MobileMessage,
    QrScan,
    SignOutcome,
    Task,
    reader,
)
from medsign_sdk.transport import Response, Transport

BASE = "/api/v1/mobile"
_DEVICE_KEY = "device_key"
_DEVICE_ID = "device_id"
_SIGNER_ID = "signer_id"
_SHARE = "share"
_PREVIOUS_SHARE = "previous_share"
_UNWRAP = "auto_sign_unwrap"


class Storage(Protocol):
    """Where the phone keeps its state: text values by key (``None``: absent / delete)."""

    def get(self, key: str) -> str | None: ...

    def set(self, key: str, value: str | None) -> None: ...


class MemoryStorage:
    """State in a dict (tests, short-lived tools)."""

    def __init__(self) -> None:
        self._values: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        return self._values.get(key)

    def set(self, key: str, value: str | None) -> None:
        if value is None:
            self._values.pop(key, None)
        else:
            self._values[key] = value


class JsonFileStorage:
    """State in one JSON file, written atomically (temporary file, fsync, rename) with mode
    0600.  It holds the device key: protect the file as a credential."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def _load(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        if not isinstance(data, dict):
            raise MedsignError(f"{self.path} is not a JSON object")
        return {k: v for k, v in data.items() if isinstance(v, str)}

    def get(self, key: str) -> str | None:
        with self._lock:
            return self._load().get(key)

    def set(self, key: str, value: str | None) -> None:
        with self._lock:
            data = self._load()
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    json.dump(data, out, indent=1, sort_keys=True)
                    out.flush()
                    os.fsync(out.fileno())
                os.chmod(name, 0o600)
                os.replace(name, self.path)
            except BaseException:
                Path(name).unlink(missing_ok=True)
                raise


def parse_qr(session_id_or_uri: str) -> str:
    """The session id of a scanned QR code (``medsign://qr?session=<id>``) or of an id."""
    text = session_id_or_uri.strip()
    if "://" in text:
        values = urllib.parse.parse_qs(urllib.parse.urlsplit(text).query).get("session")
        if not values:
            raise ValueError("not a medsign QR code")
        text = values[0]
    if not text or any(c not in "0123456789abcdef-" for c in text):
        raise ValueError("not a QR session id")
    return text


class PhoneClient:
    """A signer's phone.  ``storage`` keeps the device key, the device id and the wrapped
    share between runs (``JsonFileStorage``, ``MemoryStorage`` or your own adapter)."""

    def __init__(self, base_url: str, storage: Storage, *, device_name: str = "medsign-sdk",
                 persist_unwrap: bool = False, timeout: float = 30.0, retries: int = 3,
                 transport: Transport | None = None) -> None:
        self.storage = storage
        self.device_name = device_name
        self.transport = transport or Transport(base_url, timeout=timeout, retries=retries)
        self._persist_unwrap = persist_unwrap
        self._unwrap: bytes | None = None
        self._device_key: int | None = None

    # -- state

    @property
    def device_key(self) -> int:
        """The device's SM2 private scalar, created and stored on first use."""
        if self._device_key is None:
            stored = self.storage.get(_DEVICE_KEY)
            if stored is None:
                key = _sm2.new_private_key()
                self.storage.set(_DEVICE_KEY, _sm2.encode_scalar(key).hex())
            else:
                key = int(stored, 16)
            self._device_key = key
        return self._device_key

    @property
    def device_public_key(self) -> bytes:
        """The device's public point (04 || x || y)."""
        return _sm2.public_point(self.device_key)

    @property
    def device_id(self) -> str | None:
        return self.storage.get(_DEVICE_ID)

    @property
    def signer_id(self) -> int | None:
        value = self.storage.get(_SIGNER_ID)
        return int(value) if value is not None else None

    @property
    def share(self) -> _protocol.StoredShare | None:
        """The phone's wrapped share (None before enrollment)."""
        stored = self.storage.get(_SHARE)
        return _protocol.StoredShare.from_json(stored) if stored is not None else None

    @property
    def public_key(self) -> bytes | None:
        """The joint SM2 public key of this phone's signing key."""
        share = self.share
        return share.public_key if share is not None else None

    def _shares(self) -> list[_protocol.StoredShare]:
        shares = [self.share]
        previous = self.storage.get(_PREVIOUS_SHARE)
        if previous is not None:
            shares.append(_protocol.StoredShare.from_json(previous))
        found = [s for s in shares if s is not None]
        if not found:
            raise MedsignError("this phone has no signing key yet: enroll first")
        return found

    @property
    def cached_unwrap(self) -> bytes | None:
        if self._unwrap is None and self._persist_unwrap:
            stored = self.storage.get(_UNWRAP)
            self._unwrap = bytes.fromhex(stored) if stored else None
        return self._unwrap

    def _cache_unwrap(self, unwrap: bytes | None) -> None:
        self._unwrap = unwrap
        if self._persist_unwrap:
            self.storage.set(_UNWRAP, unwrap.hex() if unwrap is not None else None)

    def forget_unwrap(self) -> None:
        """Drop the cached unwrap key (auto-sign needs a PIN-checked session again)."""
        self._cache_unwrap(None)

    # -- transport

    def _authenticate(self, method: str, target: str, body: bytes) -> dict[str, str]:
        device_id = self.device_id
        if device_id is None:
            raise MedsignError("this phone is not activated")
        return _signing.device_headers(method, target, body, device_id=device_id,
                                       key=self.device_key)

    def request(self, method: str, path: str, *, json_body: Any = None,
                body: bytes | None = None, query: Mapping[str, Any] | None = None,
                signed: bool = True) -> Response:
        """A device-signed request to a path under /api/v1/mobile."""
        headers = {"Content-Type": "application/json"} if body is not None else None
        return self.transport.request(
            method, BASE + path, json_body=json_body, body=body, query=query, headers=headers,
            authenticate=self._authenticate if signed else None)

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    def _send(self, session: str, wire: bytes) -> JsonObject:
        answer = self._json("POST", f"/sessions/{session}", body=wire)
        if not isinstance(answer, dict) or "message" not in answer:
            raise ProtocolError("the answer carries no protocol message")
        return answer

    # -- activation and enrollment

    def activate(self, code: str) -> Activation:
        """Bind this phone to the signer the activation code was issued for."""
        spki = _sm2.spki_der(self.device_public_key)
        answer = self._json("POST", "/activate", signed=False, json_body={
            "code": code, "device_public_key": base64.b64encode(spki).decode(),
            "device_name": self.device_name})
        j = reader(answer, "activation")
        device = Device.from_json(j.obj("device"))
        self.storage.set(_DEVICE_ID, device.id)
        self.storage.set(_SIGNER_ID, str(device.signer_id))
        return Activation(device, device.signer_id)

    def enroll(self, pin: str) -> Enrollment:
        """Co-generate the signing key with ``pin`` as its PIN, then co-sign the certificate
        request: the key is active once this returns."""
        _pin.pin_proof(pin, bytes(_pin.SALT_SIZE))  # refuse a bad PIN before anything is sent
        opened = self._json("POST", "/keys")
        j = reader(opened, "keygen session")
        keygen = _protocol.Keygen(pin)
        commit = keygen.commit(_protocol.KeygenOffer.parse(j.data.get("message")))
        answer = self._send(j.text("session"), commit)
        share = keygen.finish(_protocol.KeygenResult.parse(answer["message"]))
        self.storage.set(_SHARE, share.to_json())
        self.storage.set(_PREVIOUS_SHARE, None)
        self._cache_unwrap(None)
        following = reader(answer, "keygen answer").obj("next")
        if following is None:
            raise ProtocolError("the keygen answer has no enrollment session")
        outcome = self._cosign(following, pin=pin)
        certificate = outcome.extra.get("certificate")
        if not isinstance(certificate, dict):
            raise ProtocolError("the enrollment did not return the certificate")
        key_id = answer.get("key_id")
        return Enrollment(key_id if isinstance(key_id, str) else "", share.public_key,
                          certificate)

    def me(self) -> Me:
        """This phone, its signer's keys and certificate, and the PIN attempts left."""
        return Me.from_json(self._json("GET", "/me"))

    # -- tasks

    def tasks(self, status: str = "pending") -> list[Task]:
        """The signer's tasks, oldest first: ``pending`` (default), ``waiting``, ``signed``,
        ``rejected``, ``cancelled``, ``expired`` or ``all``."""
        answer = reader(self._json("GET", "/tasks", query={"status": status}), "tasks")
        return [Task.from_json(t) for t in answer.items("items")]

    def task(self, task_id: str) -> Task:
        return Task.from_json(self._json("GET", f"/tasks/{task_id}"))

    def document(self, task_id: str, index: int) -> DocumentContent:
        """A document of a task, to show before signing."""
        response = self.request("GET", f"/tasks/{task_id}/documents/{index}")
        return DocumentContent(response.headers.get("x-medsign-media-type",
                                                    "application/octet-stream"), response.body)

    def document_verification(self, task_id: str, index: int) -> JsonObject:
        """The validation result of a task's document as it is now (signed or partially
        signed): the same JSON as ``POST /api/v1/verify``."""
        answer = self._json("GET", f"/tasks/{task_id}/documents/{int(index)}/verification")
        if not isinstance(answer, dict):
            raise ProtocolError("the verification is not a JSON object")
        return answer

    def view_document(self, task_id: str, index: int) -> DocumentView:
        """A task's document as it is now (a PDF with the signatures so far) and its
        validation result, to show a signed document and whether its signatures hold."""
        response = self.request("GET", f"/tasks/{task_id}/documents/{int(index)}/current")
        return DocumentView(
            response.headers.get("x-medsign-media-type", "application/octet-stream"),
            response.body, response.headers.get("x-medsign-signed") == "true",
            self.document_verification(task_id, index))

    def reject(self, task_id: str, reason: str) -> Task:
        """Decline (or, for a review, reject) a task: the whole request ends."""
        return Task.from_json(self._json("POST", f"/tasks/{task_id}/reject",
                                         json_body={"reason": reason}))

    def sign(self, task_ids: Sequence[str], pin: str | None = None, *,
             auto: bool = False) -> SignOutcome:
        """Co-sign every document of these tasks in one session (one confirmation).  With
        ``auto=True`` an auto-sign authorization replaces the PIN (the unwrap key cached from
        the latest PIN-checked session opens the share)."""
        if not auto and pin is None:
            raise ValueError("the PIN is required (or auto=True within an auto-sign window)")
        if auto and self.cached_unwrap is None:
            raise MedsignError("auto-sign needs the unwrap key of an earlier PIN-checked "
                               "session on this phone: sign once with the PIN")
        self._shares()
        opened = self._json("POST", "/sign", json_body={"tasks": list(task_ids),
                                                         "auto_sign": auto})
        return self._cosign(opened, pin=None if auto else pin)

    def _check_signed_attributes(self, items: Sequence[Mapping[str, Any]]) -> None:
        """For CMS items the server shows the signed attributes: the digest to co-sign must be
        e = SM3(Z || attributes) of this phone's key (a caller that showed the document can
        also find its SM3 in them as the message digest)."""
        public = self.public_key
        for item in items:
            attributes = item.get("signed_attributes")
            if public is None or not isinstance(attributes, str):
                continue
            try:
                raw = base64.b64decode(attributes, validate=True)
            except ValueError:
                raise ProtocolError("signed_attributes is not base64") from None
            if _sm2.message_digest(public, raw).hex() != item.get("digest"):
                raise ProtocolError("a digest is not the one of its signed attributes")

    def _cosign(self, opened: Any, *, pin: str | None) -> SignOutcome:
        """Run one co-sign session the server opened, to its end."""
        j = reader(opened, "co-sign session")
        session = j.text("session")
        offer = _protocol.CosignOffer.parse(j.data.get("message"))
        items = [i for i in j.items("items") if isinstance(i, dict)]
        if items and [str(i.get("digest")) for i in items] != [d.hex() for d in offer.digests]:
            raise ProtocolError("the session's items do not match the offer's digests")
        self._check_signed_attributes(items)
        cosigner = _protocol.Cosigner(self._shares(), pin=pin,
                                      unwrap=None if offer.require_pin else self.cached_unwrap)
        wire = cosigner.commit(offer)
        while True:
            answer = self._send(session, wire)
            step = cosigner.finish(_protocol.CosignResponse.parse(answer["message"]))
            wire = step.wire
            if step.kind == "cosign.result":
                break
        answer = self._send(session, wire)
        signatures = cosigner.close(_protocol.CosignDone.parse(answer["message"]))
        if offer.require_pin:
            self._after_pin_check(cosigner)
        extra = {k: v for k, v in answer.items() if k != "message"}
        tasks = extra.get("tasks")
        requests = extra.get("requests")
        return SignOutcome(session, j.opt_text("kind") or "", list(signatures),
                           tasks if isinstance(tasks, list) else [],
                           requests if isinstance(requests, list) else [], extra)

    def _after_pin_check(self, cosigner: _protocol.Cosigner) -> None:
        """A PIN-checked session succeeded: cache its unwrap key; if the current wrap opened,
        the server committed any pending PIN change, so the previous wrap can go."""
        self._cache_unwrap(cosigner.unwrap_used)
        if cosigner.share_used == 0:
            self.storage.set(_PREVIOUS_SHARE, None)

    # -- auto-sign

    def grant_auto_sign(self, minutes: int, max_count: int, pin: str) -> AutoSignGrant:
        """Authorize PIN-less co-signing on this phone for ``minutes`` and ``max_count``
        tasks.  The server checks the PIN and answers the unwrap key, which this client keeps
        (in memory, or in the storage with ``persist_unwrap``) for the window."""
        salt = self._shares()[0].salt
        answer = self._json("POST", "/auto-sign", json_body={
            "minutes": minutes, "max_count": max_count,
            "pin_proof": _pin.pin_proof(pin, salt).hex()})
        unwrap = answer.get("unwrap") if isinstance(answer, dict) else None
        if not isinstance(unwrap, str):
            raise ProtocolError("the auto-sign grant carries no unwrap key")
        self._cache_unwrap(bytes.fromhex(unwrap))
        return AutoSignGrant.from_json(answer)

    def auto_sign_grants(self) -> list[AutoSignGrant]:
        answer = reader(self._json("GET", "/auto-sign"), "auto-sign grants")
        return [AutoSignGrant.from_json(g) for g in answer.items("items")]

    def revoke_auto_sign(self, grant_id: str) -> AutoSignGrant:
        """Revoke an authorization; when none stays active, the cached unwrap key is
        dropped."""
        grant = AutoSignGrant.from_json(self._json("DELETE", f"/auto-sign/{grant_id}"))
        device_id = self.device_id
        if not any(g.status == "active" and g.device_id == device_id
                   for g in self.auto_sign_grants()):
            self.forget_unwrap()
        return grant

    # -- PIN

    def change_pin(self, old: str, new: str) -> None:
        """Change the PIN: the share is re-wrapped under the new PIN's key.  The previous wrap
        is kept until the new PIN is used once (until then the server still accepts the old
        PIN, whose key opens only the previous wrap)."""
        shares = self._shares()
        salt = shares[0].salt
        answer = reader(self._json("POST", "/pin", json_body={
            "old_pin_proof": _pin.pin_proof(old, salt).hex(),
            "new_pin_proof": _pin.pin_proof(new, salt).hex()}), "PIN change")
        try:
            unwrap, new_unwrap = (bytes.fromhex(answer.text("unwrap")),
                                  bytes.fromhex(answer.text("new_unwrap")))
        except ValueError:
            raise ProtocolError("the unwrap keys are not hex") from None
        for share in shares:
            try:
                rewrapped = share.rewrap(unwrap, new_unwrap)
            except _pin.UnwrapError:
                continue
            break
        else:
            raise ProtocolError("the phone's share does not open with the released unwrap key")
        self.storage.set(_PREVIOUS_SHARE, share.to_json())
        self.storage.set(_SHARE, rewrapped.to_json())
        self._cache_unwrap(new_unwrap if self.cached_unwrap is not None else None)

    # -- message center

    def messages(self, *, unread: bool = False) -> list[MobileMessage]:
        """The message center, newest first."""
        answer = reader(self._json("GET", "/messages", query={"unread": True} if unread
                                   else None), "messages")
        return [MobileMessage.from_json(m) for m in answer.items("items")]

    def mark_read(self, message_id: int) -> None:
        self.request("POST", f"/messages/{message_id}/read")

    # -- QR login and QR signing

    def qr_scan(self, session_id_or_uri: str) -> QrScan:
        """Claim a scanned QR session for this phone and see what the PC asks."""
        session_id = parse_qr(session_id_or_uri)
        return QrScan.from_json(self._json("POST", f"/qr/{session_id}/scan"))

    def qr_confirm(self, session_id: str, pin: str) -> SignOutcome:
        """Confirm a scanned session with the PIN: the login assertion, or the documents, are
        co-signed."""
        opened = self._json("POST", f"/qr/{parse_qr(session_id)}/confirm")
        return self._cosign(opened, pin=pin)

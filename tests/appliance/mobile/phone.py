"""A phone for tests: keysplit's reference phone (keysplit.phone) speaking the mobile API over
the Falcon test client, every request signed with its device key (device_signing)."""

from __future__ import annotations

import base64
import json
from typing import Any

import falcon.testing

from appliance.api.device_signing import sign_request
from keysplit import messages
from keysplit.phone import (
    PhoneCosigner,
    PhoneKeygen,
    PhoneRsaEnrollment,
    PhoneRsaSigner,
    PhoneShare,
)
from keysplit.pin import pin_proof
from keysplit.rsa import RsaPhoneSecret
from signcore.sm2 import SM2PrivateKey


class ApiError(Exception):
    def __init__(self, result: falcon.testing.Result) -> None:
        super().__init__(f"{result.status}: {result.text}")
        self.status = result.status_code
        self.problem: dict[str, Any] = result.json if result.text else {}


class TestPhone:
    __test__ = False

    def __init__(self, client: falcon.testing.TestClient, pin: str = "246810") -> None:
        self.client = client
        self.device_key = SM2PrivateKey.generate()
        self.device_id: str | None = None
        self.pin = pin
        self.share: PhoneShare | None = None
        self.unwrap: bytes | None = None  # kept for auto-sign windows

    # -- transport

    def call(self, method: str, path: str, body: Any = None, *,
             raw: bytes | None = None) -> Any:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None
                                            else b"")
        headers = {"Content-Type": "application/json"} if data else {}
        if self.device_id is not None:
            headers.update(sign_request(method, path, device_id=self.device_id,
                                        key=self.device_key, body=data))
        result = self.client.simulate_request(method, path, body=data or None,
                                              headers=headers)
        if result.status_code >= 400:
            raise ApiError(result)
        if result.headers.get("content-type", "").startswith("application/json"):
            return result.json
        return result.content

    # -- flows

    def activate(self, code: str) -> dict[str, Any]:
        spki = self.device_key.public_key().to_der()
        answer: dict[str, Any] = self.call("POST", "/api/v1/mobile/activate", {
            "code": code, "device_public_key": base64.b64encode(spki).decode(),
            "device_name": "测试手机"})
        self.device_id = answer["device"]["id"]
        return answer

    def enroll(self) -> dict[str, Any]:
        """Co-keygen, then co-sign the enrollment's proof of possession: the certificate."""
        opened = self.call("POST", "/api/v1/mobile/keys")
        keygen = PhoneKeygen(self.pin)
        commit = keygen.commit(messages.decode(json.dumps(opened["message"]),
                                               messages.KeygenOffer))
        answer = self.send(opened["session"], commit)
        self.share = keygen.finish(messages.decode(json.dumps(answer["message"]),
                                                   messages.KeygenResult))
        return self.cosign(answer["next"])

    def enroll_rsa(self) -> dict[str, Any]:
        """Split RSA: the server generates and splits; the phone unseals its share with the
        device key and wraps it under the PIN; then the enrollment's proof is co-signed."""
        enrollment = PhoneRsaEnrollment(self.pin)
        answer = self.call("POST", "/api/v1/mobile/keys", {
            "algorithm": "rsa", "pin_proof": enrollment.pin_proof.hex()})
        secret = RsaPhoneSecret.unseal(base64.b64decode(answer["sealed_share"]),
                                       self.device_key, int(answer["modulus"], 16))
        self.share = enrollment.finish(secret, bytes.fromhex(answer["unwrap"]))
        return self.cosign(answer["next"])

    def send(self, session: str, message: messages.Message) -> Any:
        return self.call("POST", f"/api/v1/mobile/sessions/{session}", raw=message.encode())

    def cosign(self, opened: dict[str, Any], *, pin: str | None = None,
               auto: bool = False) -> dict[str, Any]:
        assert self.share is not None
        if opened.get("algorithm") == "rsa":
            return self._rsa_sign(opened, pin=pin, auto=auto)
        offer = messages.decode(json.dumps(opened["message"]), messages.CosignOffer)
        cosigner = PhoneCosigner(self.share, pin=None if auto else (pin or self.pin),
                                 unwrap=self.unwrap if auto else None)
        answer = self.send(opened["session"], cosigner.commit(offer))
        response = messages.decode(json.dumps(answer["message"]), messages.CosignResponse)
        if response.unwrap is not None:
            self.unwrap = response.unwrap
        result = cosigner.finish(response)
        assert isinstance(result, messages.CosignResult)
        answer = self.send(opened["session"], result)
        signatures = cosigner.close(messages.decode(json.dumps(answer["message"]),
                                                    messages.CosignDone))
        answer["signatures"] = [s.hex() for s in signatures]
        return dict(answer)

    def _rsa_sign(self, opened: dict[str, Any], *, pin: str | None,
                  auto: bool) -> dict[str, Any]:
        assert self.share is not None
        offer = messages.decode(json.dumps(opened["message"]), messages.RsaOffer)
        signer = PhoneRsaSigner(self.share, pin=None if auto else (pin or self.pin),
                                unwrap=self.unwrap if auto else None)
        answer = self.send(opened["session"], signer.unlock(offer))
        unlocked = messages.decode(json.dumps(answer["message"]), messages.RsaUnlocked)
        if unlocked.unwrap is not None:
            self.unwrap = unlocked.unwrap
        answer = self.send(opened["session"], signer.commit(unlocked))
        signatures = signer.close(messages.decode(json.dumps(answer["message"]),
                                                  messages.RsaResult))
        answer["signatures"] = [s.hex() for s in signatures]
        return dict(answer)

    def tasks(self, status: str = "pending") -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.call("GET",
                                                f"/api/v1/mobile/tasks?status={status}")["items"]
        return items

    def sign(self, task_ids: list[str], *, auto: bool = False,
             pin: str | None = None) -> dict[str, Any]:
        opened = self.call("POST", "/api/v1/mobile/sign", {"tasks": task_ids,
                                                           "auto_sign": auto})
        return self.cosign(opened, pin=pin, auto=auto)

    def grant_auto_sign(self, minutes: int, max_count: int,
                        pin: str | None = None) -> dict[str, Any]:
        """Authorize auto-sign with the PIN; keep the unwrap key for the window."""
        assert self.share is not None
        grant: dict[str, Any] = self.call("POST", "/api/v1/mobile/auto-sign", {
            "minutes": minutes, "max_count": max_count,
            "pin_proof": pin_proof(pin or self.pin, self.share.salt).hex()})
        self.unwrap = bytes.fromhex(grant["unwrap"])
        return grant

    def change_pin(self, new_pin: str) -> None:
        assert self.share is not None
        answer = self.call("POST", "/api/v1/mobile/pin", {
            "old_pin_proof": pin_proof(self.pin, self.share.salt).hex(),
            "new_pin_proof": pin_proof(new_pin, self.share.salt).hex()})
        self.share = self.share.rewrap(bytes.fromhex(answer["unwrap"]),
                                       bytes.fromhex(answer["new_unwrap"]))
        self.pin = new_pin

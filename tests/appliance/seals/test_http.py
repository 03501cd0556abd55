"""Seal management through the whole app (both engines): the security administrator creates a
seal, uploads its image (bad uploads: problem documents, nothing stored), scopes it to one
application; ``POST /api/v1/seal`` with ``managed_seal`` is then refused out of scope (403),
for a disabled seal (409) and an unknown one (404), and every use is in the usage log."""

from __future__ import annotations

import base64
import json
from typing import Any

import falcon.testing

import pdfsign
from appliance.api.hmac_signing import sign_request
from tests.appliance.auth.conftest import Site
from tests.appliance.ca.test_ca_http import _problem, _security_admin
from tests.pdfsign.pdfs import minimal_pdf
from tests.pdfsign.test_appearance import seal_png

BASE = "/api/v1/managed-seals"


def _seal(site: Site, key_id: str, secret: str, body: dict[str, Any]) -> falcon.testing.Result:
    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/json",
               **sign_request("POST", "/api/v1/seal", key_id=key_id, secret=secret, body=data)}
    return site.client.simulate_post("/api/v1/seal", body=data, headers=headers)


def test_manage_a_seal_and_use_it(site: Site) -> None:
    me = _security_admin(site)
    client = site.client
    assert client.simulate_post("/api/v1/ca/authorities", json={
        "algorithm": "sm2", "organization": "测试医院"}, **me).status_code == 201
    created = client.simulate_post(BASE, json={
        "name": "hospital", "kind": "hospital", "common_name": "测试医院电子印章",
        "organization": "测试医院", "algorithm": "sm2"}, **me)
    assert created.status_code == 201, created.text
    seal = created.json["seal"]
    assert seal["enabled"] and seal["applications"] == [] and not seal["has_image"]
    seal_id = seal["id"]
    assert _problem(client.simulate_post(BASE, json={
        "name": "hospital", "kind": "hospital", "common_name": "x", "organization": "y",
        "algorithm": "sm2"}, **me), 409) == "conflict"

    for bad in ("not base64!", base64.b64encode(b"GIF89a....").decode(),
                base64.b64encode(seal_png()[:100]).decode()):
        answer = client.simulate_put(f"{BASE}/{seal_id}/image", json={"image": bad}, **me)
        assert _problem(answer, 400) == "validation-failed"
    assert _problem(client.simulate_get(f"{BASE}/{seal_id}/image", **me), 404) == "not-found"
    uploaded = client.simulate_put(f"{BASE}/{seal_id}/image",
                                   json={"image": base64.b64encode(seal_png()).decode()}, **me)
    assert uploaded.status_code == 200 and uploaded.json["seal"]["has_image"]
    image = client.simulate_get(f"{BASE}/{seal_id}/image", **me)
    assert image.headers["content-type"] == "image/png" and image.content == seal_png()

    his, his_secret = site.apps.create(None, name="HIS", scopes="seal")
    lis, lis_secret = site.apps.create(None, name="LIS", scopes="seal")
    pdf = base64.b64encode(minimal_pdf()).decode()
    request = {"format": "pades", "managed_seal": seal_id, "box": [400, 60, 520, 180],
               "documents": [{"id": "rx-1", "content": pdf}]}
    assert _problem(_seal(site, his.key_id, his_secret, request), 403) == "forbidden"
    scoped = client.simulate_put(f"{BASE}/{seal_id}/scope", json={"applications": [his.id]},
                                 **me)
    assert scoped.json["seal"]["applications"] == [his.id]
    answer = _seal(site, his.key_id, his_secret, request)
    assert answer.status_code == 200, answer.text
    signed = base64.b64decode(answer.json["results"][0]["signature"])
    (report,) = pdfsign.validate_pdf(signed, [])  # no roots: integrity and signature only
    assert report.intact and report.valid and b"/SMask" in signed
    assert _problem(_seal(site, lis.key_id, lis_secret, request), 403) == "forbidden"
    assert _problem(_seal(site, his.key_id, his_secret,
                          {**request, "managed_seal": 999}), 404) == "not-found"
    assert _problem(_seal(site, his.key_id, his_secret,
                          {**request, "box": [10, 10, 5, 5]}), 400) == "validation-failed"

    disabled = client.simulate_put(f"{BASE}/{seal_id}/status", json={"enabled": False}, **me)
    assert disabled.json["seal"]["enabled"] is False
    assert _problem(_seal(site, his.key_id, his_secret, request), 409) == "conflict"

    usage = client.simulate_get(f"{BASE}/{seal_id}/usage", params={"limit": "10"}, **me)
    assert usage.status_code == 200, usage.text
    assert usage.json["total"] == 1
    (use,) = usage.json["items"]
    assert (use["application_id"], use["document_id"], use["format"]) == (his.id, "rx-1",
                                                                          "pades")
    assert use["request_id"] == answer.json["request_id"]
    listed = client.simulate_get(BASE, **me).json["items"]
    assert [s["name"] for s in listed] == ["hospital"]
    assert _problem(client.simulate_get(f"{BASE}/999", **me), 404) == "not-found"

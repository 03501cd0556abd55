"""System resources: liveness, metrics, seal status and unseal."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import falcon
from sqlalchemy import text

from appliance.api import openapi as oa
from appliance.api.access import PUBLIC, SECURITY_ADMIN, SYSTEM_ADMIN, roles
from appliance.api.media import json_body, optional_str
from appliance.custody import KeyHolder
from appliance.storage import Database


class Metrics:
    """Request counters for ``/metrics`` (per process: each gunicorn worker counts its own)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[tuple[str, str]] = Counter()

    def process_response(self, req: falcon.Request, resp: falcon.Response, _resource: object,
                         _succeeded: bool) -> None:
        with self._lock:
            self._requests[(req.method, str(falcon.http_status_to_code(resp.status)))] += 1

    def samples(self) -> list[tuple[str, dict[str, str], float]]:
        with self._lock:
            return [("medsign_http_requests_total", {"method": m, "status": s}, float(n))
                    for (m, s), n in sorted(self._requests.items())]


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return "{" + inner + "}"


SEAL_STATUS = {
    "type": "object",
    "required": ["initialized", "sealed", "method", "threshold", "progress"],
    "properties": {
        "initialized": {"type": "boolean"},
        "sealed": {"type": "boolean"},
        "method": {"enum": ["passphrase", "shamir", "pkcs11", None]},
        "threshold": {"type": ["integer", "null"], "description": "shares needed (Shamir)"},
        "progress": {"type": "integer", "minimum": 0, "description": "shares given so far"},
    },
    "additionalProperties": False,
}
HEALTH = {
    "type": "object",
    "required": ["status", "sealed", "database"],
    "properties": {"status": {"enum": ["ok", "degraded"]}, "sealed": {"type": "boolean"},
                   "database": {"type": "boolean"}},
    "additionalProperties": False,
}
UNSEAL_MATERIAL = {
    "type": "object",
    "description": "One piece of unseal material, as the appliance is sealed: its passphrase, "
                   "one Shamir share (MSS1-...), or the PKCS#11 token's user PIN.",
    "properties": {
        "passphrase": {"type": "string", "minLength": 1, "maxLength": 1024},
        "share": {"type": "string", "minLength": 1, "maxLength": 4096},
        "pin": {"type": "string", "minLength": 1, "maxLength": 256},
    },
    "additionalProperties": False,
}


class Health:
    access = {"GET": PUBLIC}
    openapi = {"GET": {
        "summary": "Liveness, database reachability and whether the appliance is sealed",
        "responses": {"200": oa.response("Serving", HEALTH),
                      "503": oa.response("The database is unreachable", HEALTH)},
    }}

    def __init__(self, database: Database, holder: KeyHolder) -> None:
        self._db, self._holder = database, holder

    def on_get(self, _req: falcon.Request, resp: falcon.Response) -> None:
        try:
            with self._db.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            database_ok = True
        except Exception:
            database_ok = False
        resp.status = falcon.HTTP_200 if database_ok else falcon.HTTP_503
        resp.media = {"status": "ok" if database_ok else "degraded",
                      "sealed": self._holder.sealed, "database": database_ok}


class MetricsResource:
    access = {"GET": PUBLIC}
    openapi = {"GET": {
        "summary": "Prometheus metrics (text exposition format 0.0.4) of this worker process",
        "responses": {"200": oa.response("Metrics", {"type": "string"},
                                         media_type="text/plain")},
    }}

    def __init__(self, metrics: Metrics, holder: KeyHolder) -> None:
        self._metrics, self._holder = metrics, holder

    def on_get(self, _req: falcon.Request, resp: falcon.Response) -> None:
        lines = [
            "# HELP medsign_up 1 while the process serves requests.", "# TYPE medsign_up gauge",
            "medsign_up 1",
            "# HELP medsign_sealed 1 while the appliance is sealed.",
            "# TYPE medsign_sealed gauge", f"medsign_sealed {int(self._holder.sealed)}",
            "# HELP medsign_http_requests_total Requests answered, by method and status.",
            "# TYPE medsign_http_requests_total counter",
        ]
        lines += [f"{name}{_labels(labels)} {value:g}"
                  for name, labels, value in self._metrics.samples()]
        resp.content_type = "text/plain; version=0.0.4; charset=utf-8"
        resp.text = "\n".join(lines) + "\n"


class SealStatus:
    access = {"GET": PUBLIC}
    openapi = {"GET": {
        "summary": "Whether the appliance is initialized and sealed, and unseal progress",
        "responses": {"200": oa.response("The seal status", SEAL_STATUS)},
    }}

    def __init__(self, holder: KeyHolder) -> None:
        self._holder = holder

    def on_get(self, _req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self._holder.status()


class Unseal:
    """POST {"passphrase": "..."}, {"share": "MSS1-..."} or {"pin": "..."} (PKCS#11 token):
    one piece of unseal material.

    Public on purpose: a sealed appliance has no accounts to sign in with.  The material itself
    is the credential, and every attempt is rate limited by Argon2id's cost."""

    access = {"POST": PUBLIC}
    openapi = {"POST": {
        "summary": "Give one piece of unseal material",
        "requestBody": oa.body(UNSEAL_MATERIAL, required=False),
        "responses": {
            "200": oa.response("The seal status after this material", SEAL_STATUS),
            "400": oa.problem("Wrong kind of material, or it does not open the KEK "
                              "(`unseal-failed`)"),
            "409": oa.problem("The appliance is not initialized"),
        },
    }}

    def __init__(self, holder: KeyHolder) -> None:
        self._holder = holder

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = json_body(req, allowed={"passphrase", "share", "pin"})
        resp.media = self._holder.unseal(passphrase=optional_str(body, "passphrase", 1024),
                                         share=optional_str(body, "share", 4096),
                                         pin=optional_str(body, "pin", 256))


class Seal:
    access = {"POST": roles(SYSTEM_ADMIN, SECURITY_ADMIN)}
    openapi = {"POST": {
        "summary": "Seal the appliance now (every worker forgets the KEK)",
        "responses": {"200": oa.response("The seal status", SEAL_STATUS)},
    }}

    def __init__(self, holder: KeyHolder) -> None:
        self._holder = holder

    def on_post(self, _req: falcon.Request, resp: falcon.Response) -> None:
        self._holder.seal()
        resp.media = self._holder.status()


def routes(database: Database, holder: KeyHolder, metrics: Metrics) -> dict[str, Any]:
    return {
        "/healthz": Health(database, holder),
        "/metrics": MetricsResource(metrics, holder),
        "/api/v1/sys/seal-status": SealStatus(holder),
        "/api/v1/sys/unseal": Unseal(holder),
        "/api/v1/sys/seal": Seal(holder),
    }

"""The RFC 3161 time-stamping authority (TSA) of the appliance: SM2/SM3 and RSA/SHA-256 keys.

A TSA key is a server-held key of the ``tsa`` profile (critical timeStamping EKU), enrolled
through the profile's active CA channel like the seals; ``/tsa`` uses the newest valid one (or
the newest of the algorithm asked for, ``/tsa/sm2``, ``/tsa/rsa``).  Every token carries the
configured policy, the stated accuracy, a 128-bit random serial number (unique without
coordination between workers and nodes), the request's nonce, and the TSA certificate (ESS
signing-certificate-v2; the certificate itself when the request asks for it).

Threat model.  A time stamp is only worth the clock behind it: the TSA refuses (HTTP 503,
problem ``clock-unsynchronized``, and an alert in the audit log) while
:class:`~appliance.services.timesync.ClockCheck` cannot confirm the clock against the configured
time sources.  Requests are anonymous (RFC 3161 clients cannot sign HTTP requests) and carry
only a digest; a malformed one gets an RFC 3161 rejection, not a token.  Every token issued is
in the audit log (serial, imprint, time), so the evidence report can show it later.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from appliance.config import TsaConfig
from appliance.custody import KeyHolder
from appliance.errors import ClockUnsynchronized, Conflict
from appliance.services.ca import CaService, ServerKeyStore, certificate_info
from appliance.services.timesync import ClockCheck, parse_sources
from appliance.storage import Database, schema
from signcore import tsp
from signcore.errors import SigncoreError, UnsupportedAlgorithm
from signcore.hashes import HashAlgorithm, digest
from signcore.x509 import Certificate

C = schema.certificates
TSA_PROFILE = "tsa"
ALERT_SECONDS = 300.0  # an unsynchronized clock is alerted at most this often per process
AuditHook = Callable[[str, str, str, str, dict[str, Any]], object]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class TsaService:
    def __init__(self, database: Database, key_holder: KeyHolder, ca: CaService,
                 config: TsaConfig, *, clock_check: ClockCheck | None = None,
                 audit: AuditHook | None = None, clock: Callable[[], dt.datetime] = _now) -> None:
        self._db, self._ca, self._config, self._audit, self._clock = (
            database, ca, config, audit, clock)
        self._keys = ServerKeyStore(database, key_holder)
        self._check = clock_check or ClockCheck(
            parse_sources(config.ntp_servers), max_offset=config.max_offset_ms / 1000)
        self._alerted = 0.0
        self._lock = threading.Lock()

    def stamp(self, query: bytes, *, algorithm: str | None = None) -> bytes:
        """A TimeStampResp (DER) for a TimeStampReq."""
        try:
            request = tsp.load_request(query)
        except UnsupportedAlgorithm as exc:
            return tsp.build_response(status="rejection", status_text=str(exc),
                                      failure_info=["bad_alg"])
        except SigncoreError as exc:
            return tsp.build_response(status="rejection", status_text=f"bad request: {exc}",
                                      failure_info=["bad_data_format"])
        if request.policy is not None and request.policy != self._config.policy_oid:
            return tsp.build_response(status="rejection", status_text="unaccepted policy",
                                      failure_info=["unaccepted_policy"])
        status = self._check.status()
        if not status.synchronized:
            self._alert(status.detail)
            raise ClockUnsynchronized(status.detail)
        certificate, key = self._tsa(algorithm)
        serial = secrets.randbits(127) | 1
        when = self._clock()
        token = tsp.build_token(
            hash_algorithm=request.hash_algorithm, message_imprint=request.message_imprint,
            signer=key, certificate=certificate, serial_number=serial,
            policy=self._config.policy_oid, gen_time=when,
            accuracy=dt.timedelta(milliseconds=self._config.accuracy_ms), nonce=request.nonce,
            extra_certificates=[certificate] if request.cert_req else [])
        if self._audit is not None:
            self._audit("signature", "tsa.stamp", "tsa", f"{serial:x}",
                        {"imprint": request.message_imprint.hex(),
                         "hash": request.hash_algorithm.value, "time": when.isoformat(),
                         "certificate": f"{certificate.serial_number:x}"})
        return tsp.build_response(token)

    def token_for(self, data: bytes) -> bytes:
        """A time-stamp token over ``data`` for the appliance's own use (a signature time
        stamp on a CMS it made): same clock check, the newest TSA certificate, its natural hash
        (SM3 for SM2, SHA-256 for RSA)."""
        status = self._check.status()
        if not status.synchronized:
            self._alert(status.detail)
            raise ClockUnsynchronized(status.detail)
        certificate, key = self._tsa(None)
        hash_algorithm = (HashAlgorithm.SM3 if certificate.public_key().key_type.value == "sm2"
                          else HashAlgorithm.SHA256)
        serial = secrets.randbits(127) | 1
        when = self._clock()
        token = tsp.build_token(
            hash_algorithm=hash_algorithm, message_imprint=digest(hash_algorithm, data),
            signer=key, certificate=certificate, serial_number=serial,
            policy=self._config.policy_oid, gen_time=when,
            accuracy=dt.timedelta(milliseconds=self._config.accuracy_ms),
            extra_certificates=[certificate])
        if self._audit is not None:
            self._audit("signature", "tsa.stamp", "tsa", f"{serial:x}",
                        {"imprint": digest(hash_algorithm, data).hex(),
                         "hash": hash_algorithm.value, "time": when.isoformat(),
                         "certificate": f"{certificate.serial_number:x}", "internal": True})
        return token

    def _tsa(self, algorithm: str | None) -> tuple[Certificate, Any]:
        now = self._clock()
        with self._db.engine.connect() as conn:
            rows = conn.execute(select(C).where(
                C.c.profile == TSA_PROFILE, C.c.key_id.is_not(None), C.c.status == "active",
                C.c.not_before <= now, C.c.not_after > now).order_by(C.c.id.desc())).all()
        for row in rows:
            info = certificate_info(row)
            if algorithm is None or info.key_type == algorithm:
                return Certificate.from_stored(info.der), self._keys.load(str(row.key_id))
        which = f" {algorithm.upper()}" if algorithm else ""
        raise Conflict(f"设备尚无可用的{which}时间戳证书（POST /api/v1/ca/enrollments，"
                       f"profile tsa）")

    def _alert(self, detail: str) -> None:
        with self._lock:
            if time.monotonic() - self._alerted < ALERT_SECONDS and self._alerted:
                return
            self._alerted = time.monotonic()
        if self._audit is not None:
            self._audit("system", "tsa.clock-unsynchronized", "tsa", "tsa", {"detail": detail})

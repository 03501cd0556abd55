"""Notification providers: SMS (Tencent Cloud SMS, API 3.0 ``SendSms``) and WeChat
subscribe messages (mini-program ``subscribeMessage.send``), each a real adapter following the
provider's documented HTTP API.  The providers cannot be reached from the development and CI
machines, so the tests run the adapters against local fakes written from the same
documentation (``tests/support/providers.py``); the base URL is configuration.

- Tencent Cloud SMS: ``POST https://sms.tencentcloudapi.com/`` with ``X-TC-Action: SendSms``,
  ``X-TC-Version: 2021-01-11``, ``X-TC-Region``, ``X-TC-Timestamp`` and an ``Authorization``
  header signed with TC3-HMAC-SHA256 (canonical request over method, ``/``, empty query, the
  ``content-type`` and ``host`` headers and the SHA-256 of the JSON body; the key derived as
  HMAC(HMAC(HMAC("TC3" + SecretKey, date), "sms"), "tc3_request")).  The answer's
  ``Response.SendStatusSet[].Code`` is ``Ok`` per number, or ``Response.Error`` for the call.
- WeChat: ``GET /cgi-bin/token?grant_type=client_credential&appid=...&secret=...`` gives an
  ``access_token`` (``expires_in`` 7200 s), cached until shortly before it expires and fetched
  again when the API answers errcode 40001/42001 (invalid/expired token); then
  ``POST /cgi-bin/message/subscribe/send?access_token=...`` with ``touser`` (the openid),
  ``template_id``, ``page``, ``data`` ({"thing1": {"value": ...}}), ``miniprogram_state`` and
  ``lang``; errcode 0 is success, 43101 means the user has not subscribed (not retryable),
  -1 means busy (retryable).

Threat model: provider credentials come from the configuration (the appliance keeps them
wrapped when they are stored); message texts contain no personal data beyond what the template
shows the recipient; phone numbers are logged only as their HMAC by the callers.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import http.client
import json
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from appliance.errors import NotificationFailed as NotifyFailed
from appliance.errors import ValidationFailed

TIMEOUT_SECONDS = 10.0
MAX_ANSWER = 256 * 1024
TC3 = "TC3-HMAC-SHA256"
SMS_VERSION = "2021-01-11"


def _request(url: str, method: str, body: bytes | None,
             headers: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
    parts = urllib.parse.urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = cls(parts.hostname or "", parts.port, timeout=TIMEOUT_SECONDS)
    try:
        connection.request(method, target, body=body, headers=dict(headers))
        response = connection.getresponse()
        raw = response.read(MAX_ANSWER + 1)
    except (OSError, http.client.HTTPException) as exc:
        raise NotifyFailed(f"{parts.hostname}: {exc}", retryable=True) from None
    finally:
        connection.close()
    if len(raw) > MAX_ANSWER:
        raise NotifyFailed(f"{parts.hostname}: answer too large", retryable=True)
    try:
        answer = json.loads(raw or b"{}")
    except ValueError:
        raise NotifyFailed(f"{parts.hostname}: HTTP {response.status}, not JSON",
                           retryable=True) from None
    if not isinstance(answer, dict):
        raise NotifyFailed(f"{parts.hostname}: unexpected answer", retryable=True)
    return response.status, answer


# ----------------------------------------------------------------------------- Tencent SMS

@dataclasses.dataclass(frozen=True)
class TencentSmsConfig:
    secret_id: str
    secret_key: str = dataclasses.field(repr=False)
    sdk_app_id: str
    sign_name: str  # the approved SMS signature, e.g. 某某医院
    region: str = "ap-guangzhou"
    endpoint: str = "https://sms.tencentcloudapi.com"


def tc3_authorization(*, secret_id: str, secret_key: str, host: str, body: bytes,
                      timestamp: int, service: str = "sms",
                      content_type: str = "application/json; charset=utf-8") -> str:
    """The TC3-HMAC-SHA256 ``Authorization`` header of a POST to ``/`` (Tencent Cloud API 3.0
    signature v3)."""
    date = dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d")
    canonical = "\n".join(("POST", "/", "", f"content-type:{content_type}\nhost:{host}\n",
                           "content-type;host", hashlib.sha256(body).hexdigest()))
    scope = f"{date}/{service}/tc3_request"
    to_sign = "\n".join((TC3, str(timestamp), scope,
                         hashlib.sha256(canonical.encode()).hexdigest()))

    def mac(key: bytes, message: str) -> bytes:
        return hmac.new(key, message.encode(), hashlib.sha256).digest()

    signing = mac(mac(mac(("TC3" + secret_key).encode(), date), service), "tc3_request")
    signature = hmac.new(signing, to_sign.encode(), hashlib.sha256).hexdigest()
    return (f"{TC3} Credential={secret_id}/{scope}, SignedHeaders=content-type;host, "
            f"Signature={signature}")


class TencentSms:
    """Tencent Cloud SMS ``SendSms``: one template to up to 200 numbers (+86...)."""

    def __init__(self, config: TencentSmsConfig, *, clock: Callable[[], float] = time.time
                 ) -> None:
        self._config, self._clock = config, clock

    def send(self, numbers: Sequence[str], template_id: str,
             params: Sequence[str]) -> dict[str, str]:
        """Send; ``{number: serial number}`` for the numbers the provider took.  NotifyFailed
        when the call failed or any number was refused (its code in the detail)."""
        if not 0 < len(numbers) <= 200 or not all(n.startswith("+") and n[1:].isdigit()
                                                  for n in numbers):
            raise ValidationFailed("phone numbers in E.164 (+8613800000000), 1 to 200")
        config = self._config
        body = json.dumps({"PhoneNumberSet": list(numbers), "SmsSdkAppId": config.sdk_app_id,
                           "SignName": config.sign_name, "TemplateId": template_id,
                           "TemplateParamSet": list(params)}, ensure_ascii=False).encode()
        host = urllib.parse.urlsplit(config.endpoint).netloc
        timestamp = int(self._clock())
        headers = {
            "Content-Type": "application/json; charset=utf-8", "Host": host,
            "X-TC-Action": "SendSms", "X-TC-Version": SMS_VERSION, "X-TC-Region": config.region,
            "X-TC-Timestamp": str(timestamp),
            "Authorization": tc3_authorization(secret_id=config.secret_id,
                                               secret_key=config.secret_key, host=host,
                                               body=body, timestamp=timestamp),
        }
        _status, answer = _request(config.endpoint + "/", "POST", body, headers)
        response = answer.get("Response")
        if not isinstance(response, dict):
            raise NotifyFailed("Tencent SMS: no Response in the answer", retryable=True)
        error = response.get("Error")
        if isinstance(error, dict):
            code = str(error.get("Code", ""))
            retryable = code.startswith(("InternalError", "RequestLimitExceeded",
                                         "LimitExceeded"))
            raise NotifyFailed(f"Tencent SMS: {code}: {error.get('Message', '')}",
                               retryable=retryable)
        sent, refused = {}, []
        for item in response.get("SendStatusSet") or []:
            if item.get("Code") == "Ok":
                sent[str(item.get("PhoneNumber"))] = str(item.get("SerialNo"))
            else:
                refused.append(f"{item.get('PhoneNumber')}: {item.get('Code')}")
        if refused:
            raise NotifyFailed("Tencent SMS refused " + "; ".join(refused), retryable=False)
        return sent


# ----------------------------------------------------------------------------- WeChat

@dataclasses.dataclass(frozen=True)
class WechatConfig:
    app_id: str
    app_secret: str = dataclasses.field(repr=False)
    endpoint: str = "https://api.weixin.qq.com"
    miniprogram_state: str = "formal"  # formal | trial | developer


class WechatSubscribe:
    """Mini-program subscribe messages (订阅消息) to a signer's openid."""

    TOKEN_MARGIN = 300  # seconds before expiry a cached token is renewed

    def __init__(self, config: WechatConfig, *, clock: Callable[[], float] = time.time) -> None:
        self._config, self._clock = config, clock
        self._token: tuple[str, float] | None = None
        self._lock = threading.Lock()

    def _access_token(self, *, fresh: bool = False) -> str:
        with self._lock:
            if not fresh and self._token and self._clock() < self._token[1]:
                return self._token[0]
            query = urllib.parse.urlencode({"grant_type": "client_credential",
                                            "appid": self._config.app_id,
                                            "secret": self._config.app_secret})
            _status, answer = _request(f"{self._config.endpoint}/cgi-bin/token?{query}", "GET",
                                       None, {})
            token = answer.get("access_token")
            if not isinstance(token, str):
                raise NotifyFailed(f"WeChat token: {answer.get('errcode')} "
                                   f"{answer.get('errmsg', '')}",
                                   retryable=answer.get("errcode") == -1)
            expires = float(answer.get("expires_in", 7200))
            self._token = (token, self._clock() + max(0.0, expires - self.TOKEN_MARGIN))
            return token

    def send(self, openid: str, template_id: str, data: Mapping[str, str], *,
             page: str = "") -> None:
        body: dict[str, Any] = {
            "touser": openid, "template_id": template_id,
            "data": {k: {"value": v} for k, v in data.items()},
            "miniprogram_state": self._config.miniprogram_state, "lang": "zh_CN"}
        if page:
            body["page"] = page
        payload = json.dumps(body, ensure_ascii=False).encode()
        for attempt in (1, 2):
            token = self._access_token(fresh=attempt == 2)
            url = (f"{self._config.endpoint}/cgi-bin/message/subscribe/send?"
                   f"{urllib.parse.urlencode({'access_token': token})}")
            _status, answer = _request(url, "POST", payload,
                                       {"Content-Type": "application/json"})
            code = answer.get("errcode", 0)
            if code == 0:
                return
            if code in (40001, 42001) and attempt == 1:
                continue  # the token was revoked or expired early: fetch another, once
            raise NotifyFailed(f"WeChat subscribe message: {code} {answer.get('errmsg', '')}",
                               retryable=code == -1)
        raise AssertionError("unreachable")

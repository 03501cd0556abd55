"""The SMS (Tencent Cloud) and WeChat subscribe-message adapters against local fakes that
follow the providers' documentation (tests/support/providers.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from appliance.errors import NotificationFailed, ValidationFailed
from appliance.services.notify import TencentSms, TencentSmsConfig, WechatConfig, WechatSubscribe
from tests.support.providers import FakeTencentSms, FakeWechat


@pytest.fixture
def sms_server() -> Iterator[FakeTencentSms]:
    server = FakeTencentSms("AKIDexample", "secret-key-example")
    yield server
    server.stop()


@pytest.fixture
def wechat_server() -> Iterator[FakeWechat]:
    server = FakeWechat("wx1234567890", "app-secret")
    yield server
    server.stop()


def _sms(server: FakeTencentSms, key: str = "secret-key-example") -> TencentSms:
    return TencentSms(TencentSmsConfig(secret_id="AKIDexample", secret_key=key,
                                       sdk_app_id="1400000000", sign_name="测试医院",
                                       endpoint=server.base))


def test_sms_sent_with_a_valid_tc3_signature(sms_server: FakeTencentSms) -> None:
    sent = _sms(sms_server).send(["+8613800000000", "+8613900000000"], "1234567",
                                 ["张医生", "3"])
    assert set(sent) == {"+8613800000000", "+8613900000000"}
    [(_action, _method, request)] = sms_server.requests
    assert request["SignName"] == "测试医院" and request["TemplateParamSet"] == ["张医生", "3"]


def test_sms_failures(sms_server: FakeTencentSms) -> None:
    with pytest.raises(NotificationFailed, match="SignatureFailure") as raised:
        _sms(sms_server, key="wrong key").send(["+8613800000000"], "1", [])
    assert not raised.value.retryable
    sms_server.mode = "refuse"
    with pytest.raises(NotificationFailed, match="Blacklist") as raised:
        _sms(sms_server).send(["+8613800000000", "+8613900000000"], "1", [])
    assert not raised.value.retryable
    sms_server.mode = "busy"
    with pytest.raises(NotificationFailed, match="LimitExceeded") as raised:
        _sms(sms_server).send(["+8613800000000"], "1", [])
    assert raised.value.retryable
    with pytest.raises(ValidationFailed):
        _sms(sms_server).send(["13800000000"], "1", [])
    sms_server.stop()
    with pytest.raises(NotificationFailed) as raised:
        _sms(sms_server).send(["+8613800000000"], "1", [])
    assert raised.value.retryable


def test_wechat_token_cached_and_renewed(wechat_server: FakeWechat) -> None:
    clock = [1_000.0]
    wechat = WechatSubscribe(WechatConfig("wx1234567890", "app-secret",
                                          endpoint=wechat_server.base), clock=lambda: clock[0])
    wechat.send("openid-doctor-1", "tmpl-sign-task", {"thing1": "待签处方 3 张"},
                page="pages/tasks/index")
    wechat.send("openid-doctor-1", "tmpl-sign-task", {"thing1": "待签处方 1 张"})
    assert wechat_server.token_requests == 1  # cached
    wechat_server.mode = "revoke-token"  # invalidated early: fetched again, once
    wechat.send("openid-doctor-1", "tmpl-sign-task", {"thing1": "x"})
    assert wechat_server.token_requests == 2
    clock[0] += 7200  # expired: fetched again before sending
    wechat.send("openid-doctor-1", "tmpl-sign-task", {"thing1": "x"})
    assert wechat_server.token_requests == 3
    sent = wechat_server.requests[0][2]
    assert sent["data"] == {"thing1": {"value": "待签处方 3 张"}}
    assert sent["page"] == "pages/tasks/index" and sent["lang"] == "zh_CN"


def test_wechat_failures(wechat_server: FakeWechat) -> None:
    wechat = WechatSubscribe(WechatConfig("wx1234567890", "app-secret",
                                          endpoint=wechat_server.base))
    wechat_server.mode = "unsubscribed"
    with pytest.raises(NotificationFailed, match="43101") as raised:
        wechat.send("openid", "tmpl", {"thing1": "x"})
    assert not raised.value.retryable
    wechat_server.mode = "busy"
    with pytest.raises(NotificationFailed) as raised:
        wechat.send("openid", "tmpl", {"thing1": "x"})
    assert raised.value.retryable
    wrong = WechatSubscribe(WechatConfig("wx1234567890", "wrong",
                                         endpoint=wechat_server.base))
    with pytest.raises(NotificationFailed, match="40013"):
        wrong.send("openid", "tmpl", {"thing1": "x"})

"""The appliance's exceptions.  Each maps to one RFC 9457 problem type with a stable ``code``
(see ``appliance.api.problems``); anything else reaching the API is a 500 without details."""

from __future__ import annotations


class ApplianceError(Exception):
    """Base class; ``code`` is the stable machine-readable name, ``status`` the HTTP status."""

    code = "internal-error"
    status = 500
    title = "服务器内部错误"

    def __init__(self, detail: str = "", **extensions: object) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extensions = extensions


class ConfigError(ApplianceError):
    code, status, title = "config-error", 500, "配置错误"


class BadRequest(ApplianceError):
    code, status, title = "bad-request", 400, "请求无效"


class ValidationFailed(BadRequest):
    code, title = "validation-failed", "请求参数校验失败"


class Unauthorized(ApplianceError):
    code, status, title = "unauthorized", 401, "未认证"


class Forbidden(ApplianceError):
    code, status, title = "forbidden", 403, "无权访问"


class NotFound(ApplianceError):
    code, status, title = "not-found", 404, "资源不存在"


class Conflict(ApplianceError):
    code, status, title = "conflict", 409, "资源冲突"


class PayloadTooLarge(ApplianceError):
    code, status, title = "payload-too-large", 413, "请求体过大"


class Sealed(ApplianceError):
    code, status, title = "sealed", 503, "设备处于密封状态，请先解封"


class Locked(ApplianceError):
    code, status, title = "locked", 423, "账户已锁定"



class CaChannelDown(ApplianceError):
    """A CA channel did not answer; nothing was issued.  Retry later."""

    code, status, title = "ca-channel-unavailable", 503, "CA 通道暂不可用，请稍后重试"


class ClockUnsynchronized(ApplianceError):
    """The TSA does not issue while the appliance's clock is not known to be right."""

    code, status, title = "clock-unsynchronized", 503, "设备时钟未同步，时间戳服务暂停"


class NotificationFailed(ApplianceError):
    """A notification provider (SMS, WeChat) did not take the message; ``retryable`` says
    whether trying later may help."""

    code, status, title = "notification-failed", 502, "通知发送失败"

    def __init__(self, detail: str, *, retryable: bool) -> None:
        super().__init__(detail, retryable=retryable)
        self.retryable = retryable

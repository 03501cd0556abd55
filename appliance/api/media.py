"""Reading JSON request bodies strictly: an object, known members only, typed values."""

from __future__ import annotations

from typing import Any

import falcon

from appliance.errors import ValidationFailed


def json_body(req: falcon.Request, *, allowed: set[str],
              required: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
    if req.content_length in (None, 0):
        body: Any = {}
    else:
        if req.content_type is None or not req.content_type.startswith("application/json"):
            raise falcon.HTTPUnsupportedMediaType(description="send application/json")
        try:
            body = req.get_media()
        except falcon.MediaMalformedError:
            raise ValidationFailed("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ValidationFailed("the body must be a JSON object")
    unknown = set(body) - allowed
    if unknown:
        raise ValidationFailed(f"unknown fields: {', '.join(sorted(unknown))}")
    missing = required - set(body)
    if missing:
        raise ValidationFailed(f"missing fields: {', '.join(sorted(missing))}")
    return body


def optional_str(body: dict[str, Any], name: str, max_length: int) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= max_length:
        raise ValidationFailed(f"{name} must be a string of 1 to {max_length} characters")
    return value


def required_str(body: dict[str, Any], name: str, max_length: int) -> str:
    value = optional_str(body, name, max_length)
    if value is None:
        raise ValidationFailed(f"{name} is required")
    return value

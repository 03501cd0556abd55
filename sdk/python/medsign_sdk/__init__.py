"""medsign-sdk: the Python SDK of the medsign signing appliance.

- :class:`BackendClient`: the hospital backend's API client (HMAC-signed requests): sign
  requests, activation codes, QR sessions, seals, verification, signer records;
  :func:`verify_webhook` checks the appliance's webhooks.
- :class:`PhoneClient`: a reference phone (device-signed requests and the phone's side of
  two-party SM2): activation, enrollment, tasks, batch co-signing, auto-sign windows, PIN
  change, message center, QR login.

Depends on ``cryptography`` only; it does not import the appliance's packages.
"""

from medsign_sdk._version import __version__
from medsign_sdk.backend import BackendClient, verify_webhook
from medsign_sdk.errors import (
    ApiError,
    Conflict,
    Forbidden,
    MedsignError,
    NotFound,
    PinLocked,
    PinWrong,
    ProtocolError,
    ServerError,
    TransportError,
    Unauthorized,
    ValidationFailed,
    WaitTimeout,
    WebhookError,
)
from medsign_sdk.models import Document, DocumentView, EvidenceReport, SealDocument, SignerStep
from medsign_sdk.phone import JsonFileStorage, MemoryStorage, PhoneClient, Storage

__all__ = [
    "ApiError",
    "BackendClient",
    "Conflict",
    "Document",
    "DocumentView",
    "EvidenceReport",
    "Forbidden",
    "JsonFileStorage",
    "MedsignError",
    "MemoryStorage",
    "NotFound",
    "PhoneClient",
    "PinLocked",
    "PinWrong",
    "ProtocolError",
    "SealDocument",
    "ServerError",
    "SignerStep",
    "Storage",
    "TransportError",
    "Unauthorized",
    "ValidationFailed",
    "WaitTimeout",
    "WebhookError",
    "__version__",
    "verify_webhook",
]

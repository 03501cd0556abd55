"""The exceptions keysplit raises.

Every problem with an incoming protocol message is a :class:`ProtocolError`; raising one never
changes the server's state (the state objects are immutable and only replaced on success).
PIN problems are :class:`PinError`: their outcome (the failure counter) is reported through
:class:`keysplit.pin.PinOutcome`, which the caller persists before the error is raised.
"""

from __future__ import annotations


class KeysplitError(Exception):
    """Base class of everything keysplit raises on purpose."""


class ProtocolError(KeysplitError):
    """An incoming message was refused; the receiving party's state is unchanged."""


class MalformedMessage(ProtocolError, ValueError):
    """Not a message of this protocol: bad JSON, unknown version or type, missing or mistyped
    fields, wrong field sizes, or too many items."""


class InvalidPoint(ProtocolError, ValueError):
    """A point that is not on the SM2 curve, or the point at infinity."""


class InvalidScalar(ProtocolError, ValueError):
    """A scalar or RSA value outside its range."""


class OutOfOrder(ProtocolError):
    """A message that the session does not expect now (wrong phase, finished or foreign session,
    too many retries)."""


class ReplayError(ProtocolError):
    """A message that does not answer the latest nonce of its peer, or reuses one of its own."""


class DigestMismatch(ProtocolError):
    """The digests in a message are not the ones this session was opened for."""


class SignatureRejected(ProtocolError):
    """The final signature assembled by the other party does not verify."""


class PinError(KeysplitError):
    """The PIN check refused the request."""


class WrongPin(PinError):
    def __init__(self, attempts_left: int) -> None:
        super().__init__(f"wrong PIN ({attempts_left} attempts left before the share locks)")
        self.attempts_left = attempts_left


class ShareLocked(PinError):
    """Too many wrong PINs: the share stays locked until the signer's identity is re-verified."""

    def __init__(self) -> None:
        super().__init__("the signing share is locked after too many wrong PINs; "
                         "re-verify the signer's identity to unlock it")

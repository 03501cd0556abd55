"""keysplit: two-party custody of signing keys between a signer's phone and the appliance.

A doctor's SM2 key is never whole: the phone holds d1, the appliance d2, and every signature is
a two-party co-signature (DESIGN.md section 4).  RSA keys are split additively.  The phone's
share is stored encrypted under a key that needs both the PIN and a secret of the server, so
PIN guessing is only possible through the server's counter (:mod:`keysplit.pin`, which also
states the threat model).  The protocol messages and flows are specified in
``keysplit/README.md``.

Server side: :mod:`keysplit.sm2` (co-keygen, co-sign), :mod:`keysplit.rsa`, :mod:`keysplit.pin`.
Phone side (the reference implementation the SDKs follow): :mod:`keysplit.phone`.
"""

from keysplit import messages, phone, pin, rsa, sm2
from keysplit.errors import (
    DigestMismatch,
    InvalidPoint,
    InvalidScalar,
    KeysplitError,
    MalformedMessage,
    OutOfOrder,
    PinError,
    ProtocolError,
    ReplayError,
    ShareLocked,
    SignatureRejected,
    WrongPin,
)
from keysplit.phone import PhoneCosigner, PhoneKeygen, PhoneShare
from keysplit.pin import PinOutcome, PinRecord
from keysplit.sm2 import CosignState, KeygenState, ServerShare, SM2Server

__all__ = [
    "CosignState",
    "DigestMismatch",
    "InvalidPoint",
    "InvalidScalar",
    "KeygenState",
    "KeysplitError",
    "MalformedMessage",
    "OutOfOrder",
    "PhoneCosigner",
    "PhoneKeygen",
    "PhoneShare",
    "PinError",
    "PinOutcome",
    "PinRecord",
    "ProtocolError",
    "ReplayError",
    "SM2Server",
    "ServerShare",
    "ShareLocked",
    "SignatureRejected",
    "WrongPin",
    "messages",
    "phone",
    "pin",
    "rsa",
    "sm2",
]

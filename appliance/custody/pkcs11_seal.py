"""Sealing the KEK with a PKCS#11 token (an HSM; SoftHSM2 in tests).

The token holds a non-extractable, sensitive AES-256 key; the KEK is encrypted with it
(CKM_AES_GCM inside the token) and the ciphertext is stored like the other sealing methods.
Unsealing needs the token and its user PIN, so a stolen database or backup is useless without
the HSM.  SM2/SM4 mechanisms are not available on common tokens (PEERS.md), so the token wraps
the KEK and the appliance computes everything else.
"""

from __future__ import annotations

import os
from typing import Any

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag
from pkcs11.exceptions import NoSuchKey, NoSuchToken, PinIncorrect, PKCS11Error
from pkcs11.mechanisms import GCMParams

from appliance.custody.kek import UnsealFailed
from appliance.errors import BadRequest

_AAD = b"medsign/kek-pkcs11/v1"


def _token(module: str, token_label: str) -> Any:
    try:
        return pkcs11.lib(module).get_token(token_label=token_label)
    except NoSuchToken:
        raise BadRequest(f"no PKCS#11 token labelled {token_label!r}") from None
    except (RuntimeError, OSError, PKCS11Error) as exc:
        raise BadRequest(f"cannot load the PKCS#11 module {module}: {exc}") from None


def _session(token: Any, pin: str, *, rw: bool = False) -> Any:
    try:
        return token.open(user_pin=pin, rw=rw)
    except PinIncorrect:
        raise UnsealFailed("the token PIN is wrong") from None


def seal_with_pkcs11(kek: bytes, *, module: str, token_label: str, key_label: str,
                     pin: str) -> dict[str, Any]:
    """Encrypt the KEK under the token's AES key (generated on first use, non-extractable)."""
    token = _token(module, token_label)
    with _session(token, pin, rw=True) as session:
        try:
            key = session.get_key(label=key_label, key_type=KeyType.AES)
        except NoSuchKey:
            key = session.generate_key(
                KeyType.AES, 256, label=key_label, store=True,
                capabilities=MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT,
                template={Attribute.EXTRACTABLE: False, Attribute.SENSITIVE: True})
        nonce = os.urandom(12)
        ciphertext = key.encrypt(kek, mechanism=Mechanism.AES_GCM,
                                 mechanism_param=GCMParams(nonce, _AAD, 128))
    return {"method": "pkcs11", "token_label": token_label, "key_label": key_label,
            "nonce": nonce.hex(), "ct": bytes(ciphertext).hex()}


def open_with_pkcs11(sealed: dict[str, Any], *, module: str, pin: str) -> bytes:
    token = _token(module, sealed["token_label"])
    with _session(token, pin) as session:
        try:
            key = session.get_key(label=sealed["key_label"], key_type=KeyType.AES)
            return bytes(key.decrypt(bytes.fromhex(sealed["ct"]), mechanism=Mechanism.AES_GCM,
                                     mechanism_param=GCMParams(bytes.fromhex(sealed["nonce"]),
                                                               _AAD, 128)))
        except NoSuchKey:
            raise UnsealFailed(f"the token has no key labelled {sealed['key_label']!r}") from None
        except PKCS11Error:
            raise UnsealFailed("the token's key does not open this appliance's KEK") from None

"""Key custody: the sealed KEK in the database, and the process-local holder of the unsealed one.

``KeyHolder`` is the only object that ever holds the KEK; services ask it for the
:class:`Keyring` and get :class:`appliance.errors.Sealed` (HTTP 503) while the appliance is
sealed.  Unsealing takes a passphrase, or Shamir shares one at a time (progress is kept in
memory, never stored), or nothing when the KEK is on a PKCS#11 token.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading
from typing import Any

from sqlalchemy import insert, select

from appliance.custody.kek import (
    Keyring,
    ShamirProgress,
    UnsealFailed,
    new_kek,
    open_with_passphrase,
    seal_with_passphrase,
    seal_with_shamir,
)
from appliance.custody.pkcs11_seal import open_with_pkcs11, seal_with_pkcs11
from appliance.errors import BadRequest, Conflict, Sealed
from appliance.storage import Database, schema

__all__ = ["KekStore", "KeyHolder", "Keyring", "Pkcs11Token", "UnsealFailed", "initialize_kek"]


class KekStore:
    """The sealed KEK row (one per installation)."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def load(self) -> dict[str, Any] | None:
        with self._db.transaction() as conn:
            row = conn.execute(select(schema.kek.c.sealed).where(schema.kek.c.id == 1)).first()
        return json.loads(row.sealed) if row else None

    def save(self, sealed: dict[str, Any]) -> None:
        with self._db.transaction() as conn:
            if conn.execute(select(schema.kek.c.id)).first() is not None:
                raise Conflict("this appliance already has a KEK")
            conn.execute(insert(schema.kek).values(
                id=1, method=sealed["method"], sealed=json.dumps(sealed, sort_keys=True),
                created_at=dt.datetime.now(dt.UTC)))


@dataclasses.dataclass(frozen=True)
class Pkcs11Token:
    """Where the KEK's wrapping key lives: module path, token label, key label, user PIN."""

    module: str
    token_label: str
    key_label: str
    pin: str


def initialize_kek(store: KekStore, *, passphrase: str | None = None,
                   shamir: tuple[int, int] | None = None,
                   pkcs11: Pkcs11Token | None = None) -> tuple[Keyring, list[str]]:
    """Create and seal the installation's KEK; returns it unsealed, and any Shamir shares."""
    if sum(x is not None for x in (passphrase, shamir, pkcs11)) != 1:
        raise BadRequest("seal the KEK with a passphrase, Shamir shares (k of n) or a PKCS#11 "
                         "token")
    kek = new_kek()
    shares: list[str] = []
    if passphrase is not None:
        sealed = seal_with_passphrase(kek, passphrase)
    elif shamir is not None:
        sealed, shares = seal_with_shamir(kek, *shamir)
    else:
        assert pkcs11 is not None
        sealed = seal_with_pkcs11(kek, module=pkcs11.module, token_label=pkcs11.token_label,
                                  key_label=pkcs11.key_label, pin=pkcs11.pin)
    store.save(sealed)
    return Keyring(kek), shares


class KeyHolder:
    """Process-local unseal state; thread-safe."""

    def __init__(self, store: KekStore, *, pkcs11_module: str = "") -> None:
        self._store = store
        self._pkcs11_module = pkcs11_module
        self._lock = threading.Lock()
        self._keyring: Keyring | None = None
        self._progress: ShamirProgress | None = None

    @property
    def sealed(self) -> bool:
        return self._keyring is None

    def keyring(self) -> Keyring:
        keyring = self._keyring
        if keyring is None:
            raise Sealed()
        return keyring

    def adopt(self, keyring: Keyring) -> None:
        """Install an already unsealed KEK (right after ``medsign init``)."""
        with self._lock:
            self._keyring, self._progress = keyring, None

    def status(self) -> dict[str, Any]:
        sealed = self._store.load()
        progress = self._progress
        return {
            "initialized": sealed is not None,
            "sealed": self.sealed,
            "method": sealed["method"] if sealed else None,
            "threshold": sealed.get("threshold") if sealed else None,
            "progress": len(progress.shares) if progress else 0,
        }

    def unseal(self, *, passphrase: str | None = None, share: str | None = None,
               pin: str | None = None) -> dict[str, Any]:
        """Apply one piece of unseal material; the new status."""
        sealed = self._store.load()
        if sealed is None:
            raise Conflict("the appliance is not initialized (run medsign init)")
        with self._lock:
            if self._keyring is None:
                self._keyring = self._apply(sealed, passphrase, share, pin)
        return self.status()

    def _apply(self, sealed: dict[str, Any], passphrase: str | None,
               share: str | None, pin: str | None) -> Keyring | None:
        method = sealed["method"]
        if method == "pkcs11":
            if not pin or not self._pkcs11_module:
                raise BadRequest("this appliance is unsealed with its PKCS#11 token and PIN "
                                 "(custody.pkcs11_module must be configured)")
            return Keyring(open_with_pkcs11(sealed, module=self._pkcs11_module, pin=pin))
        if method == "passphrase":
            if not passphrase:
                raise BadRequest("this appliance is unsealed with its passphrase")
            return Keyring(open_with_passphrase(sealed, passphrase))
        if method == "shamir":
            if not share:
                raise BadRequest("this appliance is unsealed with Shamir shares, one at a time")
            progress = self._progress or ShamirProgress(int(sealed["threshold"]))
            try:
                complete = progress.add(sealed, share)
            except ValueError as exc:
                raise UnsealFailed(str(exc)) from None
            self._progress = progress
            if not complete:
                return None
            self._progress = None
            return Keyring(progress.open(sealed))
        raise BadRequest(f"unseal method {method} is not supported here")

    def seal(self) -> None:
        """Forget the KEK (and any partial Shamir progress)."""
        with self._lock:
            self._keyring, self._progress = None, None

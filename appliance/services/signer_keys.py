"""Signers' split keys on the appliance: co-keygen with the bound phone, enrollment of the joint
key through the profile's CA channel, the PIN, and the co-sign rounds every signature takes.

Flows (messages are keysplit's JSON, keysplit/README.md; every request is device-signed):

- keygen: ``open_keygen`` → KeygenOffer; the phone answers a KeygenCommit (P1 and its PIN
  proof) → the server creates its share d2 and the PIN record, prepares the enrollment of the
  joint key with the profile's active channel, and answers the KeygenResult together with a
  co-sign offer (session kind ``enroll``) for the proof-of-possession of the CSR.  The phone
  co-signs it like any other digest; on the accepted result the channel issues the
  certificate, the key becomes ``active`` and the signer's earlier keys are retired (their
  certificates revoked as superseded).
- co-sign (kind ``sign``): opened by :mod:`appliance.services.sign_requests` for the digests
  it registered; CosignCommit → CosignResponse (after the PIN check, unless an auto-sign
  authorization opened the session), CosignResult → CosignDone, and the finisher of the
  session's kind turns the verified signatures into CMS and advances the sign requests.

Threat model (with keysplit.pin and keysplit.sm2): the server share and the PIN record are
stored only wrapped under the KEK; the PIN counter is persisted (compare-and-swap on the key
row) before the answer that depends on it; the server only co-signs digests a session was
opened for by this service's callers, which register them from sign requests; session states
are compare-and-swapped (appliance.services.cosign_sessions) so that one commit is answered
once.  A result whose signature does not verify is refused and changes nothing.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import logging
import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy import Connection, Row, bindparam, insert, select, update

from appliance.custody import KeyHolder
from appliance.errors import (
    BadRequest,
    CaChannelDown,
    Conflict,
    Forbidden,
    Locked,
    NotFound,
    ValidationFailed,
)
from appliance.services._time import aware, utc_now
from appliance.services.admins import Actor, actor_label
from appliance.services.ca import CaService, CertificateInfo
from appliance.services.channels import ChannelService
from appliance.services.cosign_sessions import SessionStore, StoredSession
from appliance.services.devices import load_device_key
from appliance.storage import Database, schema
from ca_client import EnrollmentRequest, PendingEnrollment, SubjectInfo
from ca_client.errors import CaError, ChannelUnavailable, RequestRejected
from keysplit import messages, rsa, sm2
from keysplit.errors import PinError, ProtocolError, ShareLocked, WrongPin
from keysplit.pin import PinRecord
from signcore.hashes import HashAlgorithm, digest, sm3
from signcore.keys import PublicKey, RSAPublicKey
from signcore.sm2 import SM2PublicKey
from signcore.x509 import Certificate

LOG = logging.getLogger("medsign.signer_keys")
K = schema.signer_keys
S = schema.signers
# The statements of every co-signature, built once (building one costs about four times what
# executing it does: SQLAlchemy's coercions and cache key).
_KEY_BY_ID = select(K).where(K.c.id == bindparam("key_id"))
_ACTIVE_KEY = select(K).where(K.c.signer_id == bindparam("signer_id"),
                              K.c.device_id == bindparam("device_id"), K.c.status == "active")
_PIN_OF_KEY = select(K.c.pin_wrapped, K.c.version).where(K.c.id == bindparam("key_id"))
_PIN_SWAP = update(K).where(K.c.id == bindparam("key_id"),
                            K.c.version == bindparam("expected_version"))
PROFILES = {"doctor": "doctor-signing", "pharmacist": "pharmacist-signing",
            "nurse": "nurse-signing"}
AuditHook = Callable[[str, str, str, str, dict[str, Any]], object]


class ProtocolRefused(BadRequest):
    code, title = "protocol-error", "协同签名消息被拒绝"


class PinWrong(Forbidden):
    code, title = "pin-wrong", "PIN 码错误"


class PinLocked(Locked):
    code, title = "pin-locked", "PIN 码已锁定"


class NoSigningKey(Conflict):
    code, title = "no-signing-key", "尚无可用的签名密钥"


@dataclasses.dataclass(frozen=True)
class SignerKey:
    id: str
    signer_id: int
    device_id: str
    status: str
    public_key: bytes  # the SM2 point, or the RSA modulus (big-endian, k bytes)
    certificate_id: int | None
    created_at: dt.datetime
    algorithm: str = "sm2"
    # The server's share, wrapped under the KEK, when the row was read whole: the co-sign
    # steps then unwrap it without reading the row a second time.
    share_wrapped: bytes | None = dataclasses.field(default=None, repr=False, compare=False)
    # Likewise the PIN record as read with the row (wrapped, row version): the first PIN check
    # of a co-sign round starts from it; a concurrent change is caught by the version.
    pin_read: tuple[bytes, int] | None = dataclasses.field(default=None, repr=False,
                                                           compare=False)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "algorithm": self.algorithm,
                "public_key": self.public_key.hex(), "certificate_id": self.certificate_id,
                "created_at": self.created_at.isoformat()}


def _key(row: Row[Any]) -> SignerKey:
    columns = row._mapping
    wrapped, pin = columns.get("share_wrapped"), columns.get("pin_wrapped")
    return SignerKey(row.id, int(row.signer_id), row.device_id, row.status,
                     bytes(row.public_key), row.certificate_id, aware(row.created_at),
                     row.algorithm, bytes(wrapped) if wrapped is not None else None,
                     (bytes(pin), int(columns["version"])) if pin is not None else None)


AfterCommit = Callable[[], None]


class Finisher(Protocol):
    """What a co-sign session of one kind does with its verified signatures, inside the
    transaction that closes the session; returns what is added to the phone's answer and
    what to do once that transaction committed (audit entries, notifications: on SQLite a
    second connection must not write while the transaction is open).  ``prepared`` is what
    the kind's :data:`Preparer` made of the signatures before the transaction, if it has
    one."""

    def __call__(self, conn: Connection, session: StoredSession, key: SignerKey,
                 signatures: Sequence[bytes], prepared: Any = None, /
                 ) -> tuple[dict[str, Any], AfterCommit]: ...


# The slow or outward part of finishing a session (time stamps, revocation data, building
# signed PDFs), run before the closing transaction: it may read the database and call the
# TSA (which writes its audit entry), and the write lock is not held while it works.  Raising
# leaves the session as it was: the phone may send the same message again.
Preparer = Callable[[StoredSession, SignerKey, Sequence[bytes]], Any]


def _answer_context(session_id: str) -> bytes:
    return f"cosign-session:{session_id}:answer".encode()


def _share_context(key_id: str) -> bytes:
    return f"signer-key:{key_id}:share".encode()


def _pin_context(key_id: str) -> bytes:
    return f"signer-key:{key_id}:pin".encode()


class SignerKeyService:
    def __init__(self, database: Database, key_holder: KeyHolder, ca: CaService,
                 channels: ChannelService, *, max_pin_failures: int = 10,
                 renew_days_before: int = 30, audit: AuditHook | None = None,
                 clock: Callable[[], dt.datetime] = utc_now) -> None:
        self._db, self._holder, self._ca, self._channels = database, key_holder, ca, channels
        self._max_pin_failures, self._audit, self._clock = max_pin_failures, audit, clock
        self._renew_before = dt.timedelta(days=renew_days_before)
        self._sessions = SessionStore(database)
        self._local = threading.local()  # the fingerprint of the message being handled
        # Issuing CA id -> the chain above a certificate it issued ([] when not the built-in
        # CA).  Both facts are immutable for an id, so the cache never goes stale.
        self._issuer_chains: dict[str, list[Certificate]] = {}
        self._finishers: dict[str, Finisher] = {}  # "enroll" is this service's own
        self._preparers: dict[str, Preparer] = {}

    def register_finisher(self, kind: str, finisher: Finisher, *,
                          before: Preparer | None = None) -> None:
        self._finishers[kind] = finisher
        if before is not None:
            self._preparers[kind] = before

    # -- keys

    def keys_of(self, signer_id: int) -> list[SignerKey]:
        with self._db.engine.connect() as conn:
            rows = conn.execute(select(K).where(K.c.signer_id == signer_id)
                                .order_by(K.c.created_at.desc())).all()
        return [_key(r) for r in rows]

    def active_key(self, signer_id: int, device_id: str) -> SignerKey:
        """The signer's key on this phone that has a certificate."""
        with self._db.engine.connect() as conn:
            row = conn.execute(_ACTIVE_KEY, {"signer_id": signer_id,
                                             "device_id": device_id}).first()
        if row is None or row.certificate_id is None:
            raise NoSigningKey("这台手机上还没有签名密钥和证书，请先完成密钥生成和证书申请")
        return _key(row)

    def certificate(self, key: SignerKey) -> Certificate:
        """The key's certificate, if it can sign now (not revoked, not expired)."""
        return Certificate.from_stored(self._signing_info(key).der)

    def signing_material(self, key: SignerKey
                         ) -> tuple[Certificate, list[Certificate], CertificateInfo]:
        """What signing with the key needs, read once: its certificate (if it can sign now),
        the chain above it (see :meth:`chain`) and the stored record (renewal reads it)."""
        info = self._signing_info(key)
        return Certificate.from_stored(info.der), self._issuer_chain(info.issuer_id), info

    def _signing_info(self, key: SignerKey) -> CertificateInfo:
        if key.certificate_id is None:
            raise NoSigningKey("该密钥尚无证书")
        info = self._ca.get(key.certificate_id)
        status = info.effective_status(self._clock())
        if status != "active":
            raise NoSigningKey(f"签名证书{'已吊销' if status == 'revoked' else '已过期'}，"
                               "请重新生成密钥并申请证书")
        return info

    def revoke_device_keys(self, actor: Actor, device_id: str, reason: str) -> list[str]:
        """A lost or compromised phone: its keys can never sign again and their certificates
        are revoked through the channels that issued them."""
        with self._db.transaction() as conn:
            rows = conn.execute(select(K.c.id, K.c.certificate_id).where(
                K.c.device_id == device_id, K.c.status.in_(("active", "enrolling")))).all()
            conn.execute(update(K).where(K.c.id.in_([r.id for r in rows])).values(
                status="revoked", updated_at=self._clock()))
        self._channels.revoke_on_behalf(
            [int(r.certificate_id) for r in rows if r.certificate_id is not None],
            f"device-revoked-by:{actor_label(actor)}", reason=reason)
        self._record("data", "signer-key.revoke", actor_label(actor), device_id,
                     {"keys": [r.id for r in rows], "reason": reason})
        return [r.id for r in rows]

    def chain(self, key: SignerKey) -> list[Certificate]:
        """The issuing CA above the key's certificate, when the built-in CA issued it (CMS
        signatures carry it so that a relying party needs only the root)."""
        if key.certificate_id is None:
            return []
        return self._issuer_chain(self._ca.get(key.certificate_id).issuer_id)

    def _issuer_chain(self, issuer_id: str) -> list[Certificate]:
        chain = self._issuer_chains.get(issuer_id)
        if chain is None:
            try:
                chain = [self._ca.authority(issuer_id).certificate]
            except NotFound:  # a third-party CA's certificate: the channel gave no chain
                chain = []
            self._issuer_chains[issuer_id] = chain
        return list(chain)

    def certificate_detail(self, signer_id: int, device_id: str) -> dict[str, Any]:
        """The phone's certificate as the doctor's app shows it (CA证书管理): the details,
        the chain up to the root when the built-in CA issued it, and the renewal state."""
        with self._db.engine.connect() as conn:
            row = conn.execute(select(K).where(K.c.signer_id == signer_id,
                                               K.c.device_id == device_id,
                                               K.c.status == "active")).first()
        if row is None or row.certificate_id is None:
            raise NoSigningKey("这台手机上还没有签名证书")
        key = _key(row)
        info = self._ca.get(int(row.certificate_id))
        chain = [c.to_pem().decode() for c in self.chain(key)]
        issuer = info.issuer_id
        if chain and issuer in {a.id for a in self._ca.authorities()}:
            chain.append(self._ca.authority(issuer).root.to_pem().decode())
        due = aware(info.not_after) - self._clock() <= self._renew_before
        with self._db.engine.connect() as conn:
            error = conn.execute(select(schema.certificates.c.renewal_error).where(
                schema.certificates.c.id == info.id)).scalar_one()
        return {"certificate": info.to_json(self._clock()), "chain": chain,
                "key": key.to_json(), "renewal": {"due": due, "error": error}}

    def certificate_info(self, certificate_id: int) -> dict[str, Any]:
        return self._ca.get(certificate_id).to_json()

    # -- co-keygen and enrollment

    def open_keygen(self, device_id: str, signer_id: int, *, algorithm: str = "sm2",
                    pin_proof: bytes | None = None) -> dict[str, Any]:
        """SM2: open a co-keygen session.  RSA: split keygen at once (the phone's PIN proof
        comes with the request), the phone's share sealed to its device key."""
        self._signer_row(signer_id)  # an active signer
        if algorithm == "rsa":
            if pin_proof is None:
                raise ValidationFailed("RSA 密钥生成需要 pin_proof")
            return self._rsa_keygen(device_id, signer_id, pin_proof)
        if algorithm != "sm2":
            raise ValidationFailed("algorithm 应为 sm2 或 rsa")
        state, offer = sm2.open_keygen()
        with self._db.transaction() as conn:
            expires = self._sessions.create(
                conn, session_id=state.session.hex(), kind="keygen", device_id=device_id,
                key_id=None, state=state.to_dict(), context={"signer_id": signer_id},
                now=self._clock())
        return {"session": state.session.hex(), "kind": "keygen",
                "expires_at": expires.isoformat(), "message": _message_json(offer)}

    def _rsa_keygen(self, device_id: str, signer_id: int, proof: bytes) -> dict[str, Any]:
        with self._db.engine.connect() as conn:
            device_key = conn.execute(select(schema.devices.c.public_key).where(
                schema.devices.c.id == device_id)).one().public_key
        share, phone_secret = rsa.split_keygen(2048)
        record, unwrap = PinRecord.create(proof, self._max_pin_failures)
        sealed = phone_secret.seal(load_device_key(bytes(device_key)))
        del phone_secret
        modulus = share.modulus.to_bytes(share.size, "big")
        key_id, pending = self._store_new_key(
            device_id, signer_id, algorithm="rsa", public_bytes=modulus, share=share.to_dict(),
            record=record, public_key=share.public_key())
        opened = self._open_enrollment(key_id, device_id, pending, share.public_key())
        return {"key_id": key_id, "algorithm": "rsa", "modulus": modulus.hex(),
                "sealed_share": base64.b64encode(sealed).decode(), "unwrap": unwrap.hex(),
                "next": opened}

    def _store_new_key(self, device_id: str, signer_id: int, *, algorithm: str,
                       public_bytes: bytes, share: Mapping[str, Any], record: PinRecord,
                       public_key: PublicKey,
                       conn_hook: Callable[[Connection], None] | None = None
                       ) -> tuple[str, PendingEnrollment]:
        """Prepare the enrollment of a new split key and store the key (``enrolling``)."""
        signer = self._signer_row(signer_id)
        profile = PROFILES[signer.kind]
        pending = self._prepare(profile, self._subject(signer), public_key, None)
        key_id = "sk_" + secrets.token_urlsafe(15)
        keyring = self._holder.keyring()
        now = self._clock()
        with self._db.transaction() as conn:
            if conn_hook is not None:
                conn_hook(conn)
            conn.execute(insert(K).values(
                id=key_id, signer_id=signer_id, device_id=device_id, algorithm=algorithm,
                public_key=public_bytes,
                share_wrapped=keyring.wrap(json.dumps(dict(share)).encode(),
                                           _share_context(key_id)),
                pin_wrapped=keyring.wrap(json.dumps(record.to_dict()).encode(),
                                         _pin_context(key_id)),
                version=1, status="enrolling", enrollment=json.dumps(pending.to_dict()),
                created_at=now, updated_at=now))
        self._record("data", "signer-key.keygen", device_id, f"signer:{signer_id}",
                     {"key_id": key_id, "algorithm": algorithm, "public_key": public_bytes.hex(),
                      "channel": pending.channel, "profile": profile})
        return key_id, pending

    def _prepare(self, profile: str, subject: SubjectInfo, public_key: PublicKey,
                 renewal_of: Certificate | None) -> PendingEnrollment:
        """The profile's active channel prepares the request.  A built-in channel issues
        from the hierarchy of the key's algorithm (an RSA key under builtin-rsa)."""
        name = self._channels.assignments()[profile]
        if name in ("builtin-sm2", "builtin-rsa"):
            name = "builtin-rsa" if isinstance(public_key, RSAPublicKey) else "builtin-sm2"
        try:
            return self._channels.channel(name).prepare(
                EnrollmentRequest(profile, subject, public_key), renewal_of=renewal_of)
        except ChannelUnavailable as exc:
            raise CaChannelDown(f"CA 通道 {name} 暂不可用：{exc}") from None
        except (RequestRejected, CaError) as exc:
            raise ValidationFailed(f"CA 通道 {name} 拒绝了申请：{exc}") from None

    def _open_enrollment(self, key_id: str, device_id: str, pending: PendingEnrollment,
                         public_key: PublicKey, *, renewal: bool = False) -> dict[str, Any]:
        """The co-sign session over the enrollment's proof of possession."""
        key = SignerKey(key_id, 0, device_id, "enrolling", b"", None, self._clock(),
                        "rsa" if isinstance(public_key, RSAPublicKey) else "sm2")
        pop = (public_key.digest(pending.to_be_signed) if isinstance(public_key, SM2PublicKey)
               else digest(HashAlgorithm.SHA256, pending.to_be_signed))
        return self.open_cosign(key=key, kind="enroll", digests=[pop], require_pin=True,
                                context={"channel": pending.channel, "renewal": renewal})

    def renew(self, device_id: str, signer_id: int) -> dict[str, Any]:
        """Renew the certificate of this phone's key (same key, new certificate): the
        enrollment's proof of possession is co-signed like a first one."""
        key = self.active_key(signer_id, device_id)
        current = self.certificate(key)
        signer = self._signer_row(signer_id)
        public_key = current.public_key()
        pending = self._prepare(PROFILES[signer.kind], self._subject(signer), public_key,
                                current)
        with self._db.transaction() as conn:
            conn.execute(update(K).where(K.c.id == key.id).values(
                enrollment=json.dumps(pending.to_dict()), updated_at=self._clock()))
        self._record("data", "signer-key.renew", device_id, f"signer:{signer_id}",
                     {"key_id": key.id, "certificate_id": key.certificate_id})
        return self._open_enrollment(key.id, device_id, pending, public_key, renewal=True)

    def handle(self, device_id: str, signer_id: int, session_id: str,
               body: bytes) -> dict[str, Any]:
        """One protocol message from the phone for one of its sessions; the answer.  The same
        message again (the phone lost the answer) gets the same answer."""
        session = self._sessions.load(session_id, device_id, self._clock())
        fingerprint = sm3(body).hex()
        if session.last_message == fingerprint and session.last_answer is not None:
            answer: dict[str, Any] = json.loads(self._holder.keyring().unwrap(
                session.last_answer, _answer_context(session.id)))
            return answer
        self._local.fingerprint = fingerprint
        try:
            answer = self._dispatch(session, signer_id, body)
        finally:
            self._local.fingerprint = None
        if session.kind in ("keygen", "enroll"):  # rare: remembered on their own
            self._sessions.remember(session.id, fingerprint, self._wrap_answer(session, answer))
        return answer

    def _wrap_answer(self, session: StoredSession, answer: Mapping[str, Any]) -> bytes:
        return self._holder.keyring().wrap(json.dumps(answer, ensure_ascii=False).encode(),
                                           _answer_context(session.id))

    def _save(self, session: StoredSession, state: dict[str, Any], *,
              answer: Mapping[str, Any]) -> None:
        """Store the next (open) state and, in the same row update, the answer to the message
        being handled (for a phone that lost it); the answer is wrapped before the write
        transaction, which holds the database's write lock."""
        fingerprint = getattr(self._local, "fingerprint", None)
        answered = None if fingerprint is None else (fingerprint,
                                                     self._wrap_answer(session, answer))
        with self._db.transaction() as conn:
            self._sessions.save(conn, session, state, done=False, answered=answered)

    def _save_answer(self, conn: Connection, session: StoredSession,
                     answer: Mapping[str, Any]) -> None:
        fingerprint = getattr(self._local, "fingerprint", None)
        if fingerprint is not None:
            self._sessions.remember_in(conn, session.id, fingerprint,
                                       self._wrap_answer(session, answer))

    def _dispatch(self, session: StoredSession, signer_id: int, body: bytes) -> dict[str, Any]:
        try:
            kind = messages.peek_type(body)
            if session.kind == "keygen" and kind == "keygen.commit":
                return self._complete_keygen(session, signer_id,
                                             messages.decode(body, messages.KeygenCommit))
            if session.kind != "keygen" and kind == "cosign.commit":
                return self._respond(session, messages.decode(body, messages.CosignCommit))
            if session.kind != "keygen" and kind == "cosign.result":
                return self._accept(session, messages.decode(body, messages.CosignResult))
            if session.kind != "keygen" and kind == "rsa.unlock":
                return self._rsa_unlock(session, messages.decode(body, messages.RsaUnlock))
            if session.kind != "keygen" and kind == "rsa.commit":
                return self._rsa_finish(session, messages.decode(body, messages.RsaCommit))
        except ProtocolError as exc:
            raise ProtocolRefused(str(exc)) from None
        raise ProtocolRefused(f"a {kind} message does not belong to a {session.kind} session")

    def _complete_keygen(self, session: StoredSession, signer_id: int,
                         commit: messages.KeygenCommit) -> dict[str, Any]:
        state = sm2.KeygenState.from_dict(session.state)
        outcome = sm2.complete_keygen(state, commit, max_pin_failures=self._max_pin_failures)
        public = outcome.share.sm2_public_key()
        key_id, pending = self._store_new_key(
            session.device_id, signer_id, algorithm="sm2", public_bytes=outcome.share.public_key,
            share=outcome.share.to_dict(), record=outcome.pin_record, public_key=public,
            conn_hook=lambda conn: self._sessions.save(conn, session,
                                                       outcome.state.to_dict(), done=True))
        opened = self._open_enrollment(key_id, session.device_id, pending, public)
        return {"message": _message_json(outcome.reply), "key_id": key_id, "next": opened}

    def _complete_enrollment(self, session: StoredSession, key: SignerKey,
                             signature: bytes, state: dict[str, Any]) -> dict[str, Any]:
        with self._db.engine.connect() as conn:
            row = conn.execute(select(K).where(K.c.id == key.id)).one()
        pending = PendingEnrollment.from_dict(json.loads(row.enrollment))
        renewal = bool(session.context.get("renewal"))
        info = self._issue(pending, signature, key, session.device_id)
        now = self._clock()
        with self._db.transaction() as conn:
            self._sessions.save(conn, session, state, done=True)
            earlier: Sequence[Row[Any, Any]] = []
            if not renewal:  # a new key: the signer's earlier keys are retired
                earlier = conn.execute(select(K.c.id, K.c.certificate_id).where(
                    K.c.signer_id == key.signer_id, K.c.status == "active")).all()
                conn.execute(update(K).where(K.c.id.in_([e.id for e in earlier]))
                             .values(status="retired", updated_at=now))
            self._install(conn, key, info, renewal=renewal)
        for old in earlier:
            if old.certificate_id is not None:
                self._revoke_superseded(int(old.certificate_id))
        self._record("data", "signer-key.enroll", session.device_id, f"signer:{key.signer_id}",
                     {"key_id": key.id, "certificate_id": info.id,
                      "serial": info.serial_hex, "channel": pending.channel,
                      "retired": [e.id for e in earlier], "renewal": renewal})
        return {"certificate": info.to_json(), "key_id": key.id}

    def _issue(self, pending: PendingEnrollment, signature: bytes, key: SignerKey,
               device_id: str) -> CertificateInfo:
        channel = self._channels.channel(pending.channel)
        try:
            enrollment = channel.complete(pending, signature)
        except ChannelUnavailable as exc:
            raise CaChannelDown(f"CA 通道 {pending.channel} 暂不可用：{exc}") from None
        except (RequestRejected, CaError) as exc:
            raise Conflict(f"CA 通道 {pending.channel} 拒绝了申请：{exc}") from None
        return self._ca.record_issued(
            enrollment.certificate, channel=pending.channel, profile=pending.request.profile,
            actor=_DeviceActor(device_id), signer_id=key.signer_id,
            builtin=channel.kind == "builtin")

    def _install(self, conn: Connection, key: SignerKey, info: CertificateInfo, *,
                 renewal: bool) -> None:
        """The key's certificate is now ``info`` (a renewed one is pointed to by the old);
        the phone's message center announces it."""
        now = self._clock()
        if renewal and key.certificate_id is not None:
            conn.execute(update(schema.certificates)
                         .where(schema.certificates.c.id == key.certificate_id)
                         .values(replaced_by=info.id, renewal_error=None))
        conn.execute(update(K).where(K.c.id == key.id).values(
            status="active", certificate_id=info.id, enrollment=None, updated_at=now))
        conn.execute(insert(schema.mobile_messages).values(
            signer_id=key.signer_id, kind="certificate",
            title="签名证书已更新" if renewal else "签名证书已签发",
            body=f"证书序列号 {info.serial_hex}，有效期至 {info.not_after:%Y-%m-%d}",
            created_at=now))

    # -- renewal at the phone's next contact

    def renewal_item(self, key: SignerKey, info: CertificateInfo | None = None
                     ) -> tuple[dict[str, Any], bytes] | None:
        """When the key's certificate is due for renewal: the pending enrollment and the
        digest of its proof of possession, to be co-signed with the phone's next signatures
        (the doctor does nothing beyond the usual PIN).  None when not due, or when the
        channel cannot prepare now (it is tried again at the next contact)."""
        if key.certificate_id is None:
            return None
        if info is None or info.id != key.certificate_id:
            info = self._ca.get(key.certificate_id)
        if aware(info.not_after) - self._clock() > self._renew_before:
            return None
        current = Certificate.from_stored(info.der)
        public_key = current.public_key()
        try:
            signer = self._signer_row(key.signer_id)
            pending = self._prepare(PROFILES[signer.kind], self._subject(signer), public_key,
                                    current)
        except (CaChannelDown, ValidationFailed, Forbidden) as exc:
            self._renewal_failed(key, str(exc))
            return None
        pop = (public_key.digest(pending.to_be_signed) if isinstance(public_key, SM2PublicKey)
               else digest(HashAlgorithm.SHA256, pending.to_be_signed))
        return pending.to_dict(), pop

    def complete_renewal(self, key: SignerKey, pending: Mapping[str, Any], signature: bytes,
                         device_id: str) -> CertificateInfo | None:
        """Finish a renewal co-signed along with other signatures; a failure is recorded for
        the security administrator and tried again at the next contact."""
        try:
            info = self._issue(PendingEnrollment.from_dict(dict(pending)), signature, key,
                               device_id)
        except (CaChannelDown, Conflict, NotFound) as exc:
            self._renewal_failed(key, str(exc))
            return None
        with self._db.transaction() as conn:
            self._install(conn, key, info, renewal=True)
        self._record("data", "signer-key.renew", device_id, f"signer:{key.signer_id}",
                     {"key_id": key.id, "certificate_id": info.id, "serial": info.serial_hex,
                      "replaces": key.certificate_id, "at_contact": True})
        return info

    def _renewal_failed(self, key: SignerKey, error: str) -> None:
        with self._db.transaction() as conn:
            conn.execute(update(schema.certificates)
                         .where(schema.certificates.c.id == key.certificate_id)
                         .values(renewal_error=error[:500]))
        self._record("system", "signer-key.renewal-failed", "system", f"signer:{key.signer_id}",
                     {"key_id": key.id, "certificate_id": key.certificate_id, "error": error})

    def _revoke_superseded(self, certificate_id: int) -> None:
        try:
            self._channels.revoke(None, certificate_id, "superseded")
        except (Conflict, CaChannelDown, NotFound) as exc:  # kept; renewal lists it
            self._record("system", "signer-key.revoke-failed", "system", str(certificate_id),
                         {"error": str(exc)})

    # -- PIN

    def change_pin(self, device_id: str, signer_id: int, old_proof: bytes,
                   new_proof: bytes) -> dict[str, Any]:
        """Check the old PIN and prepare the new one: the phone re-wraps its share with
        ``new_unwrap`` and the old PIN stays valid until the new one is first used."""
        key = self.active_key(signer_id, device_id)
        outcome = self._pin_step(key.id, lambda record: record.begin_change(old_proof,
                                                                           new_proof))
        assert outcome.unwrap is not None and outcome.new_unwrap is not None
        self._record("data", "signer-key.pin-change", device_id, f"signer:{signer_id}",
                     {"key_id": key.id})
        return {"unwrap": outcome.unwrap.hex(), "new_unwrap": outcome.new_unwrap.hex()}

    def check_pin(self, key: SignerKey, proof: bytes) -> bytes:
        """A PIN check outside a co-sign session (authorizing auto-sign): the unwrap key."""
        outcome = self._pin_step(key.id, lambda record: record.verify(proof))
        unwrap: bytes = outcome.unwrap
        return unwrap

    def unlock_pin(self, actor: Actor, signer_id: int) -> list[str]:
        """After the signer's identity was re-verified (in person, by the security
        administrator): clear the lock and the counter of the signer's active keys."""
        unlocked = []
        for key in self.keys_of(signer_id):
            if key.status == "active":
                self._pin_step(key.id, lambda record: _Unlocked(
                    record.unlock_after_identity_check()))
                unlocked.append(key.id)
        self._record("data", "signer-key.pin-unlock", actor_label(actor),
                     f"signer:{signer_id}", {"keys": unlocked})
        return unlocked

    def pin_status(self, key_id: str) -> dict[str, Any]:
        record, _ = self._pin_record(key_id)
        return {"attempts_left": record.attempts_left, "locked": record.locked}

    def _pin_record(self, key_id: str, read: tuple[bytes, int] | None = None
                    ) -> tuple[PinRecord, int]:
        """The key's PIN record and the row version; from ``read`` (the wrapped record and
        version as read with the key row) when given."""
        if read is None:
            with self._db.engine.connect() as conn:
                row = conn.execute(_PIN_OF_KEY, {"key_id": key_id}).one()
            read = bytes(row.pin_wrapped), int(row.version)
        data = self._holder.keyring().unwrap(read[0], _pin_context(key_id))
        return PinRecord.from_dict(json.loads(data)), read[1]

    def _pin_step(self, key_id: str, step: Callable[[PinRecord], Any], *,
                  read: tuple[bytes, int] | None = None) -> Any:
        """Apply a PIN check to the stored record (first try: as in ``read``, when given),
        persist the new record (compare-and-swap, retried on a concurrent change) and only
        then raise its error."""
        keyring = self._holder.keyring()
        for _ in range(5):
            record, version = self._pin_record(key_id, read)
            read = None  # a retry reads the row again
            outcome = step(record)
            if outcome.record == record:  # a right PIN with nothing to reset: no write
                break
            with self._db.transaction() as conn:
                changed = conn.execute(_PIN_SWAP, {
                    "key_id": key_id, "expected_version": version,
                    "pin_wrapped": keyring.wrap(json.dumps(outcome.record.to_dict()).encode(),
                                                _pin_context(key_id)),
                    "version": version + 1, "updated_at": self._clock()}).rowcount
            if changed == 1:
                break
        else:
            raise Conflict("PIN 状态并发修改过多，请重试")
        error = getattr(outcome, "error", None)
        if isinstance(error, ShareLocked):
            raise PinLocked("PIN 码错误次数过多，签名密钥已锁定；请携带身份证件联系医院"
                            "安全管理员解锁")
        if isinstance(error, WrongPin):
            raise PinWrong(f"PIN 码错误，还可尝试 {error.attempts_left} 次",
                           attempts_left=error.attempts_left)
        if isinstance(error, PinError):
            raise PinWrong(str(error))
        return outcome

    # -- co-sign rounds

    def open_cosign(self, *, key: SignerKey, kind: str, digests: Sequence[bytes],
                    require_pin: bool, context: Mapping[str, Any]) -> dict[str, Any]:
        """Open a co-sign session for digests the caller registered (SM2: e = SM3(Z || M);
        split RSA: SHA-256 digests); what the phone needs to start."""
        state: sm2.CosignState | rsa.RsaState
        offer: messages.Message
        if key.algorithm == "rsa":
            state, offer = rsa.RsaServer(self._rsa_share(key)).open(
                digests, require_pin=require_pin)
        else:
            state, offer = sm2.SM2Server(self._server_share(key)).open_cosign(
                digests, require_pin=require_pin)
        with self._db.transaction() as conn:
            expires = self._sessions.create(conn, session_id=state.session.hex(), kind=kind,
                                            device_id=key.device_id, key_id=key.id,
                                            state=state.to_dict(), context=dict(context),
                                            now=self._clock())
        return {"session": state.session.hex(), "kind": kind, "expires_at": expires.isoformat(),
                "algorithm": key.algorithm, "message": _message_json(offer)}

    def _unlock_fn(self, key: SignerKey) -> Callable[[bytes | None], bytes | None]:
        def unlock(proof: bytes | None) -> bytes | None:
            outcome = self._pin_step(key.id, lambda record: record.verify(proof),
                                     read=key.pin_read)
            unwrap: bytes | None = outcome.unwrap
            return unwrap
        return unlock

    def _respond(self, session: StoredSession, commit: messages.CosignCommit) -> dict[str, Any]:
        key = self._key_row(session, "sm2")
        state = sm2.CosignState.from_dict(session.state)
        outcome = sm2.SM2Server(self._server_share(key)).respond(
            state, commit, unlock=self._unlock_fn(key))
        answer = {"message": _message_json(outcome.reply)}
        self._save(session, outcome.state.to_dict(), answer=answer)
        return answer

    def _rsa_unlock(self, session: StoredSession, message: messages.RsaUnlock
                    ) -> dict[str, Any]:
        key = self._key_row(session, "rsa")
        state = rsa.RsaState.from_dict(session.state)
        new_state, reply = rsa.RsaServer(self._rsa_share(key)).unlock(
            state, message, unlock=self._unlock_fn(key))
        answer = {"message": _message_json(reply)}
        self._save(session, new_state.to_dict(), answer=answer)
        return answer

    def _accept(self, session: StoredSession, result: messages.CosignResult) -> dict[str, Any]:
        key = self._key_row(session, "sm2")
        state = sm2.CosignState.from_dict(session.state)
        outcome = sm2.SM2Server(self._server_share(key)).accept(state, result)
        return self._close(session, key, outcome.state.to_dict(), outcome.reply,
                           outcome.signatures)

    def _rsa_finish(self, session: StoredSession, commit: messages.RsaCommit) -> dict[str, Any]:
        key = self._key_row(session, "rsa")
        state = rsa.RsaState.from_dict(session.state)
        new_state, reply, signatures = rsa.RsaServer(self._rsa_share(key)).finish(
            state, commit)
        return self._close(session, key, new_state.to_dict(), reply, signatures)

    def _close(self, session: StoredSession, key: SignerKey, state: dict[str, Any],
               reply: messages.Message, signatures: Sequence[bytes]) -> dict[str, Any]:
        """The verified signatures of a finished session: enrollment, or the finisher of the
        session's kind, in the transaction that closes the session."""
        answer = {"message": _message_json(reply)}
        if session.kind == "enroll":
            return {**answer, **self._complete_enrollment(session, key, signatures[0], state)}
        finisher = self._finishers.get(session.kind)
        if finisher is None:
            raise ProtocolRefused(f"unknown session kind {session.kind}")
        preparer = self._preparers.get(session.kind)
        prepared = preparer(session, key, signatures) if preparer is not None else None
        with self._db.transaction() as conn:
            self._sessions.save(conn, session, state, done=True)
            extra, after_commit = finisher(conn, session, key, signatures, prepared)
            answer = {**answer, **extra}
            self._save_answer(conn, session, answer)
        try:
            after_commit()
        except Exception:  # the signatures are committed: the phone must hear so
            LOG.exception("after the co-sign session %s committed", session.id)
        return answer

    # -- internals

    def _key_row(self, session: StoredSession, algorithm: str) -> SignerKey:
        with self._db.engine.connect() as conn:
            row = conn.execute(_KEY_BY_ID, {"key_id": session.key_id}).first()
        if row is None:
            raise NotFound("签名密钥不存在")
        key = _key(row)
        if key.algorithm != algorithm:
            raise ProtocolRefused(f"this session is for an {key.algorithm.upper()} key")
        if key.status not in ("active", "enrolling") or key.device_id != session.device_id:
            raise Conflict("该签名密钥已停用")
        return key

    def _share_data(self, key: SignerKey) -> dict[str, str]:
        wrapped = key.share_wrapped
        if wrapped is None:
            with self._db.engine.connect() as conn:
                wrapped = bytes(conn.execute(select(K.c.share_wrapped)
                                             .where(K.c.id == key.id)).one().share_wrapped)
        data: dict[str, str] = json.loads(self._holder.keyring().unwrap(
            wrapped, _share_context(key.id)))
        return data

    def _server_share(self, key: SignerKey) -> sm2.ServerShare:
        return sm2.ServerShare.from_dict(self._share_data(key))

    def _rsa_share(self, key: SignerKey) -> rsa.RsaServerShare:
        return rsa.RsaServerShare.from_dict(self._share_data(key))

    def _signer_row(self, signer_id: int) -> Row[Any]:
        with self._db.engine.connect() as conn:
            row = conn.execute(select(S).where(S.c.id == signer_id)).first()
        if row is None or row.status != "active":
            raise Forbidden("签名人不存在或已停用")
        return row

    def _subject(self, signer: Row[Any]) -> SubjectInfo:
        organization = SubjectInfo.from_certificate(
            Certificate.from_stored(self._ca.ca_certificate(
                self._ca.active_authority("sm2").id))).organization
        return SubjectInfo(common_name=signer.name, organization=organization,
                           department=signer.department, title=signer.title,
                           unique_id=signer.id_number_hmac[:32])

    def _record(self, category: str, action: str, actor: str, subject: str,
                details: Mapping[str, Any]) -> None:
        if self._audit is not None:
            label = actor if ":" in actor or actor in ("system", "cli") else f"device:{actor}"
            self._audit(category, action, label, subject, dict(details))


@dataclasses.dataclass(frozen=True)
class _Unlocked:
    record: PinRecord
    error: None = None


@dataclasses.dataclass(frozen=True)
class _DeviceActor:
    name: str
    kind: str = "device"
    id: int = 0


def _message_json(message: messages.Message) -> Any:
    return json.loads(message.encode())

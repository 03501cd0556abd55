"""Co-sign protocol sessions kept in the database between a phone's requests.

A phone whose answer got lost (a dropped connection after the server acted) sends the same
message bytes again and gets the same answer: the last answer of each session is kept,
wrapped under the KEK (it may carry an unwrap key), and keysplit never sees the duplicate.

Appliance nodes are stateless: a keysplit state (keygen or co-sign, JSON without secrets) is
stored with a version number, and every transition is a compare-and-swap on that version, so
one state is never answered twice, by two threads or by two nodes (keysplit/README.md: a
server must not give two responses to one commit).  A session belongs to the device that
opened it; any other device is told it does not exist.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, select, update

from appliance.errors import Conflict, NotFound
from appliance.services._time import aware
from appliance.storage import Database, schema

CS = schema.cosign_sessions
SESSION_MINUTES = 10

# The statements of every protocol message, built once (building one costs about four times
# what executing it does: SQLAlchemy's coercions and cache key).
_BY_ID = select(CS).where(CS.c.id == bindparam("session_id"))
_INSERT = insert(CS)
_ADVANCE = update(CS).where(CS.c.id == bindparam("session_id"),
                            CS.c.version == bindparam("expected_version"))
_REMEMBER = update(CS).where(CS.c.id == bindparam("session_id")).values(
    last_message=bindparam("message_sm3"), last_answer=bindparam("wrapped_answer"))


class SessionChanged(Conflict):
    code, title = "session-changed", "会话状态已变化"


class SessionExpired(Conflict):
    code, title = "session-expired", "会话已过期"


@dataclasses.dataclass(frozen=True)
class StoredSession:
    id: str
    kind: str  # keygen | enroll | sign
    device_id: str
    key_id: str | None
    state: dict[str, Any]
    context: dict[str, Any]
    version: int
    status: str
    expires_at: dt.datetime
    last_message: str | None = None  # SM3 hex of the last message answered
    last_answer: bytes | None = None  # its answer, wrapped under the KEK


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


class SessionStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    def create(self, conn: Connection, *, session_id: str, kind: str, device_id: str,
               key_id: str | None, state: dict[str, Any], context: dict[str, Any],
               now: dt.datetime, minutes: int = SESSION_MINUTES) -> dt.datetime:
        expires = now + dt.timedelta(minutes=minutes)
        conn.execute(_INSERT, {"id": session_id, "kind": kind, "device_id": device_id,
                               "key_id": key_id, "state": _dumps(state),
                               "context": _dumps(context), "version": 1, "status": "open",
                               "expires_at": expires, "created_at": now})
        return expires

    def load(self, session_id: str, device_id: str, now: dt.datetime) -> StoredSession:
        with self._db.engine.connect() as conn:
            row = conn.execute(_BY_ID, {"session_id": session_id}).first()
        if row is None or row.device_id != device_id:
            raise NotFound("没有这个签名会话")
        session = StoredSession(row.id, row.kind, row.device_id, row.key_id,
                                json.loads(row.state), json.loads(row.context), int(row.version),
                                row.status, aware(row.expires_at), row.last_message,
                                bytes(row.last_answer) if row.last_answer is not None else None)
        if session.status == "open" and session.expires_at <= now:
            raise SessionExpired("签名会话已过期，请重新发起")
        return session

    def save(self, conn: Connection, session: StoredSession, state: dict[str, Any], *,
             done: bool, answered: tuple[str, bytes] | None = None) -> None:
        """Store the next state if nobody stored another since ``session`` was read; with
        ``answered`` (message SM3, wrapped answer), :meth:`remember_in` in the same row
        update."""
        values: dict[str, Any] = {"session_id": session.id, "expected_version": session.version,
                                  "state": _dumps(state), "version": session.version + 1,
                                  "status": "done" if done else "open"}
        if answered is not None:
            values["last_message"], values["last_answer"] = answered
        changed = conn.execute(_ADVANCE, values).rowcount
        if changed != 1:
            raise SessionChanged("该会话已被另一个请求推进，请以最新状态重试")

    def remember(self, session_id: str, message_sm3: str, wrapped_answer: bytes) -> None:
        """Keep the answer to a message, for a phone that lost it and sends the same bytes."""
        with self._db.transaction() as conn:
            self.remember_in(conn, session_id, message_sm3, wrapped_answer)

    @staticmethod
    def remember_in(conn: Connection, session_id: str, message_sm3: str,
                    wrapped_answer: bytes) -> None:
        """:meth:`remember` inside the caller's transaction."""
        conn.execute(_REMEMBER, {"session_id": session_id, "message_sm3": message_sm3,
                                 "wrapped_answer": wrapped_answer})

    def purge(self, now: dt.datetime) -> int:
        """Forget sessions a day past their expiry (finished ones are kept as long, for
        answers to retried requests)."""
        with self._db.transaction() as conn:
            return int(conn.execute(delete(CS).where(
                CS.c.expires_at < now - dt.timedelta(days=1))).rowcount)

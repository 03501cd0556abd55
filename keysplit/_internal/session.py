"""Session bookkeeping shared by every role: fresh nonces and the checks on a reply."""

from __future__ import annotations

import os
from collections.abc import Sequence

from keysplit.errors import OutOfOrder, ReplayError
from keysplit.messages import NONCE_SIZE, SESSION_SIZE, Reply


def fresh_nonce() -> bytes:
    return os.urandom(NONCE_SIZE)


def new_session() -> tuple[bytes, bytes]:
    """A new session id and the first nonce of its opener."""
    return os.urandom(SESSION_SIZE), fresh_nonce()


def check_reply(message: Reply, session: bytes, my_nonce: bytes | None,
                seen: Sequence[bytes] = ()) -> None:
    """``message`` must belong to ``session``, answer this party's latest nonce, and carry a
    nonce of its own that was not used before (``seen``: the peer's earlier nonces)."""
    if message.session != session:
        raise OutOfOrder("the message belongs to another session")
    if my_nonce is None or message.reply_to != my_nonce:
        raise ReplayError("the message does not answer this party's latest message")
    if message.nonce in seen or message.nonce == my_nonce:
        raise ReplayError("the message reuses a nonce")

"""Shared helpers for the keysplit tests: whole keygens and co-signs run in-process, every message
passed through its JSON wire form (``encode()`` then ``decode()``) on the way, exactly as the
appliance and a phone would exchange them.

``enroll()`` runs a co-keygen and returns an :class:`Enrollment` (server share, a mutable PIN
store whose ``unlock`` is the callback :meth:`keysplit.sm2.SM2Server.respond` wants, the phone
share, and the phone's d1 recorded from its random source).  ``cosign()`` runs a whole co-sign,
retries included, and returns the signatures with the transcript.  Both are plain functions
(importable by any keysplit test) and are also offered as fixtures.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from typing import TypeVar

import pytest

from keysplit import messages
from keysplit._internal import scalars
from keysplit.messages import CosignCommit, CosignDone, CosignResponse, CosignResult, Message
from keysplit.phone import PhoneCosigner, PhoneKeygen, PhoneShare
from keysplit.pin import DEFAULT_MAX_FAILURES, PinOutcome, PinRecord
from keysplit.sm2 import (
    CosignState,
    KeygenState,
    ServerShare,
    SM2Server,
    complete_keygen,
    open_keygen,
)

DEFAULT_PIN = "2468"
RandomScalar = scalars.RandomScalar
M = TypeVar("M", bound=Message)


def wire(message: M) -> M:
    """The message after a trip over the wire: encode to JSON, decode as its own type."""
    decoded = messages.decode(message.encode(), type(message))
    assert decoded == message
    return decoded


class Recorder:
    """A random-scalar source that remembers what it handed out (wraps another source)."""

    def __init__(self, source: RandomScalar = scalars.random_scalar) -> None:
        self._source = source
        self.drawn: list[int] = []

    def __call__(self) -> int:
        value = self._source()
        self.drawn.append(value)
        return value


def fixed_scalars(*values: int, then: RandomScalar | None = None) -> RandomScalar:
    """A random-scalar source that returns ``values`` in order, then draws from ``then``
    (or fails the test if it runs dry)."""
    queue = list(values)

    def draw() -> int:
        if queue:
            return queue.pop(0)
        if then is None:
            raise AssertionError("the deterministic scalar source ran dry")
        return then()

    return draw


class PinStore:
    """The server's persisted PIN record for one signer, with the ``unlock`` callback of
    :meth:`SM2Server.respond`: persist the outcome first, then return the unwrap key or raise."""

    def __init__(self, record: PinRecord) -> None:
        self.record = record
        self.outcomes: list[PinOutcome] = []

    def unlock(self, proof: bytes | None) -> bytes | None:
        outcome = self.record.verify(proof)
        self.record = outcome.record  # persisted before acting on the error
        self.outcomes.append(outcome)
        outcome.raise_for_error()
        return outcome.unwrap


@dataclasses.dataclass
class Enrollment:
    share: ServerShare
    pins: PinStore
    phone: PhoneShare
    pin: str
    d1: int
    unwrap: bytes  # the unwrap key released at keygen (opens the phone share)

    @property
    def d2(self) -> int:
        return self.share.d2


def enroll(pin: str = DEFAULT_PIN, *, max_failures: int = DEFAULT_MAX_FAILURES,
           phone_random: RandomScalar = scalars.random_scalar,
           server_random: RandomScalar = scalars.random_scalar) -> Enrollment:
    """A whole co-keygen through the wire format."""
    state, offer = open_keygen()
    phone_rng = Recorder(phone_random)
    phone = PhoneKeygen(pin, random_scalar=phone_rng)
    commit = wire(phone.commit(wire(offer)))
    outcome = complete_keygen(state, commit, max_pin_failures=max_failures,
                              random_scalar=server_random)
    assert outcome.state.done and outcome.state.session == state.session
    result = wire(outcome.reply)
    phone_share = phone.finish(result)
    assert phone_share.public_key == outcome.share.public_key
    return Enrollment(outcome.share, PinStore(outcome.pin_record), phone_share, pin,
                      phone_rng.drawn[-1], result.unwrap)


def persisted(state: CosignState) -> CosignState:
    """The state after a trip through the database (JSON of ``to_dict``)."""
    restored = CosignState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert restored == state
    return restored


def persisted_keygen(state: KeygenState) -> KeygenState:
    restored = KeygenState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert restored == state
    return restored


@dataclasses.dataclass
class CosignRun:
    signatures: tuple[bytes, ...]
    state: CosignState  # the final (done) server state
    states: list[CosignState]  # every server state, from the open one to the done one
    commits: list[CosignCommit]
    responses: list[CosignResponse]
    result: CosignResult
    done: CosignDone


def cosign(enrollment: Enrollment, digests: Sequence[bytes], *, require_pin: bool = True,
           pin: str | None = None, unwrap: bytes | None = None,
           server_random: RandomScalar = scalars.random_scalar,
           phone_random: RandomScalar = scalars.random_scalar,
           persist: Callable[[CosignState], CosignState] = persisted) -> CosignRun:
    """A whole co-sign (retries included) through the wire format; the server state goes
    through ``persist`` (by default its JSON form) after every step."""
    server = SM2Server(enrollment.share, random_scalar=server_random)
    state, offer = server.open_cosign(digests, require_pin=require_pin)
    states = [state]
    state = persist(state)
    phone = PhoneCosigner(enrollment.phone,
                          pin=(pin or enrollment.pin) if require_pin else None,
                          unwrap=unwrap if unwrap is not None else
                          (None if require_pin else enrollment.unwrap),
                          random_scalar=phone_random)
    commit = wire(phone.commit(wire(offer), digests))
    commits, responses = [commit], []
    while True:
        answered = server.respond(state, commit, unlock=enrollment.pins.unlock)
        states.append(answered.state)
        state = persist(answered.state)
        response = wire(answered.reply)
        responses.append(response)
        following = phone.finish(response)
        if isinstance(following, CosignCommit):
            commit = wire(following)
            commits.append(commit)
            continue
        result = wire(following)
        break
    accepted = server.accept(state, result)
    states.append(accepted.state)
    done = wire(accepted.reply)
    signatures = phone.close(done)
    assert signatures == accepted.signatures == result.signatures
    assert len(signatures) == len(digests)
    return CosignRun(signatures, persist(accepted.state), states, commits, responses, result,
                     done)


@pytest.fixture
def enrollment() -> Enrollment:
    """A fresh co-generated SM2 key (PIN ``DEFAULT_PIN``, default lock limit)."""
    return enroll()


@pytest.fixture(scope="module")
def shared_enrollment() -> Enrollment:
    """One co-generated key for a whole module (do not use it for PIN-counter tests)."""
    return enroll()

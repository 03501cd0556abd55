"""evidence.checkpoint: C2SP tlog-checkpoint bodies in signed notes, signed with SM2."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evidence import Checkpoint, CheckpointSignatureError, MalformedCheckpoint, checkpoint
from signcore.sm2 import SM2PrivateKey

NAME = "medsign.example/audit"
ROOT = hashlib.sha256(b"root").digest()
URLSAFE_ROOT = base64.urlsafe_b64encode(b"\xff" * 32).decode()


@pytest.fixture(scope="module")
def key() -> SM2PrivateKey:
    return SM2PrivateKey.generate()


def _signed(key: SM2PrivateKey, size: int = 1234, extensions: tuple[str, ...] = ()) -> str:
    return checkpoint.sign(Checkpoint(NAME, size, ROOT, extensions), key, NAME)


def test_the_body_is_the_tlog_checkpoint_format() -> None:
    body = Checkpoint(NAME, 1234, ROOT, ("ext one",)).body()
    assert body == f"{NAME}\n1234\n{base64.b64encode(ROOT).decode()}\next one\n"


def test_a_signed_note_has_one_em_dash_signature_line(key: SM2PrivateKey) -> None:
    note = _signed(key)
    body, sig_block = note.split("\n\n")
    assert body + "\n" == Checkpoint(NAME, 1234, ROOT).body()
    assert sig_block.startswith(f"\u2014 {NAME} ") and sig_block.endswith("\n")
    blob = base64.b64decode(sig_block.split(" ")[2])
    assert blob[:4] == checkpoint.key_id(NAME, key.public_key())
    # The signature is an ordinary SM2 signature over the body with the default signer ID.
    key.public_key().verify(blob[4:], (body + "\n").encode())


def test_key_id_follows_the_signed_note_recommendation(key: SM2PrivateKey) -> None:
    material = NAME.encode() + b"\n\xffmedsign/sm2-sm3" + key.public_key().to_der()
    assert checkpoint.key_id(NAME, key.public_key()) == hashlib.sha256(material).digest()[:4]


@given(size=st.integers(0, 2**63 - 1), root=st.binary(min_size=32, max_size=32),
       extensions=st.lists(st.text(st.characters(min_codepoint=0x20, exclude_categories=["Cs"]),
                                   min_size=1, max_size=20), max_size=3))
def test_sign_then_verify_round_trips(key: SM2PrivateKey, size: int, root: bytes,
                                      extensions: list[str]) -> None:
    cp = Checkpoint(NAME, size, root, tuple(extensions))
    note = checkpoint.sign(cp, key, NAME)
    assert checkpoint.verify(note, key.public_key(), NAME) == cp
    assert checkpoint.verify(note.encode(), key.public_key(), NAME) == cp
    parsed, signatures = checkpoint.parse(note)
    assert parsed == cp and len(signatures) == 1


def test_another_key_or_name_is_refused(key: SM2PrivateKey) -> None:
    note = _signed(key)
    other = SM2PrivateKey.generate()
    with pytest.raises(CheckpointSignatureError):
        checkpoint.verify(note, other.public_key(), NAME)
    with pytest.raises(CheckpointSignatureError):
        checkpoint.verify(note, key.public_key(), "other.example/log")


def test_unknown_signers_are_ignored_but_a_bad_known_signature_rejects(key: SM2PrivateKey) -> None:
    note = _signed(key)
    other = SM2PrivateKey.generate()
    foreign = checkpoint.sign(Checkpoint(NAME, 1234, ROOT), other, "witness.example/w1")
    cosigned = note + foreign.split("\n\n")[1]
    assert checkpoint.verify(cosigned, key.public_key(), NAME).size == 1234
    assert checkpoint.verify(cosigned, other.public_key(), "witness.example/w1").size == 1234
    # A second line that claims to be from the same key but does not verify rejects the note.
    kid = checkpoint.key_id(NAME, key.public_key())
    forged = f"\u2014 {NAME} {base64.b64encode(kid + b'x' * 70).decode()}\n"
    with pytest.raises(CheckpointSignatureError):
        checkpoint.verify(note + forged, key.public_key(), NAME)


@pytest.mark.parametrize("edit", [
    lambda n: n.replace("\n1234\n", "\n1235\n"),
    lambda n: n.replace(NAME + "\n", "medsign.example/audit2\n", 1),
    lambda n: n.replace("\n\n", "\nextension\n\n"),
])
def test_any_change_to_the_body_breaks_the_signature(key: SM2PrivateKey, edit: object) -> None:
    note = _signed(key)
    assert callable(edit)
    changed = edit(note)
    assert changed != note
    with pytest.raises(CheckpointSignatureError):
        checkpoint.verify(changed, key.public_key(), NAME)


def test_a_changed_root_breaks_the_signature(key: SM2PrivateKey) -> None:
    note = _signed(key)
    old = base64.b64encode(ROOT).decode()
    new = base64.b64encode(bytes([ROOT[0] ^ 1]) + ROOT[1:]).decode()
    with pytest.raises(CheckpointSignatureError):
        checkpoint.verify(note.replace(old, new), key.public_key(), NAME)


def _note(body: str, sig: str = "\u2014 n AAAAAAA=\n") -> str:
    return body + "\n" + sig


@pytest.mark.parametrize("note", [
    "",
    "no blank line\n",
    _note(f"{NAME}\n1\n{base64.b64encode(ROOT).decode()}\n", ""),             # no signature
    _note(f"{NAME}\n01\n{base64.b64encode(ROOT).decode()}\n"),                 # leading zero
    _note(f"{NAME}\n-1\n{base64.b64encode(ROOT).decode()}\n"),
    _note(f"{NAME}\n+1\n{base64.b64encode(ROOT).decode()}\n"),
    _note(f"{NAME}\n1 \n{base64.b64encode(ROOT).decode()}\n"),
    _note(f"{NAME}\n{2**63}\n{base64.b64encode(ROOT).decode()}\n"),            # too large
    _note(f"{NAME}\n1\n{base64.b64encode(ROOT[:31]).decode()}\n"),             # short root
    _note(f"{NAME}\n1\n{base64.b64encode(ROOT).decode().rstrip('=')}\n"),      # unpadded
    _note(f"{NAME}\n1\n{URLSAFE_ROOT}\n"),  # URL alphabet
    _note(f"{NAME}\n1\n"),                                                     # no root line
    _note(f"\n1\n{base64.b64encode(ROOT).decode()}\n"),                        # empty origin
    _note(f" {NAME}\n1\n{base64.b64encode(ROOT).decode()}\n"),
    _note(f"{NAME}\n1\n{base64.b64encode(ROOT).decode()}\n\nx\n"),             # empty extension
    _note(f"{NAME}\r\n1\n{base64.b64encode(ROOT).decode()}\n"),                # control char
    _note(f"{NAME}\n1\n{base64.b64encode(ROOT).decode()}\n", "- n AAAAAAA=\n"),  # not em dash
    _note(f"{NAME}\n1\n{base64.b64encode(ROOT).decode()}\n", "\u2014 n AAAA\n"),  # 3 bytes
    _note(f"{NAME}\n1\n{base64.b64encode(ROOT).decode()}\n", "\u2014 a+b AAAAAAA=\n"),
    _note(f"{NAME}\n1\n{base64.b64encode(ROOT).decode()}\n", "\u2014  AAAAAAA=\n"),
    _note(f"{NAME}\n1\n{base64.b64encode(ROOT).decode()}\n", "\u2014 n AAAAAAA= \n"),
    _note(f"{NAME}\n1\n{base64.b64encode(ROOT).decode()}\n", "\u2014 n AAAAAAA="),  # no newline
    _note(f"{NAME}\n1\n{base64.b64encode(ROOT).decode()}\n", "\u2014 n AAAAAAB=\n"),  # non-canon
    _note(f"{NAME}\n1\n{base64.b64encode(ROOT).decode()}\n", "\u2014 n AAAAAAA=\n" * 101),
    _note(f"{NAME}\n1\n{base64.b64encode(ROOT).decode()}\n" + "x" * 70_000 + "\n"),
    _note(f"{NAME}\ud800\n1\n{base64.b64encode(ROOT).decode()}\n"),           # lone surrogate
])
def test_malformed_notes_are_refused(note: str) -> None:
    with pytest.raises(MalformedCheckpoint):
        checkpoint.parse(note)


def test_invalid_utf8_is_refused() -> None:
    body = f"{NAME}\n1\n{base64.b64encode(ROOT).decode()}\n".encode()
    with pytest.raises(MalformedCheckpoint):
        checkpoint.parse(b"\xff" + body + b"\n\xe2\x80\x94 n AAAAAAA=\n")


def test_checkpoints_refuse_bad_fields() -> None:
    for args in [("", 1, ROOT), (NAME, -1, ROOT), (NAME, 2**63, ROOT), (NAME, 1, b""),
                 ("a\nb", 1, ROOT)]:
        with pytest.raises(MalformedCheckpoint):
            Checkpoint(*args)  # type: ignore[arg-type]
    with pytest.raises(MalformedCheckpoint):
        Checkpoint(NAME, 1, ROOT, ("",))
    with pytest.raises(MalformedCheckpoint):
        checkpoint.key_id("has space", SM2PrivateKey.generate().public_key())

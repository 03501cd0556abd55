"""Signed tree heads: C2SP tlog-checkpoint bodies in C2SP signed-note envelopes, signed with SM2.

A checkpoint says "the log named ``origin`` had ``size`` entries with this root hash"::

    medsign.example/audit
    1234
    Fwpf2a9uOB3Jm4UStyyW8f/eBMD1Wi8ANlzt1pI5l3E=

    — medsign.example/audit q2mtzTBEAiAX...=

The body is the origin line, the tree size in decimal (no leading zeros), the standard base64
root hash and optional non-empty extension lines, each ending in a newline.  A blank line
separates it from signature lines: em dash, space, key name, space, base64 of the 4-byte key ID
followed by the signature.  The signature is SM2 with SM3 and the default signer ID over the
UTF-8 body, DER ``SEQUENCE {r, s}``.  signed-note assigns no signature type to SM2, so the key
ID follows its recommendation with the private-use type 0xff and an identifier::

    key ID = SHA-256(key name || 0x0A || 0xff || "medsign/sm2-sm3" || SubjectPublicKeyInfo)[:4]

Threat model: a checkpoint travels through untrusted hands (exports, syslog, evidence reports)
and is checked by someone holding only the log's public key.  Parsing is strict (one canonical
spelling of every field, no control characters, bounded size and signature count) so that two
different texts never carry the same meaning; verification follows signed-note: lines from
unknown keys are ignored, any failing line from the known key rejects the note, and at least
one must verify.  A checkpoint proves what the log said at signing time; detecting a log that
later forks (shows different histories to different people) needs the checkpoints to be kept
outside the appliance (syslog, evidence reports) and consistency proofs between them.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import re

from evidence.errors import CheckpointSignatureError, MalformedCheckpoint
from signcore.errors import InvalidSignature
from signcore.sm2 import SM2PrivateKey, SM2PublicKey

__all__ = ["Checkpoint", "NoteSignature", "key_id", "parse", "sign", "verify"]

SIGNATURE_TYPE = b"\xff" + b"medsign/sm2-sm3"
MAX_NOTE_BYTES = 64 * 1024
MAX_SIGNATURES = 100
EM_DASH = "\u2014"
_DECIMAL = re.compile(r"(0|[1-9][0-9]{0,18})")
_MAX_SIZE = 2**63 - 1


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode(text: str, what: str) -> bytes:
    """Strict standard base64: padded, no whitespace, and the one canonical spelling."""
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise MalformedCheckpoint(f"{what} is not standard base64") from None
    if _b64encode(data) != text:
        raise MalformedCheckpoint(f"{what} is not canonical base64")
    return data


def _check_text(text: str, what: str) -> None:
    if any(ord(c) < 0x20 for c in text):
        raise MalformedCheckpoint(f"{what} contains a control character")


def _check_key_name(name: str) -> None:
    if not name or "+" in name or any(c.isspace() for c in name):
        raise MalformedCheckpoint("a key name is non-empty, without spaces or '+'")
    _check_text(name, "the key name")


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A tree head: the log's origin, its size and root hash, and any extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or self.origin != self.origin.strip():
            raise MalformedCheckpoint("the origin line is non-empty without outer spaces")
        _check_text(self.origin, "the origin line")
        if not 0 <= self.size <= _MAX_SIZE:
            raise MalformedCheckpoint("the tree size is outside 0..2^63-1")
        if not self.root_hash:
            raise MalformedCheckpoint("the root hash is empty")
        for line in self.extensions:
            if not line:
                raise MalformedCheckpoint("extension lines are not empty")
            _check_text(line, "an extension line")

    def body(self) -> str:
        """The note text the signatures cover (every line ends in a newline)."""
        lines = [self.origin, str(self.size), _b64encode(self.root_hash), *self.extensions]
        return "".join(line + "\n" for line in lines)


@dataclasses.dataclass(frozen=True)
class NoteSignature:
    """One signature line: who (name and 4-byte key ID) and the signature bytes."""

    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        return f"{EM_DASH} {self.name} {_b64encode(self.key_id + self.signature)}\n"


def key_id(name: str, public_key: SM2PublicKey) -> bytes:
    """The 4-byte key ID of ``public_key`` under ``name`` (see the module docstring)."""
    _check_key_name(name)
    material = name.encode() + b"\n" + SIGNATURE_TYPE + public_key.to_der()
    return hashlib.sha256(material).digest()[:4]


def sign(checkpoint: Checkpoint, private_key: SM2PrivateKey, name: str) -> str:
    """The signed note: ``checkpoint``'s body, a blank line, one SM2 signature line."""
    body = checkpoint.body()
    signature = private_key.sign(body.encode("utf-8"))
    line = NoteSignature(name, key_id(name, private_key.public_key()), signature).line()
    return body + "\n" + line


def _split_note(note: str | bytes) -> tuple[str, str]:
    if isinstance(note, bytes):
        if len(note) > MAX_NOTE_BYTES:
            raise MalformedCheckpoint(f"a signed note is at most {MAX_NOTE_BYTES} bytes")
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedCheckpoint("a signed note is UTF-8") from None
    try:
        size = len(note.encode("utf-8"))
    except UnicodeEncodeError:
        raise MalformedCheckpoint("a signed note is UTF-8 (no lone surrogates)") from None
    if size > MAX_NOTE_BYTES:
        raise MalformedCheckpoint(f"a signed note is at most {MAX_NOTE_BYTES} bytes")
    if any(ord(c) < 0x20 and c != "\n" for c in note) or not note.endswith("\n"):
        raise MalformedCheckpoint("a signed note has no control characters and ends in newline")
    cut = note.rfind("\n\n")
    if cut < 0:
        raise MalformedCheckpoint("a signed note has a blank line before its signatures")
    return note[:cut + 1], note[cut + 2:]


def _parse_signatures(block: str) -> list[NoteSignature]:
    lines = block[:-1].split("\n") if block else []
    if not lines or len(lines) > MAX_SIGNATURES:
        raise MalformedCheckpoint(f"a signed note has 1 to {MAX_SIGNATURES} signatures")
    out = []
    for line in lines:
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != EM_DASH:
            raise MalformedCheckpoint("a signature line is '\u2014 <name> <base64>'")
        _check_key_name(parts[1])
        blob = _b64decode(parts[2], "a signature")
        if len(blob) < 5:
            raise MalformedCheckpoint("a signature is a 4-byte key ID and at least one byte")
        out.append(NoteSignature(parts[1], blob[:4], blob[4:]))
    return out


def _parse_body(body: str, hash_size: int) -> Checkpoint:
    lines = body[:-1].split("\n")
    if len(lines) < 3:
        raise MalformedCheckpoint("a checkpoint has an origin, a size and a root hash line")
    if not _DECIMAL.fullmatch(lines[1]) or int(lines[1]) > _MAX_SIZE:
        raise MalformedCheckpoint("the tree size is a decimal number without leading zeros")
    root = _b64decode(lines[2], "the root hash")
    if len(root) != hash_size:
        raise MalformedCheckpoint(f"the root hash is {hash_size} bytes")
    return Checkpoint(lines[0], int(lines[1]), root, tuple(lines[3:]))


def parse(note: str | bytes, *, hash_size: int = 32) -> tuple[Checkpoint, list[NoteSignature]]:
    """The checkpoint and signature lines of a signed note, checked for form only (no trust)."""
    body, block = _split_note(note)
    return _parse_body(body, hash_size), _parse_signatures(block)


def verify(note: str | bytes, public_key: SM2PublicKey, name: str, *,
           hash_size: int = 32) -> Checkpoint:
    """The checkpoint, once a signature line of (``name``, ``public_key``) verifies.

    MalformedCheckpoint for text that is not a signed checkpoint; CheckpointSignatureError when
    no line is from that key, or when one from that key does not verify.
    """
    text, block = _split_note(note)
    checkpoint, signatures = _parse_body(text, hash_size), _parse_signatures(block)
    expected = key_id(name, public_key)
    body = text.encode("utf-8")
    mine = [s for s in signatures if s.name == name and s.key_id == expected]
    if not mine:
        raise CheckpointSignatureError(f"the checkpoint is not signed by {name}'s key")
    for signature in mine:
        try:
            public_key.verify(signature.signature, body)
        except InvalidSignature:
            raise CheckpointSignatureError(f"{name}'s signature does not verify") from None
    return checkpoint

"""2,000 random two-party co-signatures (keysplit), single and batch, each verified by signcore,
by gmssl and by the OpenSSL CLI (PEERS.md "OpenSSL 3.0 with SM2").

Random messages (0 to 512 bytes) and random signer IDs: the default ID, the empty ID (which is
what OpenSSL 3.0 uses when given none) and random binary IDs of 1 to 64 bytes (passed as
``hexdistid``); e = SM2PublicKey.digest(message, ID).  Every protocol message goes through its
JSON wire form (tests/keysplit/conftest.py).  The work is split into chunks that pytest-xdist
spreads over its workers; each chunk makes its own key and signatures and checks them all three
ways, so nothing is generated twice.  gmssl checks every signature over e; every tenth also
over the message, with e computed by gmssl itself (its SM3 is pure Python: about 10 ms a KB).
One OpenSSL process per signature, alternating ``pkeyutl -verify -rawin`` and ``dgst -verify``;
each chunk also shows OpenSSL refusing a signature over another message and one checked under
another ID (the checks can fail).
"""

from __future__ import annotations

import base64
import dataclasses
import secrets
import textwrap
from pathlib import Path

import pytest

from signcore.algorithms import DEFAULT_SM2_ID
from signcore.der import decode_ecdsa_signature
from signcore.sm2 import SM2PublicKey
from tests.keysplit.conftest import cosign, enroll
from tests.support import gmssl_oracle
from tests.support.peers import run_tool

pytestmark = pytest.mark.peer

# Batch sizes per chunk: 500 single co-signatures and 1,500 in batches of 1, 7, 42, 50 and 200.
PLANS: dict[str, list[int]] = {
    **{f"singles-{i}": [1] * 125 for i in range(4)},
    "batches-1-7-50-200": [1, 7, 50, 200],
    "batches-200-42": [200, 42],
    **{f"batches-200-50-{i}": [200, 50] for i in range(4)},
}
TOTAL = 2000
# Messages of up to 4 KB are in the hypothesis tests of tests/keysplit/test_sm2_protocol.py.
MAX_MESSAGE = 512
SINGLES = 500


def test_the_plan_is_2000_signatures_500_of_them_single() -> None:
    assert sum(sum(plan) for plan in PLANS.values()) == TOTAL
    assert sum(plan.count(1) for name, plan in PLANS.items() if name.startswith("singles")) \
        == SINGLES


@dataclasses.dataclass(frozen=True)
class Signed:
    message: bytes
    signer_id: bytes
    digest: bytes  # e = SM3(Z || message), as signcore computes it
    signature: bytes


def random_id() -> bytes:
    kind = secrets.randbelow(6)
    if kind < 2:
        return DEFAULT_SM2_ID
    if kind == 2:
        return b""
    return secrets.token_bytes(1 + secrets.randbelow(64))


def co_sign_chunk(plan: list[int]) -> tuple[SM2PublicKey, list[Signed]]:
    en = enroll()
    public = en.share.sm2_public_key()
    signed: list[Signed] = []
    for size in plan:
        messages = [secrets.token_bytes(secrets.randbelow(MAX_MESSAGE + 1)) for _ in range(size)]
        ids = [random_id() for _ in range(size)]
        digests = [public.digest(m, i) for m, i in zip(messages, ids, strict=True)]
        run = cosign(en, digests, require_pin=secrets.randbelow(4) != 0)
        assert len(run.commits[0].digests) == size
        signed += [Signed(*fields) for fields in zip(messages, ids, digests, run.signatures,
                                                     strict=True)]
    return public, signed


def pem(public: SM2PublicKey) -> bytes:
    body = "\n".join(textwrap.wrap(base64.b64encode(public.to_der()).decode(), 64))
    return f"-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n".encode()


def id_options(signer_id: bytes, flag: str) -> list[str]:
    """How to give OpenSSL the signer ID (``flag`` is -pkeyopt or -sigopt)."""
    if signer_id == b"":
        return []  # OpenSSL 3.0's own default is the empty ID
    if signer_id == DEFAULT_SM2_ID:
        return [flag, "distid:" + DEFAULT_SM2_ID.decode()]
    return [flag, "hexdistid:" + signer_id.hex()]


def openssl_verifies(openssl: str, workdir: Path, public_pem: Path, signed: Signed,
                     dgst: bool) -> bool:
    message, signature = workdir / "message", workdir / "signature"
    message.write_bytes(signed.message)
    signature.write_bytes(signed.signature)
    args: list[str | Path]
    if dgst:
        args = [openssl, "dgst", "-sm3", "-verify", public_pem,
                *id_options(signed.signer_id, "-sigopt"), "-signature", signature, message]
        good = b"Verified OK"
    else:
        args = [openssl, "pkeyutl", "-verify", "-pubin", "-inkey", public_pem, "-rawin",
                "-digest", "sm3", *id_options(signed.signer_id, "-pkeyopt"), "-in", message,
                "-sigfile", signature]
        good = b"Signature Verified Successfully"
    done = run_tool(args, check=False)
    verified = done.returncode == 0 and good in done.stdout
    assert verified or done.returncode != 0, done  # never "failed" with exit code 0
    return verified


@pytest.mark.parametrize("chunk", list(PLANS))
def test_cosignatures_verify_with_signcore_gmssl_and_openssl(openssl_bin: str, tmp_path: Path,
                                                             chunk: str) -> None:
    public, signed = co_sign_chunk(PLANS[chunk])
    assert len(signed) == sum(PLANS[chunk])
    assert len({decode_ecdsa_signature(s.signature)[0] for s in signed}) == len(signed)
    public_pem = tmp_path / "public.pem"
    public_pem.write_bytes(pem(public))
    failures = []
    for index, item in enumerate(signed):
        public.verify(item.signature, item.message, signer_id=item.signer_id)
        if not gmssl_oracle.verify_digest(public, item.signature, item.digest):
            failures.append(("gmssl", index, item))
        # every tenth also with gmssl's own Z and SM3 (pure Python hashing is the slow part)
        if index % 10 == 0 and not gmssl_oracle.verify(public, item.signature, item.message,
                                                        item.signer_id):
            failures.append(("gmssl-e", index, item))
        if not openssl_verifies(openssl_bin, tmp_path, public_pem, item, dgst=index % 2 == 1):
            failures.append(("openssl", index, item))
    assert not failures, failures[:3]
    # the same commands refuse a signature over another message, or under another ID
    first = signed[0]
    for dgst in (False, True):
        other_message = dataclasses.replace(first, message=first.message + b"x")
        assert not openssl_verifies(openssl_bin, tmp_path, public_pem, other_message, dgst)
        other_id = dataclasses.replace(
            first, signer_id=b"" if first.signer_id == DEFAULT_SM2_ID else DEFAULT_SM2_ID)
        assert not openssl_verifies(openssl_bin, tmp_path, public_pem, other_id, dgst)

"""RFC 3161 against the real ``openssl ts`` (PEERS.md "openssl ts").

- OpenSSL's queries parse with signcore's load_request, and signcore's requests with
  ``openssl ts -query -text``.
- ``openssl ts -verify`` checks signcore's RSA and ECDSA tokens and responses (against the data
  and against the query file), and rejects them for a modified document.
- A real OpenSSL TSA (``openssl ts -reply`` with a minimal config in tmp_path, RSA TSA
  certificate of the declared PKI with the critical timeStamping EKU) answers requests that
  signcore verifies with verify_response; its rejections are read as refusals.

OpenSSL 3.0 cannot sign or verify SM2 CMS, so SM2 tokens are covered in tests/signcore only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from pathlib import Path

import pytest
from asn1crypto import cms as acms

from signcore import hashes
from signcore import tsp as sc_tsp
from signcore.errors import SigncoreError
from signcore.hashes import HashAlgorithm
from tests.support.peers import run_tool
from tests.support.pki import PkiFiles, TestPKI, cached_pki, write_pem

pytestmark = pytest.mark.peer

DOCUMENT = "检验报告 LIS-2025-0042：血常规 正常\n".encode()
POLICY = "2.999.7.1"
OPENSSL_POLICY = "1.2.3.4.1"

TS_CONFIG = """\
[ tsa ]
default_tsa = tsa_config1

[ tsa_config1 ]
serial = {serial}
signer_digest = sha256
default_policy = 1.2.3.4.1
other_policies = 2.999.7.1
# OpenSSL splits this list on commas (X509V3_parse_list): "sha256 sha384 sha512" is refused.
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = no
tsa_name = {tsa_name}
ess_cert_id_chain = {ess_chain}
ess_cert_id_alg = {ess_alg}
crypto_device = builtin
"""


class Files(PkiFiles):
    """The PKI of one key type written where OpenSSL can read it, with the TSA as signer."""

    def __init__(self, pki: TestPKI, directory: Path) -> None:
        super().__init__(pki, directory)
        self.tsa = self.cert_file("tsa")
        self.tsa_key = self.key_file("tsa")
        self.doc = self.path("doc.txt", DOCUMENT)
        self.other_doc = self.path("other.txt", DOCUMENT + b" ")


@pytest.fixture
def rsa(tmp_path: Path) -> Files:
    return Files(cached_pki("rsa2048"), tmp_path)


@pytest.fixture(params=["rsa2048", "ecdsa-p256"])
def tsa_files(request: pytest.FixtureRequest, tmp_path: Path) -> Files:
    return Files(cached_pki(request.param), tmp_path)


def query_text(openssl: str, query: Path) -> dict[str, str]:
    """``openssl ts -query -text`` as a dict of its "Key: value" lines (message data as hex)."""
    text = run_tool([openssl, "ts", "-query", "-in", query, "-text"]).stdout.decode()
    fields = dict(re.findall(r"^([A-Za-z ]+): ?(.*)$", text, re.MULTILINE))
    hex_bytes = re.findall(r"^\s+[0-9a-f]{4} - ((?:[0-9a-f]{2}[ -]){0,15}[0-9a-f]{2})", text,
                           re.MULTILINE)
    fields["Message data"] = "".join(h.replace("-", " ").replace(" ", "") for h in hex_bytes)
    return fields


def openssl_nonce(value: str) -> int | None:
    return None if value == "unspecified" else int(value.removeprefix("0x"), 16)


# ---------------------------------------------------------------------------------------------
# Requests both ways


@pytest.mark.parametrize("options", [
    ["-sha256", "-cert"],
    ["-sha512"],
    ["-sm3", "-no_nonce", "-tspolicy", POLICY, "-cert"],
], ids=["sha256-cert", "sha512", "sm3-nonce-less-policy"])
def test_openssl_query_parses(openssl_bin: str, rsa: Files, options: list[str]) -> None:
    query = rsa.path("q.tsq")
    run_tool([openssl_bin, "ts", "-query", "-data", rsa.doc, *options, "-out", query])
    request = sc_tsp.load_request(query.read_bytes())
    shown = query_text(openssl_bin, query)
    algorithm = HashAlgorithm(options[0].removeprefix("-"))
    assert request.hash_algorithm is algorithm
    assert request.message_imprint == hashes.digest(algorithm, DOCUMENT)
    assert request.message_imprint.hex() == shown["Message data"]
    assert request.cert_req is ("-cert" in options)
    assert request.nonce == openssl_nonce(shown["Nonce"])
    assert (request.nonce is None) == ("-no_nonce" in options)
    assert request.policy == (POLICY if "-tspolicy" in options else None)
    assert request.der == query.read_bytes()


@pytest.mark.parametrize("case", [
    (HashAlgorithm.SHA256, True, True, None),
    (HashAlgorithm.SM3, 0x0102030405060708, False, POLICY),
    (HashAlgorithm.SHA384, False, True, POLICY),
], ids=["sha256", "sm3", "sha384"])
def test_openssl_reads_our_request(
        openssl_bin: str, rsa: Files,
        case: tuple[HashAlgorithm, bool | int, bool, str | None]) -> None:
    algorithm, nonce, cert_req, policy = case
    request = sc_tsp.build_request(data=DOCUMENT, hash_algorithm=algorithm, nonce=nonce,
                                   cert_req=cert_req, policy=policy)
    shown = query_text(openssl_bin, rsa.path("q.tsq", request.der))
    assert shown["Version"] == "1"
    assert shown["Hash Algorithm"] == algorithm.value
    assert shown["Message data"] == hashes.digest(algorithm, DOCUMENT).hex()
    assert shown["Policy OID"] == (policy or "unspecified")
    assert openssl_nonce(shown["Nonce"]) == request.nonce
    assert shown["Certificate required"] == ("yes" if cert_req else "no")


# ---------------------------------------------------------------------------------------------
# OpenSSL verifies our tokens


def our_token(f: Files, request: sc_tsp.TimestampRequest, *, embed_issuing: bool) -> bytes:
    return sc_tsp.build_token(
        hash_algorithm=request.hash_algorithm, message_imprint=request.message_imprint,
        signer=f.pki.tsa_key, certificate=f.pki.tsa, serial_number=0x1234_5678_9ABC,
        policy=POLICY, nonce=request.nonce, accuracy=dt.timedelta(milliseconds=1500),
        extra_certificates=[f.pki.issuing] if embed_issuing else ())


@pytest.mark.parametrize("embed_issuing", [True, False], ids=["chain-embedded", "untrusted"])
def test_openssl_verifies_our_response_and_token(openssl_bin: str, tsa_files: Files,
                                                 embed_issuing: bool) -> None:
    f = tsa_files
    request = sc_tsp.build_request(data=DOCUMENT)
    query = f.path("q.tsq", request.der)
    token = our_token(f, request, embed_issuing=embed_issuing)
    response = f.path("r.tsr", sc_tsp.build_response(token))
    token_file = f.path("r.tst", token)
    chain = [] if embed_issuing else ["-untrusted", f.issuing]
    base = [openssl_bin, "ts", "-verify", "-CAfile", f.root, *chain]
    for args in (["-data", f.doc, "-in", response],
                 ["-queryfile", query, "-in", response],
                 ["-digest", hashlib.sha256(DOCUMENT).hexdigest(), "-in", response],
                 ["-data", f.doc, "-token_in", "-in", token_file]):
        result = run_tool([*base, *args])
        assert b"Verification: OK" in result.stdout, args
    # OpenSSL reads the same fields back.
    text = run_tool([openssl_bin, "ts", "-reply", "-in", response, "-text"]).stdout.decode()
    assert "Status: Granted." in text
    assert f"Policy OID: {POLICY}" in text
    assert "Serial number: 0x123456789ABC" in text
    assert "Accuracy: 0x01 seconds, 0x01F4 millis, unspecified micros" in text
    nonce = re.search(r"^Nonce: (0x[0-9A-F]+)$", text, re.MULTILINE)
    assert nonce is not None and openssl_nonce(nonce.group(1)) == request.nonce

    # A modified document, or another request's nonce, fails.
    failed = run_tool([*base, "-data", f.other_doc, "-in", response], check=False)
    assert failed.returncode != 0
    assert b"Verification: FAILED" in failed.stdout
    assert b"message imprint mismatch" in failed.stderr
    other = f.path("other.tsq", sc_tsp.build_request(data=DOCUMENT).der)
    failed = run_tool([*base, "-queryfile", other, "-in", response], check=False)
    assert failed.returncode != 0 and b"nonce mismatch" in failed.stderr
    # And the wrong root.
    wrong = write_pem(f.path("wrong-root.pem"), cached_pki("sm2").root)
    failed = run_tool([openssl_bin, "ts", "-verify", "-CAfile", wrong, *chain, "-data", f.doc,
                       "-in", response], check=False)
    assert failed.returncode != 0


# ---------------------------------------------------------------------------------------------
# A real OpenSSL TSA


def openssl_reply(openssl: str, f: Files, query: Path, *, ess_alg: str = "sha256",
                  ess_chain: str = "no", tsa_name: str = "no") -> bytes:
    config = f.path("ts.cnf", TS_CONFIG.format(
        serial=f.dir / "tsaserial", ess_alg=ess_alg, ess_chain=ess_chain,
        tsa_name=tsa_name).encode())
    reply = f.path("r.tsr")
    run_tool([openssl, "ts", "-reply", "-queryfile", query, "-signer", f.tsa, "-inkey",
              f.tsa_key, "-chain", f.chain, "-config", config, "-out", reply])
    return reply.read_bytes()


@pytest.mark.parametrize(("ess_alg", "ess_chain", "tsa_name"), [
    ("sha256", "no", "no"),     # the minimal configuration: signingCertificateV2
    ("sha1", "yes", "yes"),     # signingCertificate (v1) for the whole chain, and a TSA name
], ids=["essv2", "essv1-chain-name"])
def test_we_verify_an_openssl_tsa(openssl_bin: str, rsa: Files, ess_alg: str, ess_chain: str,
                                  tsa_name: str) -> None:
    pki = rsa.pki
    request = sc_tsp.build_request(data=DOCUMENT)
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    response = openssl_reply(openssl_bin, rsa, rsa.path("q.tsq", request.der),
                             ess_alg=ess_alg, ess_chain=ess_chain, tsa_name=tsa_name)
    result = sc_tsp.verify_response(response, request, trust_roots=[pki.root])
    assert result.valid, result.problems
    assert result.trusted is True
    assert result.tsa_certificate == pki.tsa
    assert result.chain is not None and result.chain.root == pki.root
    info = result.info
    assert info.policy == OPENSSL_POLICY
    assert info.serial_number == 1  # a fresh serial file
    assert info.accuracy == dt.timedelta(seconds=1)
    assert info.ordering is False
    assert info.hash_algorithm is HashAlgorithm.SHA256
    assert info.message_imprint == hashlib.sha256(DOCUMENT).digest()
    assert info.nonce == request.nonce
    assert before - dt.timedelta(seconds=2) <= info.gen_time <= dt.datetime.now(dt.UTC)
    if tsa_name == "yes":
        assert info.tsa_name is not None and "medsign test TSA RSA" in info.tsa_name
    else:
        assert info.tsa_name is None
    token = sc_tsp.load_response(response).token
    assert token is not None
    assert sc_tsp.parse_token(token) == info
    attrs = acms.ContentInfo.load(token)["content"]["signer_infos"][0]["signed_attrs"]
    names = {a["type"].native for a in attrs}
    assert ("signing_certificate" if ess_alg == "sha1" else "signing_certificate_v2") in names
    # The token on its own, with the data; and a modified document.
    assert sc_tsp.verify_token(token, data=DOCUMENT, trust_roots=[pki.root]).valid
    modified = sc_tsp.verify_token(token, data=DOCUMENT + b" ", trust_roots=[pki.root])
    assert not modified.valid
    assert any("message imprint" in p for p in modified.problems)
    # The next reply takes the next serial from the file.
    again = openssl_reply(openssl_bin, rsa, rsa.path("q2.tsq", sc_tsp.build_request(
        data=DOCUMENT, policy=POLICY).der))
    second = sc_tsp.verify_response(again, sc_tsp.load_request(rsa.path("q2.tsq").read_bytes()),
                                    trust_roots=[pki.root])
    assert second.valid, second.problems
    assert second.info.serial_number == 2
    assert second.info.policy == POLICY  # an "other_policies" entry the request asked for


def test_openssl_tsa_answers_openssl_query(openssl_bin: str, rsa: Files) -> None:
    query = rsa.path("q.tsq")
    run_tool([openssl_bin, "ts", "-query", "-data", rsa.doc, "-sha384", "-cert", "-out", query])
    response = openssl_reply(openssl_bin, rsa, query)
    request = sc_tsp.load_request(query.read_bytes())
    result = sc_tsp.verify_response(response, request, trust_roots=[rsa.pki.root])
    assert result.valid, result.problems
    assert result.info.hash_algorithm is HashAlgorithm.SHA384


@pytest.mark.parametrize(("request_kwargs", "failure", "text"), [
    ({"hash_algorithm": HashAlgorithm.SM3}, "bad_alg", "Message digest algorithm"),
    ({"policy": "2.999.7.3"}, "unaccepted_policy", "policy"),
], ids=["sm3-not-configured", "unknown-policy"])
def test_openssl_tsa_rejections_are_refusals(openssl_bin: str, rsa: Files,
                                             request_kwargs: dict[str, object], failure: str,
                                             text: str) -> None:
    request = sc_tsp.build_request(data=DOCUMENT, **request_kwargs)  # type: ignore[arg-type]
    response = openssl_reply(openssl_bin, rsa, rsa.path("q.tsq", request.der))
    parsed = sc_tsp.load_response(response)
    assert parsed.status == "rejection"
    assert parsed.token is None
    assert parsed.failure_info == (failure,)
    assert parsed.status_text is not None and text in parsed.status_text
    with pytest.raises(SigncoreError, match=text):
        sc_tsp.verify_response(response, request, trust_roots=[rsa.pki.root])

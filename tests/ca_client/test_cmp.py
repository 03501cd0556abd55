"""The CMP channel (ca_client.cmp) against an in-process CMP responder on loopback.

The responder is a real HTTP server that reads and writes real PKIMessages (DER, RFC 4210 /
4211 structures; that these structures are right is what tests/peers/test_openssl_cmp.py checks
against OpenSSL).  It checks what the channel sends -- protection, nonces, proof of possession,
certHash -- with its own code (PBM from hashlib and hmac, signatures with signcore's keys), not
with the functions under test, and it can misbehave on request: tampered or missing protection,
another transactionID or recipNonce, a replayed answer, a certificate for another key, CMP
errors, waiting, HTTP failures.  SM2 is tested here only (OpenSSL 3.0 checks SM2 proofs of
possession with an empty signer ID, see the peer test).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import hmac
import http.server
import secrets
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from asn1crypto import algos, core, x509

from ca_client import (
    AlreadyRevoked,
    ChannelUnavailable,
    EnrollmentRequest,
    RequestRejected,
    SubjectInfo,
    cmp,
    enroll,
)
from ca_client.cmp import CmpChannel, CmpConfig
from signcore import hashes
from signcore._internal import algids
from signcore.keys import PrivateKey, generate_private_key, public_key_from_info
from signcore.x509 import Certificate, Extensions, issue_certificate, load_certificate
from tests.support.loopback_http import serve_loopback
from tests.support.pki import TestPKI, cached_pki, issue_leaf

DOCTOR = SubjectInfo(common_name="王五", organization="测试医院", department="儿科",
                     unique_id="UABCDEF0123456789")
SECRET = b"a shared secret of the test CA"
REFERENCE = b"medsign-appliance-1"
OID_PBM = "1.2.840.113533.7.66.13"
OID_HMAC_SHA1 = "1.3.6.1.5.5.8.1.2"
OID_SHA256 = "2.16.840.1.101.3.4.2.1"


class ProtectedPart(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[tuple[Any, ...]]] = [("header", cmp.PKIHeader),
                                                ("body", cmp.PKIBody)]


def _pbm(secret: bytes, salt: bytes, iterations: int, data: bytes, *, owf: str = "sha256",
         mac: str = "sha256") -> bytes:
    """RFC 4210 5.1.3.1, written out independently of ca_client.cmp.pbm_mac."""
    key = secret + salt
    for _ in range(iterations):
        key = hashlib.new(owf, key).digest()
    return hmac.new(key, data, mac).digest()


def _protected(message: cmp.PKIMessage) -> bytes:
    return bytes(ProtectedPart({"header": message["header"], "body": message["body"]}).dump())


def _dn(name: x509.Name) -> x509.GeneralName:
    return x509.GeneralName(name="directory_name", value=name)


# -- the responder ----------------------------------------------------------------------------

#: mode -> the HTTP answer (status, headers, body) given instead of a CMP message
CANNED: dict[str, tuple[int, dict[str, str], bytes]] = {
    "http_500": (500, {"Content-Type": "text/plain"}, b"internal error"),
    "http_404": (404, {"Content-Type": "text/html"}, b"<html>not here</html>"),
    "html": (200, {"Content-Type": "text/html"}, b"<html>captive portal</html>"),
    "redirect": (302, {"Location": "http://127.0.0.1:1/elsewhere"}, b""),
    "huge": (200, {"Content-Type": cmp.MEDIA_TYPE}, b"\x30" * (2 << 20)),
    "garbage": (200, {"Content-Type": cmp.MEDIA_TYPE}, b"\x30\x03\x02\x01"),
}

@dataclasses.dataclass
class Responder:
    """A small CMP CA.  ``mode`` names the misbehaviour of the following answers."""

    pki: TestPKI
    url: str = ""
    secret: bytes | None = SECRET
    server_certificate: Certificate | None = None
    server_key: PrivateKey | None = None
    mode: str = ""
    received: list[cmp.PKIMessage] = dataclasses.field(default_factory=list)
    issued: Certificate | None = None
    revoked: set[int] = dataclasses.field(default_factory=set)
    answers: list[bytes] = dataclasses.field(default_factory=list)
    problems: list[str] = dataclasses.field(default_factory=list)

    def kinds(self) -> list[str]:
        return [m["body"].name for m in self.received]

    # -- HTTP level

    def http(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
        if self.mode in CANNED:
            return CANNED[self.mode]
        if self.mode == "slow":
            time.sleep(2)
        if self.mode == "replay" and self.answers:
            return 200, {"Content-Type": cmp.MEDIA_TYPE}, self.answers[0]
        answer = self.answer(body)
        self.answers.append(answer)
        return 200, {"Content-Type": cmp.MEDIA_TYPE}, answer

    # -- CMP level

    def answer(self, der: bytes) -> bytes:
        message = cmp.PKIMessage.load(der)
        message.native  # noqa: B018 -- parse it all: a malformed request fails here
        self.received.append(message)
        self._check_request(message)
        kind = message["body"].name
        content = message["body"].chosen
        if self.mode in ("error", "busy"):
            return self._reply(message, "error", {"pki_status_info": {
                "status": "rejection", "status_string": ["不受理: nope\x1b[31m"],
                "fail_info": {"system_unavail" if self.mode == "busy" else "bad_request"}}})
        if self.mode == "poll_rep":
            return self._reply(message, "poll_rep", [{"cert_req_id": 0, "check_after": 60}])
        if kind in ("ir", "cr", "kur"):
            return self._reply(message, {"ir": "ip", "cr": "cp", "kur": "kup"}[kind],
                               self._certify(content[0]))
        if kind == "cert_conf":
            status = content[0]
            if self.issued is not None:
                algorithm = self.issued.signature_algorithm.hash_algorithm
                if bytes(status["cert_hash"].native) != hashes.digest(algorithm,
                                                                      self.issued.der):
                    self.problems.append("certHash")
            return self._reply(message, "pkiconf", core.Null())
        if kind == "rr":
            template = content[0]["cert_details"]
            serial = template["serial_number"].native
            if serial in self.revoked:
                status = {"status": "rejection", "fail_info": {"cert_revoked"}}
            else:
                self.revoked.add(serial)
                status = {"status": "accepted"}
            return self._reply(message, "rp", {"status": [status]})
        if kind == "genm":
            return self._reply(message, "genp", [])
        raise AssertionError(f"unexpected request {kind}")

    def _check_request(self, message: cmp.PKIMessage) -> None:
        header = message["header"]
        if header["pvno"].native != 2:
            self.problems.append("pvno")
        for name in ("transaction_id", "sender_nonce"):
            if len(header[name].native or b"") != 16:
                self.problems.append(name)
        algorithm = header["protection_alg"]
        protection = bytes(message["protection"].contents[1:])
        if algorithm["algorithm"].dotted == OID_PBM:
            params = algorithm["parameters"].parse(cmp.PBMParameter)
            expected = _pbm(self.secret or b"", params["salt"].native,
                            params["iteration_count"].native, _protected(message))
            if params["mac"]["algorithm"].dotted != "1.2.840.113549.2.9" or \
                    not hmac.compare_digest(expected, protection) or \
                    header["sender_kid"].native != REFERENCE:
                self.problems.append("PBM")
        else:
            signer = load_certificate(message["extra_certs"][0].dump())
            signer.verify_signature(self.pki.issuing.public_key())
            alg = algids.signature_algorithm_from_id(
                algos.SignedDigestAlgorithm.load(algorithm.untag().dump()))
            if not signer.public_key().is_valid(protection, _protected(message), alg):
                self.problems.append("signature")
            if header["sender"].chosen.untag().dump() != signer.subject_name.dump():
                self.problems.append("sender")

    def _certify(self, request: cmp.CertReqMsg) -> dict[str, Any]:
        cert_request = request["cert_req"]
        template = cert_request["cert_template"]
        key = public_key_from_info(template["public_key"].untag())
        popo = request["popo"].chosen
        alg = algids.signature_algorithm_from_id(
            algos.SignedDigestAlgorithm.load(popo["algorithm_identifier"].dump()))
        if not key.is_valid(bytes(popo["signature"].contents[1:]), cert_request.dump(), alg):
            return {"response": [{"cert_req_id": 0, "status": {
                "status": "rejection", "status_string": ["bad POP"], "fail_info": {"bad_pop"}}}]}
        if self.mode in ("waiting", "rejection"):
            return {"response": [{"cert_req_id": cert_request["cert_req_id"].native, "status": {
                "status": self.mode, "status_string": ["稍后 / later"],
                "fail_info": {"bad_cert_template"}}}]}
        if self.mode == "other_key":
            key = generate_private_key(self.pki.key_type).public_key()
        subject = x509.Name.load(template["subject"].untag().dump())
        self.issued = issue_certificate(
            subject=subject, public_key=key, signer=self.pki.issuing_key, issuer=self.pki.issuing,
            days=30, extensions=Extensions(ca=self.mode == "ca_cert",
                                           key_usage=frozenset({"digital_signature"})))
        return {"ca_pubs": [self.pki.root.asn1], "response": [{
            "cert_req_id": cert_request["cert_req_id"].native, "status": {"status": "accepted"},
            "certified_key_pair": {"cert_or_enc_cert": cmp.CertOrEncCert(
                name="certificate", value=self.issued.asn1)}}]}

    def _reply(self, request: cmp.PKIMessage, kind: str, content: Any) -> bytes:
        asked = request["header"]
        sender = self.server_certificate.subject_name if self.server_certificate else \
            x509.Name.build({})
        header: dict[str, Any] = {
            "pvno": 2, "sender": _dn(sender), "recipient": asked["sender"],
            "message_time": dt.datetime.now(dt.UTC).replace(microsecond=0),
            "transaction_id": asked["transaction_id"].native,
            "sender_nonce": secrets.token_bytes(16),
            "recip_nonce": asked["sender_nonce"].native,
        }
        if self.mode == "wrong_tid":
            header["transaction_id"] = secrets.token_bytes(16)
        if self.mode == "wrong_nonce":
            header["recip_nonce"] = secrets.token_bytes(16)
        if self.mode == "no_nonce":
            del header["recip_nonce"]
        extra = [self.pki.issuing.asn1] if kind in ("ip", "cp", "kup") else []
        if self.server_certificate is not None:
            extra.insert(0, self.server_certificate.asn1)
        message = cmp.PKIMessage({"header": header, "body": cmp.PKIBody(name=kind, value=content),
                                  **({"extra_certs": extra} if extra else {})})
        if self.mode != "unprotected":
            self._protect(message)
        return bytes(message.dump())

    def _protect(self, message: cmp.PKIMessage) -> None:
        header = message["header"]
        if self.server_key is not None:
            key = generate_private_key(self.pki.key_type) if self.mode == "foreign_signer" \
                else self.server_key
            alg = key.default_signature_algorithm
            header["protection_alg"] = cmp.AlgorithmIdentifier.load(
                algids.signature_algorithm_id(alg).dump())
            message["header"] = header
            message["protection"] = key.sign(_protected(message), alg)
            return
        salt = secrets.token_bytes(12)
        iterations = 1_000_000 if self.mode == "many_iterations" else 400
        # Like OpenSSL: OWF SHA-256, MAC HMAC-SHA1 (the channel accepts it from the CA).
        header["protection_alg"] = {"algorithm": OID_PBM, "parameters": cmp.PBMParameter({
            "salt": salt, "owf": {"algorithm": OID_SHA256}, "iteration_count": iterations,
            "mac": {"algorithm": OID_HMAC_SHA1}})}
        header["sender_kid"] = b"test-ca"
        message["header"] = header
        secret = b"not the shared secret" if self.mode == "wrong_secret" else self.secret or b""
        mac = _pbm(secret, salt, min(iterations, 400), _protected(message), mac="sha1")
        if self.mode == "tampered":
            mac = bytes([mac[0] ^ 1]) + mac[1:]
        message["protection"] = mac


class _Handler(http.server.BaseHTTPRequestHandler):
    responder: Responder

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Type") != cmp.MEDIA_TYPE:
            self.responder.problems.append("request content type")
        status, headers, answer = self.responder.http(body)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        with contextlib.suppress(OSError):  # the client gave up (size limit, timeout)
            self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _serve(responder: Responder) -> Iterator[Responder]:
    handler = type("Handler", (_Handler,), {"responder": responder})
    with serve_loopback(handler) as url:
        responder.url = f"{url}/pkix/"
        yield responder


@pytest.fixture(params=["rsa2048", "sm2"])
def pki(request: pytest.FixtureRequest) -> TestPKI:
    return cached_pki(request.param)


@pytest.fixture
def ca(pki: TestPKI) -> Iterator[Responder]:
    yield from _serve(Responder(pki))


def _pbm_channel(responder: Responder, **changes: Any) -> CmpChannel:
    config = CmpConfig(name="cmp-test", url=responder.url, secret=SECRET, reference=REFERENCE)
    return CmpChannel(dataclasses.replace(config, **changes))


def _key(pki: TestPKI) -> PrivateKey:
    return generate_private_key(pki.key_type)


def _request(key: PrivateKey) -> EnrollmentRequest:
    return EnrollmentRequest("doctor-signing", DOCTOR, key.public_key())


# -- building requests ------------------------------------------------------------------------

def test_prepare_builds_a_crmf_cert_request(pki: TestPKI) -> None:
    channel = CmpChannel(CmpConfig(name="cmp-test", url="http://127.0.0.1:9/", secret=SECRET,
                                   reference=REFERENCE))
    key = _key(pki)
    pending = channel.prepare(dataclasses.replace(_request(key), validity_days=30))
    assert pending.state["body"] == "ir" and pending.algorithm == key.default_signature_algorithm
    request = cmp.CertRequest.load(pending.to_be_signed)
    assert request.dump(force=True) == pending.to_be_signed  # DER, as signed
    assert request["cert_req_id"].native == 0 and isinstance(request["controls"], core.Void)
    template = request["cert_template"]
    assert template["public_key"].untag().dump() == key.public_key().to_der()
    assert template["subject"].untag().dump() == DOCTOR.name().dump()
    extensions = {e["extn_id"].native: e for e in template["extensions"]}
    assert extensions["key_usage"]["extn_value"].native == {"digital_signature",
                                                             "non_repudiation"}
    assert extensions["extended_key_usage"]["extn_value"].native == ["email_protection"]
    assert "1.2.156.10260.4.1.1" in extensions  # the pseudonymous identify code
    not_after = template["validity"]["not_after"].native
    assert abs(not_after - (dt.datetime.now(dt.UTC) + dt.timedelta(days=30))) < \
        dt.timedelta(minutes=5)


def test_prepare_a_key_update_names_the_old_certificate(pki: TestPKI) -> None:
    channel = CmpChannel(CmpConfig(name="cmp-test", url="http://127.0.0.1:9/", secret=SECRET,
                                   reference=REFERENCE))
    pending = channel.prepare(_request(_key(pki)), renewal_of=pki.doctor)
    assert pending.state["body"] == "kur" and pending.renewal_of == pki.doctor
    (control,) = cmp.CertRequest.load(pending.to_be_signed)["controls"]
    assert control["type"].dotted == "1.3.6.1.5.5.7.5.1.5"
    old = control["value"].parse(cmp.CertId)
    assert old["issuer"].chosen.untag().dump() == pki.doctor.issuer_name.dump()
    assert old["serial_number"].native == pki.doctor.serial_number


def test_prepare_refuses_bad_requests() -> None:
    pki = cached_pki("rsa2048")
    channel = CmpChannel(CmpConfig(name="cmp-test", url="http://127.0.0.1:9/", secret=SECRET,
                                   reference=REFERENCE))
    key = _key(pki)
    with pytest.raises(RequestRejected, match="profile"):
        channel.prepare(EnrollmentRequest("dentist", DOCTOR, key.public_key()))
    with pytest.raises(RequestRejected, match="unique identifier"):
        channel.prepare(EnrollmentRequest("doctor-signing", dataclasses.replace(
            DOCTOR, unique_id=""), key.public_key()))
    with pytest.raises(RequestRejected, match="validity"):
        channel.prepare(dataclasses.replace(_request(key), validity_days=10_000))


def test_pbm_matches_an_independent_implementation() -> None:
    salt, data = bytes(range(16)), b"protected part"
    for owf, mac, owf_oid, mac_oid in (("sha256", "sha256", OID_SHA256, "1.2.840.113549.2.9"),
                                       ("sha256", "sha1", OID_SHA256, OID_HMAC_SHA1),
                                       ("sha512", "sha512", "2.16.840.1.101.3.4.2.3",
                                        "1.2.840.113549.2.11")):
        params = cmp.PBMParameter({"salt": salt, "owf": {"algorithm": owf_oid},
                                   "iteration_count": 500, "mac": {"algorithm": mac_oid}})
        assert cmp.pbm_mac(SECRET, params, data) == _pbm(SECRET, salt, 500, data, owf=owf,
                                                         mac=mac)
    for bad in ({"iteration_count": 10**6}, {"iteration_count": 1},
                {"owf": {"algorithm": "1.3.14.3.2.26"}},  # SHA-1 as OWF: refused
                {"mac": {"algorithm": "1.2.840.113549.2.5"}}, {"salt": b""}):
        params = cmp.PBMParameter({"salt": salt, "owf": {"algorithm": OID_SHA256},
                                   "iteration_count": 500,
                                   "mac": {"algorithm": OID_HMAC_SHA1}, **bad})
        with pytest.raises(ValueError, match="PBM"):
            cmp.pbm_mac(SECRET, params, data)


# -- enrollment -------------------------------------------------------------------------------

def test_enrollment_with_pbm(ca: Responder) -> None:
    channel = _pbm_channel(ca)
    key = _key(ca.pki)
    done = enroll(channel, _request(key), key)
    assert done.certificate == ca.issued and done.certificate.public_key() == key.public_key()
    assert done.chain == (ca.pki.issuing, ca.pki.root) and done.channel == "cmp-test"
    assert ca.kinds() == ["ir", "cert_conf"] and not ca.problems
    ir, conf = ca.received
    tid = ir["header"]["transaction_id"].native
    assert done.reference == tid.hex() and conf["header"]["transaction_id"].native == tid
    assert conf["header"]["sender_nonce"].native != ir["header"]["sender_nonce"].native
    ip = cmp.PKIMessage.load(ca.answers[0])
    assert conf["header"]["recip_nonce"].native == ip["header"]["sender_nonce"].native
    assert isinstance(conf["body"].chosen[0]["status_info"], core.Void)  # accepted
    # A second enrollment is a new transaction.
    enroll(channel, _request(key), key)
    assert ca.received[2]["header"]["transaction_id"].native != tid
    assert not ca.problems


def test_two_phases_and_a_wrong_signature(ca: Responder) -> None:
    channel = _pbm_channel(ca)
    key = _key(ca.pki)
    pending = channel.prepare(_request(key))
    # ... the phone co-signs pending.to_be_signed; the whole key does here.
    other = _key(ca.pki)
    with pytest.raises(RequestRejected, match="does not verify"):
        channel.complete(pending, other.sign(pending.to_be_signed, pending.algorithm))
    assert ca.received == []  # refused before anything was sent
    tampered = dataclasses.replace(pending, state={**pending.state, "body": "kur"})
    with pytest.raises(RequestRejected, match="state"):
        channel.complete(tampered, key.sign(pending.to_be_signed, pending.algorithm))
    swapped = dataclasses.replace(pending, request=_request(other))
    with pytest.raises(RequestRejected, match="does not match"):
        channel.complete(swapped, other.sign(pending.to_be_signed, pending.algorithm))
    with pytest.raises(RequestRejected, match="belongs to channel"):
        channel.complete(dataclasses.replace(pending, channel="builtin-rsa"), b"")
    done = channel.complete(pending, key.sign(pending.to_be_signed, pending.algorithm))
    assert done.certificate.public_key() == key.public_key() and not ca.problems


def test_cr_and_kur(ca: Responder) -> None:
    key = _key(ca.pki)
    first = enroll(_pbm_channel(ca, initial_body="cr"), _request(key), key)
    new_key = _key(ca.pki)
    renewed = enroll(_pbm_channel(ca), _request(new_key), new_key, renewal_of=first.certificate)
    assert renewed.certificate.public_key() == new_key.public_key()
    assert ca.kinds() == ["cr", "cert_conf", "kur", "cert_conf"] and not ca.problems


@pytest.fixture
def signed_ca(pki: TestPKI) -> Iterator[Responder]:
    server, server_key = issue_leaf(pki, "CN=CMP 测试服务器,O=测试医院,C=CN")
    yield from _serve(Responder(pki, secret=None, server_certificate=server,
                                server_key=server_key))


def _signing_channel(responder: Responder) -> CmpChannel:
    client, client_key = issue_leaf(responder.pki, "CN=medsign RA,O=测试医院,C=CN")
    assert responder.server_certificate is not None
    return CmpChannel(CmpConfig(name="cmp-test", url=responder.url,
                                protection_certificate=client, protection_signer=client_key,
                                protection_chain=(responder.pki.issuing,),
                                server_certificate=responder.server_certificate))


def test_signature_protection(signed_ca: Responder) -> None:
    channel = _signing_channel(signed_ca)
    key = _key(signed_ca.pki)
    done = enroll(channel, _request(key), key)
    channel.revoke(done.certificate, "superseded")
    assert channel.status().available
    assert signed_ca.kinds() == ["ir", "cert_conf", "rr", "genm"] and not signed_ca.problems
    extra = signed_ca.received[0]["extra_certs"]
    assert [c.dump() for c in extra][1:] == [signed_ca.pki.issuing.der]
    # The server's signature must come from the pinned certificate's key.
    signed_ca.mode = "foreign_signer"
    with pytest.raises(ChannelUnavailable, match="signature does not verify"):
        enroll(channel, _request(key), key)
    # A MAC-protected answer is refused when no shared secret is configured.
    signed_ca.server_key, signed_ca.secret, signed_ca.mode = None, SECRET, ""
    status = channel.status()
    assert not status.available and "no shared secret" in status.detail


# -- what a network attacker (or a broken CA) may send ----------------------------------------

@pytest.mark.parametrize(("mode", "match"), [
    ("tampered", "MAC does not verify"),
    ("wrong_secret", "MAC does not verify"),
    ("unprotected", "not protected"),
    ("many_iterations", "PBM parameters are refused"),
    ("wrong_tid", "another transactionID"),
    ("wrong_nonce", "recipNonce"),
    ("no_nonce", "recipNonce"),
    ("garbage", "malformed CMP message"),
])
def test_unauthenticated_or_foreign_answers_are_refused(ca: Responder, mode: str,
                                                        match: str) -> None:
    channel = _pbm_channel(ca)
    key = _key(ca.pki)
    ca.mode = mode
    with pytest.raises(ChannelUnavailable, match=match):
        enroll(channel, _request(key), key)
    assert "cert_conf" not in ca.kinds()  # nothing of the answer was used
    assert not channel.status().available


def test_a_replayed_answer_is_refused(ca: Responder) -> None:
    channel = _pbm_channel(ca)
    key = _key(ca.pki)
    enroll(channel, _request(key), key)
    ca.mode = "replay"  # the first ip again, validly protected, of another transaction
    with pytest.raises(ChannelUnavailable, match="another transactionID"):
        enroll(channel, _request(key), key)


def test_an_unauthenticated_error_is_shown_as_such(ca: Responder) -> None:
    ca.mode = "error"
    channel = _pbm_channel(ca, secret=b"our secret is another one")
    with pytest.raises(ChannelUnavailable, match="unauthenticated: error") as caught:
        channel.revoke(ca.pki.doctor, "superseded")
    assert "\x1b" not in str(caught.value)  # the CA's text is cleaned


@pytest.mark.parametrize("mode", ["other_key", "ca_cert"])
def test_a_substituted_certificate_is_refused_and_rejected_in_cert_conf(ca: Responder,
                                                                        mode: str) -> None:
    ca.mode = mode
    key = _key(ca.pki)
    with pytest.raises(ChannelUnavailable, match=r"another public key|CA certificate"):
        enroll(_pbm_channel(ca), _request(key), key)
    assert ca.kinds() == ["ir", "cert_conf"] and not ca.problems
    status = ca.received[1]["body"].chosen[0]["status_info"]
    assert status["status"].native == "rejection"
    assert "refused by the client" in status["status_string"].native[0]


@pytest.mark.parametrize(("mode", "error", "match"), [
    ("error", RequestRejected, r"error \(status rejection\): 不受理: nope"),
    ("busy", ChannelUnavailable, "cannot answer now.*system_unavail"),
    ("rejection", RequestRejected, "refused the certificate request.*稍后.*bad_cert_template"),
    ("waiting", ChannelUnavailable, "waiting"),
    ("poll_rep", ChannelUnavailable, "poll"),
])
def test_cmp_refusals(ca: Responder, mode: str, error: type[Exception], match: str) -> None:
    ca.mode = mode
    key = _key(ca.pki)
    with pytest.raises(error, match=match):
        enroll(_pbm_channel(ca), _request(key), key)


# -- revocation and status --------------------------------------------------------------------

def test_revocation(ca: Responder) -> None:
    channel = _pbm_channel(ca)
    channel.revoke(ca.pki.doctor, "key_compromise")
    (rr,) = ca.received
    (details,) = rr["body"].chosen
    assert details["cert_details"]["serial_number"].native == ca.pki.doctor.serial_number
    assert details["cert_details"]["issuer"].untag().dump() == ca.pki.doctor.issuer_name.dump()
    (reason,) = details["crl_entry_details"]
    assert reason["extn_id"].native == "crl_reason"
    assert reason["extn_value"].native == "key_compromise"
    with pytest.raises(AlreadyRevoked, match="revoked already"):
        channel.revoke(ca.pki.doctor, "superseded")
    with pytest.raises(RequestRejected, match="revocation reason"):
        channel.revoke(ca.pki.doctor, "ca_compromise")
    assert len(ca.received) == 2 and not ca.problems


def test_status(ca: Responder) -> None:
    status = _pbm_channel(ca).status()
    assert status.available and status.kind == "cmp" and ca.kinds() == ["genm"]
    down = _pbm_channel(ca, url="http://127.0.0.1:9/")
    assert not down.status().available


# -- HTTP -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("mode", "error", "match"), [
    ("http_500", ChannelUnavailable, "HTTP 500"),
    ("http_404", RequestRejected, "HTTP 404"),
    ("html", ChannelUnavailable, "without a CMP message.*text/html"),
    ("redirect", ChannelUnavailable, "redirect"),
    ("huge", ChannelUnavailable, "over 1048576 bytes"),
    ("slow", ChannelUnavailable, "in time"),
])
def test_http_failures(mode: str, error: type[Exception], match: str) -> None:
    for responder in _serve(Responder(cached_pki("rsa2048"), mode=mode)):
        channel = _pbm_channel(responder, read_timeout=0.5)
        with pytest.raises(error, match=match):
            channel.revoke(responder.pki.doctor, "superseded")
        assert not channel.status().available


def test_nothing_listening() -> None:
    channel = CmpChannel(CmpConfig(name="cmp-test", url="http://127.0.0.1:9/", secret=SECRET,
                                   reference=REFERENCE))
    with pytest.raises(ChannelUnavailable, match="refused the connection"):
        channel.revoke(cached_pki("rsa2048").doctor, "superseded")


# -- configuration ----------------------------------------------------------------------------

def test_configuration_is_checked() -> None:
    pki = cached_pki("rsa2048")
    client, client_key = issue_leaf(pki, "CN=medsign RA,O=测试医院,C=CN")
    good = CmpConfig(name="cmp-test", url="https://ca.example.test/pkix/", secret=SECRET,
                     reference=REFERENCE)
    assert SECRET.decode() not in repr(good) and SECRET.decode() not in repr(CmpChannel(good))
    for changes, match in (
        ({"secret": None}, "either a shared secret"),
        ({"protection_certificate": client, "protection_signer": client_key},
         "either a shared secret"),
        ({"secret": b"short"}, "at least 8 bytes"),
        ({"reference": b""}, "reference"),
        ({"url": "ftp://ca.example.test/"}, "http or https"),
        ({"url": "http://user:pw@ca.example.test/"}, "user information"),
        ({"pbm_iterations": 50}, "pbm_iterations"),
        ({"initial_body": "p10cr"}, "initial_body"),
        ({"read_timeout": 0}, "read_timeout"),
        ({"max_response_bytes": 10}, "max_response_bytes"),
        ({"recipient": "CN"}, "recipient"),
        ({"name": "CMP!"}, "name"),
    ):
        with pytest.raises(RequestRejected, match=match):
            dataclasses.replace(good, **changes)
    signing = {"secret": None, "protection_certificate": client,
               "protection_signer": client_key}
    with pytest.raises(RequestRejected, match="server_certificate"):
        dataclasses.replace(good, **signing)
    with pytest.raises(RequestRejected, match="does not hold"):
        dataclasses.replace(good, **{**signing, "protection_signer": _key(pki),
                                     "server_certificate": pki.tls})
    assert dataclasses.replace(good, **signing, server_certificate=pki.tls).secret is None

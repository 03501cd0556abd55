"""RFC 4210 CMP against the real ``openssl cmp`` mock server (``-port``, HTTP on loopback).

- With PBM protection (``-srv_ref``/``-srv_secret``) and with signature protection
  (``-srv_cert``/``-srv_key``, client certificates checked against ``-srv_trusted``),
  :class:`ca_client.cmp.CmpChannel` enrolls (ir, certConf), renews (kur with oldCertId) and
  revokes (rr) RSA keys of the declared test PKI, and asks for the status (genm).  The server's
  log (``-verbosity 7``) shows which messages it received and that it validated them.
- OpenSSL's own CMP client writes an ir (``-reqout``) that our structures parse and whose PBM
  our code verifies: an independent check of the ASN.1 and of the MAC.
- A wrong shared secret: OpenSSL refuses our request ("wrong pbm value") with an error message
  MAC'd with its own secret, which we cannot verify, so the channel raises
  :class:`~ca_client.errors.ChannelUnavailable` (an answer we cannot authenticate), quoting
  OpenSSL's text as unauthenticated.  A client certificate from another hierarchy: OpenSSL
  answers a signed error ("no suitable sender cert") that we verify, so
  :class:`~ca_client.errors.RequestRejected`.

The mock server answers every certificate request with the fixed ``-rsp_cert``, so each test
generates the key first and issues ``-rsp_cert`` for it under the test PKI's issuing CA (the
channel refuses a certificate for any other key).  Other OpenSSL 3.0 traps:

- it prints ``ACCEPT [::]:PORT`` once listening: that is the readiness condition (a TCP probe
  would reach it as an empty request);
- signature-protected requests need ``-srv_trusted`` (here the root; the issuing CA travels
  in our extraCerts); given only ``-srv_secret`` it MACs its answers even to signed requests
  (with ``-srv_cert``/``-srv_key`` too it answers in kind), so the signature tests give it no
  secret;
- its PBM MAC is HMAC-SHA1 whatever the client used (we send HMAC-SHA256, which it accepts);
- ``-rsp_extracerts`` becomes the extraCerts of ip/cp/kup, ``-rsp_capubs`` the caPubs of ip
  only (a kup's chain is just the issuing CA);
- lacking the ``-ref_cert`` of later versions, the 3.0 mock accepts a kur only when its
  oldCertId names ``-rsp_cert`` ("wrong certid") and an rr only for ``-rsp_cert`` ("request
  not accepted"): the kur test renews ``-rsp_cert`` for the same key, and both refusals are
  tested (they show that OpenSSL read our oldCertId and certDetails).

SM2 is not tested here: OpenSSL 3.0's CMP signs and checks the SM2 proof of possession with an
empty signer ID, not the GM/T 0009 default ID that signcore always uses, so the mock server
answers ``badPOP`` ("EVP lib") to our SM2 requests; SM2 is covered by the unit tests
(tests/ca_client/test_cmp.py).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hmac
from pathlib import Path

import pytest

from ca_client import (
    ChannelUnavailable,
    EnrollmentRequest,
    RequestRejected,
    SubjectInfo,
    cmp,
    enroll,
)
from ca_client.cmp import CmpChannel, CmpConfig
from signcore.keys import PrivateKey, generate_private_key
from signcore.x509 import Certificate, Extensions, issue_certificate
from tests.support.peers import LoopbackFactory, LoopbackProcess, free_port, run_tool
from tests.support.pki import PkiFiles, TestPKI, cached_pki, issue_leaf, write_pem

pytestmark = pytest.mark.peer

SECRET = "medsign-cmp-test-secret-0123"
REFERENCE = b"medsign-appliance-1"
DOCTOR = SubjectInfo(common_name="王五", organization="测试医院", department="儿科",
                     unique_id="UABCDEF0123456789")


@pytest.fixture
def files(tmp_path: Path) -> PkiFiles:
    return PkiFiles(cached_pki("rsa2048"), tmp_path)


def _issued_for(pki: TestPKI, key: PrivateKey) -> Certificate:
    """What the CA "issues": a doctor's certificate for ``key`` under the issuing CA."""
    return issue_certificate(
        subject=DOCTOR.name(), public_key=key.public_key(), signer=pki.issuing_key,
        issuer=pki.issuing, not_before=pki.now - dt.timedelta(days=1), days=30,
        extensions=Extensions(ca=False, key_usage=frozenset({"digital_signature",
                                                             "non_repudiation"})))


@dataclasses.dataclass
class Mock:
    server: LoopbackProcess
    channel: CmpChannel

    def log(self) -> str:
        return self.server.log_text()


def _start(openssl: str, loopback: LoopbackFactory, files: PkiFiles, rsp_cert: Certificate,
           protection: str) -> Mock:
    """The mock server answering with ``rsp_cert``, and a channel to it protected by
    ``pbm`` or ``signature``."""
    pki = files.pki
    port = free_port()
    args: list[str | Path] = [
        openssl, "cmp", "-port", str(port), "-verbosity", "7",
        "-rsp_cert", write_pem(files.path(f"rsp-{rsp_cert.serial_number:x}.pem"), rsp_cert),
        "-rsp_extracerts", files.issuing, "-rsp_capubs", files.root,
    ]
    url = f"http://127.0.0.1:{port}/pkix/"
    if protection == "pbm":
        args += ["-srv_ref", "medsign-test-ca", "-srv_secret", f"pass:{SECRET}"]
        config = CmpConfig(name="openssl-mock", url=url, secret=SECRET.encode(),
                           reference=REFERENCE)
    else:
        server, server_key = issue_leaf(pki, "CN=medsign test CMP server,O=测试医院,C=CN")
        client, client_key = issue_leaf(pki, "CN=medsign RA,O=测试医院,C=CN")
        args += ["-srv_cert", write_pem(files.path("srv.pem"), server),
                 "-srv_key", write_pem(files.path("srv.key"), server_key),
                 "-srv_trusted", files.root]
        config = CmpConfig(name="openssl-mock", url=url, protection_certificate=client,
                           protection_signer=client_key, protection_chain=(pki.issuing,),
                           server_certificate=server)
    process = loopback(args, port=port, ready=rf"ACCEPT \S+:{port}\b", name="openssl-cmp")
    return Mock(process, CmpChannel(config))


def _validated(log: str, protection: str) -> bool:
    if protection == "pbm":
        return "successfully validated PBM-based CMP message protection" in log
    # OpenSSL 3.0 logs nothing on success for signatures: the absence of errors is the sign.
    return "CMP error" not in log and "no suitable sender cert" not in log


@pytest.mark.parametrize("protection", ["pbm", "signature"])
def test_enrollment_and_status(openssl_bin: str, loopback: LoopbackFactory, files: PkiFiles,
                               protection: str) -> None:
    pki = files.pki
    key = generate_private_key("rsa2048")
    expected = _issued_for(pki, key)
    mock = _start(openssl_bin, loopback, files, expected, protection)
    status = mock.channel.status()
    assert status.available, (status, mock.log())
    done = enroll(mock.channel, EnrollmentRequest("doctor-signing", DOCTOR, key.public_key()),
                  key)
    assert done.certificate == expected
    assert done.chain == (pki.issuing, pki.root)  # from -rsp_extracerts and -rsp_capubs
    assert len(bytes.fromhex(done.reference)) == 16
    log = mock.log()
    for line in ("received GENM", "sending GENP", "received IR", "sending IP",
                 "received CERTCONF", "sending PKICONF"):
        assert line in log, log
    assert _validated(log, protection), log


@pytest.mark.parametrize("protection", ["pbm", "signature"])
def test_key_update(openssl_bin: str, loopback: LoopbackFactory, files: PkiFiles,
                    protection: str) -> None:
    pki = files.pki
    key = generate_private_key("rsa2048")
    current = _issued_for(pki, key)  # the 3.0 mock renews only its -rsp_cert (docstring)
    mock = _start(openssl_bin, loopback, files, current, protection)
    channel = mock.channel
    request = EnrollmentRequest("doctor-signing", DOCTOR, key.public_key())
    pending = channel.prepare(request, renewal_of=current)
    # Two phases, as for a split key: the signature comes back later.
    signature = key.sign(pending.to_be_signed, pending.algorithm)
    done = channel.complete(pending, signature)
    assert done.certificate == current
    assert done.chain == (pki.issuing,)  # -rsp_capubs goes into ip only, not kup
    log = mock.log()
    assert "received KUR" in log and "sending KUP" in log and "sending PKICONF" in log, log
    assert _validated(log, protection), log
    # OpenSSL reads our oldCertId: a renewal of another certificate is refused.
    with pytest.raises(RequestRejected, match="wrong certid"):
        enroll(channel, request, key, renewal_of=_issued_for(pki, key))


@pytest.mark.parametrize("protection", ["pbm", "signature"])
def test_revocation(openssl_bin: str, loopback: LoopbackFactory, files: PkiFiles,
                    protection: str) -> None:
    key = generate_private_key("rsa2048")
    certificate = _issued_for(files.pki, key)
    mock = _start(openssl_bin, loopback, files, certificate, protection)
    mock.channel.revoke(certificate, "key_compromise")
    log = mock.log()
    assert "received RR" in log and "sending RP" in log, log
    assert _validated(log, protection), log
    # OpenSSL reads our certDetails: it revokes only its -rsp_cert.
    with pytest.raises(RequestRejected, match="request not accepted"):
        mock.channel.revoke(_issued_for(files.pki, key), "superseded")


def test_wrong_shared_secret(openssl_bin: str, loopback: LoopbackFactory,
                             files: PkiFiles) -> None:
    key = generate_private_key("rsa2048")
    mock = _start(openssl_bin, loopback, files, _issued_for(files.pki, key), "pbm")
    channel = CmpChannel(dataclasses.replace(mock.channel.config,
                                             secret=b"not the secret of the CA"))
    with pytest.raises(ChannelUnavailable) as caught:
        enroll(channel, EnrollmentRequest("doctor-signing", DOCTOR, key.public_key()), key)
    message = str(caught.value)
    assert "MAC does not verify with our shared secret" in message, message
    assert "unauthenticated: error" in message and "wrong pbm value" in message, message
    log = mock.log()
    assert "wrong pbm value" in log and "sending ERROR" in log and "sending IP" not in log, log
    status = channel.status()
    assert not status.available and "shared secret" in status.detail


def test_client_certificate_of_another_hierarchy(openssl_bin: str, loopback: LoopbackFactory,
                                                 files: PkiFiles) -> None:
    key = generate_private_key("rsa2048")
    mock = _start(openssl_bin, loopback, files, _issued_for(files.pki, key), "signature")
    stranger, stranger_key = issue_leaf(cached_pki("ecdsa-p256"), "CN=stranger,O=测试医院,C=CN")
    channel = CmpChannel(dataclasses.replace(mock.channel.config,
                                             protection_certificate=stranger,
                                             protection_signer=stranger_key,
                                             protection_chain=()))
    with pytest.raises(RequestRejected, match="no suitable sender cert"):
        enroll(channel, EnrollmentRequest("doctor-signing", DOCTOR, key.public_key()), key)
    assert "sending IP" not in mock.log()


def test_we_parse_and_verify_an_openssl_ir(openssl_bin: str, files: PkiFiles) -> None:
    """OpenSSL's client, with its own mock server in-process (``-use_mock_srv``), writes the
    ir it sends; our structures read it and our PBM verifies its protection."""
    pki = files.pki
    key = generate_private_key("rsa2048")
    request_file = files.path("openssl-ir.der")
    run_tool([openssl_bin, "cmp", "-use_mock_srv", "-cmd", "ir",
              "-ref", "openssl-client", "-secret", f"pass:{SECRET}",
              "-srv_ref", "medsign-test-ca", "-srv_secret", f"pass:{SECRET}",
              "-newkey", write_pem(files.path("new.key"), key), "-subject", "/CN=ir-test",
              "-recipient", "/CN=medsign test CA", "-rsp_cert",
              write_pem(files.path("rsp.pem"), _issued_for(pki, key)),
              "-certout", files.path("out.pem"), "-reqout", f"{request_file},"
              f"{files.path('openssl-certconf.der')}"])
    message = cmp.PKIMessage.load(request_file.read_bytes())
    message.native  # noqa: B018 -- parse all of it
    assert message.dump(force=True) == request_file.read_bytes()
    assert message["body"].name == "ir"
    header = message["header"]
    assert header["sender_kid"].native == b"openssl-client"
    parameters = header["protection_alg"]["parameters"].parse(cmp.PBMParameter)
    mac = cmp.pbm_mac(SECRET.encode(), parameters, cmp.protected_part(message))
    assert hmac.compare_digest(mac, bytes(message["protection"].contents[1:]))
    template = message["body"].chosen[0]["cert_req"]["cert_template"]
    assert template["public_key"].untag().dump() == key.public_key().to_der()
    assert template["subject"].native == {"common_name": "ir-test"}

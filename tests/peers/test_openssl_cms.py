"""CMS SignedData against the real OpenSSL CLI (PEERS.md "OpenSSL 3.0 with SM2").

- RSA and ECDSA, RFC 5652 flavour: ``openssl cms -verify`` checks what signcore signs, and
  signcore checks what ``openssl cms -sign`` / ``openssl smime -sign`` make (attached, detached,
  SHA-384, without signed attributes, SubjectKeyIdentifier signer ids, PEM, RSASSA-PSS).
- SM2: OpenSSL 3.0 can neither make nor check SM2 CMS (its CMS code uses the empty SM2 ID, and
  it does not know the GM/T 0010 content types), so our SM2 CMS is checked piecewise: OpenSSL
  parses the structure (``cms -cmsout -print`` / ``asn1parse``), ``pkeyutl`` with the explicit
  distid verifies the SignerInfo signature over the DER SET of signed attributes, gmssl does the
  same independently, and the message-digest attribute equals ``openssl dgst -sm3``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from asn1crypto import cms as acms

from signcore import cms
from signcore.algorithms import DEFAULT_SM2_ID, OID_GM_DATA, OID_GM_SIGNED_DATA
from signcore.hashes import HashAlgorithm
from signcore.sm2 import SM2PublicKey
from signcore.x509 import Certificate
from tests.support import gmssl_oracle
from tests.support.peers import run_tool
from tests.support.pki import PkiFiles, TestPKI, cached_pki, write_pem

pytestmark = pytest.mark.peer

DATA = "门诊病历 2025-06-07 签名测试\r\n".encode() + bytes(range(256)) + b"\n.\n"
DISTID = "distid:" + DEFAULT_SM2_ID.decode()
CUSTOM_ID = b"wangwu@hospital.medsign.test"


class Files(PkiFiles):
    """The PKI of one key type written where OpenSSL can read it, with the doctor as signer."""

    def __init__(self, pki: TestPKI, directory: Path) -> None:
        super().__init__(pki, directory)
        self.cert = self.cert_file("doctor")
        self.key = self.key_file("doctor")
        self.pub = self.path("doctor-pub.pem", pki.doctor.public_key().to_pem())
        self.data = self.path("data.bin", DATA)


@pytest.fixture(params=["rsa2048", "ecdsa-p256"])
def files(request: pytest.FixtureRequest, tmp_path: Path) -> Files:
    return Files(cached_pki(request.param), tmp_path)


@pytest.fixture
def sm2_files(tmp_path: Path) -> Files:
    return Files(cached_pki("sm2"), tmp_path)


def openssl_verify(openssl: str, f: Files, p7s: Path, *, content: Path | None = None,
                   ca: Path | None = None, inform: str = "DER",
                   check: bool = True) -> tuple[int, bytes, str]:
    out = f.path("verified.out")
    out.unlink(missing_ok=True)
    args = [openssl, "cms", "-verify", "-in", p7s, "-inform", inform, "-CAfile", ca or f.root,
            "-binary", "-out", out]
    if content is not None:
        args += ["-content", content]
    result = run_tool(args, check=check)
    text = result.stderr.decode("utf-8", "replace")
    return result.returncode, out.read_bytes() if out.exists() else b"", text


# ---------------------------------------------------------------------------------------------
# OpenSSL verifies ours (RSA, ECDSA)


@pytest.mark.parametrize("detached", [False, True], ids=["attached", "detached"])
def test_openssl_verifies_our_cms(openssl_bin: str, files: Files, detached: bool) -> None:
    pki = files.pki
    der = cms.sign(DATA, pki.doctor_key, pki.doctor, detached=detached,
                   extra_certificates=[pki.issuing])
    p7s = files.path("ours.p7s", der)
    code, out, text = openssl_verify(openssl_bin, files, p7s,
                                     content=files.data if detached else None)
    assert code == 0
    assert "Verification successful" in text
    assert out == DATA


def test_openssl_verifies_our_pem_and_full_chain(openssl_bin: str, files: Files) -> None:
    pki = files.pki
    der = cms.sign(DATA, pki.doctor_key, pki.doctor, extra_certificates=pki.chain)
    p7s = files.path("ours.pem", cms.to_pem(der))
    code, out, _ = openssl_verify(openssl_bin, files, p7s, inform="PEM")
    assert code == 0 and out == DATA


def test_openssl_rejects_tampered_or_untrusted(openssl_bin: str, files: Files) -> None:
    pki = files.pki
    detached = files.path("det.p7s", cms.sign(DATA, pki.doctor_key, pki.doctor, detached=True,
                                              extra_certificates=[pki.issuing]))
    other = files.path("other.bin", DATA[:-1] + b"!")
    code, _, text = openssl_verify(openssl_bin, files, detached, content=other, check=False)
    assert code != 0
    assert "Verification failure" in text
    assert "content verify error" in text

    attached = cms.sign(DATA, pki.doctor_key, pki.doctor, extra_certificates=[pki.issuing])
    start = attached.index(DATA)
    tampered = bytearray(attached)
    tampered[start + 10] ^= 0x01
    code, _, text = openssl_verify(openssl_bin, files, files.path("bad.p7s", bytes(tampered)),
                                   check=False)
    assert code != 0 and "Verification failure" in text

    other_root = write_pem(files.path("other-root.pem"), cached_pki("sm2").root)
    code, _, text = openssl_verify(openssl_bin, files, detached, content=files.data,
                                   ca=other_root, check=False)
    assert code != 0 and "certificate verify error" in text


# ---------------------------------------------------------------------------------------------
# We verify OpenSSL's


OPENSSL_SIGN_VARIANTS = {
    "detached": ["cms", "-sign"],
    "attached": ["cms", "-sign", "-nodetach"],
    "sha384": ["cms", "-sign", "-md", "sha384"],
    "noattr": ["cms", "-sign", "-noattr"],
    "keyid": ["cms", "-sign", "-keyid"],
    "smime": ["smime", "-sign"],
}


@pytest.mark.parametrize("variant", list(OPENSSL_SIGN_VARIANTS))
def test_we_verify_openssl_cms(openssl_bin: str, files: Files, variant: str) -> None:
    pki = files.pki
    p7s = files.path("openssl.p7s")
    run_tool([openssl_bin, *OPENSSL_SIGN_VARIANTS[variant], "-binary", "-in", files.data,
              "-signer", files.cert, "-inkey", files.key, "-certfile", files.issuing,
              "-outform", "DER", "-out", p7s])
    der = p7s.read_bytes()
    attached = variant == "attached"
    result = cms.verify(der, content=None if attached else DATA, trust_roots=[pki.root])
    if variant == "sha384" and pki.key_type == "ecdsa-p256":
        # signcore's ECDSA is P-256 with SHA-256 only: ecdsa-with-SHA384 is reported, not
        # raised, and never "valid".
        assert not result.valid
        assert result.signers[0].problems == (
            "unsupported signature algorithm 1.2.840.10045.4.3.3",)
        return
    (signer,) = result.signers
    assert result.valid, signer.problems
    assert signer.trusted is True
    assert result.detached is not attached
    assert result.content == (DATA if attached else None)
    assert signer.signer_certificate == pki.doctor
    expected_hash = HashAlgorithm.SHA384 if variant == "sha384" else HashAlgorithm.SHA256
    assert signer.digest_algorithm is expected_hash
    if variant == "noattr":
        assert signer.signing_time is None and signer.signed_attributes is None
    else:
        assert signer.signing_time is not None
    sid = acms.ContentInfo.load(der)["content"]["signer_infos"][0]["sid"]
    assert sid.name == ("subject_key_identifier" if variant == "keyid"
                        else "issuer_and_serial_number")
    # And the content OpenSSL signed is bound: other content does not verify.
    if not attached:
        bad = cms.verify(der, content=DATA + b"\n", trust_roots=[pki.root])
        assert not bad.valid and not bad.signers[0].integrity


def test_we_verify_openssl_pem_output(openssl_bin: str, files: Files) -> None:
    p7s = files.path("openssl.pem")
    run_tool([openssl_bin, "cms", "-sign", "-binary", "-nodetach", "-in", files.data,
              "-signer", files.cert, "-inkey", files.key, "-certfile", files.chain,
              "-outform", "PEM", "-out", p7s])
    assert p7s.read_bytes().startswith(b"-----BEGIN CMS-----")
    result = cms.verify(p7s.read_bytes(), trust_roots=[files.pki.root])
    assert result.valid and result.content == DATA


@pytest.mark.parametrize("salt", [["-keyopt", "rsa_pss_saltlen:32"], []],
                         ids=["salt-32", "openssl-default-max-salt"])
def test_we_verify_openssl_rsa_pss_cms(openssl_bin: str, tmp_path: Path,
                                       salt: list[str]) -> None:
    f = Files(cached_pki("rsa2048"), tmp_path)
    p7s = f.path("pss.p7s")
    run_tool([openssl_bin, "cms", "-sign", "-binary", "-in", f.data, "-signer", f.cert,
              "-inkey", f.key, "-outform", "DER", "-out", p7s,
              "-keyopt", "rsa_padding_mode:pss", *salt])
    der = p7s.read_bytes()
    params = acms.ContentInfo.load(der)["content"]["signer_infos"][0]["signature_algorithm"]
    assert params["algorithm"].native == "rsassa_pss"
    result = cms.verify(der, content=DATA, trust_roots=[f.pki.root],
                        intermediates=[f.pki.issuing])
    assert result.valid, result.signers[0].problems
    algorithm = result.signers[0].signature_algorithm
    assert algorithm is not None and algorithm.is_pss
    assert not cms.verify(der, content=DATA[1:]).valid


# ---------------------------------------------------------------------------------------------
# SM2: checked piecewise


def _sm2_signature_parts(der: bytes) -> tuple[bytes, bytes, bytes]:
    """(DER SET OF signed attributes, signature, message-digest value) of the only SignerInfo."""
    info = acms.ContentInfo.load(der)["content"]["signer_infos"][0]
    attrs = info["signed_attrs"].dump()
    digest = next(a for a in info["signed_attrs"]
                  if a["type"].native == "message_digest")["values"][0].native
    return b"\x31" + attrs[1:], bytes(info["signature"].native), bytes(digest)


@pytest.mark.parametrize("flavor", list(cms.CMSFlavor), ids=lambda f: f.value)
def test_openssl_parses_our_sm2_cms(openssl_bin: str, sm2_files: Files,
                                    flavor: cms.CMSFlavor) -> None:
    pki = sm2_files.pki
    der = cms.sign(DATA, pki.doctor_key, pki.doctor, flavor=flavor,
                   extra_certificates=[pki.issuing])
    p7s = sm2_files.path("sm2.p7s", der)
    printed = run_tool([openssl_bin, "cms", "-cmsout", "-print", "-inform", "DER",
                        "-in", p7s]).stdout.decode("utf-8", "replace")
    parsed = run_tool([openssl_bin, "asn1parse", "-inform", "DER",
                       "-in", p7s]).stdout.decode("utf-8", "replace")
    oids = re.findall(r"OBJECT\s+:(\S+)", parsed)
    if flavor is cms.CMSFlavor.RFC5652:
        assert "contentType: pkcs7-signedData (1.2.840.113549.1.7.2)" in printed
        assert "eContentType: pkcs7-data (1.2.840.113549.1.7.1)" in printed
        assert "algorithm: sm3 (1.2.156.10197.1.401)" in printed
        # The SignerInfo's signatureAlgorithm (the certificates use the same OID).
        assert "algorithm: SM2-with-SM3 (1.2.156.10197.1.501)" in printed
        assert "1.2.156.10197.1.301.1" not in oids
    else:
        # OpenSSL does not know the GM/T 0010 SignedData type: it prints it as "other".
        assert f"contentType: undefined ({OID_GM_SIGNED_DATA})" in printed
        assert "d.other:" in printed
        assert oids[0] == OID_GM_SIGNED_DATA
        assert OID_GM_DATA in oids
        assert "1.2.156.10197.1.301.1" in oids  # SM2-1, the SignerInfo signatureAlgorithm
        assert "sm3" in oids
        assert "pkcs7-data" not in oids
        assert "SM2-with-SM3" in oids  # only in the certificates


@pytest.mark.parametrize("flavor", list(cms.CMSFlavor), ids=lambda f: f.value)
@pytest.mark.parametrize("detached", [False, True], ids=["attached", "detached"])
def test_openssl_and_gmssl_verify_our_sm2_signer_info(openssl_bin: str, sm2_files: Files,
                                                      flavor: cms.CMSFlavor,
                                                      detached: bool) -> None:
    pki = sm2_files.pki
    der = cms.sign(DATA, pki.doctor_key, pki.doctor, flavor=flavor, detached=detached)
    attrs, signature, message_digest = _sm2_signature_parts(der)
    attrs_file = sm2_files.path("attrs.der", attrs)
    sig_file = sm2_files.path("sig.der", signature)
    verify = [openssl_bin, "pkeyutl", "-verify", "-pubin", "-inkey", sm2_files.pub, "-rawin",
              "-digest", "sm3", "-in", attrs_file, "-sigfile", sig_file]
    ok = run_tool([*verify, "-pkeyopt", DISTID])
    assert b"Signature Verified Successfully" in ok.stdout
    # The PEERS.md trap: without the distid OpenSSL 3.0 uses an empty ID.
    assert run_tool(verify, check=False).returncode != 0
    public = pki.doctor.public_key()
    assert isinstance(public, SM2PublicKey)
    assert gmssl_oracle.verify(public, signature, attrs)
    # The message-digest attribute is SM3 of the content, as OpenSSL computes it.
    dgst = run_tool([openssl_bin, "dgst", "-sm3", "-binary", sm2_files.data]).stdout
    assert message_digest == dgst
    assert cms.verify(der, content=DATA if detached else None).valid


def test_openssl_verifies_our_sm2_signer_info_with_a_custom_id(openssl_bin: str,
                                                              sm2_files: Files) -> None:
    pki = sm2_files.pki
    der = cms.sign(DATA, pki.doctor_key, pki.doctor, signer_id=CUSTOM_ID,
                   flavor=cms.CMSFlavor.GMT0010)
    attrs, signature, _ = _sm2_signature_parts(der)
    verify = [openssl_bin, "pkeyutl", "-verify", "-pubin", "-inkey", sm2_files.pub, "-rawin",
              "-digest", "sm3", "-in", sm2_files.path("attrs.der", attrs),
              "-sigfile", sm2_files.path("sig.der", signature)]
    assert run_tool([*verify, "-pkeyopt", "distid:" + CUSTOM_ID.decode()]).returncode == 0
    assert run_tool([*verify, "-pkeyopt", DISTID], check=False).returncode != 0


def test_sm2_cms_with_an_openssl_made_signature(openssl_bin: str, sm2_files: Files) -> None:
    """OpenSSL signs our signed attributes with the SM2 key (pkeyutl, explicit distid); the
    SignerInfo carrying its signature verifies in signcore and in gmssl."""
    pki = sm2_files.pki
    der = cms.sign(DATA, pki.doctor_key, pki.doctor, flavor=cms.CMSFlavor.GMT0010,
                   extra_certificates=[pki.issuing])
    attrs, ours, _ = _sm2_signature_parts(der)
    sig_file = sm2_files.path("openssl-sig.der")
    run_tool([openssl_bin, "pkeyutl", "-sign", "-inkey", sm2_files.key, "-rawin", "-digest",
              "sm3", "-pkeyopt", DISTID, "-in", sm2_files.path("attrs.der", attrs),
              "-out", sig_file])
    theirs = sig_file.read_bytes()
    assert theirs != ours  # SM2 signatures are randomized
    info = acms.ContentInfo.load(der)
    info["content"]["signer_infos"][0]["signature"] = theirs
    result = cms.verify(bytes(info.dump()), trust_roots=[pki.root])
    assert result.valid, result.signers[0].problems
    public = pki.doctor.public_key()
    assert isinstance(public, SM2PublicKey)
    assert gmssl_oracle.verify(public, theirs, attrs)
    embedded = [Certificate(c.chosen) for c in info["content"]["certificates"]]
    assert pki.doctor in embedded

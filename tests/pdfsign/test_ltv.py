"""pdfsign B-LT / B-LTA: the DSS (certificates, OCSP responses, CRLs of the signer's and the
TSA's chains), document timestamps, archive re-timestamping, and validation with revocation:
offline from the DSS, with a caller's fetcher, revoked and missing data, long after every
certificate involved has expired.

Certificates from the declared test PKI (tests/support/pki.py), OCSP responses and CRLs built
by signcore's responder half from its CA keys (tests/pdfsign/revocation.py), timestamps from
signcore.tsp (tests/pdfsign/tsa.py).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io

import pytest
from asn1crypto import ocsp as asn1_ocsp
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader

import pdfsign
from pdfsign import Level, ValidationData
from pdfsign.ltv import document_validation_data
from signcore.x509 import Certificate, Extensions
from tests.pdfsign.pdfs import minimal_pdf
from tests.pdfsign.revocation import TestRevocation
from tests.pdfsign.tsa import TestTSA
from tests.support.pki import TestPKI, cached_pki, issue_leaf

KEY_TYPES = ("sm2", "rsa2048")
_DAY = dt.timedelta(days=1)


@pytest.fixture(params=KEY_TYPES)
def pki(request: pytest.FixtureRequest) -> TestPKI:
    return cached_pki(request.param)


def _sign(pki: TestPKI, level: Level, data: bytes | None = None,
          revocation: TestRevocation | None = None, **kwargs: object) -> bytes:
    source = revocation or TestRevocation(pki)
    return pdfsign.sign_pdf(data or minimal_pdf(), pki.doctor_key, pki.doctor, chain=pki.chain,
                            level=level, timestamper=TestTSA(pki),
                            validation=ValidationData([pki.root], fetcher=source),
                            **kwargs)  # type: ignore[arg-type]


def _dss(data: bytes) -> tuple[set[Certificate], list[asn1_ocsp.OCSPResponse], int]:
    certs, info = document_validation_data(PdfFileReader(io.BytesIO(data)))
    responses = [asn1_ocsp.OCSPResponse.load(der) for der in info.ocsp_responses]
    return {Certificate(c) for c in certs}, responses, len(info.crls)


def _ocsp_serials(responses: list[asn1_ocsp.OCSPResponse]) -> set[int]:
    return {int(single["cert_id"]["serial_number"].native) for r in responses
            for single in r.basic_ocsp_response["tbs_response_data"]["responses"]}


def test_b_lt_dss_holds_both_chains_and_their_revocation_data(pki: TestPKI) -> None:
    source = TestRevocation(pki)
    signed = _sign(pki, Level.B_LT, revocation=source)
    assert signed.startswith(minimal_pdf())
    certs, responses, crls = _dss(signed)
    assert {pki.doctor, pki.tsa, pki.issuing, pki.root} <= certs
    assert _ocsp_serials(responses) == {pki.doctor.serial_number, pki.tsa.serial_number}
    assert crls == 1  # the root's CRL, about the issuing CA
    assert set(source.asked) == {pki.doctor, pki.tsa, pki.issuing}
    assert b"/VRI" in signed


def test_b_lt_validates_offline_from_the_dss(pki: TestPKI) -> None:
    signed = _sign(pki, Level.B_LT)
    (report,) = pdfsign.validate_pdf(signed, [pki.root])  # no fetcher: the DSS only
    assert report.ok, report.problems
    assert report.level == "B-LT"
    assert report.revocation == "good" and report.revocation_checked
    assert report.modification_level == "lta-updates"
    assert report.archive_timestamp is None


def test_b_t_has_no_revocation_data_until_a_fetcher_answers(pki: TestPKI) -> None:
    signed = pdfsign.sign_pdf(minimal_pdf(), pki.doctor_key, pki.doctor, chain=pki.chain,
                              level=Level.B_T, timestamper=TestTSA(pki))
    (report,) = pdfsign.validate_pdf(signed, [pki.root])
    assert report.ok and report.level == "B-T"
    assert report.revocation == "not-checked" and not report.revocation_checked
    source = TestRevocation(pki)
    (report,) = pdfsign.validate_pdf(signed, [pki.root], revocation=source)
    assert report.ok and report.revocation == "good" and report.revocation_checked
    assert report.level == "B-T"  # the fetcher's answers are not in the document
    assert pki.doctor in source.asked


def test_revoked_signer(pki: TestPKI) -> None:
    source = TestRevocation(pki, revoked=(pki.revoked,))
    with pytest.raises(pdfsign.ValidationDataMissing, match="王五"):
        pdfsign.sign_pdf(minimal_pdf(), pki.revoked_key, pki.revoked, chain=pki.chain,
                         level=Level.B_LT, timestamper=TestTSA(pki),
                         validation=ValidationData([pki.root], fetcher=source))
    signed = pdfsign.sign_pdf(minimal_pdf(), pki.revoked_key, pki.revoked, chain=pki.chain,
                              level=Level.B_T, timestamper=TestTSA(pki))
    (report,) = pdfsign.validate_pdf(signed, [pki.root], revocation=source)
    assert report.revocation == "revoked" and report.revocation_checked
    assert not report.ok
    assert any("revoked" in p for p in report.problems)


def test_missing_revocation_data_fails_b_lt(pki: TestPKI) -> None:
    source = TestRevocation(pki, silent=(pki.tsa,))
    with pytest.raises(pdfsign.ValidationDataMissing, match="TSA"):
        _sign(pki, Level.B_LT, revocation=source)


def test_untrusted_root_fails_b_lt(pki: TestPKI) -> None:
    other = cached_pki("ecdsa-p256")
    with pytest.raises(pdfsign.ValidationDataMissing):
        pdfsign.sign_pdf(minimal_pdf(), pki.doctor_key, pki.doctor, chain=pki.chain,
                         level=Level.B_LT, timestamper=TestTSA(pki),
                         validation=ValidationData([other.root], fetcher=TestRevocation(pki)))


def test_b_lt_needs_validation_data_and_a_tsa(pki: TestPKI) -> None:
    with pytest.raises(ValueError, match="validation data"):
        pdfsign.sign_pdf(minimal_pdf(), pki.doctor_key, pki.doctor, level=Level.B_LT,
                         timestamper=TestTSA(pki))
    with pytest.raises(ValueError, match="timestamper"):
        pdfsign.sign_pdf(minimal_pdf(), pki.doctor_key, pki.doctor, level=Level.B_LTA,
                         validation=ValidationData([pki.root], fetcher=TestRevocation(pki)))
    b_b = pdfsign.sign_pdf(minimal_pdf(), pki.doctor_key, pki.doctor, chain=pki.chain)
    with pytest.raises(pdfsign.SigningFailed, match="B-T first"):
        pdfsign.extend_pdf(b_b, Level.B_LT,
                           validation=ValidationData([pki.root], fetcher=TestRevocation(pki)))


def test_b_lta_and_archive_timestamps(pki: TestPKI) -> None:
    source = TestRevocation(pki)
    signed = _sign(pki, Level.B_LTA, revocation=source)
    (report,) = pdfsign.validate_pdf(signed, [pki.root])
    assert report.ok, report.problems
    assert report.level == "B-LTA" and report.archive_timestamp is not None
    (stamp,) = pdfsign.validate_document_timestamps(signed, [pki.root])
    assert stamp.ok and stamp.field == "ArchiveTimestamp1" and stamp.coverage == "entire-file"
    assert "TSA" in stamp.tsa

    validation = ValidationData([pki.root], fetcher=source)
    again = pdfsign.add_archive_timestamp(signed, TestTSA(pki), validation)
    again = pdfsign.add_archive_timestamp(again, TestTSA(pki), validation)
    assert again.startswith(signed)
    stamps = pdfsign.validate_document_timestamps(again, [pki.root])
    assert [s.field for s in stamps] == [f"ArchiveTimestamp{i}" for i in (1, 2, 3)]
    assert all(s.ok for s in stamps), [s.problems for s in stamps]
    # one TSA certificate for all three: its OCSP response went into the DSS at the refresh
    assert [s.revocation for s in stamps] == ["good", "good", "good"]
    # the chain: each stamp is checked as of the next one's time
    assert stamps[0].checked_at == stamps[1].time and stamps[1].checked_at == stamps[2].time
    (report,) = pdfsign.validate_pdf(again, [pki.root])
    assert report.ok and report.level == "B-LTA"
    assert report.archive_timestamp == stamps[0].time


def test_archive_timestamp_on_a_b_lt_document(pki: TestPKI) -> None:
    signed = _sign(pki, Level.B_LT)
    stamped = pdfsign.add_archive_timestamp(
        signed, TestTSA(pki), ValidationData([pki.root], fetcher=TestRevocation(pki)))
    (report,) = pdfsign.validate_pdf(stamped, [pki.root])
    assert report.ok and report.level == "B-LTA"


def test_tampering_after_the_archive_timestamp(pki: TestPKI) -> None:
    signed = _sign(pki, Level.B_LTA)
    tampered = signed.replace(b"e-prescription 0001", b"e-prescription 0002")
    assert tampered != signed
    (report,) = pdfsign.validate_pdf(tampered, [pki.root])
    (stamp,) = pdfsign.validate_document_timestamps(tampered, [pki.root])
    assert not report.intact and not report.ok
    assert not stamp.intact and not stamp.ok


def test_verifiable_after_every_certificate_expired(pki: TestPKI) -> None:
    """Signed and archived today; validated in 400 days, when the doctor's and the first TSA's
    certificates (1 year) have expired: the archive timestamp by a TSA whose certificate is
    still valid then proves the earlier timestamps, which prove the signing time."""
    long_tsa, long_key = issue_leaf(
        pki, "CN=medsign test TSA long,O=测试医院,C=CN", not_after=pki.now + 1000 * _DAY,
        extensions=Extensions(ca=False, key_usage=frozenset({"digital_signature"}),
                              extended_key_usage=("time_stamping",),
                              extended_key_usage_critical=True))
    archive_tsa = TestTSA(dataclasses.replace(pki, tsa=long_tsa, tsa_key=long_key))
    signed = _sign(pki, Level.B_LTA)
    archived = pdfsign.add_archive_timestamp(
        signed, archive_tsa, ValidationData([pki.root], fetcher=TestRevocation(pki)))
    later = dt.datetime.now(dt.UTC) + 400 * _DAY
    assert not pki.doctor.is_valid_at(later) and not pki.tsa.is_valid_at(later)

    (report,) = pdfsign.validate_pdf(archived, [pki.root], moment=later)
    assert report.ok, report.problems
    assert report.level == "B-LTA" and report.revocation == "good"
    first, last = pdfsign.validate_document_timestamps(archived, [pki.root], moment=later)
    assert first.ok and first.revocation == "good" and first.checked_at == last.time
    # the archive TSA's own revocation data comes with the next refresh
    assert last.ok and last.revocation == "unknown" and last.checked_at == later
    # without the archive timestamp the B-LTA document's first stamp cannot be trusted then
    (plain,) = pdfsign.validate_pdf(signed, [pki.root], moment=later)
    assert not plain.ok


def test_split_key_signature_extended_to_b_lt(pki: TestPKI) -> None:
    prepared = pdfsign.prepare_pdf(minimal_pdf(), pki.doctor, chain=pki.chain, level=Level.B_LT)
    assert prepared.timestamp_room
    signature = pki.doctor_key.sign(prepared.to_be_signed, prepared.algorithm)
    b_t = prepared.finish(signature, timestamper=TestTSA(pki))
    b_lt = pdfsign.extend_pdf(b_t, Level.B_LT,
                              validation=ValidationData([pki.root], fetcher=TestRevocation(pki)))
    (report,) = pdfsign.validate_pdf(b_lt, [pki.root])
    assert report.ok and report.level == "B-LT"


@pytest.mark.parametrize("key", ["/Certs", "/OCSPs", "/CRLs"])
@pytest.mark.parametrize("junk", [b"garbage", b"\x30\x03\x0a\x01\x00", b"\x30\x82\xff\xff"])
def test_junk_in_the_dss_is_left_out(key: str, junk: bytes) -> None:
    """The DSS is attacker-controlled: an entry that does not parse (or an OCSP response
    without a body) is ignored, not a crash and not a reason to reject the document."""
    pki = cached_pki("sm2")
    signed = _sign(pki, Level.B_LT)
    writer = IncrementalPdfFileWriter(io.BytesIO(signed), strict=False)
    dss = writer.root["/DSS"]
    dss[key].append(writer.add_object(generic.StreamObject(stream_data=junk)))
    writer.mark_update(writer.root.raw_get("/DSS"))
    out = io.BytesIO()
    writer.write(out)
    (report,) = pdfsign.validate_pdf(out.getvalue(), [pki.root])
    assert report.ok and report.level == "B-LT" and report.revocation == "good", report

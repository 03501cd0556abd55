"""signcore.path.validate_path over the declared test PKI and certificates made to break it.

Every refusal is a PathValidationError; the message is checked where it names the reason, so a
chain refused for the wrong reason does not pass for the right one.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest
from asn1crypto import core
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509

from signcore.errors import PathValidationError
from signcore.keys import PrivateKey, generate_private_key
from signcore.path import MAX_SIGNATURE_CHECKS, ValidatedPath, validate_path
from signcore.x509 import Certificate, Extensions, issue_certificate, load_certificate
from tests.support.pki import KEY_TYPES, TestPKI, cached_pki, issue_leaf

_DAY = dt.timedelta(days=1)
_CA = Extensions(ca=True, key_usage=frozenset({"key_cert_sign", "crl_sign"}))
_SIGNING = Extensions(ca=False, key_usage=frozenset({"digital_signature", "non_repudiation"}))


@pytest.fixture(params=KEY_TYPES)
def pki(request: pytest.FixtureRequest) -> TestPKI:
    return cached_pki(request.param)


def _validate(pki: TestPKI, leaf: Certificate, *, roots: tuple[Certificate, ...] | None = None,
              intermediates: tuple[Certificate, ...] | None = None,
              at: dt.datetime | None = None, required_eku: str | None = None) -> ValidatedPath:
    return validate_path(
        leaf, trust_roots=roots if roots is not None else (pki.root,),
        intermediates=intermediates if intermediates is not None else (pki.issuing,),
        at=at or pki.now, required_eku=required_eku)


def _refused(pki: TestPKI, leaf: Certificate, match: str, **kwargs: object) -> None:
    with pytest.raises(PathValidationError, match=match):
        _validate(pki, leaf, **kwargs)  # type: ignore[arg-type]


def _ca(pki: TestPKI, subject: str, *, issuer: Certificate | None = None,
        issuer_key: PrivateKey | None = None, extensions: Extensions = _CA,
        key: PrivateKey | None = None, not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None) -> tuple[Certificate, PrivateKey]:
    """A CA certificate (under the root unless ``issuer`` is given) with a fresh key."""
    key = key or generate_private_key(pki.key_type)
    cert = issue_certificate(
        subject=subject, public_key=key.public_key(), signer=issuer_key or pki.root_key,
        issuer=issuer or pki.root, not_before=not_before or pki.now - 10 * _DAY,
        not_after=not_after or pki.now + 100 * _DAY, extensions=extensions)
    return cert, key


def _under(pki: TestPKI, ca: Certificate, ca_key: PrivateKey,
           extensions: Extensions = _SIGNING, subject: str = "CN=叶子,O=测试医院,C=CN"
           ) -> Certificate:
    key = generate_private_key(pki.key_type)
    return issue_certificate(subject=subject, public_key=key.public_key(), signer=ca_key,
                             issuer=ca, not_before=pki.now - _DAY, not_after=pki.now + 30 * _DAY,
                             extensions=extensions)


# --------------------------------------------------------------------------------------------
# Good chains


@pytest.mark.parametrize("role", ["doctor", "tsa", "tls", "revoked"])
def test_declared_chains_validate(pki: TestPKI, role: str) -> None:
    leaf = pki.certificate(role)
    path = _validate(pki, leaf)
    assert path.certificates == (leaf, pki.issuing, pki.root)
    assert path.leaf == leaf and path.root == pki.root
    # Revocation is not part of path validation (the caller checks the CRL separately).


def test_default_time_is_now(pki: TestPKI) -> None:
    path = validate_path(pki.doctor, trust_roots=[pki.root], intermediates=[pki.issuing])
    assert path.root == pki.root


def test_unrelated_intermediates_are_ignored(pki: TestPKI) -> None:
    others = [cached_pki(k) for k in KEY_TYPES if k != pki.key_type]
    pool = (*(o.issuing for o in others), pki.tsa, pki.expired, pki.issuing, *(o.root for o in
                                                                                  others))
    path = _validate(pki, pki.doctor, intermediates=pool,
                     roots=(*(o.root for o in others), pki.root))
    assert path.certificates == (pki.doctor, pki.issuing, pki.root)


def test_intermediate_as_trust_anchor(pki: TestPKI) -> None:
    path = _validate(pki, pki.doctor, roots=(pki.issuing,), intermediates=())
    assert path.certificates == (pki.doctor, pki.issuing)
    # Also when the root is offered as an intermediate: the shortest anchor is reached first.
    path = _validate(pki, pki.doctor, roots=(pki.issuing,), intermediates=(pki.root,))
    assert path.certificates == (pki.doctor, pki.issuing)


def test_trusted_leaf_and_self_signed_root(pki: TestPKI) -> None:
    assert _validate(pki, pki.doctor, roots=(pki.doctor,)).certificates == (pki.doctor,)
    assert _validate(pki, pki.root).certificates == (pki.root,)


def test_expired_leaf_validates_in_the_past(pki: TestPKI) -> None:
    path = _validate(pki, pki.expired, at=pki.now - 100 * _DAY)
    assert path.leaf == pki.expired


def test_mixed_algorithms_in_one_chain() -> None:
    """An SM2 root over an RSA issuing CA over an ECDSA leaf: each link uses its issuer's key."""
    sm2 = cached_pki("sm2")
    rsa_key = cached_pki("rsa2048").issuing_key
    issuing, _ = _ca(sm2, "CN=RSA issuing under SM2 root,C=CN", key=rsa_key)
    leaf_key = cached_pki("ecdsa-p256").doctor_key
    leaf = issue_certificate(subject="CN=ECDSA leaf,C=CN", public_key=leaf_key.public_key(),
                             signer=rsa_key, issuer=issuing, not_before=sm2.now - _DAY,
                             not_after=sm2.now + _DAY, extensions=_SIGNING)
    path = _validate(sm2, leaf, intermediates=(issuing,))
    assert [c.signature_algorithm.value for c in path.certificates] == [
        "rsa-pkcs1-sha256", "sm2-sm3", "sm2-sm3"]


def test_self_issued_ca_does_not_count_for_path_length(pki: TestPKI) -> None:
    """RFC 5280 6.1.4 (l): a self-issued certificate (key rollover) under the pathlen-0
    issuing CA does not use up the path length."""
    rollover, rollover_key = _ca(pki, pki.issuing.subject, issuer=pki.issuing,
                                 issuer_key=pki.issuing_key)
    assert rollover.is_self_issued
    leaf = _under(pki, rollover, rollover_key)
    path = _validate(pki, leaf, intermediates=(pki.issuing, rollover))
    assert path.certificates == (leaf, rollover, pki.issuing, pki.root)


# --------------------------------------------------------------------------------------------
# Refusals


def test_missing_intermediate(pki: TestPKI) -> None:
    _refused(pki, pki.doctor, "no path", intermediates=())


def test_wrong_root(pki: TestPKI) -> None:
    other = cached_pki(KEY_TYPES[(KEY_TYPES.index(pki.key_type) + 1) % len(KEY_TYPES)])
    _refused(pki, pki.doctor, "no path", roots=(other.root,))
    _refused(pki, pki.doctor, "no path", roots=(other.root,), intermediates=(other.issuing,))


def test_root_with_the_same_name_but_another_key(pki: TestPKI) -> None:
    key = generate_private_key(pki.key_type)
    impostor = issue_certificate(subject=pki.root.subject_name, public_key=key.public_key(),
                                 signer=key, not_before=pki.now - _DAY,
                                 not_after=pki.now + _DAY, extensions=_CA)
    _refused(pki, pki.doctor, "no path", roots=(impostor,))
    # Same name and the genuine key identifier, another key: the signature check decides.
    forged_root = _copy_with_key(pki.root, key)
    _refused(pki, pki.doctor, "does not verify", roots=(forged_root,))


def test_expired_and_not_yet_valid_leaf(pki: TestPKI) -> None:
    _refused(pki, pki.expired, "not valid at")
    future, _ = issue_leaf(pki, not_before=pki.now + _DAY, not_after=pki.now + 10 * _DAY)
    _refused(pki, future, "not valid at")
    assert _validate(pki, future, at=pki.now + 2 * _DAY).leaf == future


def test_expired_intermediate(pki: TestPKI) -> None:
    old_ca, old_key = _ca(pki, "CN=old issuing CA,C=CN", not_before=pki.now - 400 * _DAY,
                          not_after=pki.now - 35 * _DAY)
    leaf = issue_certificate(subject="CN=leaf of old CA,C=CN",
                             public_key=pki.doctor_key.public_key(), signer=old_key,
                             issuer=old_ca, not_before=pki.now - 300 * _DAY,
                             not_after=pki.now + 30 * _DAY, extensions=_SIGNING)
    _refused(pki, leaf, "not valid at", intermediates=(old_ca,))
    assert _validate(pki, leaf, intermediates=(old_ca,), at=pki.now - 100 * _DAY).leaf == leaf


def test_validation_before_the_root_existed(pki: TestPKI) -> None:
    _refused(pki, pki.expired, "not valid at", at=pki.now - 800 * _DAY)


@pytest.mark.parametrize("extensions", [
    Extensions(ca=False, key_usage=frozenset({"key_cert_sign"})),
    Extensions(key_usage=frozenset({"key_cert_sign"})),  # no basicConstraints at all
    Extensions(),
])
def test_issuer_that_is_not_a_ca(pki: TestPKI, extensions: Extensions) -> None:
    not_ca, not_ca_key = _ca(pki, "CN=not a CA,C=CN", issuer=pki.issuing,
                             issuer_key=pki.issuing_key, extensions=extensions)
    leaf = _under(pki, not_ca, not_ca_key)
    _refused(pki, leaf, "not a CA", intermediates=(pki.issuing, not_ca))


def test_leaf_signing_a_certificate_is_refused(pki: TestPKI) -> None:
    leaf = _under(pki, pki.doctor, pki.doctor_key)
    _refused(pki, leaf, "not a CA", intermediates=(pki.issuing, pki.doctor))


def test_issuer_without_key_cert_sign(pki: TestPKI) -> None:
    crl_only, key = _ca(pki, "CN=CRL signer,C=CN", extensions=Extensions(
        ca=True, key_usage=frozenset({"crl_sign", "digital_signature"})))
    _refused(pki, _under(pki, crl_only, key), "keyCertSign", intermediates=(crl_only,))
    # A CA certificate without any keyUsage is not restricted (RFC 5280 4.2.1.3).
    no_usage, key = _ca(pki, "CN=CA without keyUsage,C=CN", extensions=Extensions(ca=True))
    leaf = _under(pki, no_usage, key)
    assert _validate(pki, leaf, intermediates=(no_usage,)).leaf == leaf


def test_path_length_exceeded(pki: TestPKI) -> None:
    # The issuing CA has pathlen 0: a sub-CA below it may not issue.
    sub, sub_key = _ca(pki, "CN=sub CA,C=CN", issuer=pki.issuing, issuer_key=pki.issuing_key)
    _refused(pki, _under(pki, sub, sub_key), "path length constraint 0",
             intermediates=(pki.issuing, sub))
    # The root has pathlen 1: two CAs under it are one too many, even without their own limit.
    first, first_key = _ca(pki, "CN=first CA,C=CN")
    second, second_key = _ca(pki, "CN=second CA,C=CN", issuer=first, issuer_key=first_key)
    _refused(pki, _under(pki, second, second_key), "path length constraint 1",
             intermediates=(first, second))
    # The same two CAs under the second as anchor are fine.
    leaf = _under(pki, second, second_key)
    assert _validate(pki, leaf, roots=(first,), intermediates=(second,)).root == first


def test_required_eku(pki: TestPKI) -> None:
    assert _validate(pki, pki.doctor, required_eku="email_protection").leaf == pki.doctor
    assert _validate(pki, pki.tsa, required_eku="time_stamping").leaf == pki.tsa
    assert _validate(pki, pki.tls, required_eku="server_auth").leaf == pki.tls
    _refused(pki, pki.doctor, "not valid for time_stamping", required_eku="time_stamping")
    _refused(pki, pki.tsa, "not valid for email_protection", required_eku="email_protection")
    _refused(pki, pki.tls, "not valid for client_auth", required_eku="client_auth")
    # No EKU extension: not restricted.
    plain, _ = issue_leaf(pki, extensions=_SIGNING)
    assert _validate(pki, plain, required_eku="time_stamping").leaf == plain
    # anyExtendedKeyUsage admits everything; a dotted private EKU is matched as such.
    anything, _ = issue_leaf(pki, extensions=Extensions(
        extended_key_usage=("any_extended_key_usage",)))
    assert _validate(pki, anything, required_eku="code_signing").leaf == anything
    private, _ = issue_leaf(pki, extensions=Extensions(extended_key_usage=("2.999.2.1",)))
    assert _validate(pki, private, required_eku="2.999.2.1").leaf == private
    _refused(pki, private, "not valid for", required_eku="email_protection")


def _extension(oid: str, critical: bool) -> asn1_x509.Extension:
    return asn1_x509.Extension({"extn_id": oid, "critical": critical,
                                "extn_value": core.Null().dump()})


def test_unknown_critical_extension_on_the_leaf(pki: TestPKI) -> None:
    critical, _ = issue_leaf(pki, extensions=Extensions(
        key_usage=frozenset({"digital_signature"}), extra=(_extension("2.999.7.1", True),)))
    _refused(pki, critical, "unsupported critical extensions.*2.999.7.1")
    relaxed, _ = issue_leaf(pki, extensions=Extensions(extra=(_extension("2.999.7.1", False),)))
    assert _validate(pki, relaxed).leaf == relaxed


def test_unknown_critical_extension_on_a_ca(pki: TestPKI) -> None:
    constrained = Extensions(ca=True, key_usage=frozenset({"key_cert_sign"}), extra=(
        asn1_x509.Extension({"extn_id": "name_constraints", "critical": True, "extn_value": {
            "permitted_subtrees": [{"base": asn1_x509.GeneralName(
                name="dns_name", value="hospital.test")}]}}),))
    ca, key = _ca(pki, "CN=name-constrained CA,C=CN", extensions=constrained)
    # Name constraints are not implemented, so a critical one is refused, not half-checked.
    _refused(pki, _under(pki, ca, key), "name_constraints", intermediates=(ca,))


def _copy_with_key(cert: Certificate, key: PrivateKey,
                   resign_with: PrivateKey | None = None) -> Certificate:
    """``cert`` with ``key`` as its subject key but every name and key identifier unchanged;
    signed by ``resign_with`` (or keeping the old signature)."""
    tbs = cert.tbs.copy()
    tbs["subject_public_key_info"] = asn1_keys.PublicKeyInfo.load(key.public_key().to_der())
    signature = resign_with.sign(tbs.dump()) if resign_with else bytes(
        cert.asn1["signature_value"])
    return load_certificate(asn1_x509.Certificate({
        "tbs_certificate": tbs, "signature_algorithm": cert.asn1["signature_algorithm"],
        "signature_value": signature}).dump())


def test_forged_chain_is_refused(pki: TestPKI) -> None:
    """An attacker's key, the issuing CA's name and key identifier: a leaf it signs looks like
    the real one to everything but the signature check."""
    attacker = generate_private_key(pki.key_type)
    fake_issuing = _copy_with_key(pki.issuing, attacker)
    assert fake_issuing.subject_key_identifier == pki.issuing.subject_key_identifier
    forged = issue_certificate(subject="CN=张三,OU=内科,O=测试医院,C=CN",
                               public_key=pki.doctor_key.public_key(), signer=attacker,
                               issuer=fake_issuing, not_before=pki.now - _DAY,
                               not_after=pki.now + _DAY, extensions=_SIGNING)
    assert forged.issuer_name == pki.doctor.issuer_name
    assert forged.authority_key_identifier == pki.doctor.authority_key_identifier
    _refused(pki, forged, "does not verify")
    # Offering the fake CA certificate as well does not help: the root never signed it.
    _refused(pki, forged, "does not verify", intermediates=(pki.issuing, fake_issuing))
    # Nor does a fake CA certificate self-signed by the attacker, trusted as nothing.
    self_signed = _copy_with_key(pki.issuing, attacker, resign_with=attacker)
    _refused(pki, forged, "does not verify", intermediates=(self_signed,))


def test_leaf_without_key_identifier_still_needs_the_signature(pki: TestPKI) -> None:
    attacker = generate_private_key(pki.key_type)
    tbs = pki.doctor.tbs.copy()
    tbs["extensions"] = [e for e in pki.doctor.tbs["extensions"]
                         if e["extn_id"].native != "authority_key_identifier"]
    forged = load_certificate(asn1_x509.Certificate({
        "tbs_certificate": tbs, "signature_algorithm": pki.doctor.asn1["signature_algorithm"],
        "signature_value": attacker.sign(tbs.dump())}).dump())
    assert forged.authority_key_identifier is None
    _refused(pki, forged, "does not verify")


def test_many_lookalike_cas_cannot_stall_path_building() -> None:
    """Hostile input: same-named CA certificates under one key, each verifying all the others.
    Without a budget the search tries every ordering of them (12!/4! paths here)."""
    pki = cached_pki("ecdsa-p256")
    key = generate_private_key("ecdsa-p256")
    loop = issue_certificate(subject="CN=loop,C=CN", public_key=key.public_key(), signer=key,
                             not_before=pki.now - _DAY, not_after=pki.now + _DAY, extensions=_CA)
    clones = [issue_certificate(subject="CN=loop,C=CN", public_key=key.public_key(), signer=key,
                                issuer=loop, not_before=pki.now - _DAY, not_after=pki.now + _DAY,
                                extensions=_CA) for _ in range(11)]
    leaf = _under(pki, loop, key)
    started = time.monotonic()
    _refused(pki, leaf, f"gave up after {MAX_SIGNATURE_CHECKS}", intermediates=(loop, *clones))
    assert time.monotonic() - started < 10


def test_lookalikes_before_the_real_issuer_do_not_hide_it(pki: TestPKI) -> None:
    decoys = [_copy_with_key(pki.issuing, generate_private_key("ecdsa-p256")) for _ in range(5)]
    path = _validate(pki, pki.doctor, intermediates=(*decoys, pki.issuing))
    assert path.certificates == (pki.doctor, pki.issuing, pki.root)


def test_names_asn1crypto_cannot_normalise_still_chain() -> None:
    """An unassigned code point makes asn1crypto's RFC 5280 comparison raise; identical
    encodings must still match (and nothing may raise out of path validation)."""
    ca_key = generate_private_key("sm2")
    root = issue_certificate(subject="CN=\u0378 root", public_key=ca_key.public_key(),
                             signer=ca_key, days=30, extensions=Extensions(ca=True))
    leaf_key = generate_private_key("sm2")
    leaf = issue_certificate(subject="CN=leaf", public_key=leaf_key.public_key(), signer=ca_key,
                             issuer=root, days=3)
    assert root.is_self_issued
    assert validate_path(leaf, trust_roots=[root]).root == root

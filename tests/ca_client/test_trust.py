"""ca_client.trust: the trust store, path validation on pyhanko-certvalidator with SM2 signatures
(several roots, cross-certificates, validation in the past) and revocation through CRL and OCSP
served by a loopback HTTP server (the built-in CA's CRLs and OCSP responder), with the cache,
the grace period, hard-fail / soft-fail and the refusal of a replayed CRL."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import functools
import http.server
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from pyhanko_certvalidator.sig_validate import DefaultSignatureValidator

from ca_client import (
    BuiltinCa,
    CaUrls,
    Hierarchy,
    MemoryRepository,
    OcspResponder,
    PathInvalid,
    RevocationCache,
    RevocationMode,
    RevocationPolicy,
    SM2SignatureValidator,
    SubjectInfo,
    TrustStore,
    Usage,
    ValidationResult,
    generate_hierarchy,
    validate,
)
from signcore.keys import generate_private_key
from signcore.x509 import Certificate, Extensions, issue_certificate, load_certificate
from tests.support.loopback_http import serve_loopback

ORG_A, ORG_B = "甲医院", "乙医院"
DOCTOR = SubjectInfo(common_name="张三", organization=ORG_B, department="内科",
                     unique_id="U1A2B3C4D5E6F708")
KEY_SPECS = {"sm2": "sm2", "rsa": "rsa2048"}
DAY = dt.timedelta(days=1)
#: The hierarchies start two years back, so that validation in the past has valid CAs.
START = dt.datetime.now(dt.UTC).replace(microsecond=0) - 730 * DAY
SIGNING = Usage(frozenset({"digital_signature", "non_repudiation"}),
                frozenset({"email_protection"}))
CA_USAGE = frozenset({"key_cert_sign", "crl_sign"})
HARD = RevocationPolicy(mode=RevocationMode.HARD_FAIL, grace=3 * DAY)
SOFT = RevocationPolicy(mode=RevocationMode.SOFT_FAIL, grace=3 * DAY)
OFF = RevocationPolicy(mode=RevocationMode.OFF)


@functools.cache
def _hierarchy(algorithm: str, organization: str) -> Hierarchy:
    return generate_hierarchy(algorithm, organization, now=START)


class Clock:
    """Real time (whole seconds) shifted by ``offset``: a CA's or the relying party's clock."""

    def __init__(self) -> None:
        self.offset = dt.timedelta(0)

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC).replace(microsecond=0) + self.offset


def _ca(hierarchy: Hierarchy, urls: CaUrls | None = None,
        clock: Clock | None = None) -> BuiltinCa:
    return BuiltinCa(f"{hierarchy.algorithm}-{hierarchy.root.serial_number:x}",
                     hierarchy.issuing, hierarchy.issuing_key, MemoryRepository(),
                     chain=[hierarchy.root], urls=urls, clock=clock or Clock())


def _leaf(ca: BuiltinCa, subject: SubjectInfo = DOCTOR) -> Certificate:
    key = generate_private_key(KEY_SPECS[ca.algorithm])
    return ca.issue("doctor-signing", subject, public_key=key.public_key()).certificate


def _store(hierarchy: Hierarchy) -> TrustStore:
    return TrustStore([hierarchy.root], [hierarchy.issuing])


def _refused(reason: str, certificate: Certificate, **kwargs: Any) -> PathInvalid:
    with pytest.raises(PathInvalid) as caught:
        validate(certificate, **kwargs)
    assert caught.value.reason == reason, caught.value
    return caught.value


# ---------------------------------------------------------------------------------------------
# Trust store and paths


@pytest.fixture(params=["sm2", "rsa"])
def algorithm(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_chain_validates(algorithm: str) -> None:
    h = _hierarchy(algorithm, ORG_B)
    leaf = _leaf(_ca(h))
    result = validate(leaf, trust=_store(h), usage=SIGNING)
    assert result.path == (leaf, h.issuing, h.root)
    assert result.certificate == leaf and result.anchor == h.root
    assert [c.status for c in result.revocation] == ["not-declared", "not-declared"]
    assert result.revocation_status == "not-declared" and result.revocation_checked
    assert not result.warnings
    # The issuing CA may also come with the signature instead of from the store.
    result = validate(leaf, trust=TrustStore([h.root]), intermediates=[h.issuing])
    assert result.path == (leaf, h.issuing, h.root)


def test_store_holds_several_roots_sm2_and_rsa() -> None:
    sm2, rsa = _hierarchy("sm2", ORG_B), _hierarchy("rsa", ORG_B)
    store = TrustStore.from_pem(sm2.root.to_pem() + rsa.root.to_pem(),
                                sm2.issuing.to_pem() + rsa.issuing.to_pem())
    assert set(store.anchors) == {sm2.root, rsa.root}
    assert set(store.certificates) == {sm2.issuing, rsa.issuing}
    assert len(store) == 4 and sm2.root in store and store.is_anchor(rsa.root)
    for h in (sm2, rsa):
        assert validate(_leaf(_ca(h)), trust=store).anchor == h.root
    assert store.remove(rsa.root) and not store.remove(rsa.root)
    _refused("untrusted", _leaf(_ca(rsa)), trust=store)
    store.add_anchor(rsa.issuing)  # an issuing CA may be an anchor itself: it moves over
    assert rsa.issuing not in store.certificates and store.is_anchor(rsa.issuing)
    assert validate(_leaf(_ca(rsa)), trust=store).path[-1] == rsa.issuing
    with pytest.raises(ValueError, match="CA certificate"):
        store.add_anchor(_leaf(_ca(sm2)))
    with pytest.raises(ValueError, match="CA certificate"):
        store.load_anchors(_leaf(_ca(sm2)).to_pem())


def test_sm2_needs_the_sm2_signature_validator() -> None:
    """The hook is what makes SM2 work: pyhanko's default validator refuses the same chain."""
    h = _hierarchy("sm2", ORG_B)
    leaf = _leaf(_ca(h))
    validate(leaf, trust=_store(h))
    error = _refused("bad-signature", leaf, trust=_store(h),
                     signature_validator=DefaultSignatureValidator())
    assert error.subject == leaf.subject


def test_tampered_certificate_is_refused(algorithm: str) -> None:
    h = _hierarchy(algorithm, ORG_B)
    leaf = _leaf(_ca(h))
    original, forged = "张三".encode(), "李四".encode()
    assert leaf.der.count(original) == 1
    tampered = load_certificate(leaf.der.replace(original, forged))
    error = _refused("bad-signature", tampered, trust=_store(h))
    assert "signature" in str(error)


def test_expired_now_but_valid_at_signing_time(algorithm: str) -> None:
    h = _hierarchy(algorithm, ORG_B)
    now = dt.datetime.now(dt.UTC)
    key = generate_private_key(KEY_SPECS[algorithm])
    expired = issue_certificate(
        subject="CN=李四,O=乙医院,C=CN", public_key=key.public_key(), signer=h.issuing_key,
        issuer=h.issuing, not_before=now - 400 * DAY, not_after=now - 35 * DAY,
        extensions=Extensions(ca=False, key_usage=SIGNING.key_usage,
                              extended_key_usage=("email_protection",)))
    error = _refused("expired", expired, trust=_store(h))
    assert "expired" in str(error).lower()
    signing_time = now - 100 * DAY
    result = validate(expired, trust=_store(h), at=signing_time, usage=SIGNING)
    assert result.path == (expired, h.issuing, h.root) and result.at == signing_time
    _refused("not-yet-valid", expired, trust=_store(h), at=now - 500 * DAY)
    with pytest.raises(ValueError, match="naive"):
        validate(expired, trust=_store(h), at=signing_time.replace(tzinfo=None))


def test_untrusted_root_is_refused(algorithm: str) -> None:
    a, b = _hierarchy(algorithm, ORG_A), _hierarchy(algorithm, ORG_B)
    leaf = _leaf(_ca(b))
    error = _refused("untrusted", leaf, trust=TrustStore([a.root], [b.issuing]))
    assert leaf.subject in str(error)
    _refused("untrusted", leaf, trust=TrustStore())
    # B's self-signed root among the known certificates is not trusted by being there.
    _refused("untrusted", leaf, trust=TrustStore([a.root], [b.root, b.issuing]))


def test_wrong_usage_is_refused(algorithm: str) -> None:
    h = _hierarchy(algorithm, ORG_B)
    leaf = _leaf(_ca(h))
    error = _refused("usage", leaf, trust=_store(h),
                     usage=Usage(extended_key_usage=frozenset({"time_stamping"})))
    assert "time stamping" in str(error)
    _refused("usage", leaf, trust=_store(h),
             usage=Usage(key_usage=frozenset({"key_encipherment"})))
    validate(leaf, trust=_store(h), usage=Usage(key_usage=frozenset({"non_repudiation"})))


# ---------------------------------------------------------------------------------------------
# Cross-certification


def _cross_certificate(a: Hierarchy, b: Hierarchy, path_length: int = 1) -> Certificate:
    """CA-A certifies CA-B's root key and name."""
    return issue_certificate(
        subject=b.root.subject_name, public_key=b.root_key.public_key(), signer=a.root_key,
        issuer=a.root, not_before=START, days=3650,
        extensions=Extensions(ca=True, path_length=path_length, key_usage=CA_USAGE))


def test_cross_certified_root(algorithm: str) -> None:
    """A certificate issued under CA-B validates for a relying party that trusts only CA-A,
    through A's cross-certificate for B's root; not without it."""
    a, b = _hierarchy(algorithm, ORG_A), _hierarchy(algorithm, ORG_B)
    cross = _cross_certificate(a, b)
    leaf = _leaf(_ca(b))
    store = TrustStore([a.root], [cross, b.issuing])
    result = validate(leaf, trust=store, usage=SIGNING)
    assert result.path == (leaf, b.issuing, cross, a.root)
    # B's self-signed root is known too: path building tries it, and still finds the way.
    store.add_certificate(b.root)
    assert validate(leaf, trust=store).path == (leaf, b.issuing, cross, a.root)
    # The party that trusts B directly gets the short path.
    assert validate(leaf, trust=_store(b)).path == (leaf, b.issuing, b.root)
    # Without the cross-certificate there is no way from A to B.
    assert store.remove(cross)
    _refused("untrusted", leaf, trust=store)
    # A cross-certificate extends trust only as far as its issuer said: pathlen 0 does not
    # cover B's issuing CA.
    _refused("invalid", leaf, trust=TrustStore([a.root], [_cross_certificate(a, b, 0),
                                                          b.issuing]))


# ---------------------------------------------------------------------------------------------
# Revocation over HTTP


class PkiServer:
    """A loopback HTTP server for CRLs (GET <path>) and an OCSP responder (POST).  ``modes``
    per kind: ``ok``, ``error`` (HTTP 503) or ``hang`` (answers after ``hang_seconds``)."""

    def __init__(self) -> None:
        self.crls: dict[str, bytes] = {}
        self.responder = OcspResponder([])
        self.modes = {"crl": "ok", "ocsp": "ok"}
        self.hang_seconds = 2.0
        self.requests: list[tuple[str, str]] = []
        state = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                state.requests.append(("GET", self.path))
                if not self._misbehave("crl"):
                    body = state.crls.get(self.path)
                    self._send(200 if body else 404, body or b"", "application/pkix-crl")

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                state.requests.append(("POST", self.path))
                if not self._misbehave("ocsp"):
                    self._send(200, state.responder.respond(body), "application/ocsp-response")

            def _misbehave(self, kind: str) -> bool:
                mode = state.modes[kind]
                if mode == "hang":
                    time.sleep(state.hang_seconds)
                if mode in ("hang", "error"):
                    self._send(503, b"busy", "text/plain")
                    return True
                return False

            def _send(self, status: int, body: bytes, media: str) -> None:
                with contextlib.suppress(OSError):  # the client gave up (timeout, size)
                    self.send_response(status)
                    self.send_header("Content-Type", media)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._serving = contextlib.ExitStack()
        # A short poll: a test that stops the server to play an outage waits less for it.
        self.base = self._serving.enter_context(serve_loopback(Handler, poll_interval=0.05))

    def stop(self) -> None:
        """Stop serving: connections are refused from now on.  A second call (the fixture's,
        after a test played an outage) does nothing: the stack is empty by then."""
        self._serving.close()


@pytest.fixture
def server() -> Iterator[PkiServer]:
    served = PkiServer()
    try:
        yield served
    finally:
        served.stop()


@dataclasses.dataclass
class Online:
    """A built-in CA whose certificates point at the loopback server, and a relying party."""

    hierarchy: Hierarchy
    ca: BuiltinCa
    ca_clock: Clock
    server: PkiServer
    clock: Clock  # the relying party's
    cache: RevocationCache
    crl_path: str
    crl_number: int = 0

    @property
    def trust(self) -> TrustStore:
        return _store(self.hierarchy)

    @property
    def crl_url(self) -> str:
        return self.server.base + self.crl_path

    def publish_crl(self) -> bytes:
        self.crl_number += 1
        der = self.ca.crl(self.crl_number).der
        self.server.crls[self.crl_path] = der
        return der

    def new_cache(self, **kwargs: Any) -> RevocationCache:
        options: dict[str, Any] = {"connect_timeout": 1.0, "read_timeout": 1.0,
                                   "clock": self.clock}
        return RevocationCache(**(options | kwargs))

    def validate(self, leaf: Certificate, policy: RevocationPolicy = HARD,
                 cache: RevocationCache | None = None, **kwargs: Any) -> ValidationResult:
        return validate(leaf, trust=kwargs.pop("trust", self.trust), revocation=policy,
                        cache=cache or self.cache, **kwargs)

    def refused(self, reason: str, leaf: Certificate, policy: RevocationPolicy = HARD,
                cache: RevocationCache | None = None) -> PathInvalid:
        return _refused(reason, leaf, trust=self.trust, revocation=policy,
                        cache=cache or self.cache)


def _online(server: PkiServer, algorithm: str, organization: str = ORG_B) -> Online:
    hierarchy = _hierarchy(algorithm, organization)
    crl_path = f"/crl/{algorithm}-{len(server.crls)}.crl"
    urls = CaUrls(crl=server.base + crl_path, ocsp=server.base + "/ocsp")
    ca_clock, clock = Clock(), Clock()
    ca = _ca(hierarchy, urls, ca_clock)
    server.responder = OcspResponder([ca])
    online = Online(hierarchy, ca, ca_clock, server, clock, RevocationCache(), crl_path)
    online.cache = online.new_cache()
    online.publish_crl()
    return online


@pytest.fixture
def online(server: PkiServer, algorithm: str) -> Online:
    return _online(server, algorithm)


@pytest.fixture
def sm2_online(server: PkiServer) -> Online:
    return _online(server, "sm2")


def test_good_certificate_by_ocsp_and_by_crl(online: Online) -> None:
    leaf = _leaf(online.ca)
    result = online.validate(leaf, usage=SIGNING)
    first = result.revocation[0]
    assert (first.status, first.method, first.source) == ("ocsp", "ocsp", "fetched")
    assert first.url == online.server.base + "/ocsp" and first.data and first.checked
    assert first.this_update is not None and first.next_update is not None
    assert result.revocation[1].status == "not-declared"  # the issuing CA names no source
    assert result.revocation_status == "ocsp" and result.revocation_checked
    assert not result.warnings
    by_crl = online.validate(leaf, dataclasses.replace(HARD, prefer="crl"))
    assert (by_crl.revocation[0].status, by_crl.revocation[0].url) == ("crl", online.crl_url)
    # Both are cached now: no more requests while they are fresh.
    before = len(online.server.requests)
    again = online.validate(leaf)
    assert again.revocation[0].source == "cache" and len(online.server.requests) == before


def test_revoked_certificate_is_refused(online: Online) -> None:
    leaf = _leaf(online.ca)
    online.ca.revoke(leaf.serial_number, "key_compromise")
    online.publish_crl()
    for prefer in ("ocsp", "crl"):
        for mode in RevocationMode.HARD_FAIL, RevocationMode.SOFT_FAIL:
            policy = RevocationPolicy(mode=mode, prefer=prefer)
            error = online.refused("revoked", leaf, policy, cache=online.new_cache())
            assert error.revocation_reason == "key_compromise"
            assert error.revoked_at is not None and error.subject == leaf.subject
            assert "revoked" in str(error) and prefer.upper() in str(error)
    # Revoked after the signing time: a signature made before still validates (by OCSP and by
    # CRL); one made after does not.
    before = online.clock() - dt.timedelta(minutes=1)
    for prefer in ("ocsp", "crl"):
        policy = dataclasses.replace(HARD, prefer=prefer)
        result = online.validate(leaf, policy, at=before, cache=online.new_cache())
        assert result.revocation_status == prefer and result.at == before
        check = result.revocation[0]
        assert check.revocation_reason == "key_compromise" and check.revoked_at is not None
        assert check.revoked_at > before and "after the validation time" in result.warnings[0]
        after = online.clock() + dt.timedelta(minutes=1)
        error = _refused("revoked", leaf, trust=online.trust, at=after, revocation=policy,
                         cache=online.new_cache())
        assert error.revocation_reason == "key_compromise"
    # Revocation is not checked when the policy says so.
    assert online.validate(leaf, OFF).revocation_status == "off"


def test_cached_answer_is_used_until_its_next_update(sm2_online: Online) -> None:
    online = sm2_online
    leaf = _leaf(online.ca)
    online.validate(leaf)
    online.ca.revoke(leaf.serial_number, "superseded")
    # The cached "good" stands until its nextUpdate (the built-in CA's OCSP answers: 1 minute).
    assert online.validate(leaf).revocation[0].source == "cache"
    online.clock.offset = online.ca_clock.offset = dt.timedelta(minutes=2)
    assert online.refused("revoked", leaf).revocation_reason == "superseded"


def test_responder_down_with_fresh_cache(sm2_online: Online) -> None:
    online = sm2_online
    leaf = _leaf(online.ca)
    online.validate(leaf)
    online.server.stop()
    result = online.validate(leaf)
    assert (result.revocation[0].status, result.revocation[0].source) == ("ocsp", "cache")
    assert not result.warnings


def test_responder_down_with_stale_cache_within_grace(sm2_online: Online) -> None:
    online = sm2_online
    leaf = _leaf(online.ca)
    online.validate(leaf)
    online.server.stop()
    online.clock.offset = 2 * DAY  # the cached answer expired about two days ago
    result = online.validate(leaf, HARD)  # grace: three days
    check = result.revocation[0]
    assert (check.status, check.method, check.source) == ("cached-stale", "ocsp", "stale-cache")
    assert check.stale and check.checked and result.revocation_checked
    assert result.revocation_status == "cached-stale"
    assert any("refused the connection" in p for p in check.problems)
    assert result.warnings and "stale" in result.warnings[0]


def test_responder_down_beyond_grace(sm2_online: Online) -> None:
    online = sm2_online
    leaf = _leaf(online.ca)
    online.validate(leaf)
    online.server.stop()
    online.clock.offset = 5 * DAY  # past nextUpdate + grace (three days)
    error = online.refused("revocation-unknown", leaf, HARD)
    assert leaf.subject in str(error) and "refused the connection" in str(error)
    result = online.validate(leaf, SOFT)
    assert result.revocation[0].status == "unknown" and not result.revocation[0].checked
    assert result.revocation_status == "unknown" and not result.revocation_checked
    assert any("unknown" in w for w in result.warnings)


def test_revoked_and_stale_is_still_revoked(sm2_online: Online) -> None:
    online = sm2_online
    leaf = _leaf(online.ca)
    online.ca.revoke(leaf.serial_number, "key_compromise")
    online.refused("revoked", leaf)
    online.server.stop()
    online.clock.offset = 2 * DAY
    for policy in (HARD, SOFT):
        error = online.refused("revoked", leaf, policy)
        assert error.revocation_reason == "key_compromise"


def test_no_cache_and_no_responder(sm2_online: Online) -> None:
    online = sm2_online
    leaf = _leaf(online.ca)
    online.server.modes.update(crl="error", ocsp="error")
    error = online.refused("revocation-unknown", leaf)
    assert "HTTP 503" in str(error)
    result = online.validate(leaf, SOFT, cache=online.new_cache())
    assert result.revocation_status == "unknown" and result.warnings


def test_slow_responder_times_out_once(sm2_online: Online) -> None:
    online = sm2_online
    leaf = _leaf(online.ca)
    online.server.modes.update(crl="hang", ocsp="hang")
    cache = online.new_cache(connect_timeout=0.5, read_timeout=0.3)
    started = time.monotonic()
    error = online.refused("revocation-unknown", leaf, cache=cache)
    assert "did not answer in time" in str(error)
    assert time.monotonic() - started < online.server.hang_seconds + 1
    # After the failure the URLs are left alone for a while: the next validation is quick.
    requests = len(online.server.requests)
    started = time.monotonic()
    error = online.refused("revocation-unknown", leaf, cache=cache)
    assert "not retried before" in str(error)
    assert time.monotonic() - started < 0.5 and len(online.server.requests) == requests


def test_oversize_crl_is_refused(sm2_online: Online) -> None:
    online = sm2_online
    leaf = _leaf(online.ca)
    online.server.modes["ocsp"] = "error"
    cache = online.new_cache(max_crl_bytes=64)
    error = online.refused("revocation-unknown", leaf, cache=cache)
    assert "over 64 bytes" in str(error)


def test_only_the_certificates_http_urls_are_fetched(sm2_online: Online) -> None:
    online = sm2_online
    h = online.hierarchy
    key = generate_private_key("sm2")
    leaf = issue_certificate(
        subject="CN=王五,O=乙医院,C=CN", public_key=key.public_key(), signer=h.issuing_key,
        issuer=h.issuing, not_before=START, days=3650,
        extensions=Extensions(ca=False, key_usage=SIGNING.key_usage,
                              crl_urls=("file:///etc/passwd",),
                              ocsp_urls=("ldap://ldap.example.test/cn=ocsp",)))
    error = online.refused("revocation-unknown", leaf)
    assert "only http and https URLs are fetched" in str(error)
    assert online.server.requests == []


def test_replayed_old_crl_does_not_replace_the_newer_one(sm2_online: Online) -> None:
    online = sm2_online
    online.server.modes["ocsp"] = "error"  # CRLs only
    by_crl = dataclasses.replace(HARD, prefer="crl")
    leaf = _leaf(online.ca)
    online.ca_clock.offset = -dt.timedelta(hours=1)
    old_crl = online.publish_crl()  # does not list the leaf
    online.ca_clock.offset = dt.timedelta(0)
    online.ca.revoke(leaf.serial_number, "key_compromise")
    new_crl = online.publish_crl()
    online.refused("revoked", leaf, by_crl)
    # An attacker now serves the old CRL; the relying party's cached one is past nextUpdate.
    online.server.crls[online.crl_path] = old_crl
    online.clock.offset = 2 * DAY
    error = online.refused("revoked", leaf, by_crl)
    assert error.revocation_reason == "key_compromise"
    check = online.cache.check(leaf, online.hierarchy.issuing, grace=3 * DAY, prefer="crl")
    assert check.status == "cached-stale" and check.data == new_crl
    # Offered directly, the old CRL is refused the same way.
    held = online.cache.offer_crl(online.crl_url, old_crl, issuer=online.hierarchy.issuing)
    assert held.der == new_crl


def test_replayed_crl_problem_is_reported(sm2_online: Online) -> None:
    online = sm2_online
    online.server.modes["ocsp"] = "error"
    leaf = _leaf(online.ca)
    online.ca_clock.offset = -dt.timedelta(hours=1)
    old_crl = online.publish_crl()
    online.ca_clock.offset = dt.timedelta(0)
    online.publish_crl()
    cache = online.new_cache(retry_after=dt.timedelta(0))
    issuing = online.hierarchy.issuing
    assert cache.check(leaf, issuing, prefer="crl").status == "crl"
    online.server.crls[online.crl_path] = old_crl
    online.clock.offset = 2 * DAY
    check = cache.check(leaf, issuing, grace=3 * DAY, prefer="crl")
    assert check.status == "cached-stale"
    assert any("older than the one already cached" in p for p in check.problems)


def test_offered_crl_must_be_signed_by_the_issuer(sm2_online: Online) -> None:
    online = sm2_online
    stranger = _hierarchy("sm2", ORG_A)
    foreign = _ca(stranger).crl(1).der
    with pytest.raises(ValueError, match="issued by"):
        online.cache.offer_crl(online.crl_url, foreign, issuer=online.hierarchy.issuing)
    with pytest.raises(ValueError, match="does not decode"):
        online.cache.offer_crl(online.crl_url, b"\x30\x03junk", issuer=online.hierarchy.issuing)


class DictStore:
    """A RevocationStore as the appliance's database would be."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], bytes] = {}

    def get(self, kind: str, key: str) -> bytes | None:
        return self.rows.get((kind, key))

    def put(self, kind: str, key: str, der: bytes) -> None:
        self.rows[(kind, key)] = der


def test_persisted_revocation_data_survives_a_restart(sm2_online: Online) -> None:
    online = sm2_online
    leaf = _leaf(online.ca)
    store = DictStore()
    online.validate(leaf, cache=online.new_cache(store=store))
    assert [kind for kind, _ in store.rows] == ["ocsp"]
    (key,) = [key for _, key in store.rows]
    assert key.startswith(online.server.base + "/ocsp#") and key.endswith(
        f":{leaf.serial_number:x}")
    online.server.stop()
    restarted = online.new_cache(store=store)
    result = online.validate(leaf, cache=restarted)
    assert (result.revocation[0].status, result.revocation[0].source) == ("ocsp", "cache")
    # What comes back from the store is verified again: garbage is not used.
    store.rows[("ocsp", key)] = b"\x30\x00"
    online.refused("revocation-unknown", leaf, cache=online.new_cache(store=store))


def test_cross_certified_leaf_with_revocation(server: PkiServer, algorithm: str) -> None:
    online = _online(server, algorithm, ORG_B)
    a, b = _hierarchy(algorithm, ORG_A), online.hierarchy
    cross = _cross_certificate(a, b)
    leaf = _leaf(online.ca)
    trust = TrustStore([a.root], [cross, b.issuing])
    result = online.validate(leaf, trust=trust)
    assert result.path == (leaf, b.issuing, cross, a.root)
    assert [c.status for c in result.revocation] == ["ocsp", "not-declared", "not-declared"]
    online.ca.revoke(leaf.serial_number, "affiliation_changed")
    error = _refused("revoked", leaf, trust=trust, revocation=HARD, cache=online.new_cache())
    assert error.revocation_reason == "affiliation_changed"


def test_ocsp_unknown_falls_back_to_the_crl(sm2_online: Online) -> None:
    """The responder does not know a certificate the CA did not record: the CRL decides."""
    online = sm2_online
    h = online.hierarchy
    key = generate_private_key("sm2")
    stranger = issue_certificate(
        subject="CN=王五,O=乙医院,C=CN", public_key=key.public_key(), signer=h.issuing_key,
        issuer=h.issuing, not_before=START, days=3650,
        extensions=Extensions(ca=False, key_usage=SIGNING.key_usage, crl_urls=(online.crl_url,),
                              ocsp_urls=(online.server.base + "/ocsp",)))
    check = online.validate(stranger).revocation[0]
    assert (check.status, check.url) == ("crl", online.crl_url)
    assert any("does not know the certificate" in p for p in check.problems)


def test_sm2_signature_validator_directly() -> None:
    sm2, rsa = _hierarchy("sm2", ORG_B), _hierarchy("rsa", ORG_B)
    for h in (sm2, rsa):
        cert = h.issuing.asn1
        args = (cert["signature_value"].native, cert["tbs_certificate"].dump(),
                h.root.asn1.public_key, cert["signature_algorithm"])
        SM2SignatureValidator().validate_signature(*args)
        with pytest.raises(InvalidSignature):
            SM2SignatureValidator().validate_signature(args[0], args[1] + b"x", *args[2:])
    cert = sm2.issuing.asn1
    with pytest.raises(InvalidSignature):  # another signer ID: another Z, another digest
        SM2SignatureValidator(b"another-id").validate_signature(
            cert["signature_value"].native, cert["tbs_certificate"].dump(),
            sm2.root.asn1.public_key, cert["signature_algorithm"])
    with pytest.raises(InvalidSignature):  # an SM2 signature checked with an RSA key
        SM2SignatureValidator().validate_signature(
            cert["signature_value"].native, cert["tbs_certificate"].dump(),
            rsa.root.asn1.public_key, cert["signature_algorithm"])


def test_validate_refuses_to_run_inside_an_event_loop() -> None:
    h = _hierarchy("sm2", ORG_B)
    leaf = _leaf(_ca(h))

    async def inside() -> None:
        validate(leaf, trust=_store(h))

    with pytest.raises(RuntimeError, match="worker thread"):
        asyncio.run(inside())


def test_policy_is_checked() -> None:
    with pytest.raises(ValueError, match="negative"):
        RevocationPolicy(grace=-DAY)
    with pytest.raises(ValueError, match="prefer"):
        RevocationPolicy(prefer="ldap")
    with pytest.raises(ValueError, match="positive"):
        RevocationCache(read_timeout=0)

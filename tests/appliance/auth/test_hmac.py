"""Signed application requests: the algorithm (known answers, recomputed independently), and
the server's refusals, each a 401 problem with its code that changes nothing."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import falcon
import falcon.testing
import pytest
from sqlalchemy import func, select

from appliance.api import problems
from appliance.api.access import Access, AccessControl, BodyLimit, scopes
from appliance.api.auth import HmacAuthenticator
from appliance.api.hmac_signing import (
    NONCE_HEADER,
    TIMESTAMP_HEADER,
    Algorithm,
    AuthMalformed,
    canonical_path,
    canonical_query,
    parse_authorization,
    sign_request,
    string_to_sign,
)
from appliance.services.applications import ApplicationService, Replay, decode_secret
from appliance.storage import Database, schema
from signcore.hashes import SM3
from tests.appliance.auth.conftest import SECURITY, Site

# -- the algorithm -----------------------------------------------------------------------------


def test_canonical_query_sorts_and_encodes() -> None:
    assert canonical_query("") == ""
    assert canonical_query("b=2&a=1&a=0") == "a=0&a=1&b=2"
    assert canonical_query("x=a+b&y=%7e&z&&w=") == "w=&x=a%20b&y=~&z="
    assert canonical_query("q=%E5%A7%93%E5%90%8D") == canonical_query({"q": "姓名"})
    assert canonical_query([("q", "a/b?c=d")]) == "q=a%2Fb%3Fc%3Dd"
    # Sorted by the encoded form, so every client sorts bytes the same way.
    assert canonical_query({"b": "1", "_": "2", "B": "3"}) == "B=3&_=2&b=1"


def test_canonical_path_encodes_rfc3986() -> None:
    assert canonical_path("/api/v1/whoami") == "/api/v1/whoami"
    assert canonical_path("/files/病历 1.pdf") == "/files/%E7%97%85%E5%8E%86%201.pdf"
    assert canonical_path("") == "/"


def test_string_to_sign_known_answer() -> None:
    body = b'{"a":1}'
    message = string_to_sign(Algorithm.SHA256, method="post", decoded_path="/api/v1/x",
                             query="b=2&a=1", body=body, timestamp="1764121200",
                             nonce="n" * 16)
    assert message == ("POST\n/api/v1/x\na=1&b=2\n" + hashlib.sha256(body).hexdigest()
                       + "\n1764121200\n" + "n" * 16).encode()


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_sign_request_matches_an_independent_hmac(algorithm: Algorithm) -> None:
    secret = bytes(range(32))
    headers = sign_request("PUT", "/api/v1/x?z=1&a=%20", key_id="app_0123456789abcdef",
                           secret=base64.urlsafe_b64encode(secret).rstrip(b"=").decode(),
                           body=b"payload", algorithm=algorithm, timestamp=1764121200,
                           nonce="abcdefghijklmnop")
    digestmod: Any = SM3 if algorithm is Algorithm.SM3 else hashlib.sha256
    body_hash = digestmod(b"payload").hexdigest()
    message = f"PUT\n/api/v1/x\na=%20&z=1\n{body_hash}\n1764121200\nabcdefghijklmnop".encode()
    expected = base64.b64encode(hmac.new(secret, message, digestmod).digest()).decode()
    assert headers == {
        "Authorization": f"{algorithm.value} keyId=app_0123456789abcdef, signature={expected}",
        TIMESTAMP_HEADER: "1764121200", NONCE_HEADER: "abcdefghijklmnop"}


def test_parse_authorization() -> None:
    sig = base64.b64encode(b"\x01" * 32).decode()
    assert parse_authorization(f'medsign-hmac-sha256 keyId="app_1",signature="{sig}"') == (
        Algorithm.SHA256, "app_1", b"\x01" * 32)
    for header in ("MEDSIGN-HMAC-MD5 keyId=a, signature=AA==",
                   "MEDSIGN-HMAC-SM3 keyId=a",
                   f"MEDSIGN-HMAC-SM3 keyId=a, keyId=b, signature={sig}",
                   "MEDSIGN-HMAC-SM3 keyId=a, signature=not*base64",
                   f"MEDSIGN-HMAC-SM3 keyId=a b, signature={sig}",
                   f"MEDSIGN-HMAC-SM3 keyId=a, signature={sig}, extra=1"):
        with pytest.raises(AuthMalformed):
            parse_authorization(header)


# -- the server --------------------------------------------------------------------------------


class Echo:
    """A signed POST whose body the resource reads after the authenticator did."""

    access: ClassVar[dict[str, Access]] = {"POST": scopes("verify"), "GET": scopes("verify")}

    def __init__(self) -> None:
        self.calls: list[Any] = []

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.calls.append(req.get_media())
        resp.media = {"echo": self.calls[-1], "raw": req.context.raw_body.decode()}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.calls.append(dict(req.params))
        resp.media = {"params": self.calls[-1]}


class Harness:
    def __init__(self, database: Database, apps: ApplicationService) -> None:
        self.database, self.apps, self.echo = database, apps, Echo()
        middleware: list[Any] = [BodyLimit(1 << 20), AccessControl(
            [HmacAuthenticator(apps, SECURITY.request_max_skew_seconds)])]
        app = falcon.App(middleware=middleware)
        problems.install(app)
        app.add_route("/echo", self.echo)
        self.client = falcon.testing.TestClient(app)
        credential, secret = apps.create(None, name="HIS", scopes="verify sign:request")
        self.key_id, self.secret, self.app_id = credential.key_id, secret, credential.id

    def headers(self, method: str, target: str, body: bytes = b"", **kw: Any) -> dict[str, str]:
        signed = sign_request(method, target, key_id=kw.pop("key_id", self.key_id),
                              secret=kw.pop("secret", self.secret), body=body, **kw)
        return {"Content-Type": "application/json", **signed}

    def send(self, method: str, target: str, body: bytes, headers: dict[str, str]
             ) -> falcon.testing.Result:
        path, _, query = target.partition("?")
        return self.client.simulate_request(method, path, query_string=query or None,
                                            body=body, headers=headers)

    def nonces(self) -> int:
        with self.database.transaction() as conn:
            return int(conn.execute(select(func.count()).select_from(schema.request_nonces)
                                    ).scalar_one())


@pytest.fixture
def harness(database: Database, apps: ApplicationService) -> Iterator[Harness]:
    yield Harness(database, apps)


BODY = json.dumps({"prescription": "处方 1", "amount": 3}, ensure_ascii=False).encode()


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_a_valid_signed_post_reaches_the_resource_with_its_body(harness: Harness,
                                                                algorithm: Algorithm) -> None:
    headers = harness.headers("POST", "/echo?b=2&a=1", BODY, algorithm=algorithm)
    result = harness.send("POST", "/echo?b=2&a=1", BODY, headers)
    assert result.status_code == 200, result.text
    assert result.json["echo"] == {"prescription": "处方 1", "amount": 3}
    assert result.json["raw"] == BODY.decode()
    assert harness.nonces() == 1


def test_a_signed_get_with_an_encoded_query(harness: Harness) -> None:
    target = "/echo?name=%E5%BC%A0%E4%B8%89&dept=a+b&empty="
    result = harness.send("GET", target, b"", harness.headers("GET", target))
    assert result.status_code == 200, result.text
    assert result.json["params"]["name"] == "张三"


def _refused(harness: Harness, result: falcon.testing.Result, code: str,
             nonces_before: int) -> None:
    assert result.status_code == 401, result.text
    assert result.headers["content-type"] == "application/problem+json"
    assert result.json["code"] == code
    assert harness.echo.calls == []
    assert harness.nonces() == nonces_before


def test_wrong_signature(harness: Harness) -> None:
    headers = harness.headers("POST", "/echo", BODY)
    algo, rest = headers["Authorization"].split(" ", 1)
    key_part, sig_part = rest.split(", ")
    sig = bytearray(base64.b64decode(sig_part.removeprefix("signature=")))
    sig[0] ^= 1
    headers["Authorization"] = f"{algo} {key_part}, signature={base64.b64encode(sig).decode()}"
    _refused(harness, harness.send("POST", "/echo", BODY, headers), "signature-invalid", 0)


def test_wrong_secret_and_wrong_algorithm(harness: Harness) -> None:
    headers = harness.headers("POST", "/echo", BODY, secret=bytes(32))
    _refused(harness, harness.send("POST", "/echo", BODY, headers), "signature-invalid", 0)
    headers = harness.headers("POST", "/echo", BODY)
    headers["Authorization"] = headers["Authorization"].replace("-SM3 ", "-SHA256 ")
    _refused(harness, harness.send("POST", "/echo", BODY, headers), "signature-invalid", 0)


def test_changed_body(harness: Harness) -> None:
    headers = harness.headers("POST", "/echo", BODY)
    tampered = BODY.replace(b"3", b"4")
    _refused(harness, harness.send("POST", "/echo", tampered, headers), "signature-invalid", 0)


def test_changed_query_method_or_path(harness: Harness) -> None:
    headers = harness.headers("POST", "/echo?dose=1", BODY)
    _refused(harness, harness.send("POST", "/echo?dose=10", BODY, headers),
             "signature-invalid", 0)
    _refused(harness, harness.send("POST", "/echo", BODY, headers), "signature-invalid", 0)
    headers = harness.headers("GET", "/echo")
    _refused(harness, harness.send("POST", "/echo", b"", headers), "signature-invalid", 0)
    headers = harness.headers("POST", "/other", BODY)
    _refused(harness, harness.send("POST", "/echo", BODY, headers), "signature-invalid", 0)


@pytest.mark.parametrize("offset", [-SECURITY.request_max_skew_seconds - 2,
                                    SECURITY.request_max_skew_seconds + 2, -86_400])
def test_stale_or_future_timestamp(harness: Harness, offset: int) -> None:
    headers = harness.headers("POST", "/echo", BODY, timestamp=int(time.time()) + offset)
    _refused(harness, harness.send("POST", "/echo", BODY, headers), "request-expired", 0)


def test_timestamp_within_the_window_is_accepted(harness: Harness) -> None:
    skew = SECURITY.request_max_skew_seconds - 5
    for offset in (-skew, skew):
        headers = harness.headers("POST", "/echo", BODY, timestamp=int(time.time()) + offset)
        assert harness.send("POST", "/echo", BODY, headers).status_code == 200


def test_replayed_request_is_refused(harness: Harness) -> None:
    headers = harness.headers("POST", "/echo", BODY)
    assert harness.send("POST", "/echo", BODY, headers).status_code == 200
    calls = list(harness.echo.calls)
    harness.echo.calls.clear()
    _refused(harness, harness.send("POST", "/echo", BODY, headers), "replay", 1)
    # The same nonce under a fresh signature (other body) is a replay too.
    again = harness.headers("POST", "/echo", b"{}", nonce=headers[NONCE_HEADER])
    _refused(harness, harness.send("POST", "/echo", b"{}", again), "replay", 1)
    assert calls


def test_unknown_key_id_looks_like_a_wrong_signature(harness: Harness) -> None:
    headers = harness.headers("POST", "/echo", BODY, key_id="app_ffffffffffffffff")
    unknown = harness.send("POST", "/echo", BODY, headers)
    _refused(harness, unknown, "signature-invalid", 0)
    headers = harness.headers("POST", "/echo", BODY, secret=bytes(32))
    wrong = harness.send("POST", "/echo", BODY, headers)
    assert unknown.json == wrong.json


def test_disabled_credential(harness: Harness) -> None:
    sec = _Actor()
    harness.apps.update(sec, harness.app_id, status="disabled")
    _refused(harness, harness.send("POST", "/echo", BODY, harness.headers("POST", "/echo", BODY)),
             "credential-disabled", 0)
    # Without the secret, a disabled credential is indistinguishable from an unknown one.
    headers = harness.headers("POST", "/echo", BODY, secret=bytes(32))
    _refused(harness, harness.send("POST", "/echo", BODY, headers), "signature-invalid", 0)
    harness.apps.update(sec, harness.app_id, status="active")
    assert harness.send("POST", "/echo", BODY,
                        harness.headers("POST", "/echo", BODY)).status_code == 200


def test_rotated_secret_replaces_the_old_one(harness: Harness) -> None:
    _, new_secret = harness.apps.update(_Actor(), harness.app_id, rotate_secret=True)
    assert new_secret is not None
    _refused(harness, harness.send("POST", "/echo", BODY, harness.headers("POST", "/echo", BODY)),
             "signature-invalid", 0)
    headers = harness.headers("POST", "/echo", BODY, secret=decode_secret(new_secret))
    assert harness.send("POST", "/echo", BODY, headers).status_code == 200


@pytest.mark.parametrize("drop", [TIMESTAMP_HEADER, NONCE_HEADER, "Authorization"])
def test_missing_headers(harness: Harness, drop: str) -> None:
    headers = harness.headers("POST", "/echo", BODY)
    del headers[drop]
    _refused(harness, harness.send("POST", "/echo", BODY, headers), "auth-headers-missing", 0)


@pytest.mark.parametrize(("header", "value"), [
    ("Authorization", "MEDSIGN-HMAC-SM3 keyId=app_1"),
    ("Authorization", "MEDSIGN-HMAC-MD5 keyId=app_1, signature=AAAA"),
    (NONCE_HEADER, "short"),
    (NONCE_HEADER, "has spaces in it, sixteen+"),
    (TIMESTAMP_HEADER, "yesterday"),
])
def test_malformed_headers(harness: Harness, header: str, value: str) -> None:
    headers = harness.headers("POST", "/echo", BODY)
    headers[header] = value
    _refused(harness, harness.send("POST", "/echo", BODY, headers), "auth-malformed", 0)


def test_no_credentials_at_all_is_a_plain_401(harness: Harness) -> None:
    result = harness.send("POST", "/echo", BODY, {"Content-Type": "application/json"})
    _refused(harness, result, "unauthorized", 0)


def test_scope_outside_the_credential_is_403(database: Database,
                                             apps: ApplicationService) -> None:
    harness = Harness(database, apps)
    credential, secret = apps.create(None, name="TSA only", scopes="tsa")
    headers = harness.headers("POST", "/echo", BODY, key_id=credential.key_id, secret=secret)
    result = harness.send("POST", "/echo", BODY, headers)
    assert result.status_code == 403 and result.json["code"] == "forbidden"


def test_old_nonces_are_purged(harness: Harness, apps: ApplicationService) -> None:
    for _ in range(3):
        assert harness.send("POST", "/echo", BODY,
                            harness.headers("POST", "/echo", BODY)).status_code == 200
    assert harness.nonces() == 3
    window = 2 * SECURITY.request_max_skew_seconds
    assert apps.purge_nonces(dt.datetime.now(dt.UTC)) == 0
    assert apps.purge_nonces(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=window + 1)) == 3


# -- through the whole app ---------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_whoami_round_trip(site: Site, algorithm: Algorithm) -> None:
    credential, secret = site.apps.create(None, name="HIS", scopes="sign:read")
    for target in ("/api/v1/whoami", "/api/v1/whoami/", "/api/v1/whoami?probe=1"):
        headers = sign_request("GET", target, key_id=credential.key_id, secret=secret,
                               algorithm=algorithm)
        path, _, query = target.partition("?")
        result = site.client.simulate_get(path, query_string=query or None, headers=headers)
        assert result.status_code == 200, result.text
        assert result.json == {"kind": "app", "name": credential.key_id, "id": credential.id,
                               "role": None, "scopes": ["sign:read"]}


class _Actor:
    id, name, role, kind = 1, "sec", "security_admin", "admin"


def test_a_nonce_is_refused_across_workers(database: Database, holder: Any) -> None:
    """Two service instances (two gunicorn workers, or two nodes) share the nonce table."""
    first, second = (ApplicationService(database, holder, SECURITY) for _ in range(2))
    credential, _ = first.create(None, name="HIS", scopes="verify")
    first.authenticate(credential.key_id, "n" * 20, lambda _secret: True)
    with pytest.raises(Replay):
        second.authenticate(credential.key_id, "n" * 20, lambda _secret: True)
    second.authenticate(credential.key_id, "m" * 20, lambda _secret: True)
    first.close()
    second.close()


def test_nonce_commits_skip_fsync_only_for_nonces(database: Database,
                                                  apps: ApplicationService) -> None:
    """SQLite: a second engine with synchronous=NORMAL; PostgreSQL: synchronous_commit off in
    the nonce transaction only.  Everything else keeps full durability."""
    with apps._nonce_transaction() as conn:
        if database.kind == "sqlite":
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        else:
            assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "off"
    with database.transaction() as conn:
        if database.kind == "sqlite":
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL, untouched
        else:  # no override: the session value is the server's configured one
            configured = conn.exec_driver_sql(
                "SELECT reset_val FROM pg_settings WHERE name = 'synchronous_commit'").scalar()
            assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == configured

"""The raw database holds no TOTP seed, application secret, password, session or CSRF token in
clear: every column of every row of every table is scanned for their bytes."""

from __future__ import annotations

import base64

from sqlalchemy import MetaData, select

from appliance.api.access import SECURITY_ADMIN
from appliance.services.admins import AdminService
from appliance.services.applications import ApplicationService, decode_secret
from appliance.storage import Database
from tests.appliance.auth.conftest import PASSWORD, Clock, totp_at


def _all_cells(database: Database) -> list[bytes]:
    reflected = MetaData()
    reflected.reflect(database.engine)
    cells: list[bytes] = []
    with database.transaction() as conn:
        for table in reflected.sorted_tables:
            for row in conn.execute(select(table)):
                for value in row:
                    if isinstance(value, bytes | bytearray | memoryview):
                        cells.append(bytes(value))
                    elif value is not None:
                        cells.append(str(value).encode())
    return cells


def test_no_secret_in_clear(database: Database, admins: AdminService,
                            apps: ApplicationService, clock: Clock) -> None:
    _, enrolment = admins.create(None, username="sec", role=SECURITY_ADMIN, password=PASSWORD)
    login = admins.login("sec", PASSWORD, totp_at(enrolment.secret, clock()), ip="10.1.2.3")
    _, app_secret = apps.create(None, name="HIS", scopes="sign:request")
    raw_app = decode_secret(app_secret)
    totp_raw = base64.b32decode(enrolment.secret)
    needles = {
        "totp seed (base32)": enrolment.secret.encode(),
        "totp seed (lower case)": enrolment.secret.lower().encode(),
        "totp seed (raw)": totp_raw,
        "app secret (raw)": raw_app,
        "app secret (base64url)": app_secret.encode(),
        "app secret (base64)": base64.b64encode(raw_app).rstrip(b"="),
        "app secret (hex)": raw_app.hex().encode(),
        "password": PASSWORD.encode(),
        "session token": login.session_token.encode(),
        "csrf token": login.csrf_token.encode(),
        "client address": b"10.1.2.3",
    }
    cells = _all_cells(database)
    assert len(cells) > 20  # the scan saw the rows
    for name, needle in needles.items():
        for cell in cells:
            assert needle not in cell, f"{name} found in the database"

"""Fixtures of the account and credential suites: an unsealed key holder, a settable clock,
fast Argon2 parameters, and the whole app built by the composition root."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import falcon.testing
import pyotp
import pytest
from argon2 import PasswordHasher

from appliance.config import Config, SecurityConfig, TsaConfig
from appliance.custody import KekStore, KeyHolder, Keyring
from appliance.custody.kek import new_kek
from appliance.services.admins import AdminService, Enrolment
from appliance.services.applications import ApplicationService
from appliance.storage import Database
from appliance.wsgi import Appliance, build

# Argon2id with test-sized cost: the hash string carries its parameters, so the appliance's own
# verifier checks these hashes as it would production ones.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
PASSWORD = "correct horse battery"
SECURITY = SecurityConfig(admin_max_failures=5, admin_lock_minutes=15, session_minutes=30,
                          request_max_skew_seconds=300, cookie_secure=True)
T0 = 1_790_000_000.0  # a fixed instant (2026-09-21), on a 30-second TOTP boundary + 20 s


class Clock:
    """A settable clock for the services."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def holder(database: Database) -> KeyHolder:
    key_holder = KeyHolder(KekStore(database))
    key_holder.adopt(Keyring(new_kek()))
    return key_holder


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def admins(database: Database, holder: KeyHolder, clock: Clock) -> AdminService:
    return AdminService(database, holder, SECURITY, hasher=FAST_HASHER, clock=clock)


@pytest.fixture
def apps(database: Database, holder: KeyHolder) -> ApplicationService:
    return ApplicationService(database, holder, SECURITY)


@dataclasses.dataclass
class Site:
    """The whole appliance app plus direct handles on its storage, for HTTP tests."""

    appliance: Appliance
    client: falcon.testing.TestClient
    admins: AdminService  # real clock, fast hasher: creates accounts the app then uses
    apps: ApplicationService

    def create_account(self, username: str, role: str) -> Enrolment:
        _account, enrolment = self.admins.create(None, username=username, role=role,
                                                 password=PASSWORD)
        return enrolment

    def login(self, username: str, enrolment: Enrolment, *,
              code: str | None = None) -> falcon.testing.Result:
        totp = code or pyotp.TOTP(enrolment.secret).now()
        return self.client.simulate_post("/api/v1/console/login", json={
            "username": username, "password": PASSWORD, "totp": totp})


def make_site(database: Database, holder: KeyHolder, *, cookie_secure: bool = True,
              tsa: TsaConfig | None = None, **security: Any) -> Site:
    config = Config(security=dataclasses.replace(SECURITY, cookie_secure=cookie_secure,
                                                 **security), tsa=tsa or TsaConfig())
    appliance = build(config, database=database, key_holder=holder)
    return Site(appliance, falcon.testing.TestClient(appliance.app),
                AdminService(database, holder, config.security, hasher=FAST_HASHER),
                ApplicationService(database, holder, config.security))


@pytest.fixture
def site(database: Database, holder: KeyHolder) -> Iterator[Site]:
    made = make_site(database, holder)
    yield made
    made.appliance.audit.close()


def totp_at(secret: str, when: float) -> str:
    return pyotp.TOTP(secret).at(int(when))

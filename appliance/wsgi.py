"""The composition root: the one place that wires configuration, storage, custody, services,
middleware and resources into the Falcon app (DESIGN.md section 2)."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import falcon

from appliance import config as config_module
from appliance.api import applications as applications_api
from appliance.api import audit as audit_api
from appliance.api import auth, console, openapi, problems, system
from appliance.api import ca as ca_api
from appliance.api import evidence as evidence_api  # issue 8: evidence reports
from appliance.api import mobile as mobile_api
from appliance.api import mobile_documents as mobile_documents_api  # phones view signed docs
from appliance.api import seals as seals_api
from appliance.api import sign_requests as sign_requests_api
from appliance.api import signers as signers_api
from appliance.api import templates as templates_api  # issue 7: PDF form templates
from appliance.api import tsa as tsa_api
from appliance.api import verify as verify_api
from appliance.api.access import AccessControl, Authenticator, BodyLimit, check_routes
from appliance.config import Config
from appliance.custody import KekStore, KeyHolder
from appliance.services import pdf_ltv
from appliance.services.applications import NonceRecorder
from appliance.services.audit import AuditLog
from appliance.services.ca import CaService
from appliance.services.channels import ChannelService
from appliance.services.devices import DeviceService
from appliance.services.evidence import EvidenceService  # issue 8: evidence reports
from appliance.services.handwriting import HandwritingService
from appliance.services.qr import QrService
from appliance.services.renewal import RenewalService
from appliance.services.seal_registry import SealRegistry
from appliance.services.seals import SealService
from appliance.services.sign_requests import SignRequestService
from appliance.services.signer_keys import SignerKeyService
from appliance.services.signers import SignerService
from appliance.services.templates import TemplateService  # issue 7: PDF form templates
from appliance.services.tsa import TsaService
from appliance.services.verification import (
    DbRevocationStore,
    VerificationService,
    revocation_policy,
)
from appliance.services.webhooks import Dispatcher, WebhookService
from appliance.storage import Database

LOG = logging.getLogger("medsign")
WsgiApp = falcon.App[falcon.Request, falcon.Response]


@dataclasses.dataclass
class Appliance:
    """Everything a running appliance process holds."""

    config: Config
    database: Database
    key_holder: KeyHolder
    metrics: system.Metrics
    app: WsgiApp
    audit: AuditLog  # its committer and checkpoint timer start with the first append


def build(config: Config, *, database: Database | None = None,
          key_holder: KeyHolder | None = None,
          authenticators: list[Authenticator] | None = None,
          nonces: NonceRecorder | None = None) -> Appliance:
    """Build the appliance: migrate the database, wire everything, return the WSGI app.
    ``nonces``: where signed requests' nonces go (the server's workers on SQLite: the master's
    nonce keeper); by default the database directly."""
    db = database or Database(config.database_url, pool_size=config.database.pool_size,
                              echo=config.database.echo)
    db.migrate()
    holder = key_holder or KeyHolder(KekStore(db), pkcs11_module=config.custody.pkcs11_module)
    metrics = system.Metrics()
    audit = AuditLog(db, holder, config.audit)
    admins, apps = auth.services(db, holder, config, audit=audit, nonces=nonces)
    devices = DeviceService(db, apps, audit=audit)
    if authenticators is None:
        authenticators = auth.authenticators(db, holder, config, admins=admins, applications=apps,
                                             devices=devices)
    middleware: list[Any] = [
        BodyLimit(config.server.max_body_bytes),
        AccessControl(authenticators),
        metrics,
    ]
    app: WsgiApp = falcon.App(middleware=middleware)
    app.req_options.strip_url_path_trailing_slash = True
    problems.install(app)
    ca = CaService(db, holder, public_url=config.server.public_url, audit=audit)
    channels = ChannelService(db, holder, ca, audit=audit)
    tsa = TsaService(db, holder, ca, config.tsa, audit=audit)
    webhooks = WebhookService(db, apps, audit=audit)
    dispatcher = Dispatcher(webhooks)
    signer_keys = SignerKeyService(db, holder, ca, channels, audit=audit,
                                   renew_days_before=config.ca.renew_days_before)
    sign_requests = SignRequestService(db, signer_keys, webhooks, audit=audit,
                                       on_event=dispatcher.nudge)
    qr = QrService(db, signer_keys, sign_requests, audit=audit)
    handwriting = HandwritingService(db, audit=audit)
    sign_requests.set_appearances(handwriting.appearance)  # issue 7: handwriting in PAdES
    # PAdES sign requests at B-T / B-LT / B-LTA: the appliance's TSA and validation data
    sign_requests.set_timestamping(tsa.stamp, lambda: pdf_ltv.validation_data(ca))
    # issue 8: evidence reports, sealed with the organization seal and the appliance's TSA
    seals = SealService(db, holder, ca, tsa=tsa, audit=audit)
    # issue 7: seal management (images, bound keys, scopes, usage log) enforced on /seal
    seal_registry = SealRegistry(db, ca, channels, audit=audit)
    seals.set_registry(seal_registry)
    verification = VerificationService(ca, policy=revocation_policy(config.verify),
                                       store=DbRevocationStore(db))
    evidence = EvidenceService(db, audit, seals, ca, verification, tsa=tsa)
    resources: dict[str, Any] = {
        **system.routes(db, holder, metrics),
        **console.routes(admins, auth.SessionCookie(config.security.cookie_secure)),
        **applications_api.routes(apps),
        **signers_api.routes(SignerService(
            db, holder, audit=audit,
            on_disable=channels.revoke_for_signer)),
        **audit_api.routes(audit),
        **ca_api.routes(ca, channels),
        **ca_api.channel_routes(channels),
        **ca_api.trust_routes(ca),
        **ca_api.renewal_routes(RenewalService(db, ca, channels, config.ca, audit=audit)),
        **seals_api.routes(seals),
        **seals_api.registry_routes(seal_registry),
        **tsa_api.routes(tsa),
        **sign_requests_api.routes(sign_requests, devices, handwriting, signer_keys),
        **sign_requests_api.qr_routes(qr),
        **mobile_api.routes(devices, signer_keys, sign_requests, qr, handwriting),
        **verify_api.routes(verification),
        **mobile_documents_api.routes(sign_requests, verification),  # phones view signed docs
        **evidence_api.routes(evidence),
        # issue 7: PDF form templates (render feeds pades sign requests)
        **templates_api.routes(TemplateService(db, sign_requests, audit=audit)),
    }
    # The OpenAPI document lists every route of the app, whoever added it (built on first GET).
    resources.update(openapi.routes(app, cookie_secure=config.security.cookie_secure))
    check_routes(resources.values())
    for path, resource in resources.items():
        app.add_route(path, resource)
    return Appliance(config, db, holder, metrics, app, audit)


def application() -> WsgiApp:
    """Entry point for gunicorn (``appliance.wsgi:application()``), configured from the
    environment (MEDSIGN_CONFIG and overrides)."""
    return build(config_module.load()).app

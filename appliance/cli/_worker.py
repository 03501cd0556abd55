"""``medsign worker``: the appliance's background work, outside the request path.

Every ``ca.worker_interval_seconds`` (or once, with ``--once``, e.g. from a systemd timer): the
silent renewal pass of :mod:`appliance.services.renewal` (which also republishes the built-in
CA's CRLs), the expiry of sign requests past their deadline, and the delivery of due webhooks
(retries; the server delivers new events at once), and the archive time stamps of stored
evidence reports whose newest time stamp's TSA certificate expires within 90 days.  It needs
the unsealed KEK like the operator's commands (the running server's custodian, the demo
passphrase file, or ``--passphrase-file``).  SIGTERM ends it after the pass under way.
"""

from __future__ import annotations

import json
import signal
import threading
from typing import Any

import click

from appliance.cli._common import CliError, config_option
from appliance.cli._operator import _PASSPHRASE_OPTION, _open


def _services(config_path: str | None, passphrase_file: str | None) -> tuple[Any, Any, Any]:
    from appliance.services.applications import ApplicationService  # noqa: PLC0415
    from appliance.services.audit import AuditLog  # noqa: PLC0415 -- fast start-up
    from appliance.services.ca import CaService  # noqa: PLC0415
    from appliance.services.channels import ChannelService  # noqa: PLC0415
    from appliance.services.renewal import RenewalService  # noqa: PLC0415
    from appliance.services.sign_requests import SignRequestService  # noqa: PLC0415
    from appliance.services.signer_keys import SignerKeyService  # noqa: PLC0415
    from appliance.services.webhooks import WebhookService  # noqa: PLC0415

    config, database, holder = _open(config_path, passphrase_file)
    audit = AuditLog(database, holder, config.audit)
    ca = CaService(database, holder, public_url=config.server.public_url, audit=audit)
    channels = ChannelService(database, holder, ca, audit=audit)
    webhooks = WebhookService(database, ApplicationService(database, holder, config.security),
                              audit=audit)
    requests = SignRequestService(database, SignerKeyService(database, holder, ca, channels,
                                                             audit=audit), webhooks, audit=audit)
    return (config, (RenewalService(database, ca, channels, config.ca, audit=audit), requests,
                     webhooks, _evidence(config, database, holder, ca, audit)),
            (audit, database))


def _evidence(config: Any, database: Any, holder: Any, ca: Any, audit: Any) -> Any:
    """issue 8: the evidence service, for its archive re-timestamping pass."""
    from appliance.services.evidence import EvidenceService  # noqa: PLC0415
    from appliance.services.seals import SealService  # noqa: PLC0415
    from appliance.services.tsa import TsaService  # noqa: PLC0415
    from appliance.services.verification import VerificationService  # noqa: PLC0415

    tsa = TsaService(database, holder, ca, config.tsa, audit=audit)
    return EvidenceService(database, audit, SealService(database, holder, ca, tsa=tsa,
                                                        audit=audit),
                           ca, VerificationService(ca), tsa=tsa)


@click.command(name="worker")
@config_option
@_PASSPHRASE_OPTION
@click.option("--once", is_flag=True, help="one pass, then exit (for a systemd timer)")
def worker(config_path: str | None, passphrase_file: str | None, once: bool) -> int:
    """Background work: certificate renewal, CRLs, sign-request expiry, webhook retries,
    archive time stamps of evidence reports."""
    config, (renewal, requests, webhooks, evidence), (audit, database) = _services(
        config_path, passphrase_file)
    stop = threading.Event()
    if not once:
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while True:
            result = renewal.run_once().to_json()
            click.echo(json.dumps({"pass": "renewal", **result}, ensure_ascii=False),
                       err=False)
            expired = requests.expire_due()
            delivered, failed = webhooks.deliver_due()
            click.echo(json.dumps({"pass": "sign-requests", "expired": expired,
                                   "webhooks_delivered": delivered,
                                   "webhooks_failed": failed}))
            stamped, stamp_failures = evidence.retimestamp_due()
            click.echo(json.dumps({"pass": "evidence", "retimestamped": stamped,
                                   "failed": stamp_failures}, ensure_ascii=False))
            if once:
                break
            if stop.wait(max(1, config.ca.worker_interval_seconds)):
                return 0
    finally:
        try:
            audit.close()
        finally:
            database.dispose()
    if result["failed"]:
        first = result["failed"][0]
        raise CliError(f"{len(result['failed'])} renewal(s) failed; certificate "
                       f"{first['id']}: {first['error']}")
    return 0


COMMANDS = (worker,)

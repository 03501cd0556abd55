"""The demo principals of ``medsign init --demo``: one console account per role and one
application credential with every scope, created through the accounts services and written
(with their secrets) to ``demo-credentials.txt``, mode 0600, and printed once.

Idempotent: when the file exists nothing is created and only its place is printed; accounts
or the credential that exist already (the file was deleted) are left alone and named.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from appliance.cli._common import write_private_text

DEMO_ACCOUNTS = (
    ("sysadmin", "system_admin", "系统管理员（演示）"),
    ("secadmin", "security_admin", "安全管理员（演示）"),
    ("auditor", "audit_admin", "审计管理员（演示）"),
    ("reviewer", "reviewer", "审核员（演示）"),
)
DEMO_APPLICATION = "demo-backend"


def ensure_demo_principals(config: Any, database: Any, keyring: Any, credentials: Path) -> None:
    from appliance.cli._operator import Services  # noqa: PLC0415 -- services load slowly
    from appliance.custody import KekStore, KeyHolder  # noqa: PLC0415
    from appliance.services.admins import AccountSpec  # noqa: PLC0415
    from appliance.services.applications import ALL_SCOPES  # noqa: PLC0415

    if credentials.exists():
        print(f"demo: console accounts and the application credential are in {credentials}")
        return
    holder = KeyHolder(KekStore(database))
    holder.adopt(keyring)
    services = Services(config, database, holder)
    try:
        created = services.admins.bootstrap(
            AccountSpec(username=name, role=role, display_name=display)
            for name, role, display in DEMO_ACCOUNTS)
        existing_apps = {c.name for c in services.applications.list_credentials()}
        app = None
        if DEMO_APPLICATION not in existing_apps:
            app = services.applications.create(None, name=DEMO_APPLICATION, scopes=ALL_SCOPES)
    finally:
        services.close()
    lines = [
        "# medsign development demo credentials (medsign init --demo); mode 0600.",
        "# Never use these on an appliance.  Console: password, then the current TOTP code",
        "# of the secret below (any authenticator app: scan the otpauth URI as a QR code).",
        "",
    ]
    for item in created:
        account = item.account
        lines += [f"console account {account.username} ({account.role})",
                  f"  password:    {item.password}",
                  f"  TOTP secret: {item.enrolment.secret}",
                  f"  TOTP URI:    {item.enrolment.uri}", ""]
    if app is not None:
        credential, secret = app
        lines += [f"application credential {credential.name}",
                  f"  key id:  {credential.key_id}",
                  f"  secret:  {secret}",
                  f"  scopes:  {' '.join(sorted(credential.scopes))}",
                  "  signing: MEDSIGN-HMAC-SM3, see appliance/api/hmac_signing.py", ""]
    skipped = len(DEMO_ACCOUNTS) - len(created) + (app is None)
    if skipped:
        lines.append(f"# {skipped} demo principal(s) existed already and were left alone "
                     f"(medsign admin reset-totp / medsign app create make new secrets).")
    write_private_text(credentials, "\n".join(lines) + "\n")
    print("demo: created these console accounts and application credential "
          f"(also in {credentials}, mode 0600):")
    print("\n".join("  " + line if line else "" for line in lines[4:]).rstrip())


# --- issue 7: the sample PDF form template ------------------------------------------------------


def ensure_demo_templates(config: Any, database: Any, keyring: Any) -> None:
    """Upload the sample e-prescription template (pdfsign/templates/e-prescription.json) unless
    a template of that name exists; audited like any upload, as ``cli:demo``."""
    from appliance.cli._operator import Services  # noqa: PLC0415 -- services load slowly
    from appliance.custody import KekStore, KeyHolder  # noqa: PLC0415
    from appliance.services.signers import CliActor  # noqa: PLC0415
    from appliance.services.templates import TemplateService  # noqa: PLC0415

    holder = KeyHolder(KekStore(database))
    holder.adopt(keyring)
    services = Services(config, database, holder)
    try:
        seeded = TemplateService(database, audit=services.audit).seed_sample(CliActor("demo"))
    finally:
        services.close()
    print("demo: " + ("uploaded the sample template e-prescription (POST "
                      "/api/v1/documents/render fills it)" if seeded
                      else "the sample template e-prescription exists already"))

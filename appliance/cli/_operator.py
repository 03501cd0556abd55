"""The operator's commands on the appliance: ``medsign signer import`` (and the other groups
that need the unsealed KEK; see :mod:`appliance.cli._keyring` for where it comes from).

They work on the database directly, as the composition root wires the services, and act as
``cli:<login name>`` in the audit log.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from appliance.cli._common import (
    EXIT_INVALID,
    CliError,
    config_option,
    load_config,
    prompt_secret,
    read_secret_file,
)


def _operator_name() -> str:
    try:
        login = getpass.getuser()
    except (KeyError, OSError):
        login = str(os.getuid())
    return f"cli:{login}"


def _open(config_path: str | None, passphrase_file: str | None = None) -> tuple[Any, Any, Any]:
    """(config, database, unsealed key holder)."""
    from appliance.cli._keyring import unsealed_holder  # noqa: PLC0415 -- fast start-up
    from appliance.storage import Database  # noqa: PLC0415

    config = load_config(config_path)
    if not Path(config.data_dir).is_dir() and not config.database.url:
        raise CliError(f"no data directory {config.data_dir} (run medsign init, or pass "
                       f"--config)")
    database = Database(config.database_url, pool_size=config.database.pool_size,
                        echo=config.database.echo)
    try:
        database.migrate()
        holder = unsealed_holder(config, database, passphrase_file=passphrase_file)
    except BaseException:
        database.dispose()
        raise
    return config, database, holder


class Services:
    """The services of one operator command, wired as the composition root wires them, with
    the audit log (closed, i.e. flushed, when the command ends)."""

    def __init__(self, config: Any, database: Any, holder: Any) -> None:
        from appliance.services.admins import AdminService  # noqa: PLC0415 -- fast start-up
        from appliance.services.applications import ApplicationService  # noqa: PLC0415
        from appliance.services.audit import AuditLog  # noqa: PLC0415
        from appliance.services.signers import SignerService  # noqa: PLC0415

        self.database = database
        self.audit = AuditLog(database, holder, config.audit)
        self.admins = AdminService(database, holder, config.security, audit=self.audit)
        self.applications = ApplicationService(database, holder, config.security,
                                               audit=self.audit)
        self.signers = SignerService(database, holder, audit=self.audit)

    def close(self) -> None:
        try:
            self.audit.close()
        finally:
            self.database.dispose()


def _services(config_path: str | None, passphrase_file: str | None = None) -> Services:
    config, database, holder = _open(config_path, passphrase_file)
    try:
        return Services(config, database, holder)
    except BaseException:
        database.dispose()
        raise


_PASSPHRASE_OPTION = click.option(
    "--passphrase-file", metavar="FILE",
    help="unseal here with the passphrase in FILE (when no server is running)")


# ---------------------------------------------------------------------------------------------
# signer


@click.group(name="signer")
def signer_group() -> None:
    """Signer records (doctors, pharmacists, nurses)."""


@signer_group.command(name="import")
@config_option
@_PASSPHRASE_OPTION
@click.argument("file", metavar="FILE", type=click.Path(dir_okay=False))
@click.option("--dry-run", is_flag=True, help="check every row, create nothing")
@click.option("--report", "report_path", metavar="FILE.csv",
              help="write the row errors as CSV (UTF-8 with BOM, opens in Excel)")
def signer_import(config_path: str | None, passphrase_file: str | None, file: str,
                  dry_run: bool, report_path: str | None) -> int:
    """Import signers from a CSV or XLSX file (rows become 'pending review')."""
    from appliance.services import imports  # noqa: PLC0415 -- fast start-up
    from appliance.services.signers import CliActor  # noqa: PLC0415

    if not Path(file).is_file():
        raise CliError(f"cannot read {file}: no such file")
    services = _services(config_path, passphrase_file)
    try:
        with _Progress("importing" if not dry_run else "checking") as progress:
            report = imports.import_file(services.signers, file, CliActor(_operator_name()),
                                         progress=progress, dry_run=dry_run)
    finally:
        services.close()
    verb = "would be created" if dry_run else "created"
    print(f"{report.file_format} ({report.encoding}): {report.total_rows} rows, "
          f"{report.created} {verb}, {report.failed} refused"
          + (f"; ignored columns: {', '.join(report.ignored_columns)}"
             if report.ignored_columns else ""))
    for error in report.errors:
        where = f"row {error.row}" + (f" {error.column}" if error.column else "")
        who = f" ({error.name})" if error.name else ""
        print(f"  {where}{who}: {error.reason}")
    if report_path:
        try:
            Path(report_path).write_bytes(report.to_csv())
        except OSError as exc:
            raise CliError(f"cannot write {report_path}: {exc.strerror}") from None
        print(f"row errors written to {report_path}")
    if report.failed:
        raise CliError(f"{report.failed} of {report.total_rows} rows were refused "
                       f"(listed above)")
    return 0


class _Progress:
    """A click progress bar on stderr, created once the importer knows the row count."""

    def __init__(self, label: str) -> None:
        self._label = label
        self._bar: Any = None
        self._done = 0

    def __enter__(self) -> _Progress:
        return self

    def __call__(self, done: int, total: int) -> None:
        if not sys.stderr.isatty():
            return  # no bar for scripts: stderr keeps the one-line-per-error rule
        if self._bar is None:
            self._bar = click.progressbar(length=max(total, 1), label=self._label,
                                          file=sys.stderr, show_pos=True)
            self._bar.__enter__()
        self._bar.update(done - self._done)
        self._done = done

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)


# ---------------------------------------------------------------------------------------------
# admin


def _print_enrolment(enrolment: Any) -> None:
    print(f"TOTP secret (shown once): {enrolment.secret}")
    print(f"TOTP URI (scan as a QR code): {enrolment.uri}")


@click.group(name="admin")
def admin_group() -> None:
    """Console accounts (system, security and audit administrators, reviewers)."""


@admin_group.command(name="create")
@config_option
@_PASSPHRASE_OPTION
@click.argument("username")
@click.option("--role", required=True,
              type=click.Choice(["system_admin", "security_admin", "audit_admin", "reviewer"]))
@click.option("--display-name", default="", help="shown in the console (default: username)")
@click.option("--password-file", metavar="FILE",
              help="the password on the first line of FILE (default: asked without echo)")
def admin_create(*, config_path: str | None, passphrase_file: str | None, username: str,
                 role: str, display_name: str, password_file: str | None) -> int:
    """Create a console account; prints its TOTP enrolment once."""
    password = (read_secret_file(password_file, "password") if password_file
                else prompt_secret("Password", confirm=True))
    services = _services(config_path, passphrase_file)
    try:
        account, enrolment = services.admins.create(None, username=username, role=role,
                                                    password=password,
                                                    display_name=display_name)
    finally:
        services.close()
    print(f"created {account.username} ({account.role})")
    _print_enrolment(enrolment)
    return 0


@admin_group.command(name="reset-totp")
@config_option
@_PASSPHRASE_OPTION
@click.argument("username")
def admin_reset_totp(config_path: str | None, passphrase_file: str | None,
                     username: str) -> int:
    """Give an account a new TOTP seed (a lost phone); ends its sessions."""
    services = _services(config_path, passphrase_file)
    try:
        enrolment = services.admins.reset_totp(username)
    finally:
        services.close()
    print(f"new TOTP seed for {enrolment.username}; its sessions were ended")
    _print_enrolment(enrolment)
    return 0


# ---------------------------------------------------------------------------------------------
# app


@click.group(name="app")
def app_group() -> None:
    """Application credentials (the hospital backend's HMAC keys)."""


@app_group.command(name="create")
@config_option
@_PASSPHRASE_OPTION
@click.argument("name")
@click.option("--scope", "scopes", multiple=True, required=True, metavar="SCOPE",
              help="repeatable: sign:request sign:read verify seal tsa signer:read "
                   "signer:write")
def app_create(config_path: str | None, passphrase_file: str | None, name: str,
               scopes: tuple[str, ...]) -> int:
    """Create an application credential; prints its key id and secret once."""
    services = _services(config_path, passphrase_file)
    try:
        credential, secret = services.applications.create(None, name=name, scopes=scopes)
    finally:
        services.close()
    print(f"created credential {credential.name!r} with scopes "
          f"{' '.join(sorted(credential.scopes))}")
    print(f"key id: {credential.key_id}")
    print(f"secret (shown once, base64url): {secret}")
    return 0


# ---------------------------------------------------------------------------------------------
# audit


@click.group(name="audit")
def audit_group() -> None:
    """The tamper-evident audit log."""


def _database(config_path: str | None) -> Any:
    from appliance.storage import Database  # noqa: PLC0415 -- fast start-up

    config = load_config(config_path)
    if not Path(config.data_dir).is_dir() and not config.database.url:
        raise CliError(f"no data directory {config.data_dir} (run medsign init, or pass "
                       f"--config)")
    database = Database(config.database_url, pool_size=config.database.pool_size,
                        echo=config.database.echo)
    database.migrate()
    return config, database


@audit_group.command(name="verify")
@config_option
@click.option("--trusted-key", "trusted_keys", multiple=True, metavar="PUB.pem",
              help="check checkpoints against this pinned audit public key (repeatable) "
                   "instead of the keys recorded in the database")
@click.option("--origin", metavar="ORIGIN", help="the checkpoints' expected origin line")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def audit_verify(config_path: str | None, trusted_keys: tuple[str, ...], origin: str | None,
                 as_json: bool) -> int:
    """Recompute the tree from the database and check every signed tree head.

    Exit 0 when the log is intact, 1 when it was altered (the first bad index is named), 2
    when it cannot be checked."""
    from sqlalchemy import func, select  # noqa: PLC0415 -- fast start-up

    from appliance.services import audit  # noqa: PLC0415
    from appliance.storage import schema  # noqa: PLC0415
    from signcore import SigncoreError, keys  # noqa: PLC0415
    from signcore.sm2 import SM2PublicKey  # noqa: PLC0415

    pinned: list[SM2PublicKey] | None = None
    if trusted_keys:
        pinned = []
        for path in trusted_keys:
            try:
                key = keys.load_public_key(Path(path).read_bytes())
            except OSError as exc:
                raise CliError(f"cannot read {path}: {exc.strerror}") from None
            except SigncoreError as exc:
                raise CliError(f"{path}: {exc}") from None
            if not isinstance(key, SM2PublicKey):
                raise CliError(f"{path} is not an SM2 public key (audit keys are SM2)")
            pinned.append(key)
    _config, database = _database(config_path)
    try:
        with database.transaction() as conn:
            total = conn.execute(select(func.count()).select_from(schema.audit_log)
                                 ).scalar_one()
        with _Progress("verifying") as progress:
            report = audit.verify(database, trusted_keys=pinned, origin=origin,
                                  progress=lambda done: progress(done, total),
                                  progress_every=max(1000, total // 100 or 1))
            progress(total, total)
    finally:
        database.dispose()
    if as_json:
        print(json.dumps(report.to_json(), ensure_ascii=False, sort_keys=True))
    if not report.ok:
        where = (f"entry {report.first_bad_index}" if report.first_bad_index is not None
                 else f"checkpoint of size {report.bad_checkpoint}"
                 if report.bad_checkpoint is not None else "the log")
        print(f"medsign: audit log INVALID at {where}: {report.reason}", file=sys.stderr)
        return EXIT_INVALID
    if not as_json:
        print(f"audit log intact: {report.entries} entries, {report.checkpoints} signed "
              f"checkpoints (keys: {report.keys}), root {report.root_hash.hex()}; "
              f"{report.unsigned_entries} entries after the newest checkpoint")
    return 0


def _when(value: str | None, name: str) -> Any:
    if value is None:
        return None
    import datetime as dt  # noqa: PLC0415

    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 date or time",
                                 param_hint=f"'--{name}'") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


@audit_group.command(name="export")
@config_option
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv",
              show_default=True)
@click.option("--out", metavar="FILE", help="write to FILE (default: stdout)")
@click.option("--category", type=click.Choice(["login", "signature", "data", "system"]))
@click.option("--action", metavar="NAME")
@click.option("--actor", metavar="NAME")
@click.option("--subject", metavar="TEXT")
@click.option("--since", metavar="ISO-TIME", help="from this time on (UTC unless given)")
@click.option("--until", metavar="ISO-TIME", help="before this time (UTC unless given)")
def audit_export(*, config_path: str | None, fmt: str, out: str | None, category: str | None,
                 action: str | None, actor: str | None, subject: str | None,
                 since: str | None, until: str | None) -> int:
    """Export entries as CSV or JSON (personal data only as HMACs)."""
    from appliance.services import audit  # noqa: PLC0415 -- fast start-up

    filters = audit.Filters(category=category, action=action, actor=actor, subject=subject,
                            since=_when(since, "since"), until=_when(until, "until"))
    _config, database = _database(config_path)
    try:
        if out is None:
            count = audit.export(database, sys.stdout, fmt, filters)
        else:
            try:
                with open(out, "w", encoding="utf-8", newline="") as fh:
                    count = audit.export(database, fh, fmt, filters)
            except OSError as exc:
                raise CliError(f"cannot write {out}: {exc.strerror}") from None
    finally:
        database.dispose()
    if out is not None:
        print(f"exported {count} entries to {out}")
    return 0


COMMANDS = (admin_group, app_group, signer_group, audit_group)

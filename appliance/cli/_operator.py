"""The operator's commands on the appliance: ``medsign signer import`` (and the other groups
that need the unsealed KEK; see :mod:`appliance.cli._keyring` for where it comes from).

They work on the database directly, as the composition root wires the services, and act as
``cli:<login name>`` in the audit log.
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path
from typing import Any

import click

from appliance.cli._common import CliError, config_option, load_config


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
    from appliance.services.signers import CliActor, SignerService  # noqa: PLC0415

    if not Path(file).is_file():
        raise CliError(f"cannot read {file}: no such file")
    _config, database, holder = _open(config_path, passphrase_file)
    try:
        service = SignerService(database, holder, audit=None)
        with _Progress("importing" if not dry_run else "checking") as progress:
            report = imports.import_file(service, file, CliActor(_operator_name()),
                                         progress=progress, dry_run=dry_run)
    finally:
        database.dispose()
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


COMMANDS = (signer_group,)

"""The ``medsign`` command line (click).

Exit codes are a contract for scripts: 0 success (or "valid"), 1 an invalid signature, 2 bad
usage, unreadable input or any other error -- always with a one-line reason on stderr, never a
traceback (set ``MEDSIGN_DEBUG=1`` to get the traceback of an unexpected error).

Commands import the appliance's heavier modules (storage, custody, the server) only when they
run, so ``medsign selftest`` and ``medsign crypto ...`` start fast and a broken libcrypto is
reported by the command that needs it, as one line.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import click

import signcore
from appliance.cli import _ca, _crypto, _custody, _evidence, _operator, _serve, _worker
from appliance.cli._common import EXIT_USAGE, CliError, one_line
from appliance.errors import ApplianceError
from signcore import BackendError, selftest

__all__ = ["cli", "main"]

PROG = "medsign"


@click.group(name=PROG, help="medsign signing and CA appliance")
@click.version_option(package_name="medsign", prog_name=PROG, message="%(prog)s %(version)s")
def cli() -> None:
    pass


@cli.command(name="selftest")
def selftest_command() -> int:
    """Run the cryptographic known-answer self-test."""
    print(f"libcrypto: {signcore.backend_version()}")
    failed = 0
    for check in selftest.run():
        mark = "ok" if check.ok else f"FAILED: {check.detail}"
        print(f"  {check.name}: {mark}")
        failed += not check.ok
    return 0 if failed == 0 else 1


cli.add_command(_crypto.crypto)
for _command in (*_custody.COMMANDS, *_serve.COMMANDS, *_operator.COMMANDS, *_ca.COMMANDS,
                 *_worker.COMMANDS, *_evidence.COMMANDS):
    cli.add_command(_command)


def _error(message: str) -> None:
    print(f"{PROG}: {one_line(message)}", file=sys.stderr)


def _help_hint(ctx: click.Context | None) -> str:
    return f" (see {ctx.command_path if ctx else PROG} --help)"


def main(argv: Sequence[str] | None = None) -> int:  # noqa: PLR0911 -- one exit per error kind
    """Run one command; the exit code (never raises, never prints more than one error line)."""
    try:
        result = cli.main(args=list(argv) if argv is not None else None, prog_name=PROG,
                          standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        _error(f"error: a command is required{_help_hint(exc.ctx)}")
        return EXIT_USAGE
    except click.UsageError as exc:  # BadParameter, NoSuchOption, MissingParameter, ...
        _error(f"error: {exc.format_message()}{_help_hint(exc.ctx)}")
        return EXIT_USAGE
    except click.ClickException as exc:  # FileError and the like
        _error(f"error: {exc.format_message()}")
        return EXIT_USAGE
    except click.Abort:
        _error("aborted")
        return 130
    except CliError as exc:
        _error(f"error: {exc}")
        return exc.exit_code
    except BackendError as exc:
        # Start-up must fail clearly when the platform OpenSSL lacks SM2/SM3/SM4.
        _error(f"cryptographic backend unavailable: {exc}")
        return EXIT_USAGE
    except ApplianceError as exc:
        _error(f"error: {exc.code}: {exc.detail}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if os.environ.get("MEDSIGN_DEBUG") == "1":
            raise
        _error(f"error: unexpected {type(exc).__name__}: {exc} (MEDSIGN_DEBUG=1 shows where)")
        return EXIT_USAGE
    if isinstance(result, int):
        return result
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

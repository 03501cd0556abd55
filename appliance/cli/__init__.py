"""The ``medsign`` command line.

Exit codes are a contract for scripts: 0 success (or "valid"), 1 an invalid signature, 2 bad
usage or unreadable input -- always with a one-line reason on stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import signcore
from appliance.cli import _crypto
from appliance.cli._common import EXIT_USAGE, CliError, Parser
from signcore import BackendError, selftest

__all__ = ["main"]


def _selftest(_args: argparse.Namespace) -> int:
    print(f"libcrypto: {signcore.backend_version()}")
    failed = 0
    for check in selftest.run():
        mark = "ok" if check.ok else f"FAILED: {check.detail}"
        print(f"  {check.name}: {mark}")
        failed += not check.ok
    return 0 if failed == 0 else 1


def build_parser() -> Parser:
    parser = Parser(prog="medsign", description="medsign signing and CA appliance")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands.required = True
    selftest = commands.add_parser("selftest", help="run the cryptographic known-answer self-test")
    selftest.set_defaults(handler=_selftest)
    _crypto.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        code: int = args.handler(args)
    except CliError as exc:
        print(f"medsign: {exc}", file=sys.stderr)
        return exc.exit_code
    except BackendError as exc:
        # Start-up must fail clearly when the platform OpenSSL lacks SM2/SM3/SM4.
        print(f"medsign: cryptographic backend unavailable: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


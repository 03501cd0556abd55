"""Shared pieces of the CLI: exit codes, the one-line error, configuration and secret input.

The contract every command keeps: exit 0 on success, 1 only for "invalid signature", 2 for any
error (bad usage, unreadable input, an appliance refusing) -- always with ONE line on stderr and
never a traceback.  Commands raise :class:`CliError`; ``appliance.cli.main`` prints it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from appliance import config as config_module
from appliance.config import Config
from appliance.errors import ApplianceError

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2

#: Where ``medsign init`` writes a configuration when none is named and none exists yet
#: (the development layout; the appliance image ships /etc/medsign/medsign.toml).
DEVELOPMENT_CONFIG = Path("var/medsign.toml")

F = TypeVar("F", bound=Callable[..., Any])


class CliError(Exception):
    """A reason to stop with a one-line message and an exit code (2 unless said otherwise)."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def one_line(text: str) -> str:
    """Collapse a message to one line (stderr carries exactly one)."""
    return " ".join(text.split()) or "error"


def config_option(function: F) -> F:
    """``--config FILE``: the configuration file (default: $MEDSIGN_CONFIG, then the
    appliance's /etc/medsign/medsign.toml, then ./var/medsign.toml)."""
    return click.option(
        "--config", "config_path", metavar="FILE", default=None,
        help="configuration file (default: $MEDSIGN_CONFIG, /etc/medsign/medsign.toml, "
             "./var/medsign.toml)")(function)


def config_path(explicit: str | None) -> Path:
    """The configuration file a command works with (it may not exist yet)."""
    if explicit:
        return Path(explicit)
    if os.environ.get("MEDSIGN_CONFIG"):
        return Path(os.environ["MEDSIGN_CONFIG"])
    return next((p for p in config_module.DEFAULT_PATHS if p.exists()), DEVELOPMENT_CONFIG)


def load_config(explicit: str | None) -> Config:
    """The configuration, with environment overrides; a CliError names what is wrong."""
    try:
        return config_module.load(explicit)
    except ApplianceError as exc:
        raise CliError(f"configuration: {exc.detail}") from None


def read_secret_file(path: str, what: str) -> str:
    """The first line of a file holding a secret (a passphrase, a share)."""
    try:
        with open(path, encoding="utf-8") as fh:
            line = fh.readline(64 * 1024)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise CliError(f"cannot read the {what} from {path}: {reason}") from None
    secret = line.strip("\r\n")
    if not secret:
        raise CliError(f"{path} holds no {what} (it is read from the first line)")
    return secret


def prompt_secret(prompt: str, *, confirm: bool = False) -> str:
    """Ask for a secret without echo on a terminal; read one line from stdin otherwise (scripts,
    tests), so that nothing is ever echoed and no getpass warning breaks the one-line rule."""
    if sys.stdin is not None and sys.stdin.isatty():
        value: str = click.prompt(prompt, hide_input=True, confirmation_prompt=confirm,
                                  err=True)
        return value.strip()
    line = sys.stdin.readline() if sys.stdin is not None else ""
    if not line.strip():
        raise CliError(f"no {prompt.lower()} given (stdin is empty and not a terminal)")
    return line.strip("\r\n")


def write_private_text(path: Path, text: str) -> None:
    """Write a secret file created with mode 0600 from the start."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(path, 0o600)
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror}") from None

"""``medsign init`` and ``medsign unseal``: creating the installation and opening it.

``init`` creates what is missing (configuration file, data directory, database schema), then
creates the KEK and seals it: with a passphrase (``--passphrase-file`` or a prompt without
echo), or with Shamir shares (``--shamir K/N``, printed once, one per security officer).
``init --demo`` is the development set-up ``make run`` uses: idempotent, sealed with a
generated passphrase kept in ``demo-unseal-passphrase`` (mode 0600) next to the configuration,
which says ``start_sealed = false`` so that ``medsign serve`` unseals by itself, plus demo
console accounts and an application credential written to ``demo-credentials.txt`` (0600).

``unseal`` talks to the running server (``POST /api/v1/sys/unseal``), so that the KEK only
ever exists in the server; it asks for the material without echo.
"""

from __future__ import annotations

import json
import secrets
import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import click

from appliance.cli import _demo
from appliance.cli._common import (
    CliError,
    config_option,
    load_config,
    prompt_secret,
    read_secret_file,
    write_private_text,
)
from appliance.cli._common import config_path as resolve_config_path

DEMO_PASSPHRASE_FILE = "demo-unseal-passphrase"  # noqa: S105 -- a file name
DEMO_CREDENTIALS_FILE = "demo-credentials.txt"


def _toml_string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def _write_config(path: Path, data_dir: Path, *, demo: bool) -> None:
    lines = [
        "# medsign configuration, written by `medsign init`.",
        "# Every setting and its MEDSIGN_<SECTION>_<KEY> environment override: README.md.",
        f"data_dir = {_toml_string(str(data_dir))}",
        "",
        "[server]",
        'bind = "127.0.0.1:8080"',
        'public_url = "http://127.0.0.1:8080"',
    ]
    if demo:
        lines += [
            "",
            "# Development demo: the server unseals itself from the passphrase file.",
            "# Never on an appliance: there, officers unseal (medsign unseal).",
            "[custody]",
            "start_sealed = false",
            f"unseal_passphrase_file = {_toml_string(str(path.parent.resolve() / DEMO_PASSPHRASE_FILE))}",  # noqa: E501
            "",
            "[security]",
            "cookie_secure = false  # plain http on loopback",
        ]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("x", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
    except OSError as exc:
        raise CliError(f"cannot write the configuration {path}: {exc.strerror}") from None


def _parse_shamir(text: str) -> tuple[int, int]:
    k, sep, n = text.partition("/")
    if not sep or not k.strip().isdigit() or not n.strip().isdigit():
        raise click.BadParameter("expected K/N, e.g. 3/5", param_hint="'--shamir'")
    threshold, count = int(k), int(n)
    if not 2 <= threshold <= count <= 255:
        raise click.BadParameter("need 2 <= K <= N <= 255", param_hint="'--shamir'")
    return threshold, count


@click.command(name="init")
@config_option
@click.option("--demo", is_flag=True,
              help="development set-up (idempotent): passphrase in a 0600 file, auto-unseal, "
                   "demo accounts and application credential")
@click.option("--passphrase-file", metavar="FILE",
              help="seal the KEK with the passphrase on the first line of FILE")
@click.option("--shamir", metavar="K/N",
              help="seal the KEK with N Shamir shares, any K of which unseal")
@click.option("--pkcs11", is_flag=True,
              help="seal the KEK with the PKCS#11 token of custody.pkcs11_module and "
                   "custody.pkcs11_token_label (asks for the token's user PIN)")
@click.option("--pin-file", metavar="FILE",
              help="with --pkcs11: the user PIN on the first line of FILE")
@click.option("--data-dir", metavar="DIR",
              help="data directory, when the configuration is created "
                   "(default: data/ next to the configuration file)")
def init_command(*, config_path: str | None, demo: bool, passphrase_file: str | None,
                 shamir: str | None, pkcs11: bool, pin_file: str | None,
                 data_dir: str | None) -> int:
    """Create the installation: configuration, data directory, database, sealed KEK."""
    from appliance.custody import KekStore, initialize_kek  # noqa: PLC0415 -- keeps CLI start-up fast

    if demo and (passphrase_file or shamir or pkcs11):
        raise click.UsageError("--demo makes its own passphrase; it takes neither "
                               "--passphrase-file, --shamir nor --pkcs11")
    if sum(bool(x) for x in (passphrase_file, shamir, pkcs11)) > 1:
        raise click.UsageError("--passphrase-file, --shamir and --pkcs11 are mutually "
                               "exclusive")
    if pin_file and not pkcs11:
        raise click.UsageError("--pin-file goes with --pkcs11")
    split = _parse_shamir(shamir) if shamir else None
    path = resolve_config_path(config_path)
    if not path.exists():
        target = Path(data_dir) if data_dir else path.parent / "data"
        _write_config(path, target.resolve(), demo=demo)
        print(f"wrote the configuration {path}")
    elif data_dir:
        raise click.UsageError(f"--data-dir only applies when the configuration is created; "
                               f"{path} exists (edit data_dir there)")
    config = load_config(str(path))
    database = _open_database(config)
    try:
        store = KekStore(database)
        sealed = store.load()
        if sealed is not None and not demo:
            raise CliError(f"this installation already has a KEK (sealed with "
                           f"{sealed['method']}); nothing changed")
        if demo:
            return _init_demo(config, path, database, store)
        if split is not None:
            keyring, shares = initialize_kek(store, shamir=split)
            _print_shares(shares, split)
        elif pkcs11:
            keyring, _ = initialize_kek(store, pkcs11=_token(config, pin_file))
            print(f"KEK created and sealed with the key {config.custody.pkcs11_key_label!r} "
                  f"of PKCS#11 token {config.custody.pkcs11_token_label!r}")
        else:
            passphrase = (read_secret_file(passphrase_file, "passphrase") if passphrase_file
                          else prompt_secret("Unseal passphrase", confirm=True))
            keyring, _ = initialize_kek(store, passphrase=passphrase)
            print("KEK created and sealed with the unseal passphrase")
        print(f"KEK fingerprint {keyring.fingerprint}; the server starts sealed: "
              f"unseal it with `medsign unseal`")
        return 0
    finally:
        database.dispose()


def _token(config: Any, pin_file: str | None) -> Any:
    from appliance.custody import Pkcs11Token  # noqa: PLC0415 -- keeps CLI start-up fast

    custody = config.custody
    if not custody.pkcs11_module or not custody.pkcs11_token_label:
        raise CliError("--pkcs11 needs custody.pkcs11_module and custody.pkcs11_token_label "
                       "in the configuration")
    pin = (read_secret_file(pin_file, "PIN") if pin_file
           else prompt_secret("Token user PIN"))
    return Pkcs11Token(module=custody.pkcs11_module, token_label=custody.pkcs11_token_label,
                       key_label=custody.pkcs11_key_label, pin=pin)


def _open_database(config: Any) -> Any:
    from appliance.storage import Database  # noqa: PLC0415 -- keeps CLI start-up fast

    Path(config.data_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
    database = Database(config.database_url, pool_size=config.database.pool_size,
                        echo=config.database.echo)
    database.migrate()
    return database


def _print_shares(shares: list[str], split: tuple[int, int]) -> None:
    threshold, count = split
    print(f"KEK created and sealed with {count} Shamir shares; any {threshold} unseal.")
    print("Give each share to ONE security officer, now. They are shown this once and are "
          "stored nowhere:")
    for number, share in enumerate(shares, start=1):
        print(f"  officer {number} of {count}: {share}")


def _init_demo(config: Any, config_file: Path, database: Any, store: Any) -> int:
    from appliance.custody import KeyHolder, initialize_kek  # noqa: PLC0415 -- fast start-up

    pass_file = Path(config.custody.unseal_passphrase_file
                     or config_file.parent / DEMO_PASSPHRASE_FILE)
    if store.load() is None:
        passphrase = secrets.token_urlsafe(32)
        # Written before sealing: a crash in between must not leave a KEK nobody can open.
        write_private_text(pass_file, passphrase + "\n")
        keyring, _ = initialize_kek(store, passphrase=passphrase)
        print(f"demo: KEK created, sealed with the passphrase in {pass_file} (mode 0600)")
    else:
        holder = KeyHolder(store)
        holder.unseal(passphrase=read_secret_file(str(pass_file), "demo unseal passphrase"))
        keyring = holder.keyring()
        print(f"demo: already initialized (KEK sealed with the passphrase in {pass_file})")
    if config.custody.start_sealed:
        print(f"demo: note: {config_file} has custody.start_sealed = true, so "
              f"`medsign serve` starts sealed (medsign unseal --passphrase-file {pass_file})")
    credentials = config_file.parent / DEMO_CREDENTIALS_FILE
    _demo.ensure_demo_principals(config, database, keyring, credentials)
    _demo.ensure_demo_templates(config, database, keyring)  # issue 7: sample PDF template
    return 0


# ---------------------------------------------------------------------------------------------
# unseal


def _request(url: str, *, body: dict[str, Any] | None = None,
             context: ssl.SSLContext | None = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET",  # noqa: S310
                                     headers={"Content-Type": "application/json",
                                              "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60, context=context) as response:  # noqa: S310
            answer: dict[str, Any] = json.loads(response.read())
            return answer
    except urllib.error.HTTPError as exc:
        try:
            problem = json.loads(exc.read())
            reason = f"{problem.get('code', exc.code)}: {problem.get('detail', '')}"
        except (ValueError, AttributeError):
            reason = f"HTTP {exc.code} {exc.reason}"
        raise CliError(f"the appliance refused: {reason}") from None
    except urllib.error.URLError as exc:
        raise CliError(f"cannot reach the appliance at {url}: {exc.reason}") from None
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot talk to the appliance at {url}: {exc}") from None


def _describe(status: dict[str, Any]) -> str:
    if not status.get("sealed"):
        return "unsealed"
    if status.get("method") == "shamir":
        need = int(status.get("threshold") or 0) - int(status.get("progress") or 0)
        return (f"still sealed: {status.get('progress')} of {status.get('threshold')} shares "
                f"given, {need} more needed")
    return "still sealed"


@click.command(name="unseal")
@config_option
@click.option("--url", metavar="URL",
              help="the server (default: server.public_url of the configuration)")
@click.option("--share", "use_share", is_flag=True,
              help="give one Shamir share (asked without echo)")
@click.option("--passphrase-file", metavar="FILE",
              help="read the passphrase from the first line of FILE instead of asking")
@click.option("--cacert", metavar="FILE", help="CA certificate(s) to trust for https")
def unseal_command(config_path: str | None, url: str | None, use_share: bool,
                   passphrase_file: str | None, cacert: str | None) -> int:
    """Unseal the running server: the passphrase, or this officer's Shamir share."""
    if use_share and passphrase_file:
        raise click.UsageError("--share and --passphrase-file are mutually exclusive")
    base = (url or load_config(config_path).server.public_url).rstrip("/")
    context = None
    if base.startswith("https:"):
        try:
            context = ssl.create_default_context(cafile=cacert)
        except (OSError, ssl.SSLError) as exc:
            raise CliError(f"cannot load --cacert {cacert}: {exc}") from None
    status = _request(f"{base}/api/v1/sys/seal-status", context=context)
    if not status.get("initialized"):
        raise CliError("the appliance is not initialized (run medsign init on it)")
    if not status.get("sealed"):
        print("already unsealed")
        return 0
    method = status.get("method")
    if use_share and method != "shamir":
        raise CliError(f"this appliance is sealed with {method}, not Shamir shares")
    if passphrase_file and method != "passphrase":
        raise CliError(f"this appliance is sealed with {method}, not a passphrase")
    if method == "shamir":
        body = {"share": prompt_secret("Your unseal share")}
    elif method == "passphrase":
        body = {"passphrase": read_secret_file(passphrase_file, "passphrase")
                if passphrase_file else prompt_secret("Unseal passphrase")}
    elif method == "pkcs11":
        body = {"pin": prompt_secret("Token user PIN")}
    else:
        raise CliError(f"unknown unseal method {method!r}")
    status = _request(f"{base}/api/v1/sys/unseal", body=body, context=context)
    print(_describe(status))
    sys.stdout.flush()
    return 0


COMMANDS = (init_command, unseal_command)

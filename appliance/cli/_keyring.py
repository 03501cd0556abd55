"""The unsealed KEK for the operator's commands (``medsign admin|app|signer|audit``).

The KEK of an installation is in exactly one process, normally the running server.  An
operator's command gets it, in this order:

1. from the running server's key custodian (``<data_dir>/keyholder.sock``): the server must
   be unsealed, and the custodian hands the KEK only to root (who could read the server's
   memory anyway) -- run the command as root on the appliance;
2. in the development demo (``custody.start_sealed = false``), from
   ``custody.unseal_passphrase_file``;
3. otherwise by unsealing here: the passphrase (``--passphrase-file`` or a prompt without
   echo), the Shamir shares one by one, or the token PIN -- with the server stopped.
"""

from __future__ import annotations

from typing import Any

from appliance.cli._common import CliError, prompt_secret, read_secret_file
from appliance.config import Config
from appliance.custody import KekStore, KeyHolder, Keyring
from appliance.errors import ApplianceError, Sealed
from appliance.storage import Database


def unsealed_holder(config: Config, database: Database, *,
                    passphrase_file: str | None = None) -> KeyHolder:
    """A key holder with the KEK loaded (see the module doc for where it comes from)."""
    from appliance import server  # noqa: PLC0415 -- gunicorn only for commands that need it

    store = KekStore(database)
    sealed = store.load()
    if sealed is None:
        raise CliError("this installation has no KEK yet (run medsign init)")
    holder = KeyHolder(store, pkcs11_module=config.custody.pkcs11_module)
    socket_path = server.socket_path_for(config, fallback=False)
    if socket_path.exists():
        try:
            answer = server.custodian_request(socket_path, "kek")
        except OSError:
            pass  # a stale socket: no server is running
        except Sealed:
            raise CliError("the running server is sealed: unseal it first (medsign unseal)"
                           ) from None
        except ApplianceError as exc:
            raise CliError(f"the running server keeps the KEK: {exc.detail}; run this as root "
                           f"on the appliance, or stop the server") from None
        else:
            holder.adopt(Keyring(bytes.fromhex(answer["kek"])))
            return holder
    _unseal_here(config, holder, sealed, passphrase_file)
    return holder


def _unseal_here(config: Config, holder: KeyHolder, sealed: dict[str, Any],
                 passphrase_file: str | None) -> None:
    method = sealed["method"]
    demo_file = config.custody.unseal_passphrase_file
    if method == "passphrase":
        if passphrase_file:
            passphrase = read_secret_file(passphrase_file, "passphrase")
        elif demo_file and not config.custody.start_sealed:
            passphrase = read_secret_file(demo_file, "demo unseal passphrase")
        else:
            passphrase = prompt_secret("Unseal passphrase")
        holder.unseal(passphrase=passphrase)
    elif passphrase_file:
        raise CliError(f"this installation is sealed with {method}, not a passphrase")
    elif method == "shamir":
        threshold = int(sealed["threshold"])
        for number in range(1, threshold + 1):
            holder.unseal(share=prompt_secret(f"Unseal share {number} of {threshold}"))
    elif method == "pkcs11":
        holder.unseal(pin=prompt_secret("Token user PIN"))
    else:
        raise CliError(f"unknown unseal method {method!r}")
    if holder.sealed:  # pragma: no cover - every branch above either opens or raises
        raise CliError("the KEK did not open")

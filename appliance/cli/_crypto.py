"""``medsign crypto ...``: interop commands over signcore (keys, CSRs, certificates, signatures)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from appliance.cli._common import CliError
from signcore import SigncoreError, hashes, keys

_READ_LIMIT = 256 * 1024 * 1024


def read_input(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            data = fh.read(_READ_LIMIT + 1)
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > _READ_LIMIT:
        raise CliError(f"{path} is larger than {_READ_LIMIT} bytes")
    return data


def write_output(path: str, data: bytes, *, private: bool = False) -> None:
    try:
        target = Path(path)
        if private:
            target.touch(mode=0o600, exist_ok=True)
            target.chmod(0o600)
        target.write_bytes(data)
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror}") from None


def _keygen(args: argparse.Namespace) -> int:
    key = keys.generate_private_key(args.alg)
    write_output(args.out, key.to_pem(), private=True)
    return 0


def _hash(args: argparse.Namespace) -> int:
    hasher = hashes.new(hashes.HashAlgorithm.from_name(args.alg))
    try:
        with open(args.file, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                hasher.update(chunk)
    except OSError as exc:
        raise CliError(f"cannot read {args.file}: {exc.strerror}") from None
    print(f"{hasher.hexdigest()}  {args.file}")
    return 0


def _guard(handler: Any) -> Any:
    """Turn signcore's input errors into one-line CLI errors with exit code 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            result: int = handler(args)
        except SigncoreError as exc:
            raise CliError(str(exc)) from None
        return result

    return run


def register(commands: Any) -> None:
    crypto = commands.add_parser("crypto", help="keys, CSRs, certificates, signatures (interop)")
    sub = crypto.add_subparsers(dest="crypto_command", metavar="COMMAND",
                                parser_class=type(crypto))
    sub.required = True

    keygen = sub.add_parser("keygen", help="generate a private key (PKCS#8 PEM)")
    keygen.add_argument("--alg", required=True, choices=["sm2", "rsa2048", "rsa3072", "ecdsa-p256"])
    keygen.add_argument("--out", required=True, metavar="KEY.pem")
    keygen.set_defaults(handler=_guard(_keygen))

    hash_cmd = sub.add_parser("hash", help="print the digest of a file")
    hash_cmd.add_argument("--alg", required=True, choices=["sm3", "sha256"])
    hash_cmd.add_argument("file", metavar="FILE")
    hash_cmd.set_defaults(handler=_guard(_hash))

"""``medsign crypto ...``: interop commands over signcore (keys, CSRs, certificates, signatures).

Exit codes: 0 success or "valid", 1 "invalid signature", 2 bad usage or unreadable input.
Everything a command prints on failure is one line on stderr.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click

from appliance.cli._common import EXIT_INVALID, CliError
from signcore import (
    DEFAULT_SM2_ID,
    InvalidSignature,
    PrivateKey,
    PublicKey,
    SigncoreError,
    cms,
    hashes,
    keys,
    x509,
)
from signcore.errors import DecodeError

READ_LIMIT = 256 * 1024 * 1024
Handler = Callable[[SimpleNamespace], int]

# What ``crypto issue`` puts in an end-entity certificate (a document signer) and in a sub-CA.
_LEAF = x509.Extensions(ca=False, key_usage=frozenset({"digital_signature", "non_repudiation"}))
_CA = x509.Extensions(ca=True, key_usage=frozenset({"key_cert_sign", "crl_sign"}))


# ---------------------------------------------------------------------------------------------
# Input and output


def read_input(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            data = fh.read(READ_LIMIT + 1)
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > READ_LIMIT:
        raise CliError(f"{path} is larger than {READ_LIMIT} bytes")
    return data


def write_output(path: str, data: bytes, *, private: bool = False) -> None:
    try:
        if private:
            # Create with 0600 from the start: a key must never be world-readable, even briefly.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.chmod(path, 0o600)
        else:
            Path(path).write_bytes(data)
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror}") from None


def read_password(spec: str | None) -> bytes | None:
    """OpenSSL-style password source: ``pass:TEXT``, ``env:VAR`` or ``file:PATH``."""
    if spec is None:
        return None
    kind, _, value = spec.partition(":")
    if kind == "pass":
        return value.encode()
    if kind == "env":
        if value not in os.environ:
            raise CliError(f"environment variable {value} is not set")
        return os.environ[value].encode()
    if kind == "file":
        lines = read_input(value).splitlines()
        return lines[0] if lines else b""
    raise CliError("password source must be pass:TEXT, env:VAR or file:PATH")


def load_key(path: str, passin: str | None) -> PrivateKey:
    return keys.load_private_key(read_input(path), read_password(passin))


def load_cert(path: str) -> x509.Certificate:
    return x509.load_certificate(read_input(path))


def load_verifier(path: str) -> tuple[PublicKey, x509.Certificate | None]:
    """A certificate or a bare public key, from PEM or DER."""
    data = read_input(path)
    try:
        cert = x509.load_certificate(data)
        return cert.public_key(), cert
    except DecodeError:
        pass
    try:
        return keys.load_public_key(data), None
    except DecodeError:
        raise CliError(f"{path} is neither a certificate nor a public key") from None


def _signer_id(args: SimpleNamespace) -> bytes:
    return args.id.encode() if args.id is not None else DEFAULT_SM2_ID


# ---------------------------------------------------------------------------------------------
# Commands


def _keygen(args: SimpleNamespace) -> int:
    password = read_password(args.passout)
    if password == b"":
        # An empty password would silently write the key UNENCRYPTED.
        raise CliError("--passout: the password is empty (omit --passout for a plain key)")
    key = keys.generate_private_key(args.alg)
    write_output(args.out, key.to_pem(password), private=True)
    return 0


def _csr(args: SimpleNamespace) -> int:
    key = load_key(args.key, args.passin)
    subject = _subject(args.subject)
    request = x509.build_csr(key, subject, _san_extensions(args))
    write_output(args.out, request.to_pem())
    return 0


def _selfsign(args: SimpleNamespace) -> int:
    key = load_key(args.key, args.passin)
    subject = _subject(args.subject)
    ext = _CA if args.ca else _with_san(_LEAF, args)
    cert = x509.issue_certificate(subject=subject, public_key=key.public_key(), signer=key,
                                  days=_days(args.days), extensions=ext)
    write_output(args.out, cert.to_pem())
    return 0


def _issue(args: SimpleNamespace) -> int:
    ca_key = load_key(args.ca_key, args.passin)
    ca_cert = load_cert(args.ca_cert)
    usages = ca_cert.extensions.key_usage
    if not ca_cert.is_ca or (usages and "key_cert_sign" not in usages):
        # What it signed would not validate anywhere: refuse instead of issuing a dud.
        raise CliError(f"{args.ca_cert} is not a CA certificate (basicConstraints CA:TRUE and "
                       "keyCertSign are needed to issue)")
    request = x509.load_csr(read_input(args.csr))
    try:
        request.verify()
    except InvalidSignature:
        raise CliError(f"{args.csr}: the request's proof-of-possession signature is invalid"
                       ) from None
    requested = request.extensions
    base = _CA if args.ca else _LEAF
    # Only the subject alternative names are taken from the request; the profile decides the
    # rest (a requester must not be able to ask for CA rights or extra key usages).
    ext = x509.Extensions(
        ca=base.ca, key_usage=base.key_usage, dns_names=requested.dns_names,
        emails=requested.emails, uris=requested.uris, ip_addresses=requested.ip_addresses,
        extended_key_usage=tuple(args.eku or ()),
    )
    start = dt.datetime.now(dt.UTC)
    end = start + dt.timedelta(days=_days(args.days))
    if ca_cert.not_after <= start:
        raise CliError(f"the CA certificate expired on {ca_cert.not_after:%Y-%m-%d}")
    if end > ca_cert.not_after:
        # Past the CA's end the certificate would stop validating anyway: end with the CA.
        end = ca_cert.not_after
        print(f"medsign: note: validity shortened to end with the CA certificate "
              f"({end:%Y-%m-%d %H:%M} UTC)", file=sys.stderr)
    cert = x509.issue_certificate(subject=request.subject_name, public_key=request.public_key(),
                                  signer=ca_key, issuer=ca_cert, not_before=start, not_after=end,
                                  extensions=ext)
    write_output(args.out, cert.to_pem())
    return 0


def _sign(args: SimpleNamespace) -> int:
    key = load_key(args.key, args.passin)
    data = read_input(args.input)
    if args.format == "raw":
        signature = key.sign(data, signer_id=_signer_id(args))
    else:
        if not args.cert:
            raise CliError(f"--format {args.format} needs --cert (the signer certificate)")
        signature = cms.sign(data, key, load_cert(args.cert),
                             detached=args.format == "cms-detached", flavor=args.flavor,
                             signer_id=_signer_id(args),
                             extra_certificates=_certs(args.certfile))
    write_output(args.out, signature)
    return 0


def _verify(args: SimpleNamespace) -> int:
    if args.cert and args.ca:
        raise CliError("--cert and --ca are mutually exclusive (see medsign crypto verify --help)")
    signature = read_input(args.input)
    content = read_input(args.content) if args.content else None
    fmt = args.format or _guess_format(signature)
    if fmt == "raw":
        return _verify_raw(args, signature, content)
    return _verify_cms(args, signature, content)


def _guess_format(signature: bytes) -> str:
    try:
        cms.load_signed_data(signature)
    except DecodeError:
        return "raw"
    return "cms"


def _verify_raw(args: SimpleNamespace, signature: bytes, content: bytes | None) -> int:
    if content is None:
        raise CliError("a raw signature needs --content (the signed file)")
    if not args.cert:
        raise CliError("a raw signature needs --cert (a certificate or public key)")
    public, _ = load_verifier(args.cert)
    try:
        public.verify(signature, content, signer_id=_signer_id(args))
    except InvalidSignature as exc:
        print(f"medsign: invalid signature: {exc}", file=sys.stderr)
        return EXIT_INVALID
    print("valid signature")
    return 0


def _verify_cms(args: SimpleNamespace, signature: bytes, content: bytes | None) -> int:
    roots = x509.load_certificates(read_input(args.ca)) if args.ca else None
    signer_cert = load_cert(args.cert) if args.cert else None
    result = cms.verify(signature, content=content, trust_roots=roots,
                        certificates=[signer_cert] if signer_cert else [],
                        intermediates=_certs(args.certfile), signer_id=_signer_id(args))
    problems = [p for s in result.signers for p in s.problems]
    if signer_cert is not None and any(s.signer_certificate != signer_cert
                                       for s in result.signers):
        problems.append("the signature was not made with the certificate given by --cert")
    if not result.signers:
        problems.append("the CMS carries no signer")
    if problems or not result.valid:
        print(f"medsign: invalid signature: {'; '.join(problems) or 'not valid'}",
              file=sys.stderr)
        return EXIT_INVALID
    for signer in result.signers:
        cert = signer.signer_certificate
        when = signer.signing_time.isoformat() if signer.signing_time else "-"
        trust = {True: "chain ok", None: "chain not checked (no --ca)"}[signer.trusted]
        subject = cert.subject if cert else "?"
        print(f"valid {result.flavor.value} signature by {subject}; signing time {when}; {trust}")
    return 0


def _hash(args: SimpleNamespace) -> int:
    hasher = hashes.new(hashes.HashAlgorithm.from_name(args.alg))
    try:
        with open(args.file, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                hasher.update(chunk)
    except OSError as exc:
        raise CliError(f"cannot read {args.file}: {exc.strerror}") from None
    print(f"{hasher.hexdigest()}  {args.file}")
    return 0


# ---------------------------------------------------------------------------------------------
# Argument helpers


def _subject(text: str) -> Any:
    try:
        return x509.parse_name(text)
    except ValueError as exc:
        raise CliError(f"bad --subject: {exc}") from None


def _days(days: int) -> int:
    if not 0 < days <= 36500:
        raise CliError("--days must be between 1 and 36500")
    return days


def _certs(paths: Sequence[str] | None) -> list[x509.Certificate]:
    return [c for path in paths or [] for c in x509.load_certificates(read_input(path))]


def _san_extensions(args: SimpleNamespace) -> x509.Extensions | None:
    if not (args.dns or args.email):
        return None
    return x509.Extensions(dns_names=tuple(args.dns or ()), emails=tuple(args.email or ()))


def _with_san(base: x509.Extensions, args: SimpleNamespace) -> x509.Extensions:
    san = _san_extensions(args)
    if san is None:
        return base
    return x509.Extensions(ca=base.ca, key_usage=base.key_usage, dns_names=san.dns_names,
                           emails=san.emails)


def _guard(handler: Handler) -> Callable[..., int]:
    """A click callback: options become the handler's namespace; signcore's input errors become
    one-line CLI errors with exit code 2."""

    def run(**options: Any) -> int:
        try:
            return handler(SimpleNamespace(**options))
        except (SigncoreError, ValueError) as exc:
            raise CliError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                           ) from None

    run.__name__ = handler.__name__.lstrip("_")
    run.__doc__ = handler.__doc__
    return run


@click.group(name="crypto")
def crypto() -> None:
    """Keys, CSRs, certificates, signatures (interop)."""


def _command(name: str, handler: Handler, help_text: str,
             *params: Callable[[Any], Any]) -> None:
    callback: Any = _guard(handler)
    for param in reversed(params):
        callback = param(callback)
    crypto.command(name=name, help=help_text, short_help=help_text)(callback)


def _opt(*decls: str, **attrs: Any) -> Callable[[Any], Any]:
    return click.option(*decls, **attrs)


def _key_args() -> list[Callable[[Any], Any]]:
    return [_opt("--key", required=True, metavar="KEY.pem"),
            _opt("--passin", metavar="SRC", help="key password: pass:, env: or file:")]


def _san_args() -> list[Callable[[Any], Any]]:
    return [_opt("--dns", multiple=True, metavar="NAME", help="SAN DNS name (repeatable)"),
            _opt("--email", multiple=True, metavar="ADDR", help="SAN e-mail (repeatable)")]


_ID = _opt("--id", metavar="USERID", help="SM2 signer ID (default 1234567812345678)")

_command("keygen", _keygen, "generate a private key (PKCS#8 PEM, mode 0600)",
         _opt("--alg", required=True,
              type=click.Choice(["sm2", "rsa2048", "rsa3072", "ecdsa-p256"])),
         _opt("--out", required=True, metavar="KEY.pem"),
         _opt("--passout", metavar="SRC", help="encrypt the key: pass:, env: or file:"))

_command("hash", _hash, "print the digest of a file",
         _opt("--alg", required=True, type=click.Choice(["sm3", "sha256"])),
         click.argument("file", metavar="FILE"))

_command("csr", _csr, "make a PKCS#10 certificate request",
         *_key_args(),
         _opt("--subject", required=True, help='e.g. "CN=张三,OU=内科,O=某医院,C=CN"'),
         *_san_args(),
         _opt("--out", required=True, metavar="REQ.pem"))

_command("selfsign", _selfsign, "make a self-signed certificate",
         *_key_args(),
         _opt("--subject", required=True),
         _opt("--days", required=True, type=int),
         _opt("--ca", is_flag=True, help="a CA certificate (keyCertSign, cRLSign)"),
         *_san_args(),
         _opt("--out", required=True, metavar="CERT.pem"))

_command("issue", _issue, "issue a certificate for a CSR",
         _opt("--ca-key", "ca_key", required=True, metavar="K"),
         _opt("--ca-cert", "ca_cert", required=True, metavar="C"),
         _opt("--passin", metavar="SRC", help="password of the CA key"),
         _opt("--csr", required=True, metavar="REQ.pem"),
         _opt("--days", required=True, type=int),
         _opt("--ca", is_flag=True, help="issue a sub-CA certificate"),
         _opt("--eku", multiple=True, metavar="NAME|OID",
              help="extended key usage (repeatable), e.g. email_protection"),
         _opt("--out", required=True, metavar="CERT.pem"))

_command("sign", _sign, "sign a file (raw signature or CMS)",
         *_key_args(),
         _opt("--cert", metavar="CERT.pem", help="signer certificate (CMS formats)"),
         _opt("--certfile", multiple=True, metavar="CHAIN.pem",
              help="extra certificates to embed (repeatable)"),
         _opt("--in", "input", required=True, metavar="FILE"),
         _opt("--format", required=True,
              type=click.Choice(["raw", "cms-detached", "cms-attached"])),
         _opt("--flavor", default="rfc5652", show_default=True,
              type=click.Choice(["rfc5652", "gmt0010"])),
         _ID,
         _opt("--out", required=True, metavar="OUT"))


_command("verify", _verify, "verify a raw or CMS signature (exit 1 if invalid)",
         _opt("--in", "input", required=True, metavar="SIG"),
         _opt("--content", metavar="FILE", help="the signed file (raw and detached CMS)"),
         _opt("--cert", metavar="CERT.pem", help="the signer certificate (or public key)"),
         _opt("--ca", metavar="ROOT.pem",
              help="trust anchors (every certificate in the file is trusted); not with --cert"),
         _opt("--certfile", multiple=True, metavar="CHAIN.pem",
              help="intermediate certificates (repeatable)"),
         _opt("--format", type=click.Choice(["raw", "cms"]), help="default: detected"),
         _ID)

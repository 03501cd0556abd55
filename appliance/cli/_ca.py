"""``medsign ca ...``: the built-in CA from the appliance's console.

``init`` creates an SM2 or RSA hierarchy; ``issue`` certifies a CSR with a profile; ``revoke``
revokes (the CRLs are republished at once); ``list`` and ``show`` read what was issued; ``crl``
writes a published CRL.  Commands that sign need the unsealed KEK (see
:mod:`appliance.cli._keyring`); reading does not.  The operator acts as ``cli:<login>``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from appliance.cli._common import CliError, config_option
from appliance.cli._operator import _PASSPHRASE_OPTION, _database, _open, _operator_name


class _Ca:
    """The CA service of one command, with the audit log (flushed when the command ends)."""

    def __init__(self, config_path: str | None, passphrase_file: str | None, *,
                 sign: bool) -> None:
        from appliance.services.audit import AuditLog  # noqa: PLC0415 -- fast start-up
        from appliance.services.ca import CaService  # noqa: PLC0415

        if sign:
            config, self.database, holder = _open(config_path, passphrase_file)
            self.audit: Any = AuditLog(self.database, holder, config.audit)
        else:
            from appliance.custody import KekStore, KeyHolder  # noqa: PLC0415

            config, self.database = _database(config_path)
            holder, self.audit = KeyHolder(KekStore(self.database)), None
        self.holder = holder
        self.service = CaService(self.database, holder, public_url=config.server.public_url,
                                 audit=self.audit)

    def channels(self) -> Any:
        from appliance.services.channels import ChannelService  # noqa: PLC0415

        return ChannelService(self.database, self.holder, self.service, audit=self.audit)

    def __enter__(self) -> Any:
        return self.service

    def __exit__(self, *_exc: object) -> None:
        try:
            if self.audit is not None:
                self.audit.close()
        finally:
            self.database.dispose()


def _actor() -> Any:
    from appliance.services.signers import CliActor  # noqa: PLC0415

    return CliActor(_operator_name())


@click.group(name="ca")
def ca_group() -> None:
    """The built-in CA: hierarchies, certificates, revocation, CRLs."""


@ca_group.command(name="init")
@config_option
@_PASSPHRASE_OPTION
@click.option("--algorithm", type=click.Choice(["sm2", "rsa"]), required=True)
@click.option("--organization", required=True, help="the hospital's name, as in the CA names")
def ca_init(config_path: str | None, passphrase_file: str | None, algorithm: str,
            organization: str) -> int:
    """Create a root and an issuing CA (a new generation retires the previous one)."""
    with _Ca(config_path, passphrase_file, sign=True) as service:
        authority = service.initialize(_actor(), algorithm, organization)
    print(f"created {authority.id}: {authority.certificate.subject}")
    print(f"root: {authority.root.subject}")
    print(f"CRL: {service.urls(authority.id).crl}")
    return 0


def _subject(fields: dict[str, Any]) -> Any:
    from ca_client import SubjectInfo  # noqa: PLC0415

    return SubjectInfo(common_name=fields["common_name"], organization=fields["organization"],
                       department=fields["department"], title=fields["title"],
                       unique_id=fields["unique_id"], dns_names=tuple(fields["dns"]))


@ca_group.command(name="issue")
@config_option
@_PASSPHRASE_OPTION
@click.argument("csr_file", metavar="CSR", type=click.Path(dir_okay=False))
@click.option("--algorithm", type=click.Choice(["sm2", "rsa"]), required=True)
@click.option("--profile", required=True, help="doctor-signing, organization-seal, tsa, ...")
@click.option("--cn", "common_name", required=True, help="the person's or the seal's name")
@click.option("--org", "organization", required=True)
@click.option("--dept", "department", default="")
@click.option("--title", default="")
@click.option("--unique-id", default="", help="a person's pseudonymous identifier")
@click.option("--dns", multiple=True, help="DNS name (tls-server profile; repeatable)")
@click.option("--out", metavar="FILE", help="write the certificate (PEM) here, not stdout")
def ca_issue(*, config_path: str | None, passphrase_file: str | None, csr_file: str,
             algorithm: str, profile: str, out: str | None, **fields: Any) -> int:
    """Issue a certificate for the PKCS#10 request in CSR (PEM or DER)."""
    try:
        csr = Path(csr_file).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {csr_file}: {exc.strerror}") from None
    subject = _subject(fields)
    with _Ca(config_path, passphrase_file, sign=True) as service:
        info = service.issue(_actor(), algorithm=algorithm, profile=profile, subject=subject,
                             csr_der=csr)
    pem = info.to_json()["pem"]
    if out:
        Path(out).write_text(pem)
        print(f"issued certificate {info.id} (serial {info.serial_hex}) -> {out}")
    else:
        sys.stdout.write(pem)
    return 0


@ca_group.command(name="revoke")
@config_option
@_PASSPHRASE_OPTION
@click.argument("certificate_id", type=int)
@click.option("--reason", default="unspecified",
              type=click.Choice(["unspecified", "key_compromise", "affiliation_changed",
                                 "superseded", "cessation_of_operation",
                                 "privilege_withdrawn"]))
def ca_revoke(config_path: str | None, passphrase_file: str | None, certificate_id: int,
              reason: str) -> int:
    """Revoke a certificate through the channel that issued it (the built-in CA republishes
    its CRLs at once)."""
    opened = _Ca(config_path, passphrase_file, sign=True)
    with opened:
        info = opened.channels().revoke(_actor(), certificate_id, reason)
    print(f"revoked certificate {info.id} (serial {info.serial_hex}): {reason}")
    return 0


@ca_group.command(name="list")
@config_option
@click.option("--status", type=click.Choice(["active", "expired", "revoked"]))
@click.option("--profile")
@click.option("--search", "query", help="part of the subject or the serial")
@click.option("--limit", type=click.IntRange(1, 500), default=100)
@click.option("--json", "as_json", is_flag=True)
def ca_list(*, config_path: str | None, status: str | None, profile: str | None,
            query: str | None, limit: int, as_json: bool) -> int:
    """List issued certificates, newest first."""
    with _Ca(config_path, None, sign=False) as service:
        items, total = service.search(status=status, profile=profile, query=query, limit=limit)
    rows = [item.to_json() for item in items]
    if as_json:
        print(json.dumps({"total": total, "items": rows}, ensure_ascii=False, indent=2))
        return 0
    for row in rows:
        print(f"{row['id']:>6}  {row['status']:<8} {row['profile']:<20} "
              f"{row['not_after'][:10]}  {row['serial'][:16]}  {row['subject']}")
    print(f"{len(rows)} of {total}")
    return 0


@ca_group.command(name="show")
@config_option
@click.argument("certificate_id", type=int)
def ca_show(config_path: str | None, certificate_id: int) -> int:
    """One certificate as JSON (with its PEM)."""
    with _Ca(config_path, None, sign=False) as service:
        print(json.dumps(service.get(certificate_id).to_json(), ensure_ascii=False, indent=2))
    return 0


@ca_group.command(name="crl")
@config_option
@click.argument("ca_id")
@click.option("--delta", is_flag=True, help="the delta CRL instead of the full one")
@click.option("--out", metavar="FILE", required=True, help="where to write the CRL (DER)")
def ca_crl(config_path: str | None, ca_id: str, delta: bool, out: str) -> int:
    """Write the published CRL of CA_ID (e.g. sm2-g1)."""
    with _Ca(config_path, None, sign=False) as service:
        data = service.crl(ca_id, delta=delta)
    Path(out).write_bytes(data)
    print(f"wrote {len(data)} bytes to {out}")
    return 0


COMMANDS = (ca_group,)

"""CA channels on the appliance: several configured at once, one active per certificate
profile, switched online (tender: 支持多 CA 证书授权中心通道配置，可以在线切换证书授权中心通道).

Channels:

- ``builtin-sm2`` and ``builtin-rsa``: the built-in CA's active hierarchy of that algorithm
  (they exist once ``medsign ca init`` made it);
- configured ones (``ca_channels``): ``cmp`` (RFC 4210/9483 with a PBM shared secret) and
  ``vendor-http`` (a licensed CA's HTTP+JSON interface); settings are JSON, secrets are stored
  only as an envelope under the KEK and never returned.

The active channel of each profile is a row in ``ca_active_channels`` read on every
enrollment, so a switch takes effect for the next enrollment in every worker and node without
a restart, and an enrollment already under way finishes on the channel it started with.  Every
certificate records the channel that issued it.  A channel that does not answer makes the
enrollment fail with ``ca-channel-unavailable`` (503, retry later; ``CaChannelDown``) and
leaves an alert in the audit log (category ``system``); certificates already issued are not
affected.

Threat model: only the security administrator configures channels and switches them (a rogue
channel could issue certificates for doctors); every change is audited.  The secrets a channel
needs (PBM secret, vendor app secret) are wrapped like every other server-held secret.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from appliance.custody import KeyHolder
from appliance.errors import CaChannelDown, Conflict, NotFound, ValidationFailed
from appliance.services._time import utc_now as _now
from appliance.services.admins import Actor, actor_label, require_manager
from appliance.services.ca import CaService, CertificateInfo, ServerKeyStore
from appliance.storage import Database, schema
from ca_client import (
    PROFILES,
    REVOCATION_REASONS,
    AlreadyRevoked,
    BuiltinChannel,
    CaError,
    Channel,
    ChannelStatus,
    ChannelUnavailable,
    CmpChannel,
    CmpConfig,
    EnrollmentRequest,
    RequestRejected,
    SubjectInfo,
    VendorHttpChannel,
    VendorHttpConfig,
    enroll,
)
from signcore.errors import SigncoreError
from signcore.keys import generate_private_key, load_private_key
from signcore.x509 import Certificate, load_certificate, load_certificates

CH = schema.ca_channels
ACTIVE = schema.ca_active_channels
BUILTIN = {"builtin-sm2": "sm2", "builtin-rsa": "rsa"}
KINDS = ("cmp", "vendor-http")
#: where each profile enrolls until the security administrator switches it
DEFAULT_CHANNELS = {**{name: "builtin-sm2" for name in PROFILES}, "tls-server": "builtin-rsa"}
KEY_SPECS = {"sm2": "sm2", "rsa": "rsa2048"}
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_CMP_PEM_SETTINGS = {"reference", "server_certificate_pem", "protection_certificate_pem",
                     "protection_chain_pem"}
_CMP_SETTINGS = {"url", "sender", "recipient", "initial_body", "pbm_iterations",
                 "connect_timeout", "read_timeout", *_CMP_PEM_SETTINGS}
AuditHook = Callable[[str, str, str, str, dict[str, Any]], object]


def _secret_context(name: str) -> bytes:
    return f"medsign/ca-channel/{name}".encode()


@dataclasses.dataclass(frozen=True)
class ChannelInfo:
    name: str
    kind: str
    enabled: bool
    settings: Mapping[str, Any]
    has_secrets: bool
    profiles: tuple[str, ...]  # the profiles it is active for

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "enabled": self.enabled,
                "settings": dict(self.settings), "has_secrets": self.has_secrets,
                "active_for": list(self.profiles)}


class ChannelService:
    def __init__(self, database: Database, key_holder: KeyHolder, ca: CaService, *,
                 audit: AuditHook | None = None, clock: Callable[[], dt.datetime] = _now) -> None:
        self._db, self._holder, self._ca = database, key_holder, ca
        self._audit, self._clock = audit, clock
        self._keys = ServerKeyStore(database, key_holder)

    # -- configuration

    def assignments(self) -> dict[str, str]:
        """profile -> active channel (defaults where nobody switched yet)."""
        with self._db.engine.connect() as conn:
            rows = conn.execute(select(ACTIVE.c.profile, ACTIVE.c.channel)).all()
        return {**DEFAULT_CHANNELS, **{r.profile: r.channel for r in rows}}

    def channels(self) -> list[ChannelInfo]:
        active = self.assignments()
        algorithms = {a.algorithm for a in self._ca.authorities() if a.status == "active"}
        found = [ChannelInfo(name, "builtin", algorithm in algorithms, {"algorithm": algorithm},
                             False, tuple(p for p, c in active.items() if c == name))
                 for name, algorithm in BUILTIN.items()]
        with self._db.engine.connect() as conn:
            rows = conn.execute(select(CH).order_by(CH.c.name)).all()
        found += [ChannelInfo(r.name, r.kind, bool(r.enabled), json.loads(r.settings),
                              r.secrets_wrapped is not None,
                              tuple(p for p, c in active.items() if c == r.name)) for r in rows]
        return found

    def info(self, name: str) -> ChannelInfo:
        for channel in self.channels():
            if channel.name == name:
                return channel
        raise NotFound(f"没有 CA 通道 {name}")

    def add(self, actor: Actor | None, *, name: str, kind: str, settings: Mapping[str, Any],
            secrets: Mapping[str, Any]) -> ChannelInfo:
        require_manager(actor, "CA 通道")
        if not _NAME.match(name) or name in BUILTIN:
            raise ValidationFailed("name: 1 to 63 lower-case letters, digits, '-' or '_', "
                                   "not builtin-sm2 / builtin-rsa")
        if kind not in KINDS:
            raise ValidationFailed(f"kind 应为 {', '.join(KINDS)} 之一")
        self._build(name, kind, settings, secrets)  # refuses a configuration that cannot work
        keyring = self._holder.keyring()
        now = self._clock()
        wrapped = (keyring.wrap(json.dumps(dict(secrets)).encode(), _secret_context(name))
                   if secrets else None)
        try:
            with self._db.transaction() as conn:
                conn.execute(insert(CH).values(
                    name=name, kind=kind, settings=json.dumps(dict(settings), ensure_ascii=False),
                    secrets_wrapped=wrapped, enabled=True, created_at=now, updated_at=now))
        except IntegrityError:
            raise Conflict(f"CA 通道 {name} 已存在") from None
        self._record("system", "ca.channel.add", actor, name,
                     {"kind": kind, "settings": sorted(settings), "secrets": sorted(secrets)})
        return self.info(name)

    def set_enabled(self, actor: Actor | None, name: str, enabled: bool) -> ChannelInfo:
        require_manager(actor, "CA 通道")
        if name in BUILTIN:
            raise Conflict("内置 CA 通道随 CA 层级启用，不能单独停用")
        if not enabled and name in self.assignments().values():
            raise Conflict(f"CA 通道 {name} 正在使用中，请先把相关证书类型切换到其他通道")
        with self._db.transaction() as conn:
            changed = conn.execute(update(CH).where(CH.c.name == name).values(
                enabled=enabled, updated_at=self._clock())).rowcount
        if not changed:
            raise NotFound(f"没有 CA 通道 {name}")
        self._record("system", "ca.channel.enable" if enabled else "ca.channel.disable", actor,
                     name, {})
        return self.info(name)

    def remove(self, actor: Actor | None, name: str) -> None:
        require_manager(actor, "CA 通道")
        if name in BUILTIN:
            raise Conflict("内置 CA 通道不能删除")
        if name in self.assignments().values():
            raise Conflict(f"CA 通道 {name} 正在使用中，请先把相关证书类型切换到其他通道")
        with self._db.transaction() as conn:
            if not conn.execute(delete(CH).where(CH.c.name == name)).rowcount:
                raise NotFound(f"没有 CA 通道 {name}")
        self._record("system", "ca.channel.remove", actor, name, {})

    def switch(self, actor: Actor | None, profile: str, channel: str) -> dict[str, str]:
        """Make ``channel`` the one that enrolls ``profile`` from now on (online)."""
        require_manager(actor, "CA 通道")
        if profile not in PROFILES:
            raise ValidationFailed(f"profile 应为 {', '.join(sorted(PROFILES))} 之一")
        target = self.info(channel)
        if not target.enabled:
            raise Conflict(f"CA 通道 {channel} 未启用（内置通道需先 medsign ca init）")
        before = self.assignments()[profile]
        now = self._clock()
        with self._db.transaction() as conn:
            changed = conn.execute(update(ACTIVE).where(ACTIVE.c.profile == profile).values(
                channel=channel, updated_at=now, updated_by=actor_label(actor))).rowcount
            if not changed:
                conn.execute(insert(ACTIVE).values(profile=profile, channel=channel,
                                                   updated_at=now,
                                                   updated_by=actor_label(actor)))
        self._record("system", "ca.channel.switch", actor, profile,
                     {"from": before, "to": channel})
        return self.assignments()

    # -- channel objects

    def channel(self, name: str) -> Channel:
        if name in BUILTIN:
            authority = self._ca.active_authority(BUILTIN[name])
            return BuiltinChannel(name, self._ca.builtin(authority.id))
        with self._db.engine.connect() as conn:
            row = conn.execute(select(CH).where(CH.c.name == name)).first()
        if row is None:
            raise NotFound(f"没有 CA 通道 {name}")
        if not row.enabled:
            raise Conflict(f"CA 通道 {name} 已停用")
        secrets: dict[str, Any] = {}
        if row.secrets_wrapped is not None:
            secrets = json.loads(self._holder.keyring().unwrap(bytes(row.secrets_wrapped),
                                                               _secret_context(name)))
        return self._build(name, row.kind, json.loads(row.settings), secrets)

    @staticmethod
    def _build(name: str, kind: str, settings: Mapping[str, Any],
               secrets: Mapping[str, Any]) -> Channel:
        try:
            if kind == "vendor-http":
                return VendorHttpChannel(VendorHttpConfig.from_dict(
                    {**settings, **secrets, "name": name}))
            return CmpChannel(_cmp_config(name, settings, secrets))
        except RequestRejected as exc:
            raise ValidationFailed(f"CA 通道配置无效：{exc}") from None

    def status(self, name: str) -> ChannelStatus:
        try:
            return self.channel(name).status()
        except (Conflict, NotFound) as exc:
            return ChannelStatus(name, "builtin" if name in BUILTIN else "?", False, str(exc))

    # -- enrollment of the appliance's own keys

    def enroll_server_key(self, actor: Actor | None, *, profile: str, subject: SubjectInfo,
                          algorithm: str) -> CertificateInfo:
        """Generate a key for ``profile`` (seal, TSA, TLS, update signing), have the profile's
        active channel certify it, store the key wrapped under the KEK next to the
        certificate."""
        require_manager(actor, "证书")
        chosen = PROFILES.get(profile)
        if chosen is None or not chosen.server_held:
            raise ValidationFailed("只有服务器持有密钥的证书类型（印章、时间戳、TLS、升级签名）"
                                   "可由设备生成密钥")
        if algorithm not in KEY_SPECS:
            raise ValidationFailed("algorithm 应为 sm2 或 rsa")
        name = self.assignments()[profile]
        channel = self.channel(name)
        key = generate_private_key(KEY_SPECS[algorithm])
        try:
            enrollment = enroll(channel, EnrollmentRequest(profile, subject, key.public_key()),
                                key)
        except ChannelUnavailable as exc:
            self._record("system", "ca.channel.unavailable", actor, name,
                         {"profile": profile, "error": str(exc)})
            raise CaChannelDown(f"CA 通道 {name} 暂不可用：{exc}") from None
        except (RequestRejected, AlreadyRevoked) as exc:
            raise ValidationFailed(f"CA 通道 {name} 拒绝了申请：{exc}") from None
        except CaError as exc:
            raise Conflict(str(exc)) from None
        key_id = self._keys.store(key, purpose=f"cert-{profile}")
        info = self._ca.record_issued(enrollment.certificate, channel=name, profile=profile,
                                      actor=actor, key_id=key_id,
                                      builtin=isinstance(channel, BuiltinChannel))
        self._record("data", "cert.enroll", actor, f"{name}/{info.serial_hex}",
                     {"profile": profile, "certificate_id": info.id, "channel": name})
        return info

    # -- revocation (any channel)

    def revoke(self, actor: Actor | None, certificate_id: int, reason: str) -> CertificateInfo:
        """Revoke through the channel that issued the certificate (the built-in CA republishes
        its CRLs at once); the revocation is then recorded here as well."""
        require_manager(actor, "证书")
        info = self._ca.get(certificate_id)
        if info.issuer_id in {a.id for a in self._ca.authorities()}:
            return self._ca.revoke(actor, certificate_id, reason)
        if info.status == "revoked":
            raise Conflict(f"证书 {info.serial_hex} 已吊销")
        if reason not in REVOCATION_REASONS:
            raise ValidationFailed(f"reason 应为 {', '.join(REVOCATION_REASONS)} 之一")
        try:
            self.channel(info.channel).revoke(Certificate.from_stored(info.der), reason)
        except ChannelUnavailable as exc:
            self._record("system", "ca.channel.unavailable", actor, info.channel,
                         {"certificate_id": certificate_id, "error": str(exc)})
            raise CaChannelDown(f"CA 通道 {info.channel} 暂不可用：{exc}") from None
        except AlreadyRevoked:
            pass  # the CA had it revoked already: record it here too
        except (RequestRejected, CaError) as exc:
            raise Conflict(f"CA 通道 {info.channel} 拒绝吊销：{exc}") from None
        self._ca.mark_revoked(certificate_id, reason)
        self._record("data", "cert.revoke", actor, f"{info.channel}/{info.serial_hex}",
                     {"reason": reason, "certificate_id": certificate_id})
        return self._ca.get(certificate_id)

    def revoke_for_signer(self, signer_id: int, actor: Actor | None, *,
                          reason: str = "affiliation_changed") -> list[int]:
        """Revoke every valid certificate of a signer (disabled, phone lost, key compromised):
        the ids revoked.  Runs on behalf of whoever disabled the signer (a reviewer or the
        hospital backend may, without managing certificates themselves)."""
        return self.revoke_on_behalf(
            [info.id for info in self._ca.certificates_of_signer(signer_id)],
            f"signer-disabled-by:{actor_label(actor)}", reason=reason)

    def revoke_on_behalf(self, certificate_ids: list[int], because: str, *,
                         reason: str) -> list[int]:
        """Revoke certificates as the consequence of an authorized act named by ``because``
        (a signer disabled, a phone reported lost): the ids revoked.  A channel that is down
        does not stop the others; it is alerted and the certificate stays listed as active
        for the security administrator to retry."""
        actor = _OnBehalf(because)
        revoked = []
        for certificate_id in certificate_ids:
            info = self._ca.get(certificate_id)
            if info.status == "revoked":
                continue
            try:
                self.revoke(actor, info.id, reason)
            except (CaChannelDown, Conflict) as exc:
                self._record("system", "cert.revoke-failed", actor,
                             f"{info.channel}/{info.serial_hex}",
                             {"certificate_id": info.id, "signer_id": info.signer_id,
                              "error": exc.detail})
            else:
                revoked.append(info.id)
        return revoked

    def _record(self, category: str, action: str, actor: Actor | None, subject: str,
                details: Mapping[str, Any]) -> None:
        if self._audit is not None:
            self._audit(category, action, actor_label(actor), subject, dict(details))


@dataclasses.dataclass(frozen=True)
class _OnBehalf:
    """The appliance acting on a consequence of someone's act (named in the audit log)."""

    name: str
    kind: str = "system"
    id: int = 0


def _cmp_config(name: str, settings: Mapping[str, Any], secrets: Mapping[str, Any]) -> CmpConfig:
    """A CMP channel's configuration: PBM (``secrets.secret``) or signature protection
    (``secrets.protection_key_pem`` with ``settings.protection_certificate_pem`` and optionally
    ``settings.protection_chain_pem``, the CA certificates above it; signature-protected
    requests also need ``server_certificate_pem``)."""
    unknown = set(settings) - _CMP_SETTINGS
    if unknown:
        raise RequestRejected(f"unknown CMP settings {sorted(unknown)}")
    values: dict[str, Any] = {k: v for k, v in settings.items() if k not in _CMP_PEM_SETTINGS}
    if "reference" in settings:
        values["reference"] = str(settings["reference"]).encode()
    values.update(_cmp_certificates(settings))
    values.update(_cmp_protection(secrets, settings))
    try:
        return CmpConfig(name=name, **values)
    except TypeError as exc:
        raise RequestRejected(str(exc)) from None



def _cmp_certificates(settings: Mapping[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for setting, field in (("server_certificate_pem", "server_certificate"),
                           ("protection_certificate_pem", "protection_certificate")):
        pem = settings.get(setting)
        if pem is not None:
            try:
                found[field] = load_certificate(str(pem).encode())
            except ValueError as exc:
                raise RequestRejected(f"{setting}: {exc}") from None
    chain = settings.get("protection_chain_pem")
    if chain is not None:
        try:
            found["protection_chain"] = tuple(load_certificates(str(chain).encode()))
        except ValueError as exc:
            raise RequestRejected(f"protection_chain_pem: {exc}") from None
    return found


def _cmp_protection(secrets: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    if set(secrets) == {"secret"} and isinstance(secrets["secret"], str):
        return {"secret": secrets["secret"].encode()}
    if set(secrets) == {"protection_key_pem"} and isinstance(secrets["protection_key_pem"], str):
        if "protection_certificate_pem" not in settings:
            raise RequestRejected("signature protection needs settings.protection_certificate_pem")
        try:
            return {"protection_signer": load_private_key(
                secrets["protection_key_pem"].encode())}
        except (SigncoreError, ValueError) as exc:
            raise RequestRejected(f"protection_key_pem: {exc}") from None
    raise RequestRejected("a CMP channel needs secrets.secret (PBM shared secret) or "
                          "secrets.protection_key_pem (signature protection)")

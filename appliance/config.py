"""Appliance configuration: one TOML file plus ``MEDSIGN_<SECTION>_<KEY>`` environment overrides.

The file is ``/etc/medsign/medsign.toml`` on the appliance and ``./var/medsign.toml`` in
development (``MEDSIGN_CONFIG`` names another).  Every setting has a safe default, so an empty
file is a valid development configuration; unknown sections or keys are refused so that a typo
never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from pathlib import Path
from typing import Any

from appliance.errors import ConfigError

DEFAULT_PATHS = (Path("/etc/medsign/medsign.toml"), Path("var/medsign.toml"))


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    bind: str = "127.0.0.1:8080"
    workers: int = 2
    threads: int = 4
    tls_cert: str = ""  # PEM file; with tls_key, the server speaks TLS 1.2+ only
    tls_key: str = ""
    max_body_bytes: int = 10 * 1024 * 1024
    public_url: str = "http://127.0.0.1:8080"


@dataclasses.dataclass(frozen=True)
class DatabaseConfig:
    url: str = ""  # default: SQLite in the data directory
    pool_size: int = 5
    echo: bool = False


@dataclasses.dataclass(frozen=True)
class CustodyConfig:
    start_sealed: bool = True  # False only for the development demo (the KEK file is on disk)
    pkcs11_module: str = ""  # e.g. /usr/lib/softhsm/libsofthsm2.so
    pkcs11_token_label: str = ""
    pkcs11_key_label: str = "medsign-kek"
    # Development demo only: with start_sealed = false, `medsign serve` unseals with the
    # passphrase in this file (the first line; written by `medsign init --demo`, mode 0600).
    unseal_passphrase_file: str = ""


@dataclasses.dataclass(frozen=True)
class SecurityConfig:
    admin_max_failures: int = 5
    admin_lock_minutes: int = 15
    session_minutes: int = 30
    request_max_skew_seconds: int = 300
    pin_max_failures: int = 10
    cookie_secure: bool = True


@dataclasses.dataclass(frozen=True)
class AuditConfig:
    node_id: str = "node-1"
    checkpoint_interval_seconds: int = 60
    origin: str = "medsign.local/audit"


@dataclasses.dataclass(frozen=True)
class CaConfig:
    renew_days_before: int = 30  # certificates are renewed this long before they expire
    worker_interval_seconds: int = 3600  # how often ``medsign worker`` looks


@dataclasses.dataclass(frozen=True)
class TsaConfig:
    ntp_servers: str = ""  # "host[:port], ...": the TSA issues only while its clock agrees
    max_offset_ms: int = 1000
    accuracy_ms: int = 1000  # the accuracy each time stamp states
    policy_oid: str = "2.999.16.1"  # the example arc: set the hospital's own TSA policy OID


@dataclasses.dataclass(frozen=True)
class VerifyConfig:
    revocation: str = "soft"  # soft: unknown revocation is reported; hard: it fails the check
    revocation_grace_hours: int = 24  # cached CRL/OCSP past nextUpdate bridges an outage


@dataclasses.dataclass(frozen=True)
class Config:
    data_dir: str = "var/data"
    server: ServerConfig = dataclasses.field(default_factory=ServerConfig)
    database: DatabaseConfig = dataclasses.field(default_factory=DatabaseConfig)
    custody: CustodyConfig = dataclasses.field(default_factory=CustodyConfig)
    security: SecurityConfig = dataclasses.field(default_factory=SecurityConfig)
    audit: AuditConfig = dataclasses.field(default_factory=AuditConfig)
    ca: CaConfig = dataclasses.field(default_factory=CaConfig)
    tsa: TsaConfig = dataclasses.field(default_factory=TsaConfig)
    verify: VerifyConfig = dataclasses.field(default_factory=VerifyConfig)

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite:///{Path(self.data_dir).resolve() / 'medsign.db'}"

    @property
    def tls_enabled(self) -> bool:
        return bool(self.server.tls_cert and self.server.tls_key)


_SECTIONS: dict[str, type[Any]] = {
    "server": ServerConfig,
    "database": DatabaseConfig,
    "custody": CustodyConfig,
    "security": SecurityConfig,
    "audit": AuditConfig,
    "ca": CaConfig,
    "tsa": TsaConfig,
    "verify": VerifyConfig,
}


def _coerce(section: str, key: str, value: Any, expected: Any) -> Any:
    kind = {"str": str, "int": int, "bool": bool}[expected]
    if isinstance(value, str) and kind is not str:
        text = value.strip().lower()
        if kind is bool and text in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return text in ("1", "true", "yes", "on")
        if kind is int:
            try:
                return int(text)
            except ValueError:
                pass
    if kind is int and isinstance(value, bool):
        raise ConfigError(f"{section}.{key} must be an integer")
    if not isinstance(value, kind):
        raise ConfigError(f"{section}.{key} must be a {kind.__name__}, got {value!r}")
    return value


def _section(name: str, cls: type[Any], values: dict[str, Any]) -> Any:
    known = {f.name: f.type for f in dataclasses.fields(cls)}
    unknown = set(values) - set(known)
    if unknown:
        raise ConfigError(f"unknown setting(s) in [{name}]: {', '.join(sorted(unknown))}")
    return cls(**{k: _coerce(name, k, v, known[k]) for k, v in values.items()})


def _env_overrides(env: dict[str, str]) -> dict[str, dict[str, str]]:
    """``MEDSIGN_DATABASE_URL=...`` -> {"database": {"url": "..."}}; MEDSIGN_DATA_DIR too."""
    out: dict[str, dict[str, str]] = {}
    for name, value in env.items():
        if not name.startswith("MEDSIGN_") or name in ("MEDSIGN_CONFIG", "MEDSIGN_LIBCRYPTO"):
            continue
        rest = name[len("MEDSIGN_"):].lower()
        if rest == "data_dir":
            out.setdefault("", {})["data_dir"] = value
            continue
        section, _, key = rest.partition("_")
        if section in _SECTIONS and key:
            out.setdefault(section, {})[key] = value
    return out


def load(path: str | Path | None = None, env: dict[str, str] | None = None) -> Config:
    """Read the configuration file (if any) and apply environment overrides."""
    env = dict(os.environ) if env is None else env
    file_path = Path(path) if path else _default_path(env)
    data: dict[str, Any] = {}
    if file_path is not None and file_path.exists():
        try:
            data = tomllib.loads(file_path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
            raise ConfigError(f"cannot read {file_path}: {exc}") from None
    elif path:
        raise ConfigError(f"configuration file {file_path} does not exist")
    for section, values in _env_overrides(env).items():
        if section:
            data.setdefault(section, {}).update(values)
        else:
            data.update(values)
    unknown = set(data) - set(_SECTIONS) - {"data_dir"}
    if unknown:
        raise ConfigError(f"unknown configuration section(s): {', '.join(sorted(unknown))}")
    sections = {name: _section(name, cls, data.get(name, {})) for name, cls in _SECTIONS.items()}
    data_dir = data.get("data_dir", Config.data_dir)
    if not isinstance(data_dir, str):
        raise ConfigError("data_dir must be a string")
    return Config(data_dir=data_dir, **sections)


def _default_path(env: dict[str, str]) -> Path | None:
    if env.get("MEDSIGN_CONFIG"):
        return Path(env["MEDSIGN_CONFIG"])
    return next((p for p in DEFAULT_PATHS if p.exists()), None)

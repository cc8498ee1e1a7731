"""Typed settings for sfsync, read from one YAML file.

The file is chosen by ``--config``, else ``SFSYNC_CONFIG``, else ``config/sfsync.yaml``.
String values may use ``${VAR}`` and ``${VAR:-default}`` so secrets stay in the environment.
Every model forbids unknown keys; every error names the file and the key, e.g.::

    config/sfsync.yaml: billers[1].kind: unknown biller kind 'ftp'; expected one of files, sql, tmf678
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from sfsync.errors import ConfigError

DEFAULT_CONFIG = Path("config/sfsync.yaml")
DEFAULT_DATABASE_URL = "sqlite:///.sfsync/state.db"

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

# Environment variables that override a setting after the file is read (the main knobs an
# operator flips per machine without editing the file).
ENV_OVERRIDES: dict[str, tuple[str, ...]] = {
    "SFSYNC_DATABASE_URL": ("database", "url"),
    "SFSYNC_SALESFORCE_EMULATOR": ("salesforce", "emulator"),
    "SFSYNC_LOGIN_URL": ("salesforce", "login_url"),
    "SFSYNC_INSTANCE_URL": ("salesforce", "instance_url"),
    "SFSYNC_API_VERSION": ("salesforce", "api_version"),
    "SFSYNC_API_BUDGET_SHARE": ("limits", "api_budget_share"),
    "SFSYNC_QUEUE_BACKEND": ("queue", "backend"),
    "SFSYNC_BROKER_URL": ("queue", "broker_url"),
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class SalesforceSettings(_Model):
    """How to reach the org: a real one, or the local emulator (``emulator: DIR``)."""

    emulator: Path | None = None
    login_url: str = "https://login.salesforce.com"
    instance_url: str | None = None
    auth: Literal["password", "jwt", "session", "client_credentials"] = "password"
    username: str | None = None
    password: SecretStr | None = None
    security_token: SecretStr | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    private_key_file: Path | None = None
    session_id: SecretStr | None = None
    api_version: str = "59.0"
    ca_bundle: Path | None = None
    timeout: float = Field(60.0, gt=0)
    describe_cache_dir: Path = Path(".sfsync/describe")

    @field_validator("api_version")
    @classmethod
    def _version(cls, v: str) -> str:
        if not re.fullmatch(r"\d{2}\.0", v):
            raise ValueError(f"api_version must look like '59.0', got {v!r}")
        return v

    def check_complete(self) -> list[tuple[str, str]]:
        """Return (key, problem) pairs for settings the chosen auth method needs but lacks."""
        if self.emulator is not None:
            return []
        needs: dict[str, tuple[str, ...]] = {
            "password": ("username", "password", "client_id", "client_secret"),
            "jwt": ("username", "client_id", "private_key_file"),
            "session": ("instance_url", "session_id"),
            "client_credentials": ("client_id", "client_secret"),
        }
        return [
            (name, f"required when auth is '{self.auth}'")
            for name in needs[self.auth]
            if getattr(self, name) in (None, "")
        ]


class DatabaseSettings(_Model):
    """The state store: SQLite by default, PostgreSQL when outgrown."""

    url: str = DEFAULT_DATABASE_URL
    echo: bool = False

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^(sqlite|postgresql)(\+\w+)?://", v):
            raise ValueError(f"database url must be sqlite:/// or postgresql://, got {v.split('://')[0]!r}")
        return v


class BillerSettings(_Model):
    """One named biller. Kind-specific settings are checked against the kind's own model."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,39}$")
    kind: str
    mappings: list[str] = Field(default_factory=list)
    enabled: bool = True

    def kind_settings(self) -> dict[str, Any]:
        """The keys that belong to the biller kind (everything but the common ones)."""
        return dict(self.model_extra or {})


class ScheduleSettings(_Model):
    """A cron-style schedule for a job."""

    job: Literal["load", "export", "purge", "reconcile", "report"]
    cron: str
    billers: list[str] = Field(default_factory=list)

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        if len(v.split()) != 5:
            raise ValueError(f"cron must have 5 fields (minute hour day month weekday), got {v!r}")
        return v


class WebhookSettings(_Model):
    """Inbound webhooks: Standard Webhooks from telephony, Outbound Messages from Salesforce."""

    secret: SecretStr | None = None
    tolerance_seconds: int = 300
    outbound_message_org_ids: list[str] = Field(default_factory=list)


class AdminSettings(_Model):
    """The HTTP service (webhooks + admin API)."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    token: SecretStr | None = None


class QueueSettings(_Model):
    """In-process by default; Celery over Redis when outgrown."""

    backend: Literal["inprocess", "celery"] = "inprocess"
    broker_url: str | None = None


class LimitSettings(_Model):
    """How much of the org's daily API budget sfsync may use, and retry bounds."""

    api_budget_share: float = Field(0.5, gt=0, le=1)
    max_retries: int = Field(4, ge=0, le=10)  # a call failing with 5xx / no connection is sent up to 1 + this many times


class LoadSettings(_Model):
    """Options of the load job."""

    trim_date: date | Literal["org"] | None = "org"
    batch_rows: int = Field(50_000, ge=1)  # rows a biller reads per batch unless it sets its own batch_size


class ExportObjectSettings(_Model):
    """How one sObject is exported: what is selected, how it is routed, what is written back.

    Write-back values are text with placeholders: ``{reference}`` (the biller's id for the
    record), ``{reason}`` (why it was refused), ``{biller}``, ``{now}`` (UTC datetime); an
    empty mapping writes nothing back.
    """

    enabled: bool = True
    where: str | None = Field(None, description="SOQL condition ANDed with the export mappings' own.")
    account_field: str | None = Field(None, description="The record's account (routing by who loaded it).")
    statement_field: str | None = Field(None, description="The record's statement (routing when accounts are shared).")
    route_field: str | None = Field(None, description="A field naming the biller outright (wins over the rest).")
    on_success: dict[str, str] = Field(default_factory=dict, description="Field → value written when the biller accepts.")
    on_reject: dict[str, str] = Field(default_factory=dict, description="Field → value written when it is refused.")


EXPORT_OBJECT_DEFAULTS: dict[str, dict[str, Any]] = {
    # Payments and adjustments, once approved; Status moves to Applied/Rejected on the way back.
    "vlocity_cmt__PaymentAdjustment__c": {
        "where": "vlocity_cmt__Status__c = 'Approved'",
        "account_field": "vlocity_cmt__AccountId__c", "statement_field": "vlocity_cmt__StatementId__c",
        "on_success": {"vlocity_cmt__Status__c": "Applied"}, "on_reject": {"vlocity_cmt__Status__c": "Rejected"}},
    # New and changed payment methods (tokens only: the mappings never select card or bank numbers).
    "vlocity_cmt__PaymentMethod__c": {"account_field": "vlocity_cmt__AccountId__c"},
    # Billing disputes: Cases of the billing record type, with their statement and line item.
    "Case": {"where": "RecordType.DeveloperName = 'vlocity_cmt__Billing'",
             "account_field": "vlocity_cmt__BillingAccountId__c", "statement_field": "vlocity_cmt__StatementId__c"},
}


class ExportSettings(_Model):
    """Options of the export job (payments, adjustments, payment methods, disputes → billers)."""

    objects: dict[str, ExportObjectSettings] = Field(
        default_factory=lambda: {k: ExportObjectSettings(**v) for k, v in EXPORT_OBJECT_DEFAULTS.items()})
    overlap_seconds: int = Field(300, ge=0, description="Re-read this far behind the cursor (late commits).")
    query_api: Literal["auto", "rest", "bulk2"] = Field(
        "auto", description="auto: REST pages, Bulk 2.0 query from 10,000 rows (the client's threshold).")
    page_rows: int = Field(2000, ge=200, le=2000, description="REST query page size.")
    chunk_rows: int = Field(10_000, ge=1, description="Records mapped, sent and recorded together.")
    send_rows: int = Field(5_000, ge=1, description="Records handed to a biller per call.")
    default_biller: str | None = Field(None, description="Biller for records no biller owns (else the only exporting one).")

    @field_validator("objects", mode="before")
    @classmethod
    def _merge_defaults(cls, v: Any) -> Any:
        # Overriding one key of an object keeps that object's other defaults.
        if not isinstance(v, dict):
            return v
        out: dict[str, Any] = {k: dict(d) for k, d in EXPORT_OBJECT_DEFAULTS.items()}
        for name, obj in v.items():
            out[name] = {**out.get(name, {}), **obj} if isinstance(obj, dict) else obj
        return out


class Settings(_Model):
    """The whole configuration."""

    salesforce: SalesforceSettings = Field(default_factory=SalesforceSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    billers: list[BillerSettings] = Field(default_factory=list)
    schedules: list[ScheduleSettings] = Field(default_factory=list)
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    admin: AdminSettings = Field(default_factory=AdminSettings)
    queue: QueueSettings = Field(default_factory=QueueSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    load: LoadSettings = Field(default_factory=LoadSettings)
    export: ExportSettings = Field(default_factory=ExportSettings)

    source: Path | None = Field(default=None, exclude=True)

    def biller(self, name: str) -> BillerSettings:
        """Return the biller called ``name`` or raise a ConfigError naming the known ones."""
        for b in self.billers:
            if b.name == name:
                return b
        known = ", ".join(b.name for b in self.billers) or "none configured"
        raise ConfigError(f"unknown biller {name!r}; configured: {known}", file=_src(self.source))

    def secrets(self) -> list[str]:
        """Every secret value in the configuration (for log redaction)."""
        found = [v.get_secret_value() for v in _walk_secrets(self) if v.get_secret_value()]
        for b in self.billers:  # kind-specific settings are plain data here: go by key name
            found.extend(_named_secrets(b.kind_settings()))
        return found


def _walk_secrets(obj: Any) -> Iterator[SecretStr]:
    if isinstance(obj, SecretStr):
        yield obj
    elif isinstance(obj, BaseModel):
        for name in type(obj).model_fields:
            yield from _walk_secrets(getattr(obj, name))
        for v in (obj.model_extra or {}).values():
            yield from _walk_secrets(v)
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _walk_secrets(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            yield from _walk_secrets(v)


def _src(path: Path | None) -> str | None:
    return str(path) if path else None


def _fmt_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def interpolate(value: Any, *, file: str | None, key: str = "") -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string of a parsed YAML tree."""
    if isinstance(value, dict):
        return {k: interpolate(v, file=file, key=f"{key}.{k}" if key else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, file=file, key=f"{key}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ConfigError(f"environment variable {name} is not set (use ${{{name}:-default}} for a default)",
                          file=file, key=key)

    return _ENV_REF.sub(sub, value)


def resolve_path(explicit: str | Path | None = None) -> Path:
    """The config file to read: ``--config``, else ``SFSYNC_CONFIG``, else the default."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("SFSYNC_CONFIG")
    return Path(env) if env else DEFAULT_CONFIG


def load_settings(path: str | Path | None = None, *, required: bool = True) -> Settings:
    """Read, interpolate, override from the environment and validate the configuration.

    Args:
        path: the config file; defaults as :func:`resolve_path` says.
        required: when False and the file is absent, return defaults (env overrides still apply).

    Raises:
        ConfigError: naming the file and the key of the first problem found per key.
    """
    file = resolve_path(path)
    fname = str(file)
    raw: Any = {}
    if file.exists():
        try:
            raw = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{fname}:{mark.line + 1}:{mark.column + 1}" if mark else fname
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError(f"not valid YAML: {problem}", file=where) from None
        except OSError as exc:
            raise ConfigError(f"cannot read: {exc.strerror}", file=fname) from None
        if not isinstance(raw, dict):
            raise ConfigError("the top level must be a mapping of sections", file=fname)
    elif required:
        raise ConfigError("config file not found (use --config or SFSYNC_CONFIG; "
                          "config/sfsync.example.yaml is a start)", file=fname)
    raw = interpolate(raw, file=fname)
    for env, (section, key) in ENV_OVERRIDES.items():
        if os.environ.get(env):
            sect = raw.setdefault(section, {})
            if not isinstance(sect, dict):
                raise ConfigError("must be a mapping", file=fname, key=section)
            sect[key] = os.environ[env]
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        raise ConfigError(msg, file=fname, key=_fmt_loc(err["loc"])) from None
    settings.source = file if file.exists() else None
    _check_billers(settings, fname)
    for key, problem in (settings.salesforce.check_complete() if settings.source else []):
        raise ConfigError(problem, file=fname, key=f"salesforce.{key}")
    return settings


def _check_billers(settings: Settings, fname: str) -> None:
    seen: set[str] = set()
    if settings.billers:
        from sfsync.billers import BILLER_KINDS  # the registry imports pandas/pyarrow: only when needed
    for i, b in enumerate(settings.billers):
        if b.name in seen:
            raise ConfigError(f"duplicate biller name {b.name!r}", file=fname, key=f"billers[{i}].name")
        seen.add(b.name)
        kind = BILLER_KINDS.get(b.kind)
        if kind is None:
            raise ConfigError(f"unknown biller kind {b.kind!r}; expected one of {', '.join(sorted(BILLER_KINDS))}",
                              file=fname, key=f"billers[{i}].kind")
        if "batch_size" in kind.settings.model_fields and b.model_extra is not None and "batch_size" not in b.model_extra:
            b.model_extra["batch_size"] = settings.load.batch_rows
        try:
            kind.settings.model_validate(b.kind_settings())
        except ValidationError as exc:
            err = exc.errors()[0]
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
            raise ConfigError(msg, file=fname, key=f"billers[{i}].{_fmt_loc(err['loc'])}") from None
    for i, s in enumerate(settings.schedules):
        for name in s.billers:
            if name not in seen:
                raise ConfigError(f"unknown biller {name!r}", file=fname, key=f"schedules[{i}].billers")


def masked(settings: Settings) -> dict[str, Any]:
    """The resolved configuration as plain data with every secret replaced by ``'***'``."""
    def walk(obj: Any) -> Any:
        if isinstance(obj, SecretStr):
            return "***" if obj.get_secret_value() else ""
        if isinstance(obj, BaseModel):
            out = {n: walk(getattr(obj, n)) for n, f in type(obj).model_fields.items() if not f.exclude}
            out.update({k: walk(v) for k, v in (obj.model_extra or {}).items()})
            return out
        if isinstance(obj, dict):
            return {k: walk(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [walk(v) for v in obj]
        if isinstance(obj, Path | date):
            return str(obj)
        return obj

    data = walk(settings)
    # Kind-specific biller settings are plain dicts here: mask secret-looking keys by name.
    for b in data.get("billers", []):
        _mask_by_name(b)
    return data


_SECRET_NAMES = re.compile(r"(password|secret|token|api_key|apikey|private_key|credential)", re.I)


def _named_secrets(d: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for k, v in d.items():
        if isinstance(v, dict):
            out.extend(_named_secrets(v))
        elif isinstance(v, str) and v and _SECRET_NAMES.search(k) and not k.endswith(("_file", "_url", "_env")):
            out.append(v)
    return out


def _mask_by_name(d: dict[str, Any]) -> None:
    for k, v in d.items():
        if isinstance(v, dict):
            _mask_by_name(v)
        elif isinstance(v, str) and v and _SECRET_NAMES.search(k) and not k.endswith(("_file", "_url", "_env")):
            d[k] = "***"

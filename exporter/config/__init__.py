"""The YAML config, validated into typed models (pydantic v2).

Unknown keys are errors; every problem is reported with its key path (``domains[2].dkim_selectors``)
by :func:`load_config`, which raises :class:`ConfigError` with all of them at once. Durations are
written ``30s``, ``5m``, ``1h``, ``1h30m``, ``500ms``. Secrets are referenced by ``*_env`` or
``*_file`` keys and read only when a probe needs them (:func:`read_secret`); their values never
appear in an error message.

Where the models are: :mod:`exporter.config.fields` (durations, names, addresses, secrets, the
base model), :mod:`~exporter.config.dns` (``global``, ``domains``, ``blacklists``),
:mod:`~exporter.config.transport` (``tls``, ``mta_sts``), :mod:`~exporter.config.mail`
(``roundtrip``, ``reports``), :mod:`~exporter.config.services` (``ses``, ``queues``);
:class:`Config` (here) puts the sections together. Every name is importable from
``exporter.config``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import (
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from exporter.config.dns import (
    DEFAULT_DOMAIN_ZONES,
    DEFAULT_IP_ZONES,
    BlacklistsConfig,
    DnsblCode,
    DnsblZoneConfig,
    DomainConfig,
    ExpectConfig,
    GlobalConfig,
)
from exporter.config.fields import (
    MAX_DURATION,
    ROLE_ARN,
    DomainName,
    Duration,
    Folder,
    HostPort,
    IPAddress,
    MailAddress,
    MailHost,
    Model,
    Nameserver,
    SecretRef,
    Security,
    check_domain,
    check_name,
    check_url,
    no_duplicates,
    parse_duration,
    read_secret,
)
from exporter.config.mail import (
    ImapConfig,
    ReportsConfig,
    ReportsImapConfig,
    RoundtripConfig,
    SmtpConfig,
)
from exporter.config.rules import config_problems
from exporter.config.services import QueueConfig, QueueThresholds, SesConfig
from exporter.config.transport import MtaStsConfig, TlsTargetConfig
from exporter.config.yamlload import YamlError, load_yaml


class ConfigError(Exception):
    """The config cannot be used; ``problems`` lists each one as 'key.path: message'."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class Config(Model):
    global_: GlobalConfig = Field(default_factory=GlobalConfig, alias="global")
    domains: list[DomainConfig] = Field(default_factory=list)
    blacklists: BlacklistsConfig | None = None
    tls: list[TlsTargetConfig] = Field(default_factory=list)
    ses: list[SesConfig] = Field(default_factory=list)
    roundtrip: list[RoundtripConfig] = Field(default_factory=list)
    mta_sts: MtaStsConfig | None = None

    @field_validator("mta_sts", mode="before")
    @classmethod
    def _present(cls, value: Any) -> Any:
        # `mta_sts:` with nothing after it is YAML null: present, so enabled with the defaults.
        return {} if value is None else value

    queues: list[QueueConfig] = Field(default_factory=list)
    reports: list[ReportsConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> Config:
        no_duplicates([d.domain for d in self.domains], "domains", "domain")
        no_duplicates([r.name for r in self.roundtrip], "roundtrip", "name")
        no_duplicates([q.name for q in self.queues], "queues", "name")
        no_duplicates([r.name for r in self.reports], "reports", "name")
        no_duplicates([s.name for s in self.ses if s.name], "ses", "name")
        return self

    def interval_of(self, section: Any) -> float:
        value = getattr(section, "interval", None)
        return float(value) if value is not None else self.global_.interval

    def timeout_of(self, section: Any) -> float:
        value = getattr(section, "timeout", None)
        return float(value) if value is not None else self.global_.timeout


# ----- loading --------------------------------------------------------------------------------


def format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before") or "[" in str(part):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out


def _format_errors(exc: ValidationError) -> list[str]:
    problems: list[str] = []
    for err in exc.errors(include_url=False, include_input=False):
        where = format_loc(tuple(err["loc"]))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        problems.append(f"{where}: {msg}" if where else msg)
    return problems


def parse_config(data: Any) -> Config:
    """Validate already-parsed YAML data; raise ConfigError listing every problem."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(["config: the top level must be a mapping"])
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc)) from None
    problems = config_problems(config)
    if problems:
        raise ConfigError(problems)
    return config


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML config file; raise ConfigError with every problem."""
    try:
        data = load_yaml(path)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config: {exc.strerror}"]) from None
    except YamlError as exc:
        raise ConfigError([f"{path}: {exc}"]) from None
    return parse_config(data)


__all__ = [
    "DEFAULT_DOMAIN_ZONES",
    "DEFAULT_IP_ZONES",
    "MAX_DURATION",
    "ROLE_ARN",
    "BlacklistsConfig",
    "Config",
    "ConfigError",
    "DnsblCode",
    "DnsblZoneConfig",
    "DomainConfig",
    "DomainName",
    "Duration",
    "ExpectConfig",
    "Folder",
    "GlobalConfig",
    "HostPort",
    "IPAddress",
    "ImapConfig",
    "MailAddress",
    "MailHost",
    "Model",
    "MtaStsConfig",
    "Nameserver",
    "QueueConfig",
    "QueueThresholds",
    "ReportsConfig",
    "ReportsImapConfig",
    "RoundtripConfig",
    "SecretRef",
    "Security",
    "SesConfig",
    "SmtpConfig",
    "TlsTargetConfig",
    "check_domain",
    "check_name",
    "check_url",
    "format_loc",
    "load_config",
    "no_duplicates",
    "parse_config",
    "parse_duration",
    "read_secret",
]

"""The YAML config, validated into typed models (pydantic v2).

Unknown keys are errors; every problem is reported with its key path (``domains[2].dkim_selectors``)
by :func:`load_config`, which raises :class:`ConfigError` with all of them at once. Durations are
written ``30s``, ``5m``, ``1h``, ``1h30m``, ``500ms``. Secrets are referenced by ``*_env`` or
``*_file`` keys and read only when a probe needs them (:func:`read_secret`); their values never
appear in an error message.

Each probe section's model lives here so the whole config surface can be read in one file; the
field types they are made of (durations, names, addresses, secret references) are in
:mod:`exporter.configtypes`, re-exported here.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BeforeValidator,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from exporter.configtypes import MAX_DURATION as MAX_DURATION
from exporter.configtypes import DomainName as DomainName
from exporter.configtypes import Duration as Duration
from exporter.configtypes import Folder as Folder
from exporter.configtypes import HostPort as HostPort
from exporter.configtypes import IPAddress as IPAddress
from exporter.configtypes import MailAddress as MailAddress
from exporter.configtypes import MailHost as MailHost
from exporter.configtypes import Model as _Model
from exporter.configtypes import Nameserver as Nameserver
from exporter.configtypes import SecretRef as SecretRef
from exporter.configtypes import Security as Security
from exporter.configtypes import check_domain as _check_domain
from exporter.configtypes import parse_duration as parse_duration
from exporter.configtypes import read_secret as read_secret
from exporter.net.addr import is_ip_address, split_host_port
from exporter.net.redisurl import check_redis_url


class ConfigError(Exception):
    """The config cannot be used; ``problems`` lists each one as 'key.path: message'."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


# ----- field types (exporter.configtypes) ----------------------------------------------------


# ----- sections -------------------------------------------------------------------------------


class GlobalConfig(_Model):
    interval: Duration = 300.0
    timeout: Duration = 30.0
    nameservers: list[Nameserver] = Field(default_factory=list)


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class ExpectConfig(_Model):
    """A domain's declared baseline (``expect:``): each key set is compared on every run."""

    dmarc_policy: (
        Annotated[list[Literal["none", "quarantine", "reject"]], BeforeValidator(_one_or_many)]
        | None
    ) = Field(None, min_length=1)
    dkim_min_bits: int | None = Field(None, ge=1024, le=16384)
    spf_includes: list[DomainName] | None = None
    mx: list[DomainName] | None = Field(None, min_length=1)
    mta_sts_mode: Literal["enforce", "testing", "none"] | None = None
    dnssec: Literal["secure", "insecure"] | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> ExpectConfig:
        if not self.model_fields_set:
            raise ValueError("give at least one expectation (or remove expect:)")
        return self


class DomainConfig(_Model):
    domain: DomainName
    dkim_selectors: list[str] = Field(default_factory=list)
    sending_ips: list[IPAddress] = Field(default_factory=list)
    return_path_domain: DomainName | None = None
    """The envelope MAIL FROM domain (e.g. an SES custom MAIL FROM); default the domain."""
    expect: ExpectConfig | None = None
    interval: Duration | None = None
    timeout: Duration | None = None

    @property
    def spf_domain(self) -> str:
        """The domain SPF is checked for: the return-path domain, else the domain itself."""
        return self.return_path_domain or self.domain

    @field_validator("dkim_selectors")
    @classmethod
    def _selectors(cls, value: list[str]) -> list[str]:
        for sel in value:
            _check_domain(sel)
        return [s.strip().lower() for s in value]


DEFAULT_IP_ZONES = ["zen.spamhaus.org", "bl.spamcop.net", "b.barracudacentral.org"]
"""Widely used by receivers, free for low-volume use, still active (SORBS shut down in 2024)."""
DEFAULT_DOMAIN_ZONES = ["dbl.spamhaus.org"]


def _check_dnsbl_code(value: Any) -> str:
    try:
        addr = ipaddress.IPv4Address(str(value).strip())
    except ValueError:
        raise ValueError(f"invalid DNSBL return code {value!r}: expected 127.x.y.z") from None
    if addr not in ipaddress.IPv4Network("127.0.0.0/8"):
        raise ValueError(f"DNSBL return code {value!r} is outside 127.0.0.0/8")
    return str(addr)


DnsblCode = Annotated[str, BeforeValidator(_check_dnsbl_code)]


class DnsblZoneConfig(_Model):
    """Knowledge about one blacklist zone; extends or overrides the built-in table
    (exporter/probes/dnsbl_zones.py)."""

    zone: DomainName
    codes: dict[DnsblCode, str] = Field(default_factory=dict)
    """Listing codes and their meaning; empty = any 127.0.0.0/8 answer but error codes."""
    error_codes: dict[DnsblCode, str] = Field(default_factory=dict)
    """Codes that are errors (refusals), never listings; added to the built-in ones."""
    delist_url: str | None = None
    """Where to request removal; '{target}' is replaced by the IP or domain."""
    self_test: bool = True
    """False for a zone without RFC 5782 test entries."""
    test_listed: str | None = None
    """Self-test entry that must be listed (an IP for IP zones, a name for domain zones)."""
    test_unlisted: str | None = None

    @field_validator("delist_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"https?://", value):
            raise ValueError("delist_url must start with http:// or https://")
        return value

    @model_validator(mode="after")
    def _tests(self) -> DnsblZoneConfig:
        if (self.test_listed is None) != (self.test_unlisted is None):
            raise ValueError("give both test_listed and test_unlisted, or neither")
        if self.test_listed is not None and self.test_unlisted is not None:
            kinds = {is_ip_address(self.test_listed), is_ip_address(self.test_unlisted)}
            if len(kinds) != 1:
                raise ValueError("test_listed and test_unlisted must both be IPs or both names")
            if not kinds.pop():
                _check_domain(self.test_listed)
                _check_domain(self.test_unlisted)
        return self


class BlacklistsConfig(_Model):
    """The ``dnsbl`` probe: enabled by the section's presence (``blacklists: {}`` = defaults)."""

    ip_zones: list[DomainName] = Field(default_factory=lambda: list(DEFAULT_IP_ZONES))
    domain_zones: list[DomainName] = Field(default_factory=lambda: list(DEFAULT_DOMAIN_ZONES))
    interval: Duration | None = 1800.0
    timeout: Duration | None = None
    max_in_flight: int = Field(default=64, ge=1, le=1024)
    """Blacklist queries in flight at once, over all targets."""
    zones: list[DnsblZoneConfig] = Field(default_factory=list)

    @field_validator("ip_zones", "domain_zones")
    @classmethod
    def _dedupe(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _unique_zones(self) -> BlacklistsConfig:
        _no_duplicates([z.zone for z in self.zones], "zones", "zone")
        return self


class TlsTargetConfig(SecretRef):
    """One ``tls`` entry: a ``host:port`` target, or ``mx_of`` (every MX host, port 25).

    ``starttls`` defaults to true except on port 465 (implicit TLS). ``username`` with
    ``password_env``/``password_file`` adds an SMTP AUTH check (only over a valid certificate).
    ``ehlo_name`` is the name sent in EHLO (default: this machine's host name, no DNS lookup).
    """

    target: HostPort | None = None
    mx_of: DomainName | None = None
    starttls: bool | None = None
    server_name: DomainName | IPAddress | None = None
    ca_file: str | None = None
    username: str | None = None
    ehlo_name: str | None = None
    interval: Duration | None = None
    timeout: Duration | None = None

    @model_validator(mode="after")
    def _one_of(self) -> TlsTargetConfig:
        if (self.target is None) == (self.mx_of is None):
            raise ValueError("give exactly one of target and mx_of")
        if self.mx_of is not None:
            for key in ("server_name", "username", "password_env", "password_file"):
                if getattr(self, key) is not None:
                    raise ValueError(f"{key} cannot be used with mx_of (it probes every MX host)")
            if self.starttls is False:
                raise ValueError("mx_of probes port 25 with STARTTLS; starttls cannot be false")
        if bool(self.username) != self.has_secret:
            raise ValueError("the SMTP AUTH check needs both username and password_env/_file")
        ehlo = self.ehlo_name
        if ehlo is not None and not re.fullmatch(r"[A-Za-z0-9.\-\[\]:_]+", ehlo):
            raise ValueError(f"invalid ehlo_name {self.ehlo_name!r}")
        return self

    @property
    def use_starttls(self) -> bool:
        """STARTTLS unless disabled, or unset on port 465 (implicit TLS)."""
        if self.starttls is not None:
            return self.starttls
        return self.target is None or split_host_port(self.target)[1] != 465


_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}")


def _check_url(value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"https?://[^\s/@]+(/\S*)?", value):
        raise ValueError(f"invalid URL {value!r}: expected http(s)://host[:port][/path]")
    return value


class SesConfig(_Model):
    """One AWS account and region to watch (the ``ses`` probe).

    Credentials come from the standard AWS chain (environment, ``profile`` or the default
    profile, container/instance role, IRSA web identity); ``role_arn`` is then assumed with them.
    ``endpoint_url`` applies to every AWS API the probe calls; ``cloudwatch_endpoint_url`` and
    ``sts_endpoint_url`` override it for CloudWatch and STS (e.g. when only SES has a VPC
    endpoint). ``name`` (default: the region) is the target name and the ``region`` label of the
    metrics (see :mod:`exporter.probes.ses` for entries that share a region).
    """

    region: str
    name: str | None = None
    identities: list[str] = Field(default_factory=list)
    endpoint_url: str | None = None
    cloudwatch_endpoint_url: str | None = None
    sts_endpoint_url: str | None = None
    profile: str | None = None
    role_arn: str | None = None
    external_id: str | None = None
    max_attempts: int = Field(default=3, ge=1, le=10)
    interval: Duration | None = None
    timeout: Duration | None = None

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", value):
            raise ValueError(f"invalid AWS region {value!r}")
        return value

    @field_validator("endpoint_url", "cloudwatch_endpoint_url", "sts_endpoint_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return _check_url(value)

    @field_validator("role_arn")
    @classmethod
    def _role(cls, value: str | None) -> str | None:
        if value is not None and not _ROLE_ARN.fullmatch(value):
            raise ValueError(
                f"invalid role ARN {value!r}: expected arn:aws:iam::<12-digit account>:role/<name>"
            )
        return value

    @field_validator("identities")
    @classmethod
    def _identities(cls, value: list[str]) -> list[str]:
        out = [v.strip() for v in value]
        for ident in out:
            if not ident or any(c.isspace() for c in ident):
                raise ValueError(f"invalid SES identity {ident!r}: expected a domain or address")
        return out

    @model_validator(mode="after")
    def _external_id_needs_role(self) -> SesConfig:
        if self.external_id is not None and self.role_arn is None:
            raise ValueError("external_id needs role_arn")
        return self


class SmtpConfig(SecretRef):
    host: MailHost
    port: int = Field(default=587, gt=0, lt=65536)
    security: Security = "starttls"
    username: str | None = None
    ca_file: str | None = None
    helo: str | None = None
    """EHLO name; default the machine's host name when it is a FQDN, else the sender's domain."""

    @model_validator(mode="after")
    def _password_with_username(self) -> SmtpConfig:
        if self.username and not self.has_secret:
            raise ValueError("username needs password_env or password_file")
        return self


class ImapConfig(SecretRef):
    host: MailHost
    port: int = Field(default=993, gt=0, lt=65536)
    security: Security = "tls"
    username: str
    mailbox: Folder = "INBOX"
    spam_folder: Folder | None = None
    ca_file: str | None = None
    poll_interval: Duration = 5.0
    """How often to search when the server lacks IDLE (with IDLE new mail is pushed)."""

    @model_validator(mode="after")
    def _needs_password(self) -> ImapConfig:
        if not self.has_secret:
            raise ValueError("give password_env or password_file")
        return self


class RoundtripConfig(_Model):
    name: str
    from_: MailAddress = Field(alias="from")
    to: MailAddress
    smtp: SmtpConfig
    imap: ImapConfig
    interval: Duration | None = None
    timeout: Duration | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        # The name goes into the probe's mail header and its IMAP searches.
        if not re.fullmatch(r"[A-Za-z0-9._:@+-]{1,64}", value):
            raise ValueError("name must be 1-64 characters of letters, digits and . _ : @ + -")
        return value


class MtaStsConfig(_Model):
    """The ``mta_sts`` probe: enabled by the section's presence (``mta_sts: {}`` = defaults), one
    target per ``domains[]`` entry. ``ca_file``: extra CAs (PEM) trusted for the policy hosts,
    besides the system's roots."""

    interval: Duration | None = 3600.0
    timeout: Duration | None = None
    ca_file: str | None = None


class QueueThresholds(_Model):
    """When the ``queue`` probe reports a finding; meaning and defaults in the README (Queues)."""

    oldest_age: Duration = 900.0
    oldest_age_critical: Duration = 3600.0
    deferred: int = Field(default=100, ge=1)
    deferred_critical: int = Field(default=1000, ge=1)
    failed_increase: int = Field(default=1, ge=1)
    growing_runs: int = Field(default=3, ge=1, le=100)

    @model_validator(mode="after")
    def _ordered(self) -> QueueThresholds:
        for key in ("oldest_age", "deferred"):
            if getattr(self, f"{key}_critical") < getattr(self, key):
                raise ValueError(f"{key}_critical must be at least {key}")
        return self


class QueueConfig(SecretRef):
    """One ``queues`` entry: this host's Postfix queue, or RQ / Celery queues on a Redis."""

    name: str
    kind: Literal["postfix", "rq", "celery"]
    postfix_config_dir: str | None = None
    postqueue_path: str | None = None
    redis_url: str | None = None
    ca_file: str | None = None
    key_prefix: str | None = None
    queues: list[str] | None = None
    thresholds: QueueThresholds = Field(default_factory=QueueThresholds)
    interval: Duration | None = None
    timeout: Duration | None = None

    @field_validator("redis_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None:
            check_redis_url(value)  # never echoes the URL: it may carry a password
        return value

    @field_validator("queues")
    @classmethod
    def _dedupe(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _valid(self) -> QueueConfig:
        RoundtripConfig._name(self.name)
        redis = ("redis_url", "ca_file", "key_prefix", "queues", "password_env", "password_file")
        for key in redis if self.kind == "postfix" else ("postfix_config_dir", "postqueue_path"):
            if getattr(self, key) is not None:
                raise ValueError(f"{key} cannot be used with kind {self.kind}")
        if self.kind != "postfix" and self.redis_url is None:
            raise ValueError(f"kind {self.kind} needs redis_url")
        if self.ca_file is not None and not (self.redis_url or "").startswith("rediss:"):
            raise ValueError("ca_file needs a rediss:// redis_url")
        if self.queues is not None and not self.queues:
            raise ValueError("queues: list at least one queue, or omit it to find them all")
        for text in [*(self.queues or ()), self.key_prefix or ""]:
            if len(text) > 200 or not text.isprintable():
                raise ValueError("queue names and key_prefix: at most 200 printable characters")
        return self


class ReportsImapConfig(SecretRef):
    """The mailbox DMARC aggregate and TLS-RPT reports are sent to (the ``rua=`` addresses of
    the domains' DMARC and TLS-RPT records)."""

    host: MailHost
    port: int = Field(default=993, gt=0, lt=65536)
    security: Security = "tls"
    username: str
    folder: Folder = "INBOX"
    """Where new reports arrive."""
    processed_folder: Folder = "Processed"
    """Where every message read is moved (created when missing)."""
    invalid_folder: Folder = "Invalid"
    """Where messages holding no parseable report are moved (created when missing)."""
    ca_file: str | None = None

    @model_validator(mode="after")
    def _checks(self) -> ReportsImapConfig:
        if not self.has_secret:
            raise ValueError("give password_env or password_file")
        folders = [self.folder, self.processed_folder, self.invalid_folder]
        if len(set(folders)) != 3:
            raise ValueError("folder, processed_folder and invalid_folder must be three folders")
        return self


class ReportsConfig(_Model):
    """One ``reports`` entry: a mailbox of DMARC aggregate and TLS-RPT reports."""

    name: str
    imap: ReportsImapConfig
    domains: list[DomainName] = Field(default_factory=list)
    """Count only reports about these domains (and their subdomains). Empty: the top-level
    ``domains``, or every domain when that is empty too."""
    max_messages: int = Field(default=200, ge=1, le=10_000)
    """Messages read in one run (the rest wait for the next run)."""
    max_message_bytes: int = Field(default=25 << 20, ge=1 << 10, le=256 << 20)
    """A larger message is moved to the invalid folder without being read."""
    interval: Duration | None = None
    timeout: Duration | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9._:@+-]{1,64}", value):
            raise ValueError("name must be 1-64 characters of letters, digits and . _ : @ + -")
        return value


class Config(_Model):
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
        _no_duplicates([r.name for r in self.reports], "reports", "name")
        _no_duplicates([d.domain for d in self.domains], "domains", "domain")
        _no_duplicates([r.name for r in self.roundtrip], "roundtrip", "name")
        _no_duplicates([q.name for q in self.queues], "queues", "name")
        _no_duplicates([s.name for s in self.ses if s.name], "ses", "name")
        return self

    def interval_of(self, section: Any) -> float:
        value = getattr(section, "interval", None)
        return float(value) if value is not None else self.global_.interval

    def timeout_of(self, section: Any) -> float:
        value = getattr(section, "timeout", None)
        return float(value) if value is not None else self.global_.timeout


def _no_duplicates(values: list[str], section: str, key: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{section}: duplicate {key} {value!r}")
        seen.add(value)


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
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc)) from None


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML config file; raise ConfigError with every problem."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config: {exc.strerror}"]) from None
    try:
        # The C loader when libyaml is there: seconds faster on a 10,000-domain config.
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{path}: {where}invalid YAML: {problem}"]) from None
    return parse_config(data)

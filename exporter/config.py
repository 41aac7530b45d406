"""The YAML config, validated into typed models (pydantic v2).

Unknown keys are errors; every problem is reported with its key path (``domains[2].dkim_selectors``)
by :func:`load_config`, which raises :class:`ConfigError` with all of them at once. Durations are
written ``30s``, ``5m``, ``1h``, ``1h30m``, ``500ms``. Secrets are referenced by ``*_env`` or
``*_file`` keys and read only when a probe needs them (:func:`read_secret`); their values never
appear in an error message.

Each probe section's model lives here so the whole config surface can be read in one file.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from exporter import redact
from exporter.config_rules import config_problems
from exporter.net.addr import is_ip_address, parse_nameserver, split_host_port
from exporter.yamlload import YamlError, load_yaml


class ConfigError(Exception):
    """The config cannot be used; ``problems`` lists each one as 'key.path: message'."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


# ----- field types ----------------------------------------------------------------------------

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


MAX_DURATION = 365 * 86400.0


def parse_duration(value: Any) -> float:
    """'30s', '5m', '1h30m', '500ms' or a number of seconds -> seconds (float, > 0)."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 30s, 5m or 1h")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        pos = 0
        seconds = 0.0
        for m in _DURATION_PART.finditer(text):
            if m.start() != pos:
                break
            seconds += float(m.group(1)) * _UNITS[m.group(2)]
            pos = m.end()
        if pos != len(text) or not text:
            raise ValueError(f"invalid duration {value!r}: expected a duration like 30s, 5m or 1h")
    else:
        raise ValueError("expected a duration like 30s, 5m or 1h")
    if seconds <= 0:
        raise ValueError("duration must be greater than zero")
    # NaN, infinity and centuries pass "> 0" but crash the scheduler's date arithmetic.
    if not math.isfinite(seconds) or seconds > MAX_DURATION:
        raise ValueError("duration must be at most 365d")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


def _check_domain(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a domain name")
    name = value.strip().rstrip(".").lower()
    if not name or len(name) > 253:
        raise ValueError(f"invalid domain name {value!r}")
    for label in name.split("."):
        if (
            not label
            or len(label) > 63
            or not re.fullmatch(r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?", label)
        ):
            raise ValueError(f"invalid domain name {value!r}")
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return name
    raise ValueError(f"expected a domain name, got the IP address {value!r}")


DomainName = Annotated[str, BeforeValidator(_check_domain)]


def _check_ip(value: Any) -> str:
    try:
        addr = ipaddress.ip_address(str(value).strip())
    except ValueError:
        raise ValueError(f"invalid IP address {value!r}") from None
    if isinstance(addr, ipaddress.IPv6Address) and addr.scope_id is not None:
        # fe80::1%eth0: a zone names an interface of this machine, meaningless to others.
        raise ValueError(
            f"{value!r} is a scoped IPv6 address: give the address receivers see, without"
            f" %{addr.scope_id}"
        )
    return str(addr)


IPAddress = Annotated[str, BeforeValidator(_check_ip)]


def _check_nameserver(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected 'host' or 'host:port' with an IP address")
    parse_nameserver(value)
    return value.strip()


Nameserver = Annotated[str, BeforeValidator(_check_nameserver)]


def _check_host_port(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected host:port")
    split_host_port(value)
    return value.strip()


HostPort = Annotated[str, BeforeValidator(_check_host_port)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SecretRef(_Model):
    """Mixin for sections with a password given as ``password_env`` or ``password_file``."""

    password_env: str | None = None
    password_file: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> SecretRef:
        if self.password_env and self.password_file:
            raise ValueError("give only one of password_env and password_file")
        return self

    @property
    def has_secret(self) -> bool:
        return bool(self.password_env or self.password_file)

    def read_secret(self, where: str) -> str | None:
        return read_secret(self.password_env, self.password_file, where)


def read_secret(env: str | None, file: str | None, where: str) -> str | None:
    """Read a secret from an environment variable or a file; the value never enters a message,
    and is registered with :mod:`exporter.redact` so that no output shows it, in any form."""
    if env:
        value = os.environ.get(env)
        if value is None:
            raise ValueError(f"{where}: environment variable {env} is not set")
        redact.add(value)
        return value
    if file:
        try:
            raw = Path(file).read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            raise ValueError(f"{where}: cannot read password_file {file}: {exc.strerror}") from None
        redact.add(raw.decode("utf-8", "surrogateescape"))
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:  # its message would show a byte of the secret and where
            raise ValueError(f"{where}: password_file {file} is not UTF-8 text") from None
    return None


# ----- sections -------------------------------------------------------------------------------


class GlobalConfig(_Model):
    interval: Duration = 300.0
    timeout: Duration = 30.0
    nameservers: list[Nameserver] = Field(default_factory=list)
    allow_short_intervals: bool = False
    """Lift the per-probe minimum intervals (exporter/config_rules.py): labs and tests only."""


class DomainConfig(_Model):
    domain: DomainName
    dkim_selectors: list[str] = Field(default_factory=list)
    sending_ips: list[IPAddress] = Field(default_factory=list)
    interval: Duration | None = None
    timeout: Duration | None = None

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


Security = Literal["starttls", "tls", "none"]


def _check_mail_host(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a host name or IP address")
    host = value.strip().rstrip(".")
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return _check_domain(host)


MailHost = Annotated[str, BeforeValidator(_check_mail_host)]


def _check_address(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[^@\s<>\"(),;:]+@[^@\s<>\"(),;:]+", value):
        raise ValueError(f"expected a mail address like user@example.com, got {value!r}")
    return value


MailAddress = Annotated[str, BeforeValidator(_check_address)]


def _check_folder(value: Any) -> str:
    if not isinstance(value, str) or not value or not value.isascii() or not value.isprintable():
        raise ValueError(
            "expected a folder name in printable ASCII (e.g. INBOX, Junk, [Gmail]/Spam)"
        )
    return value


Folder = Annotated[str, BeforeValidator(_check_folder)]


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


class Config(_Model):
    global_: GlobalConfig = Field(default_factory=GlobalConfig, alias="global")
    domains: list[DomainConfig] = Field(default_factory=list)
    blacklists: BlacklistsConfig | None = None
    tls: list[TlsTargetConfig] = Field(default_factory=list)
    ses: list[SesConfig] = Field(default_factory=list)
    roundtrip: list[RoundtripConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> Config:
        _no_duplicates([d.domain for d in self.domains], "domains", "domain")
        _no_duplicates([r.name for r in self.roundtrip], "roundtrip", "name")
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

"""The ``global`` section, the monitored ``domains`` (with their ``expect:`` baseline) and the
``blacklists`` section.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    field_validator,
    model_validator,
)

from exporter.config.fields import (
    DomainName,
    Duration,
    IPAddress,
    Model,
    Nameserver,
    check_domain,
    no_duplicates,
)
from exporter.net.addr import is_ip_address


class GlobalConfig(Model):
    interval: Duration = 300.0
    timeout: Duration = 30.0
    nameservers: list[Nameserver] = Field(default_factory=list)
    allow_short_intervals: bool = False
    """Lift the per-probe minimum intervals (exporter/config/rules.py): labs and tests only."""
    dnssec: bool = True
    """Validate DNSSEC (the ``dns`` probe's status, DANE in the ``tls`` probe); false for
    resolvers that strip DNSSEC records."""
    dnssec_trust_anchors: str | None = None
    """A file of DS or DNSKEY zone-file lines for "." (default: the IANA root keys built in)."""

    @field_validator("dnssec_trust_anchors")
    @classmethod
    def _anchors(cls, value: str | None) -> str | None:
        if value is not None:
            from exporter.dnssec.anchors import load_trust_anchors  # dnspython: only when used

            load_trust_anchors(value)  # TrustAnchorError is a ValueError naming file and line
        return value


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class ExpectConfig(Model):
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


class DomainConfig(Model):
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
        return [check_domain(sel) for sel in value]  # lower case, IDN labels as A-labels


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


class DnsblZoneConfig(Model):
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
                check_domain(self.test_listed)
                check_domain(self.test_unlisted)
        return self


class BlacklistsConfig(Model):
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
        no_duplicates([z.zone for z in self.zones], "zones", "zone")
        return self

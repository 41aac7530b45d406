"""Where metrics are named: every metric the exporter emits, with its help text and labels.

Probes emit :class:`exporter.results.Sample` values keyed by the names below (without the
``deliverability_`` prefix); the runner checks each sample's label names against this table and
the collector renders them. The README documents every name here (a test checks it).

Most metrics are gauges. A counter (``kind="counter"``) is named with its ``_total`` suffix, as
users query it; its value comes from the store (:mod:`exporter.storage`), so it only goes up and
survives restarts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PREFIX = "deliverability_"


@dataclass(frozen=True)
class MetricSpec:
    name: str
    help: str
    labels: tuple[str, ...]
    kind: Literal["gauge", "counter"] = "gauge"

    def __post_init__(self) -> None:
        if (self.kind == "counter") != self.name.endswith("_total"):
            raise ValueError(f"{self.name}: counters, and only counters, end in _total")

    @property
    def family(self) -> str:
        """The metric family's name in the exposition (a counter's without ``_total``)."""
        name = PREFIX + self.name
        return name.removesuffix("_total") if self.kind == "counter" else name


def _table(*specs: MetricSpec) -> dict[str, MetricSpec]:
    out: dict[str, MetricSpec] = {}
    for spec in specs:
        if spec.name in out:
            raise ValueError(f"duplicate metric {spec.name}")
        out[spec.name] = spec
    return out


M = MetricSpec
D = ("domain",)
T = ("target",)
R = ("region",)

# Exporter-level metrics (emitted by the collector itself, not by probes).
EXPORTER_METRICS: dict[str, MetricSpec] = _table(
    M("build_info", "Build information; always 1.", ("version",)),
    M("config_last_reload_successful", "1 if the last config load or reload succeeded.", ()),
    M("config_last_reload_success_timestamp_seconds",
      "Unix time of the last successful config load or reload.", ()),
    M("probe_success", "1 if the probe ran to completion (0 means 'could not tell').",
      ("probe", "target")),
    M("probe_duration_seconds", "How long the probe's last run took.", ("probe", "target")),
    M("probe_last_run_timestamp_seconds", "Unix time the probe's last run finished.",
      ("probe", "target")),
    M("finding", "1 for each active finding; code from the documented catalogue.",
      ("probe", "target", "code", "severity")),
)  # fmt: skip

# Metrics emitted by probes as samples.
METRICS: dict[str, MetricSpec] = _table(
    # --- dns: SPF -----------------------------------------------------------------------------
    M("spf_records", "Number of v=spf1 TXT records at the domain (1 is healthy).", D),
    M("spf_valid", "1 if the SPF record parses and evaluates without permerror.", D),
    M("spf_dns_lookups", "DNS-querying terms over the whole include/redirect tree (RFC 7208"
      " 4.6.4; limit 10).", D),
    M("spf_void_lookups", "Lookups that returned NXDOMAIN or no records (limit 2).", D),
    M("spf_all_qualifier", "State set: the qualifier of the effective 'all' (none when absent).",
      ("domain", "qualifier")),
    M("spf_result", "State set: RFC 7208 check_host() result for each configured sending IP.",
      ("domain", "ip", "result")),
    # --- dns: DMARC ---------------------------------------------------------------------------
    M("dmarc_records", "Number of v=DMARC1 records at _dmarc.<domain> (1 is healthy; 0 when"
      " inherited from the organizational domain).", D),
    M("dmarc_valid", "1 if a valid DMARC record applies to the domain.", D),
    M("dmarc_pct", "The pct= of the DMARC record that applies (100 when absent).", D),
    M("dmarc_policy", "State set: the DMARC policy receivers apply to this domain.",
      ("domain", "policy")),
    M("dmarc_subdomain_policy", "State set: the DMARC policy for subdomains of this domain.",
      ("domain", "policy")),
    # --- dns: DKIM ----------------------------------------------------------------------------
    M("dkim_key_valid", "1 if the selector publishes a usable DKIM public key.",
      ("domain", "selector")),
    M("dkim_key_bits", "Size of the selector's public key in bits (RSA modulus; 256 for"
      " ed25519).", ("domain", "selector")),
    # --- dns: MX ------------------------------------------------------------------------------
    M("mx_records", "Number of MX records of the domain.", D),
    M("mx_valid", "1 if the domain has MX records whose hosts all resolve (or a lone null MX).",
      D),
    M("dns_record_checksum", "Stable checksum (CRC-32) of the record's normalized text; use"
      " changes() to detect edits.", ("domain", "record")),
    # --- dnsbl --------------------------------------------------------------------------------
    M("dnsbl_listed", "1 if the target is listed on the zone; present only when the query was"
      " answered meaningfully.", ("target", "zone")),
    M("dnsbl_query_success", "1 if the blacklist answered meaningfully (0 on timeout, SERVFAIL"
      " or a refusal code).", ("target", "zone")),
    M("dnsbl_zone_healthy", "1 if the zone passes the RFC 5782 self-test (127.0.0.2 listed,"
      " 127.0.0.1 not).", ("zone",)),
    # --- tls ----------------------------------------------------------------------------------
    M("tls_handshake_success", "1 if the TLS handshake completed.", T),
    M("tls_cert_valid", "1 if the certificate chains to a trusted root and matches the name.",
      T),
    M("tls_cert_not_after_timestamp_seconds", "Expiry (notAfter) of the leaf certificate.", T),
    M("tls_cert_not_before_timestamp_seconds", "Start (notBefore) of the leaf certificate.", T),
    M("tls_chain_not_after_timestamp_seconds", "Earliest expiry in the presented chain.", T),
    M("tls_version_info", "The negotiated TLS version (1 for the current one).",
      ("target", "version")),
    M("smtp_starttls_offered", "1 if the SMTP server advertises STARTTLS in its EHLO reply.", T),
    M("tls_cert_info", "The leaf certificate presented (always 1).",
      ("target", "subject", "issuer", "serial", "fingerprint_sha256")),
    M("tls_cert_hostname_match", "1 if the leaf certificate matches the name checked.", T),
    M("tls_cert_chain_trusted", "1 if the presented chain leads to a trusted root (judged"
      " inside the certificates' validity, so an expired certificate may still chain).", T),
    M("smtp_auth_success", "1 if SMTP AUTH with the configured credentials succeeded.", T),
    # --- ses ----------------------------------------------------------------------------------
    M("ses_max_24h_send", "SES sending quota: messages per 24 hours.", R),
    M("ses_max_send_rate", "SES maximum send rate, messages per second.", R),
    M("ses_sent_last_24h", "Messages sent in the last 24 hours.", R),
    M("ses_sending_enabled", "1 if sending is enabled for the account in the region.", R),
    M("ses_production_access", "1 for production access, 0 for the sandbox.", R),
    M("ses_enforcement_status", "State set: the account's enforcement status.",
      ("region", "status")),
    M("ses_bounce_rate", "Reputation bounce rate (0 to 1), latest datapoint.", R),
    M("ses_complaint_rate", "Reputation complaint rate (0 to 1), latest datapoint.", R),
    M("ses_identity_verified", "1 if the identity is verified.", ("region", "identity")),
    M("ses_identity_dkim_verified", "1 if the identity's DKIM is verified.",
      ("region", "identity")),
    # --- roundtrip ----------------------------------------------------------------------------
    M("roundtrip_success", "1 if the last round trip found its message in the mailbox.", T),
    M("roundtrip_duration_seconds", "From the start of sending to the message being visible.", T),
    M("roundtrip_send_duration_seconds", "Time the SMTP submission took.", T),
    M("roundtrip_last_success_timestamp_seconds", "Unix time of the last successful round trip.",
      T),
    M("roundtrip_spam", "1 when the message was found in the spam folder.", T),
    M("roundtrip_auth_result", "State set of the receiver's Authentication-Results.",
      ("target", "method", "result")),
    M("roundtrip_stale_messages_deleted", "Earlier probe messages (late arrivals of timed-out"
      " runs) this run found and deleted.", T),
)  # fmt: skip

ALL_METRICS: dict[str, MetricSpec] = {**EXPORTER_METRICS, **METRICS}


_LABELS_CHECKED: set[tuple[str, tuple[str, ...]]] = set()
"""(metric, label names) pairs already found valid: every run checks every sample."""


def check_sample_labels(metric: str, label_names: tuple[str, ...]) -> str | None:
    """Return a problem description if a sample does not match its declared metric."""
    if (metric, label_names) in _LABELS_CHECKED:
        return None
    spec = METRICS.get(metric)
    if spec is None:
        return f"metric {metric!r} is not declared in exporter.metrics.METRICS"
    if tuple(sorted(label_names)) != tuple(sorted(spec.labels)):
        return f"metric {metric!r} has labels {sorted(label_names)}, declared {list(spec.labels)}"
    _LABELS_CHECKED.add((metric, label_names))
    return None

"""The findings catalogue: every finding code the exporter can report, written once.

Each entry has a stable ``code`` (a Prometheus label value users alert on — never rename one), the
probe that reports it, a default severity, a one-line explanation and the fix. The same text is
shown everywhere: the ``deliverability_finding`` metric, ``check`` output, the status page, and
``docs/FINDINGS.md`` (generated: ``python -m exporter.findings > docs/FINDINGS.md``).

Severity rules (SPEC.md): ``critical`` only for a confirmed bad state; a probe that could not tell
reports ``probe_success 0`` and an error, never a critical finding.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

CRITICAL = "critical"
WARNING = "warning"
INFO = "info"
SEVERITIES = (CRITICAL, WARNING, INFO)


@dataclass(frozen=True)
class FindingSpec:
    code: str
    probe: str
    severity: str
    summary: str
    fix: str


def _catalogue(*specs: FindingSpec) -> dict[str, FindingSpec]:
    out: dict[str, FindingSpec] = {}
    for spec in specs:
        if spec.code in out:
            raise ValueError(f"duplicate finding code {spec.code}")
        if spec.severity not in SEVERITIES:
            raise ValueError(f"bad severity for {spec.code}")
        out[spec.code] = spec
    return out


F = FindingSpec

CATALOGUE: dict[str, FindingSpec] = _catalogue(
    # --- dns: SPF (exporter/spf/) -------------------------------------------------------------
    F("spf_missing", "dns", CRITICAL,
      "The domain publishes no SPF record (no TXT record starting with v=spf1).",
      "Publish one TXT record at the domain, e.g. 'v=spf1 include:<your provider> -all'."),
    # --- dns: DMARC (exporter/probes/dns/dmarc.py) --------------------------------------------
    F("dmarc_missing", "dns", CRITICAL,
      "No DMARC record applies to the domain (none at _dmarc.<domain> nor at its organizational"
      " domain).",
      "Publish a TXT record at _dmarc.<domain>, e.g. 'v=DMARC1; p=none; rua=mailto:dmarc@<domain>',"
      " then tighten p to quarantine/reject once reports look clean."),
    F("dmarc_multiple_records", "dns", CRITICAL,
      "More than one DMARC record is published; receivers then ignore DMARC for the domain"
      " (RFC 7489 §6.6.3).",
      "Delete all but one TXT record starting with v=DMARC1 at _dmarc.<domain>."),
    F("dmarc_invalid", "dns", CRITICAL,
      "The DMARC record cannot be parsed (missing v=DMARC1 first, missing or invalid p= tag).",
      "Rewrite the record as 'v=DMARC1; p=<none|quarantine|reject>; ...' with tags separated by"
      " semicolons."),
    F("dmarc_invalid_tag", "dns", WARNING,
      "A DMARC tag has an invalid value and is ignored by receivers (pct, adkim, aspf, fo, sp, rf,"
      " ri, or a rua/ruf URI).",
      "Correct the tag named in the evidence; see RFC 7489 §6.3 for the allowed values."),
    F("dmarc_policy_none", "dns", WARNING,
      "The DMARC policy that applies is p=none: spoofed mail is still delivered.",
      "Once aggregate reports show your own mail passing, move to p=quarantine and then p=reject."),
    F("dmarc_pct_partial", "dns", INFO,
      "The DMARC policy applies to only part of the mail (pct below 100).",
      "Raise pct to 100 (or remove the tag) once reports show your mail passing."),
    F("dmarc_no_rua", "dns", WARNING,
      "The DMARC record asks for no aggregate reports (no rua=), so failures go unseen.",
      "Add rua=mailto:<address> to receive daily aggregate reports."),
    F("dmarc_inherited", "dns", INFO,
      "The domain has no DMARC record of its own; the organizational domain's record applies.",
      "Nothing to do if intended; publish _dmarc.<domain> to set a policy for this domain alone."),
    F("dmarc_subdomain_policy_weaker", "dns", INFO,
      "The subdomain policy (sp=) is weaker than p=, so spoofed subdomains are treated leniently.",
      "Set sp= to the same strength as p= (or remove it to inherit p=)."),
    # --- dns: DKIM (exporter/probes/dns/dkim.py) ----------------------------------------------
    F("dkim_key_missing", "dns", CRITICAL,
      "No DKIM key is published for a configured selector; mail signed with it fails DKIM.",
      "Publish the selector's public key at <selector>._domainkey.<domain> (your provider shows"
      " the record), or remove the selector from the config if it is retired."),
    F("dkim_key_revoked", "dns", CRITICAL,
      "The DKIM key for a configured selector is revoked (empty p=); signatures with it fail.",
      "Publish the current key for the selector, or stop signing with it and drop it from the"
      " config."),
    F("dkim_key_invalid", "dns", CRITICAL,
      "The DKIM key record cannot be used: bad syntax, unknown key type, undecodable key, or an"
      " RSA key under 1024 bits (RFC 8301).",
      "Republish the record as 'v=DKIM1; k=rsa; p=<base64 public key>' with a key of 2048 bits."),
    F("dkim_key_weak", "dns", WARNING,
      "The DKIM RSA key is shorter than 2048 bits.",
      "Generate a 2048-bit key, publish it under a new selector, switch signing, then retire the"
      " old selector."),
    F("dkim_testing_mode", "dns", INFO,
      "The DKIM key is published with t=y (testing): receivers may treat failures leniently.",
      "Remove t=y once signing works."),
    F("dkim_multiple_records", "dns", CRITICAL,
      "More than one TXT record is published for a DKIM selector; verification is unreliable.",
      "Keep exactly one DKIM TXT record at <selector>._domainkey.<domain>."),
    # --- dns: MX (exporter/probes/dns/mx.py) --------------------------------------------------
    F("mx_missing", "dns", WARNING,
      "The domain has no MX record: mail to it falls back to its A record, and many receivers"
      " distrust senders whose domain cannot receive bounces.",
      "Publish MX records for the domain, or a null MX ('0 .') if it never receives mail."),
    F("mx_null", "dns", INFO,
      "The domain publishes a null MX (RFC 7505): it accepts no mail.",
      "Nothing to do if the domain never receives mail; otherwise replace it with real MX hosts."),
    F("mx_host_unresolvable", "dns", CRITICAL,
      "An MX host has no A or AAAA record; mail cannot be delivered through it.",
      "Fix the host name in the MX record or publish its address records."),
    F("mx_host_is_cname", "dns", WARNING,
      "An MX record points at a CNAME, which RFC 2181 §10.3 forbids; some senders refuse it.",
      "Point the MX record at the canonical host name."),
    F("mx_host_is_ip", "dns", CRITICAL,
      "An MX record names an IP address instead of a host name; senders treat it as a host name"
      " that does not exist.",
      "Point the MX record at a host name with A/AAAA records."),
    F("mx_null_mixed", "dns", CRITICAL,
      "A null MX ('0 .') is published together with other MX records (RFC 7505 §3 forbids it).",
      "Remove either the null MX or the other MX records."),
    # --- dnsbl (exporter/probes/dnsbl.py) -----------------------------------------------------
    # --- tls (exporter/probes/tls.py) ---------------------------------------------------------
    # --- ses (exporter/probes/ses.py) ---------------------------------------------------------
    # --- roundtrip (exporter/probes/roundtrip.py) ---------------------------------------------
)  # fmt: skip


def spec_for(code: str) -> FindingSpec:
    return CATALOGUE[code]


def render_markdown() -> str:
    """The catalogue as Markdown (docs/FINDINGS.md)."""
    lines = [
        "# Findings catalogue",
        "",
        "Generated from `exporter/findings.py` (`python -m exporter.findings > docs/FINDINGS.md`).",
        "Each code is a stable value of the `code` label of `deliverability_finding`.",
        "",
    ]
    for probe in dict.fromkeys(s.probe for s in CATALOGUE.values()):
        lines += [f"## {probe}", "", "| code | severity | meaning | fix |", "|---|---|---|---|"]
        for s in CATALOGUE.values():
            if s.probe == probe:
                lines.append(f"| `{s.code}` | {s.severity} | {s.summary} | {s.fix} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(render_markdown())

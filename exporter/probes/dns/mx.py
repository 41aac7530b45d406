"""MX sub-check of the ``dns`` probe: the domain's MX records and whether their hosts resolve.

Recognizes the null MX of RFC 7505 (a lone ``0 .``), flags MX targets that are CNAMEs
(RFC 2181 §10.3) or IP addresses, and hosts without A/AAAA records.
"""

from __future__ import annotations

from dns.rdtypes.ANY.MX import MX

from exporter.config import DomainConfig
from exporter.net.addr import is_ip_address
from exporter.net.dnsmodel import DnsTempError
from exporter.probes.dns.common import DnsContext, checksum, dns_failure, gather
from exporter.results import Finding, ProbeResult, sample


async def _host(host: str, ctx: DnsContext) -> tuple[bool, str]:
    """(resolves, canonical name if the host is an alias); DnsTempError when either lookup
    could not tell (an MX host is only "unresolvable" when both answered)."""
    found = await ctx.dns.resolve_host(host)
    if found.failures:
        raise found.failures[0]
    return found.exists, found.canonical_name


async def check(domain: DomainConfig, ctx: DnsContext) -> ProbeResult:
    name = domain.domain
    result = ProbeResult()
    try:
        answer = await ctx.dns.query(name, "MX")
    except DnsTempError as exc:
        return dns_failure("MX", exc)
    mx = sorted(
        (rd.preference, rd.exchange.to_text().rstrip(".").lower())
        for rd in answer.rdatas
        if isinstance(rd, MX)
    )
    lines = [f"{pref} {host or '.'}" for pref, host in mx]
    result.samples.append(sample("mx_records", len(mx), domain=name))
    if not mx:
        result.findings.append(Finding("mx_missing", evidence=f"{name}: {answer.status}"))
        result.samples.append(sample("mx_valid", False, domain=name))
        return result
    result.samples.append(checksum(name, "mx", lines))
    result.details["mx.records"] = ", ".join(lines)
    nulls = [host for _, host in mx if host == ""]
    if nulls:
        if len(mx) == 1:
            result.findings.append(Finding("mx_null"))
            result.samples.append(sample("mx_valid", True, domain=name))
        else:
            result.findings.append(Finding("mx_null_mixed", evidence=", ".join(lines)))
            result.samples.append(sample("mx_valid", False, domain=name))
        return result
    valid = True
    hosts = list(dict.fromkeys(host for _, host in mx))
    names = [h for h in hosts if not is_ip_address(h)]
    for host in hosts:
        if is_ip_address(host):
            valid = False
            result.findings.append(Finding("mx_host_is_ip", subject=host, evidence=host))
    try:
        answers = await gather(*(_host(h, ctx) for h in names))
    except DnsTempError as exc:
        result.merge(dns_failure("MX host", exc))
        return result  # mx_valid unknown: not published
    for host, (resolves, canonical) in zip(names, answers, strict=True):
        if not resolves:
            valid = False
            result.findings.append(
                Finding("mx_host_unresolvable", subject=host, evidence=f"{host}: no A/AAAA")
            )
        if canonical:
            result.findings.append(
                Finding("mx_host_is_cname", subject=host, evidence=f"{host} -> {canonical}")
            )
    result.samples.append(sample("mx_valid", valid, domain=name))
    return result

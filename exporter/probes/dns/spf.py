"""SPF sub-check of the ``dns`` probe: static analysis plus check_host() per sending IP.

Uses :mod:`exporter.spf` on the cycle's shared DNS client, so the analysis and every
check_host() share one cache: a name is queried once per cycle however many IPs are checked.
A temporary DNS failure on the domain's own TXT lookup is an error (``probe_success`` 0), never
``spf_missing``.
"""

from __future__ import annotations

from exporter.config import DomainConfig
from exporter.net.dnsmodel import DnsTempError
from exporter.probes.dns.common import DnsContext, checksum, dns_failure, gather
from exporter.results import Finding, ProbeResult, sample, state_set
from exporter.spf.analysis import analyze
from exporter.spf.evaluate import RESULTS, SpfResult, check_host

ALL_QUALIFIERS = ("pass", "neutral", "softfail", "fail", "none")


async def check(domain: DomainConfig, ctx: DnsContext) -> ProbeResult:
    name = domain.domain
    try:
        analysis = await analyze(name, ctx.dns)
    except DnsTempError as exc:
        return dns_failure("SPF", exc)
    results: list[SpfResult] = list(
        await gather(
            *(
                check_host(ctx.dns, ip, f"postmaster@{name}", name, domain=name)
                for ip in domain.sending_ips
            )
        )
    )
    out = ProbeResult()
    out.samples += [
        sample("spf_records", len(analysis.records), domain=name),
        sample("spf_valid", analysis.valid, domain=name),
        sample("spf_dns_lookups", analysis.lookups, domain=name),
        sample("spf_void_lookups", analysis.void_lookups, domain=name),
        *state_set(
            "spf_all_qualifier", analysis.all_qualifier, ALL_QUALIFIERS, "qualifier", domain=name
        ),
    ]
    if analysis.records:
        out.samples.append(checksum(name, "spf", analysis.records))
    for problem in analysis.problems:
        out.findings.append(
            Finding(problem.code, problem.evidence, problem.subject, problem.severity)
        )
    for ip, res in zip(domain.sending_ips, results, strict=True):
        out.samples += state_set("spf_result", res.result, RESULTS, "result", domain=name, ip=ip)
        why = f"{res.result} via {res.mechanism or res.problem or 'no record'}"
        if res.result == "temperror":
            out.findings.append(Finding("spf_ip_temperror", f"{ip}: {res.problem}", ip))
        elif res.result != "pass":
            out.findings.append(Finding("spf_ip_not_permitted", f"{ip}: {why}", ip))
        out.details[f"spf.result.{ip}"] = why
    if analysis.records:
        out.details["spf.record"] = "\n".join(analysis.records)
        out.details["spf.lookups"] = f"{analysis.lookups} of 10"
        out.details["spf.void_lookups"] = f"{analysis.void_lookups} of 2"
        out.details["spf.all"] = analysis.all_qualifier
    if analysis.root is not None:
        out.details["spf.tree"] = analysis.tree()
    return out

"""SPF sub-check of the ``dns`` probe (placeholder until the SPF engine lands: counts records)."""

from __future__ import annotations

from exporter.config import DomainConfig
from exporter.dnsclient import DnsTempError
from exporter.probes.base import Finding, ProbeContext, ProbeResult, sample
from exporter.probes.dns.common import checksum, dns_failure


async def check(domain: DomainConfig, ctx: ProbeContext) -> ProbeResult:
    try:
        answer = await ctx.dns.query(domain.domain, "TXT")
    except DnsTempError as exc:
        return dns_failure("SPF", exc)
    records = [t for t in answer.texts() if t.lower() == "v=spf1" or t.lower().startswith("v=spf1 ")]
    result = ProbeResult(samples=[sample("spf_records", len(records), domain=domain.domain)])
    if records:
        result.samples.append(checksum(domain.domain, "spf", records))
    else:
        result.findings.append(Finding("spf_missing"))
    return result

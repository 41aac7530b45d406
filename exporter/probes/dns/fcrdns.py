"""Sending-IP sub-check of the ``dns`` probe: forward-confirmed reverse DNS (FCrDNS).

For each ``sending_ips`` entry (IPv4 or IPv6): the PTR records at its reverse name
(``in-addr.arpa`` / ``ip6.arpa``), then the A (or AAAA) records of each PTR name; the IP passes
when some PTR name resolves back to it. Gmail requires this of every sender and junks or rejects
mail from IPs that fail it; most receivers score it. A temporary DNS failure is "could not tell"
for that IP: no sample, the probe's error set.
"""

from __future__ import annotations

import ipaddress

from dns.rdtypes.ANY.PTR import PTR

from exporter.config import DomainConfig
from exporter.net.dnsmodel import DnsTempError
from exporter.probes.dns.common import DnsContext, dns_failure, gather, gather_merged
from exporter.results import Finding, ProbeResult, sample

MAX_PTR_NAMES = 10
"""PTR names followed per IP (RFC 7208 §4.6.4 stops at 10 as well; real IPs have one)."""


def reverse_name(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """The PTR name of an address, as ``dns.reversename.from_address`` writes it (without the
    root dot; an IPv4-mapped IPv6 address under ``in-addr.arpa``) at a quarter of its CPU."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped.reverse_pointer
    return addr.reverse_pointer


def ptr_name(rd: PTR) -> str:
    """A PTR target as shown: lower case without the final dot; the root itself as ``.``."""
    return rd.target.to_text().rstrip(".").lower() or "."


async def _forward(ctx: DnsContext, name: str, rdtype: str) -> list[str] | DnsTempError:
    """The addresses of a PTR name, or the failure: one name confirmed is enough, whatever
    the others' lookups did."""
    if name == ".":  # a PTR to the root has no address records to follow
        return []
    answer = await ctx.dns.attempt(name, rdtype)
    return answer if isinstance(answer, DnsTempError) else answer.addresses()


async def _ip(domain: str, ip: str, ctx: DnsContext) -> ProbeResult:
    result = ProbeResult()
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped  # ::ffff:a.b.c.d is a.b.c.d: its PTR and its A records
    rname = reverse_name(addr)
    rdtype = "A" if addr.version == 4 else "AAAA"
    try:
        answer = await ctx.dns.query(rname, "PTR")
        # Sorted: the first name is a label value, and servers rotate the RRset.
        names = sorted({ptr_name(rd) for rd in answer.rdatas if isinstance(rd, PTR)})
        names = names[:MAX_PTR_NAMES]
    except DnsTempError as exc:
        return dns_failure(f"FCrDNS of {ip}", exc)
    looked_up = await gather(*(_forward(ctx, n, rdtype) for n in names))
    forward = [a if isinstance(a, list) else [] for a in looked_up]
    confirmed = [
        n
        for n, addresses in zip(names, forward, strict=True)
        if any(ipaddress.ip_address(a) == addr for a in addresses)
    ]
    failed = [a for a in looked_up if isinstance(a, DnsTempError)]
    if failed and not confirmed:  # the name that could not be looked up may be the one
        return dns_failure(f"FCrDNS of {ip}", failed[0])
    result.samples.append(sample("sending_ip_fcrdns", bool(confirmed), domain=domain, ip=ip))
    result.samples.append(
        sample("sending_ip_ptr_info", 1, domain=domain, ip=ip, ptr=names[0] if names else "")
    )
    if not names:
        result.details[f"fcrdns.{ip}"] = f"no PTR at {rname} ({answer.status})"
        result.findings.append(
            Finding("sending_ip_no_ptr", subject=ip, evidence=f"{rname}: {answer.status}")
        )
    elif not confirmed:
        seen = "; ".join(
            f"{n} -> {', '.join(a) or 'no ' + rdtype}" for n, a in zip(names, forward, strict=True)
        )
        result.details[f"fcrdns.{ip}"] = f"PTR does not resolve back: {seen}"
        result.findings.append(
            Finding("sending_ip_ptr_mismatch", subject=ip, evidence=f"{ip}: PTR {seen}")
        )
    else:
        result.details[f"fcrdns.{ip}"] = f"{confirmed[0]} (forward-confirmed)"
    return result


async def check(domain: DomainConfig, ctx: DnsContext) -> ProbeResult:
    return await gather_merged(_ip(domain.domain, ip, ctx) for ip in domain.sending_ips)

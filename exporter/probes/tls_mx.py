"""``mx_of`` targets of the ``tls`` probe: every A and AAAA address of every MX host.

A sender picks any address of an MX host, so one broken address (an IPv6 listener with an old
certificate, a node of a cluster that missed the renewal) loses a share of the mail while the
first address looks fine. Each run therefore looks up the domain's MX records and each host's A
and AAAA records, and holds one conversation per (host, address), at most
:data:`MAX_HANDSHAKES` at once.

What a domain's DNS can make a run do is bounded: the first :data:`MAX_MX_HOSTS` hosts by
preference and the first :data:`MAX_ADDRESSES` addresses of each are probed (a domain once
published 1,500 MX records: 684 sockets at once and 1,500 series); more is a
``tls_mx_too_many`` finding naming what was left out. Senders do no better: Postfix tries at
most ``smtp_mx_address_limit`` (5) addresses per delivery.

Per address: ``deliverability_tls_address_success{target,address}`` (1 when the handshake
completed with a certificate senders accept: valid for the Web PKI, or matched by a secure TLSA
record). Per host (``target="<host>:25"``): the usual TLS samples of the *worst* address (a
failed handshake before an invalid certificate before a valid one; then the earliest expiry),
DANE (:mod:`exporter.probes.tls_dane`), findings from every address (naming the addresses when
not all of them share it) and a table of the addresses. An address that cannot be reached is
"could not tell": the run's error names it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from exporter.config import TlsTargetConfig
from exporter.net.dnsmodel import DnsTempError
from exporter.net.limiter import Limiter
from exporter.probes import tls_dane
from exporter.probes.tls_endpoint import (
    MX_PORT,
    Endpoint,
    Outcome,
    TlsContext,
    converse,
    finding_list,
    report,
)
from exporter.results import Finding, ProbeResult, Table, sample

MAX_HANDSHAKES = 8
"""Conversations in flight at once in one ``mx_of`` run."""
MAX_MX_HOSTS = 16
"""MX hosts probed per run, by preference (the rest are named in a finding)."""
MAX_ADDRESSES = 8
"""Addresses probed per MX host (IPv4 first, as senders prefer them)."""


async def run_mx(
    domain: str, settings: TlsTargetConfig, ctx: TlsContext, deadline: float
) -> ProbeResult:
    result = ProbeResult()
    try:
        async with asyncio.timeout_at(deadline):
            answer = await ctx.dns.query(domain, "MX")
    except DnsTempError as exc:
        result.error = f"MX lookup failed: {exc}"
        return result
    except TimeoutError:
        result.error = f"timed out looking up the MX records of {domain}"
        return result
    records = sorted(
        (
            (int(getattr(rd, "preference", 0)), str(getattr(rd, "exchange", "")))
            for rd in answer.rdatas
        ),
    )
    hosts = list(dict.fromkeys(h.rstrip(".").lower() for _, h in records if h.rstrip(".")))
    if not hosts:
        result.details["mx hosts"] = (
            f"{domain} publishes a null MX" if records else f"{domain} has no MX records"
        )
        return result
    if len(hosts) > MAX_MX_HOSTS:
        left = hosts[MAX_MX_HOSTS:]
        result.findings.append(
            Finding(
                "tls_mx_too_many",
                f"{domain} publishes {len(hosts)} MX hosts; probed the first {MAX_MX_HOSTS} by"
                f" preference, not {', '.join(left[:5])}" + (" ..." if len(left) > 5 else ""),
                subject=domain,
            )
        )
        hosts = hosts[:MAX_MX_HOSTS]
    result.details["mx hosts"] = ", ".join(f"{h}:{MX_PORT}" for h in hosts)
    limiter = Limiter(MAX_HANDSHAKES)
    results = await asyncio.gather(*(_host(h, settings, ctx, deadline, limiter) for h in hosts))
    for r in results:
        result.merge(r)
    return result


async def _bounded(limiter: Limiter, work: Awaitable[Outcome]) -> Outcome:
    async with limiter:
        return await work


async def _host(
    host: str, settings: TlsTargetConfig, ctx: TlsContext, deadline: float, limiter: Limiter
) -> ProbeResult:
    label = f"{host}:{MX_PORT}"
    ep = Endpoint(host=host, port=MX_PORT, label=label, name=host, starttls=True, prefix=label)
    try:
        async with asyncio.timeout_at(deadline):
            found = await ctx.dns.resolve_host(host)
    except TimeoutError:
        return ProbeResult(error=f"{label}: timed out looking up its addresses")
    addresses = found.all
    skipped = addresses[MAX_ADDRESSES:]
    addresses = addresses[:MAX_ADDRESSES]
    if not addresses:
        # The DNS said "none" (the dns probe reports the unresolvable MX host) or could not tell.
        outcome = await converse(ep, settings, ctx, deadline)
        return report(ep, outcome)
    outcomes = list(
        await asyncio.gather(
            *(_bounded(limiter, converse(ep, settings, ctx, deadline, a)) for a in addresses)
        )
    )
    result = ProbeResult()
    if settings.use_dane:
        result.merge(await tls_dane.check(ep, outcomes, ctx, deadline))
    worst = report(ep, min(outcomes, key=_rank), with_findings=False)
    worst.error = None  # every unreachable address is named below, not only the worst's
    result.merge(worst)
    errors = [f"{label} [{o.address}]: {o.failure}" for o in outcomes if o.failure]
    if found.failures:
        errors.append(f"{label}: DNS lookup failed: {found.failures[0]}")
    if errors:
        result.merge(ProbeResult(error="; ".join(errors)))
    result.findings += _findings(ep, outcomes)
    if skipped:
        result.findings.append(
            Finding(
                "tls_mx_too_many",
                f"{host} has {len(addresses) + len(skipped)} addresses; probed the first"
                f" {MAX_ADDRESSES}, not {', '.join(skipped[:5])}"
                + (" ..." if len(skipped) > 5 else ""),
                subject=label,
            )
        )
    for out, address in zip(outcomes, addresses, strict=True):
        ok = out.failure is None and out.valid
        result.samples.append(sample("tls_address_success", ok, target=label, address=address))
    result.tables.append(_table(ep, outcomes, addresses))
    return result


def _rank(out: Outcome) -> tuple[int, float]:
    """Lower is worse: a failed handshake, an invalid certificate, a valid one; then addresses
    that could not be reached (they say nothing); ties by the earliest leaf expiry."""
    if out.failure is not None:
        level = 3
    elif not out.session.handshake_done:
        level = 0
    elif not out.valid:
        level = 1
    else:
        level = 2
    expiry = out.certs[0].summary.not_after if out.certs else float("inf")
    return (level, expiry)


def _findings(ep: Endpoint, outcomes: list[Outcome]) -> list[Finding]:
    """Every address's findings; one naming the host when all answering addresses share it,
    else one per finding naming the addresses that have it."""
    answering = [o for o in outcomes if o.failure is None]
    seen: dict[tuple[str, str, str | None], list[str]] = {}
    for out in answering:
        for f in finding_list(ep, out):
            seen.setdefault((f.code, f.evidence, f.severity), []).append(out.address)
    found = []
    for (code, evidence, severity), where in seen.items():
        if len(where) == len(answering) and len(answering) > 1:
            found.append(Finding(code, evidence, ep.label, severity))
        elif len(answering) == 1:
            found.append(Finding(code, f"{evidence} (at {where[0]})", ep.label, severity))
        else:
            at = ", ".join(where)
            found.append(Finding(code, f"{evidence} (at {at})", f"{ep.label} [{at}]", severity))
    return found


def _table(ep: Endpoint, outcomes: list[Outcome], addresses: list[str]) -> Table:
    rows = []
    for out, address in zip(outcomes, addresses, strict=True):
        if out.failure is not None:
            rows.append((address, "could not tell", out.failure))
            continue
        if not out.session.handshake_done:
            rows.append((address, "no TLS", out.tls_failure or "STARTTLS not offered"))
            continue
        verdict = out.verdict
        cert = "valid" if verdict is not None and verdict.valid else "not valid"
        if out.dane_valid is not None:
            cert += ", DANE match" if out.dane_valid else ", no DANE match"
        if verdict is not None and not verdict.valid:
            cert += f": {verdict.valid_error or verdict.trust_error}"
        if out.certs:
            cert += f" (leaf sha256 {out.certs[0].summary.fingerprint_sha256[:16]})"
        tls = f"{out.session.tls_version or ''} {out.session.cipher or ''}".strip()
        rows.append((address, tls, cert))
    return Table(f"TLS addresses of {ep.label}", ("address", "TLS", "certificate"), tuple(rows))

"""DNSSEC sub-check of the ``dns`` probe: the domain's records and its MX hosts' addresses,
validated by the exporter from the trust anchors (:mod:`exporter.dnssec`).

The domain's status is the worst over the records receivers look up for its mail (MX and TXT at
the domain, TXT at ``_dmarc.<domain>``): a bogus answer to any of them makes every validating
resolver answer SERVFAIL. Each MX host's status is the worst over its A and AAAA answers (a
proven "no AAAA" counts). The earliest signature expiration covers the domain's own records and
their zone's DNSKEY set: the signatures its operator must keep fresh.

A resolver that strips DNSSEC records, a timeout or SERVFAIL is "could not tell": the state sets
are all 0 and the run reports the reason (and for a stripping resolver, the fix), never "bogus".
With ``global.dnssec: false`` the sub-check does nothing.
"""

from __future__ import annotations

import asyncio
import time

from dns.rdtypes.ANY.MX import MX

from exporter.config import DomainConfig
from exporter.dnssec import STATUSES, Status, Validator, Verdict
from exporter.dnssec.model import worst
from exporter.dnssec.signatures import when
from exporter.findings import CRITICAL
from exporter.net.addr import is_ip_address
from exporter.net.dnsmodel import DnsTempError
from exporter.probes.dns.common import DnsContext
from exporter.results import Finding, ProbeResult, Table, sample, state_set

WARNING_DAYS = 7.0
CRITICAL_DAYS = 2.0
DOMAIN_RECORDS = (("", "MX"), ("", "TXT"), ("_dmarc.", "TXT"))
"""(prefix, type) of the domain's answers whose status is the domain's."""


def _describe(v: Verdict) -> str:
    what = f"{v.name} {v.rdtype}"
    if v.status == Status.SECURE:
        answer = "" if v.answer == "ok" else f" ({v.answer}, proven)"
        return f"{what}: secure{answer}, signed by {v.zone}"
    return f"{what}: {v.status.value}: {v.reason}"


def _row(v: Verdict) -> tuple[str, ...]:
    answer = f"{v.name} {v.rdtype}" + ("" if v.answer == "ok" else f" ({v.answer})")
    detail = v.reason
    if v.status == Status.SECURE:
        until = f"until {when(v.expiry)}, " if v.expiry is not None else ""
        detail = f"{until}signed by {v.zone}"
    return (answer, v.status.value, detail)


async def check(domain: DomainConfig, ctx: DnsContext) -> ProbeResult:
    # Contexts made by hand (tests of other sub-checks) carry no resources: no DNSSEC there.
    validator: Validator | None = getattr(ctx.resources, "dnssec", None)
    result = ProbeResult()
    if validator is None:
        return result
    name = domain.domain
    answers = await asyncio.gather(
        *(validator.validate(prefix + name, rdtype) for prefix, rdtype in DOMAIN_RECORDS),
        return_exceptions=True,
    )
    failure = next((a for a in answers if isinstance(a, BaseException)), None)
    if failure is not None:
        if not isinstance(failure, DnsTempError):
            raise failure
        result.samples += state_set("dnssec_status", None, STATUSES, "status", domain=name)
        result.error = f"DNSSEC: could not tell: {failure}"
        return result
    verdicts = [a for a in answers if isinstance(a, Verdict)]
    status = worst([v.status for v in verdicts])
    decisive = next(v for v in verdicts if v.status == status)
    result.samples += state_set("dnssec_status", status.value, STATUSES, "status", domain=name)
    result.details["dnssec"] = _describe(decisive)
    rows = [_row(v) for v in verdicts]
    if status == Status.BOGUS:
        evidence = f"{decisive.name} {decisive.rdtype}: {decisive.reason}"
        result.findings.append(Finding("dnssec_bogus", evidence, subject=name))
    elif status == Status.INSECURE:
        result.findings.append(Finding("dnssec_unsigned", decisive.reason, subject=name))
    else:
        expiries = [v.expiry for v in verdicts if v.expiry is not None]
        if expiries:
            earliest = min(expiries)
            result.samples.append(
                sample("dnssec_signature_expiry_timestamp_seconds", earliest, domain=name)
            )
            days = (earliest - time.time()) / 86400
            if days < WARNING_DAYS:
                result.findings.append(
                    Finding(
                        "dnssec_signature_expiring",
                        f"the earliest signature of {name}'s records expires {when(earliest)}"
                        f" (in {days:.1f} days)",
                        subject=name,
                        severity=CRITICAL if days < CRITICAL_DAYS else None,
                    )
                )
    mx = next((v for v in verdicts if v.rdtype == "MX"), None)
    hosts = _mx_hosts(mx)
    if hosts:
        same_cause = decisive.zone if status == Status.BOGUS else None
        host_rows, host_error = await _check_hosts(name, hosts, validator, result, same_cause)
        rows += host_rows
        if host_error:
            result.error = host_error
    result.tables.append(
        Table(
            "DNSSEC",
            ("answer", "status", "detail"),
            tuple(rows),
            note="validated by the exporter from the trust anchors, never from a resolver's AD bit",
        )
    )
    return result


def _mx_hosts(verdict: Verdict | None) -> list[str]:
    if verdict is None:
        return []
    hosts = [
        rd.exchange.to_text(omit_final_dot=True).lower()
        for rrset in verdict.rrsets
        for rd in rrset
        if isinstance(rd, MX)
    ]
    return [h for h in dict.fromkeys(hosts) if h and not is_ip_address(h)]


async def _check_hosts(
    name: str,
    hosts: list[str],
    validator: Validator,
    result: ProbeResult,
    bogus_zone: str | None,
) -> tuple[list[tuple[str, ...]], str | None]:
    """Validate each MX host's A and AAAA answers; samples and findings go into ``result``.
    A host bogus for the same zone as the domain (``bogus_zone``) adds no finding of its own:
    ``dnssec_bogus`` already says it."""
    answers = await asyncio.gather(
        *(validator.validate(host, rdtype) for host in hosts for rdtype in ("A", "AAAA")),
        return_exceptions=True,
    )
    rows: list[tuple[str, ...]] = []
    errors: list[str] = []
    for i, host in enumerate(hosts):
        pair = answers[2 * i : 2 * i + 2]
        failure = next((a for a in pair if isinstance(a, BaseException)), None)
        if failure is not None:
            if not isinstance(failure, DnsTempError):
                raise failure
            result.samples += state_set(
                "dnssec_mx_status", None, STATUSES, "status", domain=name, mx=host
            )
            errors.append(f"DNSSEC of MX host {host}: could not tell: {failure}")
            continue
        verdicts = [a for a in pair if isinstance(a, Verdict)]
        status = worst([v.status for v in verdicts])
        result.samples += state_set(
            "dnssec_mx_status", status.value, STATUSES, "status", domain=name, mx=host
        )
        rows += [_row(v) for v in verdicts]
        bad = next((v for v in verdicts if v.status == Status.BOGUS), None)
        if bad is not None and bad.zone != bogus_zone:
            result.findings.append(
                Finding("dnssec_mx_bogus", f"{bad.name} {bad.rdtype}: {bad.reason}", subject=host)
            )
    return rows, "; ".join(errors) or None

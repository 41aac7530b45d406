"""DMARC sub-check of the ``dns`` probe (RFC 9989, which obsoletes RFC 7489).

Finds the record receivers apply to the domain by the DNS tree walk (:mod:`.treewalk`): the
domain's own, else its organizational domain's, else its public suffix domain's — never by the
Public Suffix List. Reports the policy receivers apply to the domain (for a domain without its
own record, the ``sp`` of the record found, or ``np`` when the domain does not exist), to its
existing and to its non-existent subdomains, the test mode (``t=y``), where the record was found,
and the tags RFC 9989 removed (``pct``, ``rf``, ``ri``: still read by RFC 7489 receivers).
External report destinations are checked for their authorization record (RFC 9990 §3, RFC 7489
§7.1) when their organizational domain differs from the policy domain's.
"""

from __future__ import annotations

import asyncio
import re

from exporter.config import DomainConfig
from exporter.net.dnsclient import DnsClient
from exporter.net.dnsmodel import DnsTempError
from exporter.probes.dns import treewalk
from exporter.probes.dns.common import DnsContext, checksum, dns_failure
from exporter.probes.dns.dmarc_record import (
    MAILTO,
    POLICIES,
    STRENGTH,
    DmarcRecord,
    DmarcSyntaxError,
    is_dmarc,
    parse_dmarc,
)
from exporter.results import Finding, ProbeResult, Sample, sample, state_set

_ROLES = {
    "domain": "the domain's own record",
    "organizational": "its organizational domain",
    "public suffix": "its public suffix domain",
}

MAX_REPORT_DESTINATIONS = 10
"""Report destination hosts checked for authorization, the first ones of the record: each costs
a tree walk and a lookup, and a record (perhaps a parent's or a public suffix's, inherited) can
list thousands in 64 KB of TXT."""

__all__ = ["POLICIES", "DmarcRecord", "DmarcSyntaxError", "check", "is_dmarc", "parse_dmarc"]


async def check(domain: DomainConfig, ctx: DnsContext) -> ProbeResult:
    name = domain.domain
    result = ProbeResult()
    try:
        walk = await treewalk.walk(ctx.dns, name)
        app = walk.applicable()
        exists = True
        if app is not None and app.role != "domain":
            # RFC 9989 §3.2.13: a domain that answers NXDOMAIN does not exist (np applies).
            exists = (await ctx.dns.query(name, "TXT")).status != "nxdomain"
    except DnsTempError as exc:
        return dns_failure("DMARC", exc)

    own = walk.steps[0].records
    result.samples.append(sample("dmarc_records", len(own), domain=name))
    result.details["dmarc.tree_walk"] = walk.trail()
    if walk.failure is None:
        result.details["dmarc.organizational_domain"] = walk.organizational_domain()
    else:
        # Only the domain's own record got here (applicable() raised otherwise): it applies,
        # what depends on the level that failed is could not tell.
        result.merge(dns_failure("DMARC", walk.failure))
        result.details["dmarc.organizational_domain"] = (
            f"could not tell: {walk.failure} (the domain's own record applies all the same)"
        )
    split_hint = _ignored_txt(walk.steps[0], result)
    if len(own) > 1:
        result.findings.append(
            Finding("dmarc_multiple_records", evidence=f"{len(own)} records at _dmarc.{name}")
        )
        result.samples.append(checksum(name, "dmarc", own))
    if app is None:
        if len(own) <= 1:
            result.findings.append(
                Finding("dmarc_missing", evidence=f"no v=DMARC1 record: {walk.trail()}")
            )
        return _policy_samples(result, name, None, None, None, None)

    rec, where = app.record, f"_dmarc.{app.step.name}"
    if len(own) <= 1:
        result.samples.append(checksum(name, "dmarc", app.step.records))
    result.samples.append(
        sample("dmarc_policy_domain_info", 1, domain=name, policy_domain=app.step.name)
    )
    result.details["dmarc.record"] = rec.text
    result.details["dmarc.source"] = f"{where} ({_ROLES[app.role]})"
    result.details["dmarc.psd"] = rec.psd
    if app.role != "domain":
        result.findings.append(
            Finding("dmarc_inherited", evidence=f"{where} ({_ROLES[app.role]}): {_cut(rec.text)}")
        )
    _record_findings(result, rec, split_hint if app.role == "domain" else "")
    if not rec.usable:
        return _policy_samples(result, name, None, None, None, rec)

    if app.role == "domain":
        applied = rec.effective("p")
    else:
        applied = rec.effective("sp" if exists else "np")
        if not exists:
            result.details["dmarc.exists"] = f"{name} does not exist (NXDOMAIN): np applies"
    if applied == "none":
        result.findings.append(Finding("dmarc_policy_none", evidence=f"{where}: {_cut(rec.text)}"))
    elif rec.testing:
        result.findings.append(Finding("dmarc_testing_mode", evidence=f"{where}: {_cut(rec.text)}"))
    if walk.failure is not None:
        # A subdomain's policy and the report destinations' organizations depend on the
        # level that failed: could not tell (the failure is already the error).
        return _policy_samples(result, name, applied, None, None, rec, subdomains=False)
    below = walk.below().applicable()
    sub = below.record.effective("sp") if below is not None else None
    nonexistent = below.record.effective("np") if below is not None else None
    if app.role == "domain" and below is not None:
        src = "" if below.step.name == name else f" from _dmarc.{below.step.name}"
        for tag, policy in (("sp", sub), ("np", nonexistent)):
            if policy is not None and STRENGTH[policy] < STRENGTH[applied]:
                result.findings.append(
                    Finding("dmarc_subdomain_policy_weaker", subject=tag,
                            evidence=f"p={applied} here, {tag}={policy}{src}")
                )  # fmt: skip
    try:
        await _check_external_reports(ctx.dns, walk, app.step.name, rec, result)
    except DnsTempError as exc:
        result.merge(dns_failure("DMARC report authorization", exc))
    return _policy_samples(result, name, applied, sub, nonexistent, rec)


_TAG_START = re.compile(r"\s*(p|sp|np|rua|ruf|adkim|aspf|fo|pct|rf|ri|psd|t)\s*=", re.IGNORECASE)


def _ignored_txt(step: treewalk.Step, result: ProbeResult) -> str:
    """Shows the TXT records beside the domain's own DMARC record that receivers ignore; returns
    a hint when one reads like DMARC tags (a record split into two TXT records), else ''."""
    if not step.ignored:
        return ""
    shown = " | ".join(t if len(t) <= 200 else t[:200] + "..." for t in step.ignored[:5])
    if not any(_TAG_START.match(t) for t in step.ignored):
        result.details["dmarc.ignored_txt"] = f"not DMARC records, ignored: {shown}"
        return ""
    hint = (
        "a TXT record beside it reads like DMARC tags, ignored by receivers (a record split"
        f" into two TXT records? its strings belong in one): {shown}"
    )
    result.details["dmarc.ignored_txt"] = hint
    return hint


def _record_findings(result: ProbeResult, rec: DmarcRecord, hint: str = "") -> None:
    """Findings about the record's own text, whatever the domain it applies to; ``hint``: what
    the evidence of the findings about missing tags should add."""
    for problem in rec.problems:
        result.findings.append(Finding("dmarc_invalid_tag", evidence=problem, subject=problem))
    if rec.policy_problem is not None:
        fallback = (
            "receivers act as p=none (the record has a valid rua)"
            if rec.usable
            else "receivers ignore the record (and it has no valid rua)"
        )
        result.findings.append(
            Finding("dmarc_invalid", evidence=f"{rec.policy_problem}: {fallback}: {_cut(rec.text)}")
        )
    elif "p" not in rec.tags:
        result.findings.append(Finding("dmarc_policy_missing", evidence=_with(rec.text, hint)))
    if rec.removed:
        shown = "; ".join(f"{t}={rec.tags[t]}" for t in rec.removed)
        result.findings.append(Finding("dmarc_removed_tag", evidence=shown))
    if rec.pct < 100:
        result.findings.append(Finding("dmarc_pct_partial", evidence=f"pct={rec.pct}"))
    if not rec.rua:
        result.findings.append(Finding("dmarc_no_rua", evidence=_with(rec.text, hint)))


def _cut(text: str, limit: int = 300) -> str:
    """A record in a finding's evidence: a TXT RRset may be 64 KB (``dmarc.record`` has it all)."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _with(text: str, hint: str) -> str:
    """A record's (cut) text as evidence, with the hint about ignored TXT records if any."""
    return f"{_cut(text)}; {hint}" if hint else _cut(text)


async def _check_external_reports(
    dns: DnsClient, walk: treewalk.TreeWalk, policy_domain: str, rec: DmarcRecord,
    result: ProbeResult,
) -> None:  # fmt: skip
    """RFC 9990 §3: a destination whose organizational domain is not the policy domain's must
    publish ``v=DMARC1`` at ``<policy domain>._report._dmarc.<destination host>``.

    The organizational domain of the domain's own walk (``walk``) is taken from it: the policy
    domain and a report address at the domain itself (most records) walk no second time."""
    hosts: list[str] = []
    for uri in rec.rua + rec.ruf:
        m = MAILTO.match(uri)
        if m and (host := m.group(2).lower().rstrip(".")) not in hosts:
            hosts.append(host)
    if not hosts:
        return
    if len(hosts) > MAX_REPORT_DESTINATIONS:
        result.details["dmarc.report_destinations"] = (
            f"{len(hosts)} destination hosts: the first {MAX_REPORT_DESTINATIONS} checked for"
            f" authorization, {len(hosts) - MAX_REPORT_DESTINATIONS} more not checked"
        )
        hosts = hosts[:MAX_REPORT_DESTINATIONS]
    names = [policy_domain, *hosts]
    orgs: dict[str, str] = {walk.start: walk.organizational_domain()}
    others = [n for n in dict.fromkeys(names) if n not in orgs]
    if others:
        found = await asyncio.gather(*(treewalk.organizational_domain(dns, n) for n in others))
        orgs.update(zip(others, found, strict=True))
    external = [h for h in hosts if orgs[h] != orgs[policy_domain]]
    if not external:
        return
    names = [f"{policy_domain}._report._dmarc.{h}" for h in external]
    answers = await asyncio.gather(*(_texts(dns, n) for n in names))
    for host, name, texts in zip(external, names, answers, strict=True):
        if not any(is_dmarc(t) for t in texts):
            result.findings.append(
                Finding("dmarc_report_destination_unauthorized", subject=host,
                        evidence=f"no v=DMARC1 at {name}")
            )  # fmt: skip


async def _texts(dns: DnsClient, name: str) -> list[str]:
    if len(name) > treewalk.MAX_NAME:  # no such name can exist: nothing is published there
        return []
    return (await dns.query(name, "TXT")).texts()


def _policy_samples(
    result: ProbeResult,
    name: str,
    policy: str | None,
    sub: str | None,
    nonexistent: str | None,
    rec: DmarcRecord | None,
    *,
    subdomains: bool = True,
) -> ProbeResult:
    """The policy samples; ``subdomains`` False: the subdomain state sets could not be told
    (absent rather than all 0)."""
    valid = rec is not None and rec.policy_problem is None
    out: list[Sample] = [sample("dmarc_valid", valid, domain=name)]
    if rec is not None:
        out.append(sample("dmarc_pct", rec.pct, domain=name))
        out.append(sample("dmarc_testing", rec.testing, domain=name))
    out += state_set("dmarc_policy", policy, POLICIES, "policy", domain=name)
    if subdomains:
        out += state_set("dmarc_subdomain_policy", sub, POLICIES, "policy", domain=name)
        out += state_set(
            "dmarc_nonexistent_subdomain_policy", nonexistent, POLICIES, "policy", domain=name
        )
    result.samples += out
    return result

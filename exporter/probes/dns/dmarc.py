"""DMARC sub-check of the ``dns`` probe (RFC 7489).

Finds the record receivers will use — ``_dmarc.<domain>``, else the organizational domain's
(found with the Public Suffix List, ``publicsuffixlist`` which ships its own copy, so no network)
— parses and validates its tags, and reports the policy receivers will actually apply to this
domain (for a subdomain without its own record, the organizational domain's ``sp``).
External report destinations are checked for their authorization record (RFC 7489 §7.1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from publicsuffixlist import PublicSuffixList

from exporter.config import DomainConfig
from exporter.net.dnsmodel import DnsTempError
from exporter.probes.dns.common import DnsContext, checksum, dns_failure
from exporter.results import Finding, ProbeResult, sample, state_set

POLICIES = ("none", "quarantine", "reject")
_STRENGTH = {p: i for i, p in enumerate(POLICIES)}
_PSL = PublicSuffixList()
_V_DMARC1 = re.compile(r"^\s*v\s*=\s*DMARC1\s*(;|$)")
_MAILTO = re.compile(r"^mailto:([^@!\s]+)@([^!\s]+?)(![0-9]+[kmgt]?)?$", re.IGNORECASE)
_URI = re.compile(r"^[a-z][a-z0-9+.-]*:\S+$", re.IGNORECASE)


class DmarcSyntaxError(ValueError):
    """The record is not a usable DMARC record."""


@dataclass
class DmarcRecord:
    """A parsed DMARC record; ``problems`` lists invalid tags (ignored by receivers)."""

    text: str
    tags: dict[str, str]
    policy: str | None
    subdomain_policy: str | None
    pct: int = 100
    rua: list[str] = field(default_factory=list)
    ruf: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def is_dmarc(text: str) -> bool:
    return bool(_V_DMARC1.match(text))


def parse_dmarc(text: str) -> DmarcRecord:
    """Parse a DMARC TXT record; raise DmarcSyntaxError when it is not DMARC at all.

    A missing or invalid ``p`` is not an exception: ``policy`` is None and a problem is listed
    (receivers then fall back to p=none if a valid rua exists, RFC 7489 §6.6.3).
    """
    if not is_dmarc(text):
        raise DmarcSyntaxError("the record does not start with v=DMARC1")
    tags: dict[str, str] = {}
    problems: list[str] = []
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip().lower()
        if not sep or not name:
            problems.append(f"'{part}' is not a tag=value pair")
            continue
        if name in tags:
            problems.append(f"tag {name} appears twice")
            continue
        tags[name] = value.strip()
    rec = DmarcRecord(text=text, tags=tags, policy=None, subdomain_policy=None, problems=problems)
    p = tags.get("p")
    if p is None:
        problems.append("the required p= tag is missing")
    elif p.lower() not in POLICIES:
        problems.append(f"p={p} is not none, quarantine or reject")
    else:
        rec.policy = p.lower()
    sp = tags.get("sp")
    if sp is not None:
        if sp.lower() in POLICIES:
            rec.subdomain_policy = sp.lower()
        else:
            problems.append(f"sp={sp} is not none, quarantine or reject")
    if "pct" in tags:
        pct = tags["pct"]
        if pct.isdigit() and 0 <= int(pct) <= 100:
            rec.pct = int(pct)
        else:
            problems.append(f"pct={pct} is not an integer from 0 to 100")
    for tag in ("adkim", "aspf"):
        if tag in tags and tags[tag].lower() not in ("r", "s"):
            problems.append(f"{tag}={tags[tag]} is not r or s")
    if "fo" in tags:
        opts = [o.strip() for o in tags["fo"].split(":")]
        if not opts or any(o not in ("0", "1", "d", "s") for o in opts):
            problems.append(f"fo={tags['fo']} must be 0, 1, d or s, separated by ':'")
    if "rf" in tags and any(f.strip().lower() != "afrf" for f in tags["rf"].split(":")):
        problems.append(f"rf={tags['rf']} is not afrf")
    if "ri" in tags and not (tags["ri"].isdigit() and int(tags["ri"]) < 2**32):
        problems.append(f"ri={tags['ri']} is not a 32-bit unsigned integer")
    for tag in ("np",):
        if tag in tags and tags[tag].lower() not in POLICIES:
            problems.append(f"{tag}={tags[tag]} is not none, quarantine or reject")
    for tag in ("rua", "ruf"):
        if tag not in tags:
            continue
        uris = [u.strip() for u in tags[tag].split(",") if u.strip()]
        good = [u for u in uris if _MAILTO.match(u) or (_URI.match(u) and ":" in u)]
        for bad in (u for u in uris if u not in good):
            problems.append(f"{tag} URI {bad!r} is not valid")
        if not uris:
            problems.append(f"{tag}= is empty")
        setattr(rec, tag, good)
    return rec


@lru_cache(maxsize=8192)
def organizational_domain(domain: str) -> str:
    """The organizational domain (RFC 7489 §3.2): public suffix plus one label."""
    org = _PSL.privatesuffix(domain)
    return org if isinstance(org, str) else domain


async def _lookup(ctx: DnsContext, domain: str) -> list[str]:
    answer = await ctx.dns.query(f"_dmarc.{domain}", "TXT")
    return [t for t in answer.texts() if is_dmarc(t)]


async def check(domain: DomainConfig, ctx: DnsContext) -> ProbeResult:
    name = domain.domain
    result = ProbeResult()
    try:
        own = await _lookup(ctx, name)
        org = organizational_domain(name)
        inherited = False
        records = own
        if not own and org != name:
            records = await _lookup(ctx, org)
            inherited = bool(records)
    except DnsTempError as exc:
        return dns_failure("DMARC", exc)

    result.samples.append(sample("dmarc_records", len(own), domain=name))
    if not records:
        result.findings.append(
            Finding("dmarc_missing", evidence=f"no TXT v=DMARC1 at _dmarc.{name}")
        )
        return _policy_samples(result, name, valid=False, policy=None, sub=None, pct=None)
    if len(records) > 1:
        where = f"_dmarc.{org if inherited else name}"
        result.findings.append(
            Finding("dmarc_multiple_records", evidence=f"{len(records)} records at {where}")
        )
        result.samples.append(checksum(name, "dmarc", records))
        return _policy_samples(result, name, valid=False, policy=None, sub=None, pct=None)

    text = records[0]
    result.samples.append(checksum(name, "dmarc", records))
    result.details["dmarc.record"] = text
    if inherited:
        result.details["dmarc.source"] = f"_dmarc.{org}"
        result.findings.append(Finding("dmarc_inherited", evidence=f"_dmarc.{org}: {text}"))
    rec = parse_dmarc(text)
    for problem in rec.problems:
        if "p= tag" in problem or problem.startswith("p="):
            continue
        result.findings.append(Finding("dmarc_invalid_tag", evidence=problem, subject=problem))

    policy = rec.policy
    if policy is None:
        # RFC 7489 §6.6.3 step 6: without a valid p, a valid rua means "act as p=none".
        problem = next(p for p in rec.problems if "p= tag" in p or p.startswith("p="))
        result.findings.append(Finding("dmarc_invalid", evidence=f"{problem}: {text}"))
        if not rec.rua:
            return _policy_samples(result, name, valid=False, policy=None, sub=None, pct=None)
        policy = "none"
    # The policy for this domain: its own p, or the org domain's sp (else p) when inherited.
    applied = (rec.subdomain_policy or policy) if inherited else policy
    subdomains = rec.subdomain_policy or policy
    if applied == "none":
        result.findings.append(Finding("dmarc_policy_none", evidence=text))
    if rec.pct < 100:
        result.findings.append(Finding("dmarc_pct_partial", evidence=f"pct={rec.pct}"))
    if not rec.rua:
        result.findings.append(Finding("dmarc_no_rua", evidence=text))
    if not inherited and _STRENGTH[subdomains] < _STRENGTH[policy]:
        result.findings.append(
            Finding("dmarc_subdomain_policy_weaker", evidence=f"p={policy} sp={subdomains}")
        )
    try:
        await _check_external_reports(ctx, name if not inherited else org, rec, result)
    except DnsTempError as exc:
        result.merge(dns_failure("DMARC report authorization", exc))
    return _policy_samples(
        result, name, valid=rec.policy is not None, policy=applied, sub=subdomains, pct=rec.pct
    )


async def _check_external_reports(
    ctx: DnsContext, domain: str, rec: DmarcRecord, result: ProbeResult
) -> None:
    """RFC 7489 §7.1: a report destination outside the organizational domain must consent."""
    org = organizational_domain(domain)
    checked: set[str] = set()
    for uri in rec.rua + rec.ruf:
        m = _MAILTO.match(uri)
        if not m:
            continue
        dest = m.group(2).lower().rstrip(".")
        if dest in checked or organizational_domain(dest) == org:
            continue
        checked.add(dest)
        answer = await ctx.dns.query(f"{domain}._report._dmarc.{dest}", "TXT")
        if not any(is_dmarc(t) for t in answer.texts()):
            result.findings.append(
                Finding(
                    "dmarc_report_destination_unauthorized",
                    subject=dest,
                    evidence=f"no v=DMARC1 at {domain}._report._dmarc.{dest}",
                )
            )


def _policy_samples(
    result: ProbeResult,
    name: str,
    *,
    valid: bool,
    policy: str | None,
    sub: str | None,
    pct: int | None,
) -> ProbeResult:
    result.samples.append(sample("dmarc_valid", valid, domain=name))
    if pct is not None:
        result.samples.append(sample("dmarc_pct", pct, domain=name))
    result.samples += state_set("dmarc_policy", policy, POLICIES, "policy", domain=name)
    result.samples += state_set("dmarc_subdomain_policy", sub, POLICIES, "policy", domain=name)
    return result

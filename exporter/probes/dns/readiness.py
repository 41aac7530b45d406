"""The bulk-sender rules of Gmail, Yahoo and Microsoft, as far as DNS can show them.

Runs after the other sub-checks of the ``dns`` probe and reads what they published (so a lookup
that could not be answered stays "could not tell", never "not met"). Requirements:

* ``spf``: the SPF-checked domain (``return_path_domain``, default the domain) has a valid SPF
  record, and check_host() gives ``pass`` for every configured sending IP;
* ``dkim``: at least one configured selector publishes a valid key of 1024 bits or more;
* ``dmarc``: a valid DMARC record applies to the domain (``p=none`` or stronger);
* ``alignment``: the SPF-checked domain aligns with the domain (relaxed: the same organizational
  domain by the RFC 9989 tree walk; strict when the record says ``aspf=s``), or a DKIM key of the
  domain is valid (its signatures carry ``d=<domain>``, aligned in either mode);
* ``fcrdns``: every sending IP passes forward-confirmed reverse DNS.

Which provider states which requirement is :data:`PROVIDERS` (sources in the README). What DNS
cannot show — spam rate, one-click unsubscribe, TLS on every connection, RFC 5322 format — is not
claimed either way. A requirement with nothing to judge by (no ``dkim_selectors``, no
``sending_ips``) is "could not tell": no sample, and no readiness for the providers that state it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from exporter.config import DomainConfig
from exporter.net.dnsmodel import DnsTempError
from exporter.probes.dns import treewalk
from exporter.probes.dns.common import DnsContext, current_state, gather, published
from exporter.results import Finding, ProbeResult, Table, sample
from exporter.spf.analysis import analyze
from exporter.spf.evaluate import check_host

REQUIREMENTS = ("spf", "dkim", "dmarc", "alignment", "fcrdns")
PROVIDERS: dict[str, tuple[str, ...]] = {
    "gmail": ("spf", "dkim", "dmarc", "alignment", "fcrdns"),
    "yahoo": ("spf", "dkim", "dmarc", "alignment"),
    "microsoft": ("spf", "dkim", "dmarc", "alignment"),
}
PROVIDER_NAMES = {"gmail": "Gmail", "yahoo": "Yahoo", "microsoft": "Microsoft (Outlook.com)"}
MIN_DKIM_BITS = 1024


@dataclass(frozen=True)
class Verdict:
    met: bool | None
    """None: could not tell."""
    why: str


async def _spf(domain: DomainConfig, ctx: DnsContext, so_far: ProbeResult) -> Verdict:
    name, target = domain.domain, domain.spf_domain
    ips = domain.sending_ips
    if target == name:
        valid = published(so_far, "spf_valid", domain=name)
        if not valid:
            return Verdict(None, f"SPF of {name} could not be checked")
        if valid[0][1] != 1:
            return Verdict(False, f"{name} has no valid SPF record")
        results = {
            ip: current_state(so_far, "spf_result", "result", domain=name, ip=ip) for ip in ips
        }
    else:
        try:
            analysis = await analyze(target, ctx.dns)
        except DnsTempError:
            return Verdict(None, f"SPF of {target} could not be checked")
        if not analysis.valid:
            return Verdict(False, f"the return-path domain {target} has no valid SPF record")
        checked = await asyncio.gather(
            *(check_host(ctx.dns, ip, f"postmaster@{target}", target, domain=target) for ip in ips)
        )
        results = {ip: r.result for ip, r in zip(ips, checked, strict=True)}
    failing = [f"{r} for {ip}" for ip, r in results.items() if r not in ("pass", "temperror", None)]
    if failing:
        return Verdict(False, f"SPF of {target} gives " + ", ".join(failing))
    if any(r in ("temperror", None) for r in results.values()):
        return Verdict(None, f"SPF of {target} could not be evaluated for every sending IP")
    if not ips:
        return Verdict(True, f"{target} has a valid SPF record (no sending_ips to check)")
    return Verdict(True, f"SPF of {target} passes for {', '.join(ips)}")


def _dkim(domain: DomainConfig, so_far: ProbeResult) -> Verdict:
    if not domain.dkim_selectors:
        return Verdict(None, "no dkim_selectors configured")
    seen: list[str] = []
    unknown = False
    for sel in domain.dkim_selectors:
        valid = published(so_far, "dkim_key_valid", domain=domain.domain, selector=sel)
        bits = published(so_far, "dkim_key_bits", domain=domain.domain, selector=sel)
        if not valid:
            unknown = True
        elif valid[0][1] == 1 and bits and bits[0][1] >= MIN_DKIM_BITS:
            return Verdict(True, f"selector {sel}: {int(bits[0][1])}-bit key")
        elif valid[0][1] == 1:
            seen.append(f"{sel}: {int(bits[0][1]) if bits else 0}-bit key")
        else:
            seen.append(f"{sel}: no valid key")
    if unknown:
        return Verdict(None, "a DKIM selector could not be checked")
    return Verdict(False, f"no DKIM key of {MIN_DKIM_BITS}+ bits ({'; '.join(seen)})")


def _dmarc(name: str, so_far: ProbeResult) -> Verdict:
    valid = published(so_far, "dmarc_valid", domain=name)
    if not valid:
        return Verdict(None, "DMARC could not be checked")
    if valid[0][1] != 1:
        return Verdict(False, "no valid DMARC record applies")
    policy = current_state(so_far, "dmarc_policy", "policy", domain=name)
    where = [
        labels["policy_domain"]
        for labels, _ in published(so_far, "dmarc_policy_domain_info", domain=name)
    ]
    return Verdict(True, f"p={policy} from _dmarc.{where[0] if where else name}")


async def _alignment(domain: DomainConfig, ctx: DnsContext, so_far: ProbeResult) -> Verdict:
    name, target = domain.domain, domain.spf_domain
    keys = published(so_far, "dkim_key_valid", domain=name)
    dkim_aligned: bool | None = any(v == 1 for _, v in keys)
    if not dkim_aligned and len(keys) < len(domain.dkim_selectors):
        dkim_aligned = None
    if dkim_aligned:
        return Verdict(True, f"DKIM signs with d={name}")
    if target == name:
        return Verdict(True, f"the return-path domain is {name} itself")
    try:
        own, other = await asyncio.gather(
            treewalk.walk(ctx.dns, name), treewalk.walk(ctx.dns, target)
        )
        applicable = own.applicable()
        org, target_org = own.organizational_domain(), other.organizational_domain()
    except DnsTempError:
        return Verdict(None, f"the organizational domain of {target} could not be found")
    strict = applicable is not None and applicable.record.aspf == "s"
    if not strict and org == target_org:
        return Verdict(True, f"{target} and {name} share the organizational domain {org}")
    why = (
        f"the return-path domain {target} is not {name} (aspf=s)"
        if strict
        else f"the return-path domain {target} (organizational domain {target_org}) is not in"
        f" {name}'s organizational domain {org}"
    )
    if dkim_aligned is None:
        return Verdict(None, why + ", and DKIM could not be checked")
    return Verdict(False, why + ", and no DKIM key of the domain is valid")


def _fcrdns(domain: DomainConfig, so_far: ProbeResult) -> Verdict:
    if not domain.sending_ips:
        return Verdict(None, "no sending_ips configured")
    values = {
        ip: [v for _, v in published(so_far, "sending_ip_fcrdns", domain=domain.domain, ip=ip)]
        for ip in domain.sending_ips
    }
    failing = [ip for ip, v in values.items() if v and v[0] != 1]
    if failing:
        return Verdict(False, f"FCrDNS fails for {', '.join(failing)}")
    if any(not v for v in values.values()):
        return Verdict(None, "FCrDNS could not be checked for every sending IP")
    return Verdict(True, f"FCrDNS passes for {', '.join(domain.sending_ips)}")


def summary(provider: str, verdicts: dict[str, Verdict]) -> tuple[bool | None, str]:
    """A provider's readiness and the sentence that says why."""
    needed = [(req, verdicts[req]) for req in PROVIDERS[provider]]
    head = f"Ready for {PROVIDER_NAMES[provider]} bulk senders"
    failing = [v.why for _, v in needed if v.met is False]
    if failing:
        return False, f"{head}: no — " + "; ".join(failing)
    unknown = [v.why for _, v in needed if v.met is None]
    if unknown:
        return None, f"{head}: cannot tell — " + "; ".join(unknown)
    return True, f"{head}: yes"


async def check(domain: DomainConfig, ctx: DnsContext, so_far: ProbeResult) -> ProbeResult:
    name = domain.domain
    spf, alignment = await gather(_spf(domain, ctx, so_far), _alignment(domain, ctx, so_far))
    verdicts = {
        "spf": spf,
        "dkim": _dkim(domain, so_far),
        "dmarc": _dmarc(name, so_far),
        "alignment": alignment,
        "fcrdns": _fcrdns(domain, so_far),
    }
    result = ProbeResult()
    states = {True: "met", False: "not met", None: "could not tell"}
    rows: list[tuple[str, ...]] = []
    for req, verdict in verdicts.items():
        by = ", ".join(PROVIDER_NAMES[p] for p, reqs in PROVIDERS.items() if req in reqs)
        rows.append((req, states[verdict.met], verdict.why))
        if verdict.met is None:
            continue
        result.samples.append(
            sample("sender_requirement", verdict.met, domain=name, requirement=req)
        )
        if not verdict.met:
            result.findings.append(
                Finding("sender_requirement_unmet", subject=req,
                        evidence=f"{verdict.why} (required by {by})")
            )  # fmt: skip
    ready: list[tuple[str, ...]] = []
    for provider in PROVIDERS:
        met, text = summary(provider, verdicts)
        result.details[f"readiness.{provider}"] = text
        answer = {True: "yes", False: "no", None: "cannot tell"}[met]
        ready.append((PROVIDER_NAMES[provider], answer, text.partition(" — ")[2]))
        if met is not None:
            result.samples.append(
                sample("sender_requirements_met", met, domain=name, provider=provider)
            )
    result.tables.append(
        Table("Bulk-sender readiness", ("provider", "ready", "why not"), tuple(ready),
              note="What DNS can show; spam rate and one-click unsubscribe are not checked.")
    )  # fmt: skip
    result.tables.append(
        Table("Bulk-sender requirements", ("requirement", "state", "detail"), tuple(rows),
              note="Gmail states all five; Yahoo and Microsoft all but fcrdns.")
    )  # fmt: skip
    return result

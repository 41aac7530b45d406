"""The declared baseline of a domain (``expect:``): what it should look like, compared each run.

Runs after the other sub-checks of the ``dns`` probe and reads what they published; MX hosts and
the SPF include tree are read through the run's cached DNS client. Each expectation is:

* held — nothing reported;
* drifted — a ``baseline_drift`` finding naming the expected and the actual value: a warning,
  critical when what is there is itself broken (no DMARC policy, no valid DKIM key, no SPF
  record, no MX, a bogus DNSSEC chain);
* not checked yet — the value comes from a check that did not publish it in this run
  (``mta_sts_mode`` from the MTA-STS check, ``dnssec`` from the DNSSEC validation: the state
  sets ``mta_sts_mode{mode}`` and ``dnssec_status{status}`` of the domain) or there is nothing to
  compare (no ``dkim_selectors``): a ``baseline_not_checked`` info finding, never drift;
* could not tell — a DNS failure: no verdict.

``deliverability_baseline_met`` is 0 with any drift, 1 when every expectation that could be
compared holds, and absent when one could not be told and none drifted.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from dns.rdtypes.ANY.MX import MX

from exporter.config import DomainConfig, ExpectConfig
from exporter.findings import CRITICAL
from exporter.net.dnsmodel import DnsTempError
from exporter.probes.dns.common import DnsContext, current_state, published
from exporter.results import Finding, ProbeResult, Table, sample
from exporter.spf.analysis import SpfNode, analyze

NOT_CHECKED = "not checked yet"


@dataclass(frozen=True)
class Outcome:
    key: str
    expected: str
    actual: str | None
    """None: could not tell."""
    held: bool = False
    critical: bool = False
    unchecked: bool = False


def _dmarc_policy(name: str, allowed: list[str], so_far: ProbeResult) -> Outcome:
    expected = " or ".join(allowed)
    if not published(so_far, "dmarc_policy", domain=name):
        return Outcome("dmarc_policy", expected, None)
    policy = current_state(so_far, "dmarc_policy", "policy", domain=name)
    if policy is None:
        return Outcome("dmarc_policy", expected, "no DMARC policy applies", critical=True)
    return Outcome("dmarc_policy", expected, f"p={policy}", held=policy in allowed)


def _dkim_min_bits(domain: DomainConfig, minimum: int, so_far: ProbeResult) -> Outcome:
    expected = f"{minimum}+ bits (every selector)"
    if not domain.dkim_selectors:
        return Outcome("dkim_min_bits", expected, "no dkim_selectors configured", unchecked=True)
    short, broken = [], []
    for sel in domain.dkim_selectors:
        valid = published(so_far, "dkim_key_valid", domain=domain.domain, selector=sel)
        bits = published(so_far, "dkim_key_bits", domain=domain.domain, selector=sel)
        if not valid:
            return Outcome("dkim_min_bits", expected, None)
        if valid[0][1] != 1:
            broken.append(f"{sel}: no valid key")
        # A valid key under 1024 bits is ed25519 (RSA under 1024 is invalid): strong enough.
        elif bits and 1024 <= bits[0][1] < minimum:
            short.append(f"{sel}: {int(bits[0][1])} bits")
    actual = "; ".join(broken + short) or "all selectors meet it"
    return Outcome("dkim_min_bits", expected, actual, held=not (broken or short),
                   critical=bool(broken))  # fmt: skip


def _includes(node: SpfNode) -> set[str]:
    out = {node.domain.lower()} if node.via == "include" else set()
    for child in node.children:
        out |= _includes(child)
    return out


async def _spf_includes(domain: DomainConfig, wanted: list[str], ctx: DnsContext) -> Outcome:
    target = domain.spf_domain
    expected = "include:" + ", include:".join(wanted)
    try:
        analysis = await analyze(target, ctx.dns)
    except DnsTempError:
        return Outcome("spf_includes", expected, None)
    if analysis.root is None:
        return Outcome("spf_includes", expected, f"{target} has no usable SPF record",
                       critical=True)  # fmt: skip
    present = _includes(analysis.root)
    missing = [w for w in wanted if w.lower() not in present]
    if missing:
        text = f"no include:{', include:'.join(missing)} in the SPF tree of {target}"
        return Outcome("spf_includes", expected, text)
    return Outcome("spf_includes", expected, f"all in the SPF tree of {target}", held=True)


async def _mx(name: str, wanted: list[str], ctx: DnsContext) -> Outcome:
    expected = ", ".join(sorted(wanted))
    try:
        answer = await ctx.dns.query(name, "MX")
    except DnsTempError:
        return Outcome("mx", expected, None)
    hosts = {
        rd.exchange.to_text().rstrip(".").lower() for rd in answer.rdatas if isinstance(rd, MX)
    }
    hosts.discard("")  # the null MX "0 ." receives nothing
    if not hosts:
        return Outcome("mx", expected, "no MX host", critical=True)
    held = hosts == {w.lower() for w in wanted}
    return Outcome("mx", expected, ", ".join(sorted(hosts)), held=held)


def _state(key: str, metric: str, label: str, expected: str, name: str, so_far: ProbeResult,
           critical_values: tuple[str, ...] = ()) -> Outcome:  # fmt: skip
    if not published(so_far, metric, domain=name):
        return Outcome(key, expected, NOT_CHECKED, unchecked=True)
    actual = current_state(so_far, metric, label, domain=name)
    if actual is None:
        return Outcome(key, expected, None)
    return Outcome(key, expected, actual, held=actual == expected,
                   critical=actual in critical_values)  # fmt: skip


async def outcomes(domain: DomainConfig, expect: ExpectConfig, ctx: DnsContext,
                   so_far: ProbeResult) -> list[Outcome]:  # fmt: skip
    name = domain.domain
    out: list[Outcome] = []
    if expect.dmarc_policy is not None:
        out.append(_dmarc_policy(name, list(expect.dmarc_policy), so_far))
    if expect.dkim_min_bits is not None:
        out.append(_dkim_min_bits(domain, expect.dkim_min_bits, so_far))
    pending = []
    if expect.spf_includes is not None:
        pending.append(_spf_includes(domain, expect.spf_includes, ctx))
    if expect.mx is not None:
        pending.append(_mx(name, expect.mx, ctx))
    out.extend(await asyncio.gather(*pending))
    if expect.mta_sts_mode is not None:
        out.append(_state("mta_sts_mode", "mta_sts_mode", "mode", expect.mta_sts_mode, name,
                          so_far))  # fmt: skip
    if expect.dnssec is not None:
        out.append(_state("dnssec", "dnssec_status", "status", expect.dnssec, name, so_far,
                          critical_values=("bogus",)))  # fmt: skip
    return out


async def check(domain: DomainConfig, ctx: DnsContext, so_far: ProbeResult) -> ProbeResult:
    result = ProbeResult()
    if domain.expect is None:
        return result
    results = await outcomes(domain, domain.expect, ctx, so_far)
    drifted = unknown = False
    rows: list[tuple[str, ...]] = []
    for o in results:
        if o.unchecked:
            state = NOT_CHECKED if o.actual == NOT_CHECKED else "not checked"
            result.findings.append(
                Finding("baseline_not_checked", subject=o.key,
                        evidence=f"expected {o.expected}: {o.actual}")
            )  # fmt: skip
        elif o.actual is None:
            unknown = True
            state = "could not tell"
        elif o.held:
            state = "holds"
        else:
            drifted = True
            state = "drift"
            result.findings.append(
                Finding("baseline_drift", subject=o.key,
                        evidence=f"{o.key}: expected {o.expected}, found {o.actual}",
                        severity=CRITICAL if o.critical else None)
            )  # fmt: skip
        rows.append((o.key, o.expected, o.actual or "", state))
    result.tables.append(Table("Baseline (expect:)", ("expectation", "expected", "found", "state"),
                               tuple(rows)))  # fmt: skip
    if drifted or not unknown:
        result.samples.append(sample("baseline_met", not drifted, domain=domain.domain))
    return result

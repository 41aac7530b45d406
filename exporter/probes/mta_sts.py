"""The ``mta_sts`` probe: MTA-STS (RFC 8461) and TLS-RPT (RFC 8460) of one monitored domain.

One target per ``domains[]`` entry, enabled by the ``mta_sts:`` section. A run asks, at once,
for the ``_mta-sts.<domain>`` TXT, the ``_smtp._tls.<domain>`` TXT and the domain's MX; when an
MTA-STS record is there (valid or not: its policy is worth reporting on all the same) it fetches
``https://mta-sts.<domain>/.well-known/mta-sts.txt`` the way RFC 8461 §3.3 asks senders to: the
host resolved through the configured nameservers, the certificate verified for the host name
(system roots plus ``ca_file``), no redirect followed, status 200 only, ``text/plain``, at most
64 KB, everything under the target's timeout (:mod:`exporter.net.https`). The policy is parsed
(:mod:`exporter.mtasts`), every MX host matched against its ``mx`` patterns, and its ``id``
compared with the one remembered in the store (:mod:`exporter.probes.mta_sts_policy`).

Could not tell (``probe_success`` 0, no finding about that part): a DNS lookup that failed or
timed out, a policy fetch that timed out. A definite answer is a finding: no address for the
policy host, a refused connection, a TLS or HTTP error, a redirect, a 404.

No MTA-STS library is used. postfix-mta-sts-resolver (MIT, asyncio) resolves with its own
aiodns resolver (not the configured nameservers), fetches with certificate verification on (so
an invalid certificate hides its expiry and reason) and parses leniently into a dictionary;
checkdmarc follows redirects, which §3.3 forbids. What is needed is small: the parsers follow
the RFCs' ABNF (:mod:`exporter.mtasts`) and the fetch is aiohttp's client with a resolver and a
TLS context of our own (:mod:`exporter.net.https`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from dns.rdtypes.ANY.MX import MX

from exporter.config import Config, MtaStsConfig
from exporter.mtasts import MODES, Discovery, StsRecord, TlsRptRecord, discover_sts, discover_tlsrpt
from exporter.net.dnsmodel import DnsTempError
from exporter.net.network import Network
from exporter.probes.base import NO_RESOURCES, NoResources, ProbeContext
from exporter.probes.mta_sts_policy import PolicyCheck, check_policy
from exporter.results import Finding, ProbeResult, Table, Target, sample, state_set

MtaStsContext = ProbeContext[NoResources]


@dataclass(frozen=True)
class MtaStsTarget:
    """One monitored domain, with the ``mta_sts:`` section's settings."""

    domain: str
    section: MtaStsConfig
    expect_mode: str | None = None
    """The domain's ``expect: mta_sts_mode`` (its baseline), compared each run."""


@dataclass(frozen=True)
class MxHosts:
    """The domain's MX hosts as senders would use them (lower case, no final dot)."""

    hosts: tuple[tuple[int, str], ...]
    """(preference, host), by preference."""
    null: bool = False
    """A null MX (RFC 7505): the domain takes no mail."""
    implicit: bool = False
    """No MX records: senders use the domain itself (RFC 5321 §5.1)."""


def _budget(timeout: float) -> float:
    """Our own deadline: a little before the runner's, so a slow step is named."""
    return max(timeout - min(0.5, timeout * 0.1), 0.01)


MAX_NAME = 253
MAX_TLSA_HOSTS = 16
"""MX hosts, most preferred first, asked whether they publish TLSA (for ``tlsrpt_missing``)."""


async def _texts(ctx: MtaStsContext, name: str) -> list[str]:
    if len(name) > MAX_NAME:  # _mta-sts.<a domain of 245+ characters>: no such name can exist
        return []
    return (await ctx.dns.query(name, "TXT")).texts()


async def _mx(ctx: MtaStsContext, domain: str) -> MxHosts:
    answer = await ctx.dns.query(domain, "MX")
    records = sorted(
        (rd.preference, rd.exchange.to_text().rstrip(".").lower())
        for rd in answer.rdatas
        if isinstance(rd, MX)
    )
    if not records:
        return MxHosts(((0, domain),), implicit=True)
    hosts = tuple((p, h) for p, h in records if h)
    return MxHosts(hosts, null=not hosts)


class MtaStsProbe:
    name = "mta_sts"
    title = "MTA-STS and TLS-RPT"
    config_key = "mta_sts"

    def targets(self, config: Config) -> list[Target[MtaStsTarget]]:
        section = config.mta_sts
        if section is None:
            return []
        return [
            Target(
                self.name,
                d.domain,
                MtaStsTarget(d.domain, section, d.expect.mta_sts_mode if d.expect else None),
                config.interval_of(section),
                config.timeout_of(section),
            )
            for d in config.domains
        ]

    def resources(self, config: Config, net: Network) -> NoResources:
        return NO_RESOURCES

    async def run(self, target: Target[MtaStsTarget], ctx: MtaStsContext) -> ProbeResult:
        domain = target.settings.domain
        deadline = asyncio.get_running_loop().time() + _budget(ctx.timeout)
        result = ProbeResult()
        try:
            async with asyncio.timeout_at(deadline):
                sts, rpt, mx = await asyncio.gather(
                    _texts(ctx, f"_mta-sts.{domain}"),
                    _texts(ctx, f"_smtp._tls.{domain}"),
                    _mx(ctx, domain),
                    return_exceptions=True,
                )
        except TimeoutError:
            result.error = f"timed out looking up the MTA-STS, TLS-RPT and MX records of {domain}"
            return result
        for answer in (sts, rpt, mx):
            if isinstance(answer, BaseException) and not isinstance(answer, DnsTempError):
                raise answer
        mx_hosts = mx if isinstance(mx, MxHosts) else None
        if isinstance(mx, BaseException):
            _fail(result, f"MX: DNS lookup failed: {mx}")
        in_use = False
        if isinstance(sts, BaseException):
            _fail(result, f"_mta-sts TXT: DNS lookup failed: {sts}")
        else:
            found = discover_sts(sts)
            in_use = found.status != "absent"
            result.merge(await _check_sts(domain, found, mx_hosts, target.settings, ctx, deadline))
        if isinstance(rpt, BaseException):
            _fail(result, f"_smtp._tls TXT: DNS lookup failed: {rpt}")
        else:
            found_rpt = discover_tlsrpt(rpt)
            needed = in_use
            if found_rpt.status == "absent" and not in_use:
                needed = bool(await _dane_in_use(ctx, mx_hosts, deadline, result))
            result.merge(_check_tlsrpt(domain, found_rpt, needed))
        _baseline(target.settings, result)
        return result


PROBE = MtaStsProbe()


def _baseline(target: MtaStsTarget, result: ProbeResult) -> None:
    """The domain's ``expect: mta_sts_mode`` against the mode this run saw (nothing when the
    mode could not be told)."""
    if target.expect_mode is None:
        return
    seen = [
        dict(s.labels)["mode"] for s in result.samples if s.metric == "mta_sts_mode" and s.value
    ]
    if not seen:
        return
    if seen[0] == target.expect_mode:
        result.details["baseline"] = f"mta_sts_mode {seen[0]}, as expected"
        return
    result.findings.append(
        Finding(
            "mta_sts_mode_drift",
            f"expect: mta_sts_mode {target.expect_mode}, the policy says {seen[0]}",
            subject="mta_sts_mode",
        )
    )


def _fail(result: ProbeResult, error: str) -> None:
    result.error = error if result.error is None else f"{result.error}; {error}"


SHOWN_RECORDS = 3


def _some(texts: tuple[str, ...]) -> str:
    """A few of ``texts``, sorted (the DNS rotates an RRset), each cut at 200 characters: an
    RRset can hold hundreds of records."""
    shown = [t if len(t) <= 200 else t[:200] + "..." for t in sorted(texts)[:SHOWN_RECORDS]]
    more = f" | ... ({len(texts)} in all)" if len(texts) > SHOWN_RECORDS else ""
    return " | ".join(shown) + more


def _record_findings(
    found: Discovery[StsRecord] | Discovery[TlsRptRecord], what: str, code: str, result: ProbeResult
) -> None:
    """The record as seen (details) and the ``<code>_duplicate`` / ``<code>_invalid`` finding."""
    shown = _some((found.text,) if found.text else found.claims)
    result.details[f"{what} record"] = shown
    if found.status == "duplicate":
        result.findings.append(Finding(f"{code}_duplicate", f"{found.error}: {shown}"))
    elif found.status == "invalid":
        result.findings.append(Finding(f"{code}_invalid", f"{found.error}: {shown}"))


# ----- MTA-STS ----------------------------------------------------------------------------------


async def _check_sts(
    domain: str,
    found: Discovery[StsRecord],
    mx: MxHosts | None,
    settings: MtaStsTarget,
    ctx: MtaStsContext,
    deadline: float,
) -> ProbeResult:
    result = ProbeResult()
    if found.status == "absent":
        result.details["mta-sts record"] = f"none at _mta-sts.{domain}"
        result.samples.extend(state_set("mta_sts_mode", "none", MODES, "mode", domain=domain))
        return result
    _record_findings(found, "mta-sts", "mta_sts_record", result)
    if found.ignored:
        result.details["mta-sts records senders ignore"] = _some(found.ignored)
    if found.record is not None:
        result.details["mta-sts id"] = found.record.id
        if found.record.notes:
            result.details["mta-sts record notes"] = "; ".join(found.record.notes)
    check: PolicyCheck = await check_policy(
        domain,
        found.record,
        ca_file=settings.section.ca_file,
        ctx=ctx,
        deadline=deadline,
    )
    result.merge(check.result)
    if check.unknown:
        return result  # could not tell: no claim about the policy
    policy = check.policy
    result.samples.append(
        sample("mta_sts_policy_valid", found.status == "valid" and check.valid, domain=domain)
    )
    mode = policy.mode if policy is not None else "none"
    result.samples.extend(state_set("mta_sts_mode", mode, MODES, "mode", domain=domain))
    if policy is None:
        return result
    if mx is None:
        return result  # the MX lookup could not tell: already an error
    rows: list[tuple[str, ...]] = []
    if mx.null:
        result.details["mx hosts"] = f"{domain} publishes a null MX (it takes no mail)"
    for preference, host in mx.hosts:
        covered = [str(p) for p in policy.mx if p.matches(host)]
        result.samples.append(sample("mta_sts_mx_covered", bool(covered), domain=domain, mx=host))
        rows.append((host, "implicit" if mx.implicit else str(preference), ", ".join(covered)))
        if not covered and policy.mode != "none":
            patterns = ", ".join(str(p) for p in policy.mx)
            result.findings.append(
                Finding(
                    "mta_sts_mx_not_covered",
                    f"MX {host} matches no mx pattern of the {policy.mode} policy ({patterns})",
                    subject=host,
                    severity="warning" if policy.mode == "testing" else None,
                )
            )
    if rows:
        note = "no MX records: senders deliver to the domain itself" if mx.implicit else ""
        result.tables.append(
            Table("MX hosts and the MTA-STS policy", ("MX host", "preference", "matched by"),
                  tuple(rows), note)
        )  # fmt: skip
    return result


# ----- TLS-RPT and DANE -------------------------------------------------------------------------


async def _dane_in_use(
    ctx: MtaStsContext, mx: MxHosts | None, deadline: float, result: ProbeResult
) -> bool | None:
    """Does an MX host publish TLSA records (``_25._tcp.<host>``)? None when not known.

    Only asked when there is no TLS-RPT record and no MTA-STS record (the one case where the
    answer makes a finding). A failed lookup is noted, not an error: it decides only an info.
    """
    if mx is None or mx.null:
        return None
    # The most preferred hosts only, as the tls probe's mx_of (a domain of 1,500 MX records
    # would ask 1,500 questions at once for one info).
    names = [f"_25._tcp.{host}" for _, host in mx.hosts[:MAX_TLSA_HOSTS]]
    try:
        async with asyncio.timeout_at(deadline):
            answers = await asyncio.gather(*(ctx.dns.query(n, "TLSA") for n in names))
    except (DnsTempError, TimeoutError) as exc:
        result.details["dane"] = f"not known whether an MX host publishes TLSA records: {exc}"
        return None
    with_tlsa = [n for n, a in zip(names, answers, strict=True) if a.exists]
    if with_tlsa:
        result.details["dane"] = "TLSA records at " + ", ".join(with_tlsa)
    return bool(with_tlsa)


def _check_tlsrpt(domain: str, found: Discovery[TlsRptRecord], needed: bool) -> ProbeResult:
    result = ProbeResult()
    if found.status == "absent":
        result.details["tls-rpt record"] = f"none at _smtp._tls.{domain}"
        if needed:
            result.findings.append(
                Finding(
                    "tlsrpt_missing",
                    f"no TLS-RPT record at _smtp._tls.{domain} while the domain asks senders"
                    " for TLS (MTA-STS or DANE)",
                )
            )
        return result
    result.samples.append(sample("tlsrpt_valid", found.status == "valid", domain=domain))
    _record_findings(found, "tls-rpt", "tlsrpt", result)
    if found.record is not None:
        result.details["tls-rpt reports to"] = ", ".join(found.record.rua)
    return result

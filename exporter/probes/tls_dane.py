"""DANE for the ``tls`` probe: the TLSA records of an endpoint against the chains it presents.

The records at ``_<port>._tcp.<host>`` are asked through the probe's DNSSEC validator (its
per-config resource) and used only when the answer is DNSSEC-secure, as senders do (RFC 7672
§2.2); records in an insecure or bogus zone are a warning (senders ignore them). A host that is
an alias with a secure CNAME chain has its records looked up at the chain's target first, then
at its own name (RFC 7672 §2.2.2). Usable records (DANE-EE 3 and DANE-TA 2; PKIX usages are
ignored, RFC 7672 §3.1.3) are matched against the chain of every address probed
(:mod:`exporter.net.dane`); a DANE-TA match also needs the leaf to name the host or the TLSA
base domain (RFC 7672 §3.2.3), a DANE-EE match needs nothing else: a DANE sender ignores the
certificate's names and dates (§3.1.1), which the details say when the certificate is expired
or not valid for other senders.

``deliverability_dane_valid`` is the worst address: one address whose chain no record matches is
enough for DANE senders to defer the mail that lands there.
"""

from __future__ import annotations

import asyncio

import dns.rdtypes.ANY.CNAME
import dns.rdtypes.ANY.TLSA
import dns.rrset

from exporter.dnssec import Status, Validator, Verdict
from exporter.net import dane
from exporter.net.certs import name_matches
from exporter.net.dnsmodel import DnsTempError
from exporter.probes.tls_endpoint import Endpoint, Outcome, TlsContext
from exporter.results import Finding, ProbeResult, Table, sample


def _records(rrsets: tuple[dns.rrset.RRset, ...]) -> list[dane.Tlsa]:
    return [
        dane.Tlsa.from_rdata(rd)
        for rrset in rrsets
        for rd in rrset
        if isinstance(rd, dns.rdtypes.ANY.TLSA.TLSA)
    ]


def _matches(out: Outcome, usable: list[dane.Tlsa], names: list[str]) -> dane.DaneResult:
    """The records matching this address's chain; DANE-TA only when the leaf names the host
    (``names``: the TLSA base domain or the MX host name, RFC 7672 §3.2.3)."""
    chain = [c.cert for c in out.certs]
    result = dane.check(usable, chain)
    name_ok = bool(chain) and any(name_matches(chain[0], n) for n in names)
    matched = tuple(r for r in result.matched if r.usage == dane.Usage.DANE_EE or name_ok)
    return dane.DaneResult(result.usable, matched)


async def _expanded(validator: Validator, host: str) -> str | None:
    """The target of ``host``'s CNAME chain when the chain is DNSSEC-secure (None when
    ``host`` is no alias, or the chain is not secure)."""
    verdict = await validator.validate(host, "A")
    targets = [
        rd.target
        for rrset in verdict.rrsets
        for rd in rrset
        if isinstance(rd, dns.rdtypes.ANY.CNAME.CNAME)
    ]
    if not targets or verdict.status != Status.SECURE:
        return None
    return str(targets[-1].to_text(omit_final_dot=True)).lower()


async def _lookup(validator: Validator, ep: Endpoint) -> tuple[str, str, Verdict]:
    """(TLSA base domain, TLSA name, verdict): for an MX host that is a secure alias, the
    records at the CNAME's target first, then at the host name itself (RFC 7672 §2.2.2)."""
    bases = [ep.host.rstrip(".").lower()]
    target = await _expanded(validator, ep.host)
    if target is not None and target != bases[0]:
        bases.insert(0, target)
    found: tuple[str, str, Verdict] | None = None
    for base in bases:
        name = dane.tlsa_name(base, ep.port)
        found = (base, name, await validator.validate(name, "TLSA"))
        if _records(found[2].rrsets):
            break
    assert found is not None
    return found


async def check(
    ep: Endpoint, outcomes: list[Outcome], ctx: TlsContext, deadline: float
) -> ProbeResult:
    """DANE samples, findings and details for one endpoint; sets each outcome's
    :attr:`~exporter.probes.tls_endpoint.Outcome.dane_valid`."""
    result = ProbeResult()
    validator: Validator | None = getattr(ctx.resources, "dnssec", None)
    where = f"{ep.prefix} DANE" if ep.prefix else "DANE"
    if validator is None:
        result.details[where] = "not checked: global.dnssec is false"
        return result
    try:
        async with asyncio.timeout_at(deadline):
            base, name, verdict = await _lookup(validator, ep)
    except DnsTempError as exc:
        result.error = f"{where}: TLSA lookup could not tell: {exc}"
        return result
    except TimeoutError:
        name = dane.tlsa_name(ep.host, ep.port)
        result.error = f"{where}: timed out looking up the TLSA records at {name}"
        return result
    names = list(dict.fromkeys([base, ep.host, ep.name]))
    records = _records(verdict.rrsets)
    t = ep.label
    if not records:
        result.samples.append(sample("dane_tlsa_records", 0, target=t))
        result.details[where] = f"no TLSA records at {name} ({verdict.status.value} answer)"
        return result
    listing = "; ".join(r.short() for r in records)
    if verdict.status != Status.SECURE:
        code = "dane_tlsa_bogus" if verdict.status == Status.BOGUS else "dane_tlsa_insecure"
        evidence = f"{name} ({listing}): {verdict.reason}"
        result.findings.append(Finding(code, evidence, subject=t))
        result.samples.append(sample("dane_tlsa_records", 0, target=t))
        result.details[where] = f"TLSA records ignored by senders: {verdict.status.value} zone"
        return result
    usable = [r for r in records if r.usable]
    result.samples.append(sample("dane_tlsa_records", len(usable), target=t))
    if not usable:
        result.details[where] = (
            f"no usable TLSA record at {name} ({listing}): only DANE-TA (2) and DANE-EE (3)"
            " records count for SMTP (RFC 7672 §3.1.3)"
        )
        return result
    rows: list[tuple[str, ...]] = []
    checked: list[bool] = []
    for out in outcomes:
        if not out.certs:
            rows.append((out.address or ep.host, "-", "no certificate seen"))
            continue
        match = _matches(out, usable, names)
        out.dane_valid = bool(match.matched)
        checked.append(out.dane_valid)
        shown = "; ".join(r.short() for r in match.matched) or "none"
        rows.append((out.address or ep.host, shown, "match" if match.matched else "NO MATCH"))
        if not match.matched:
            leaf = out.certs[0].summary
            result.findings.append(
                Finding(
                    "dane_no_match",
                    f"{out.address or ep.host}: no usable TLSA record at {name} ({listing})"
                    f" matches the presented chain (leaf sha256 {leaf.fingerprint_sha256})",
                    subject=f"{t} [{out.address}]" if out.address else t,
                )
            )
        elif match.ee_matched and out.verdict is not None and not out.verdict.valid:
            result.details[f"{where} {out.address}".strip()] = (
                "DANE-valid (DANE-EE): DANE senders ignore the certificate's names and dates"
                f" (RFC 7672 §3.1.1); for other senders it is not valid"
                f" ({out.verdict.valid_error or out.verdict.trust_error})"
            )
    if checked:
        result.samples.append(sample("dane_valid", all(checked), target=t))
    if dane.DaneResult(tuple(usable), ()).single_ee:
        result.findings.append(Finding("dane_single_ee", f"{name}: {listing}", subject=t))
    result.details[where] = f"{len(usable)} usable TLSA record(s) at {name}: {listing}"
    note = f"TLSA at {name}, DNSSEC-secure"
    result.tables.append(
        Table(f"DANE {t}", ("address", "matching records", "result"), tuple(rows), note=note)
    )
    return result

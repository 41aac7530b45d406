"""The DNSSEC sub-check of the ``dns`` probe against the signed loopback hierarchy (knot), run
the way the daemon runs it: a Runtime made from the config, its per-config resources included."""

from __future__ import annotations

import time
from typing import Any

import pytest
from dnssec_lab import DnssecLab
from dnsserver import DnsServer

from exporter.config import parse_config
from exporter.probes import PROBES
from exporter.results import RunRecord
from exporter.runner import Runtime, run_probe

STATUSES = ("secure", "insecure", "bogus")


async def run_dns(lab_or_ns: DnssecLab | str, domain: str, **glob: Any) -> RunRecord:
    if isinstance(lab_or_ns, DnssecLab):
        glob = {
            "nameservers": [lab_or_ns.address],
            "dnssec_trust_anchors": str(lab_or_ns.anchor_file),
            **glob,
        }
    else:
        glob = {"nameservers": [lab_or_ns], **glob}
    config = parse_config({"global": glob, "domains": [{"domain": domain}]})
    runtime = Runtime.for_config(config)
    try:
        (target,) = PROBES["dns"].targets(config)
        return await run_probe(PROBES["dns"], target, runtime)
    finally:
        await runtime.aclose()


def states(rec: RunRecord, metric: str, **labels: str) -> dict[str, float]:
    out = {}
    for s in rec.result.samples:
        got = dict(s.labels)
        if s.metric == metric and all(got.get(k) == v for k, v in labels.items()):
            out[got["status"]] = s.value
    return out


def current(rec: RunRecord, metric: str, **labels: str) -> str | None:
    found = [k for k, v in states(rec, metric, **labels).items() if v == 1]
    assert len(found) <= 1
    return found[0] if found else None


def findings(rec: RunRecord) -> dict[str, tuple[str, str | None, str]]:
    return {f.code: (f.subject, f.severity, f.evidence) for f in rec.result.findings
            if f.code.startswith("dnssec_")}  # fmt: skip


def expiry(rec: RunRecord) -> float | None:
    found = [
        s.value
        for s in rec.result.samples
        if s.metric == "dnssec_signature_expiry_timestamp_seconds"
    ]
    return found[0] if found else None


async def test_secure_domain(dnssec_lab: DnssecLab) -> None:
    rec = await run_dns(dnssec_lab, "secure.test")
    assert current(rec, "dnssec_status", domain="secure.test") == "secure"
    assert current(rec, "dnssec_mx_status", domain="secure.test", mx="mx.secure.test") == "secure"
    assert findings(rec) == {}
    stamp = expiry(rec)
    assert stamp is not None and time.time() + 7 * 86400 < stamp < time.time() + 15 * 86400
    (table,) = [t for t in rec.result.tables if t.title == "DNSSEC"]
    assert table.rows[0][:2] == ("secure.test MX", "secure")
    assert table.rows[0][2].startswith("until ") and table.rows[0][2].endswith("secure.test.")
    # _dmarc.secure.test does not exist: the proof of that counts, and is secure too.
    assert table.rows[2][:2] == ("_dmarc.secure.test TXT (nxdomain)", "secure")
    assert "secure" in rec.result.details["dnssec"]


async def test_bogus_domain_is_critical_with_the_reason(dnssec_lab: DnssecLab) -> None:
    rec = await run_dns(dnssec_lab, "expired.test")
    assert rec.success  # the probe could tell: the zone is broken
    assert states(rec, "dnssec_status", domain="expired.test") == {
        "secure": 0, "insecure": 0, "bogus": 1
    }  # fmt: skip
    subject, severity, evidence = findings(rec)["dnssec_bogus"]
    assert subject == "expired.test" and severity is None  # the catalogue's: critical
    assert "signature expired on" in evidence
    assert expiry(rec) is None
    rec = await run_dns(dnssec_lab, "nosig.test")
    assert "missing RRSIG" in findings(rec)["dnssec_bogus"][2]


async def test_bogus_mx_zone_is_critical(dnssec_lab: DnssecLab) -> None:
    rec = await run_dns(dnssec_lab, "mxbogus.test")
    assert current(rec, "dnssec_status", domain="mxbogus.test") == "secure"
    assert current(rec, "dnssec_mx_status", domain="mxbogus.test", mx="mx.mxbogus.test") == (
        "secure"
    )
    assert current(rec, "dnssec_mx_status", domain="mxbogus.test", mx="mx.expired.test") == "bogus"
    subject, _, evidence = findings(rec)["dnssec_mx_bogus"]
    assert subject == "mx.expired.test" and "expired" in evidence
    assert "dnssec_bogus" not in findings(rec)


async def test_unsigned_domain_is_info(dnssec_lab: DnssecLab) -> None:
    rec = await run_dns(dnssec_lab, "unsigned.test")
    assert current(rec, "dnssec_status", domain="unsigned.test") == "insecure"
    subject, _, evidence = findings(rec)["dnssec_unsigned"]
    assert subject == "unsigned.test" and "has no DS" in evidence
    rec = await run_dns(dnssec_lab, "unsigned.optout")
    assert "NSEC3 opt-out" in findings(rec)["dnssec_unsigned"][2]


@pytest.mark.parametrize(
    ("domain", "severity"), [("expiring.test", None), ("lapsing.test", "critical")]
)
async def test_signatures_expiring(
    dnssec_lab: DnssecLab, domain: str, severity: str | None
) -> None:
    rec = await run_dns(dnssec_lab, domain)
    assert current(rec, "dnssec_status", domain=domain) == "secure"
    _, got, evidence = findings(rec)["dnssec_signature_expiring"]
    assert got == severity  # None: the catalogue's warning
    assert "expires" in evidence
    stamp = expiry(rec)
    assert stamp is not None and stamp < time.time() + 6 * 86400


async def test_stripping_resolver_is_could_not_tell(dns_server: DnsServer) -> None:
    dns_server.add("plain.test", "MX", "10 mx.plain.test.")
    dns_server.add("mx.plain.test", "A", "192.0.2.25")
    rec = await run_dns(dns_server.address, "plain.test")
    assert not rec.success
    assert rec.result.error is not None and "DNSSEC: could not tell" in rec.result.error
    assert "global.dnssec: false" in rec.result.error  # the fix
    assert states(rec, "dnssec_status", domain="plain.test") == dict.fromkeys(STATUSES, 0)
    assert findings(rec) == {}
    # With DNSSEC switched off the same domain runs clean, and no DNSSEC series exist.
    rec = await run_dns(dns_server.address, "plain.test", dnssec=False)
    assert rec.success, rec.result.error
    assert not [s for s in rec.result.samples if s.metric.startswith("dnssec_")]


async def test_through_a_validating_resolver(dnssec_lab: DnssecLab) -> None:
    with dnssec_lab.unbound(validating=True) as resolver:
        config = {"dnssec_trust_anchors": str(dnssec_lab.anchor_file)}
        rec = await run_dns(resolver.address, "badds.test", **config)
        # The resolver would answer SERVFAIL; with CD it hands over the data and the reason.
        assert current(rec, "dnssec_status", domain="badds.test") == "bogus"
        assert "no DS record of badds.test. matches" in findings(rec)["dnssec_bogus"][2]
        rec = await run_dns(resolver.address, "secure.test", **config)
        assert current(rec, "dnssec_status", domain="secure.test") == "secure"

"""The ``expect:`` baseline: held, drifted (warning or critical), not checked yet, unknown."""

from __future__ import annotations

from typing import Any

from conftest import make_ctx
from dnsserver import DnsServer
from probes.test_dns_sender import DOMAIN, run, sender, table, value

from exporter.config import parse_config
from exporter.probes.dns import baseline
from exporter.probes.dns.common import DnsContext, DnsResources
from exporter.results import ProbeResult, state_set

EXPECT: dict[str, Any] = {
    "dmarc_policy": ["reject", "quarantine"],
    "dkim_min_bits": 2048,
    "spf_includes": ["_spf.provider.test"],
    "mx": [f"mx.{DOMAIN}"],
}


def provider_spf(server: DnsServer) -> None:
    server.set_records(DOMAIN, [("TXT", '"v=spf1 include:_spf.provider.test -all"'),
                                ("MX", f"10 mx.{DOMAIN}.")])  # fmt: skip
    server.add_txt("_spf.provider.test", "v=spf1 include:_net.provider.test ~all")
    server.add_txt("_net.provider.test", "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 ~all")


def drift(rec: Any) -> dict[str, tuple[str, str]]:
    return {
        f.subject: (f.severity or "warning", f.evidence)
        for f in rec.result.findings
        if f.code == "baseline_drift"
    }


async def test_baseline_met(dns_server: DnsServer) -> None:
    sender(dns_server)
    provider_spf(dns_server)
    rec = await run(dns_server, expect=EXPECT)
    assert rec.success, rec.result.error
    assert value(rec, "baseline_met") == 1
    assert drift(rec) == {}
    assert table(rec.result, "Baseline (expect:)")["mx"] == (
        f"mx.{DOMAIN}",
        f"mx.{DOMAIN}",
        "holds",
    )
    # a nested include counts as present
    rec = await run(dns_server, expect={"spf_includes": ["_net.provider.test"]})
    assert value(rec, "baseline_met") == 1


async def test_no_expect_block_no_metric(dns_server: DnsServer) -> None:
    sender(dns_server)
    rec = await run(dns_server)
    assert value(rec, "baseline_met") is None


async def test_baseline_drifted(dns_server: DnsServer) -> None:
    sender(dns_server)
    provider_spf(dns_server)
    dns_server.set_records(f"_dmarc.{DOMAIN}", [])
    dns_server.add_txt(f"_dmarc.{DOMAIN}", f"v=DMARC1; p=none; rua=mailto:d@{DOMAIN}")
    dns_server.add(DOMAIN, "MX", "20 mx.elsewhere.test.")
    expect = {**EXPECT, "dkim_min_bits": 4096, "spf_includes": ["amazonses.com"]}
    rec = await run(dns_server, expect=expect)
    assert rec.success, rec.result.error
    assert value(rec, "baseline_met") == 0
    found = drift(rec)
    assert set(found) == {"dmarc_policy", "dkim_min_bits", "spf_includes", "mx"}
    assert all(severity == "warning" for severity, _ in found.values())
    assert found["dmarc_policy"][1] == "dmarc_policy: expected reject or quarantine, found p=none"
    assert (
        "expected 4096+ bits (every selector), found s1: 2048 bits" in (found["dkim_min_bits"][1])
    )
    assert (
        "found no include:amazonses.com in the SPF tree of example.test"
        in (found["spf_includes"][1])
    )
    assert f"found mx.elsewhere.test, mx.{DOMAIN}" in found["mx"][1]


async def test_drift_into_a_broken_state_is_critical(dns_server: DnsServer) -> None:
    sender(dns_server)
    dns_server.remove(f"_dmarc.{DOMAIN}")
    dns_server.remove(f"s1._domainkey.{DOMAIN}")
    rec = await run(dns_server, expect={"dmarc_policy": "reject", "dkim_min_bits": 2048})
    found = drift(rec)
    assert found["dmarc_policy"] == (
        "critical",
        "dmarc_policy: expected reject, found no DMARC policy applies",
    )
    assert found["dkim_min_bits"][0] == "critical"
    assert value(rec, "baseline_met") == 0


async def test_mta_sts_and_dnssec_not_checked_yet(dns_server: DnsServer) -> None:
    sender(dns_server)
    rec = await run(dns_server, expect={"dmarc_policy": "reject", "mta_sts_mode": "enforce",
                                        "dnssec": "secure"})  # fmt: skip
    assert value(rec, "baseline_met") == 1
    assert drift(rec) == {}
    unchecked = {f.subject: f.evidence for f in rec.result.findings
                 if f.code == "baseline_not_checked"}  # fmt: skip
    assert unchecked == {
        "mta_sts_mode": "expected enforce: not checked yet",
        "dnssec": "expected secure: not checked yet",
    }


async def test_could_not_tell_publishes_no_verdict(dns_server: DnsServer) -> None:
    sender(dns_server)
    dns_server.timeout.add(DOMAIN)  # MX and SPF of the domain go unanswered
    rec = await run(dns_server, lifetime=0.5, expect={"mx": [f"mx.{DOMAIN}"]})
    assert not rec.success
    assert value(rec, "baseline_met") is None
    assert drift(rec) == {}
    assert table(rec.result, "Baseline (expect:)")["mx"] == (f"mx.{DOMAIN}", "", "could not tell")


def _ctx(server: DnsServer) -> DnsContext:
    ctx = make_ctx(server)
    return DnsContext(ctx.dns, ctx.net, ctx.timeout, ctx.log, ctx.config, DnsResources())


async def test_reads_the_values_the_dnssec_and_mta_sts_checks_publish(
    dns_server: DnsServer,
) -> None:
    """Once the DNSSEC and MTA-STS checks publish their state sets for the domain, the baseline
    compares them: this result carries the samples those checks publish (SPEC names)."""
    config = parse_config({"domains": [
        {"domain": DOMAIN, "expect": {"dnssec": "secure", "mta_sts_mode": "enforce"}},
    ]})  # fmt: skip
    domain = config.domains[0]
    published = ProbeResult(
        samples=[
            *state_set("dnssec_status", "bogus", ("secure", "insecure", "bogus"), "status",
                       domain=DOMAIN),
            *state_set("mta_sts_mode", "testing", ("enforce", "testing", "none"), "mode",
                       domain=DOMAIN),
        ]
    )  # fmt: skip
    out = await baseline.check(domain, _ctx(dns_server), published)
    found = {f.subject: (f.severity, f.evidence) for f in out.findings}
    assert found == {
        "dnssec": ("critical", "dnssec: expected secure, found bogus"),
        "mta_sts_mode": (None, "mta_sts_mode: expected enforce, found testing"),
    }
    assert [(s.metric, s.value) for s in out.samples] == [("baseline_met", 0.0)]
    # all states 0: the check ran but could not tell
    unknown = ProbeResult(
        samples=state_set("dnssec_status", None, ("secure", "insecure", "bogus"), "status",
                          domain=DOMAIN)
    )  # fmt: skip
    only_dnssec = parse_config(
        {"domains": [{"domain": DOMAIN, "expect": {"dnssec": "secure"}}]}
    ).domains[0]
    out = await baseline.check(only_dnssec, _ctx(dns_server), unknown)
    assert out.findings == [] and out.samples == []
    assert table(out, "Baseline (expect:)") == {"dnssec": ("secure", "", "could not tell")}

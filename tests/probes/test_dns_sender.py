"""Sending IPs (FCrDNS, IPv4 and IPv6) and the bulk-sender rules of Gmail, Yahoo and Microsoft,
against the in-process DNS server."""

from __future__ import annotations

import ipaddress
from typing import Any

import dns.reversename
import pytest
from dnsserver import DnsServer
from hypothesis import given
from hypothesis import strategies as st
from probes.test_dns_auth import KEY_512, KEY_2048, codes, metrics

from exporter.config import parse_config
from exporter.net.dnsclient import make_resolver
from exporter.probes import PROBES
from exporter.probes.dns.fcrdns import reverse_name
from exporter.results import ProbeResult, RunRecord
from exporter.runner import Runtime, run_probe

DOMAIN = "example.test"
IP4 = "192.0.2.7"
IP6 = "2001:db8::7"
REV4 = "7.2.0.192.in-addr.arpa"
REV6 = "7.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"


def sender(server: DnsServer) -> None:
    """A domain that meets every requirement: SPF passes for IP4 and IP6, a 2048-bit DKIM key,
    DMARC p=reject, and both IPs forward-confirmed."""
    server.add_txt(DOMAIN, "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all")
    server.add_txt(f"_dmarc.{DOMAIN}", f"v=DMARC1; p=reject; rua=mailto:dmarc@{DOMAIN}")
    server.add_txt(f"s1._domainkey.{DOMAIN}", f"v=DKIM1; k=rsa; p={KEY_2048}")
    server.add(DOMAIN, "MX", f"10 mx.{DOMAIN}.")
    server.add(f"mx.{DOMAIN}", "A", "192.0.2.25")
    server.add(REV4, "PTR", f"out4.{DOMAIN}.")
    server.add(f"out4.{DOMAIN}", "A", IP4)
    server.add(REV6, "PTR", f"out6.{DOMAIN}.")
    server.add(f"out6.{DOMAIN}", "AAAA", IP6)


async def run(server: DnsServer, lifetime: float = 1.0, **domain: Any) -> RunRecord:
    entry = {"domain": DOMAIN, "dkim_selectors": ["s1"], "sending_ips": [IP4, IP6], **domain}
    config = parse_config(
        {
            "global": {"nameservers": [server.address], "timeout": "10s", "dnssec": False},
            "domains": [entry],
        }
    )
    deps = Runtime(
        make_resolver([server.address], attempt_timeout=lifetime, lifetime=lifetime), config
    )
    (target,) = PROBES["dns"].targets(config)
    return await run_probe(PROBES["dns"], target, deps)


def value(rec: RunRecord, name: str, **labels: str) -> float | None:
    labels.setdefault("domain", DOMAIN)
    return metrics(rec).get(("deliverability_" + name, tuple(sorted(labels.items()))))


def requirements(rec: RunRecord) -> dict[str, float | None]:
    return {
        r: value(rec, "sender_requirement", requirement=r)
        for r in ("spf", "dkim", "dmarc", "alignment", "fcrdns")
    }


def providers(rec: RunRecord) -> dict[str, float | None]:
    return {
        p: value(rec, "sender_requirements_met", provider=p)
        for p in ("gmail", "yahoo", "microsoft")
    }


def table(result: ProbeResult, title: str) -> dict[str, tuple[str, ...]]:
    """A result's table by its first column."""
    (found,) = [t for t in result.tables if t.title == title]
    return {row[0]: row[1:] for row in found.rows}


def requirement(rec: RunRecord, req: str) -> str:
    """``state: detail`` of one row of the requirements table."""
    state, detail = table(rec.result, "Bulk-sender requirements")[req]
    return f"{state}: {detail}"


ALL_MET = {"spf": 1, "dkim": 1, "dmarc": 1, "alignment": 1, "fcrdns": 1}


# ----- FCrDNS -----------------------------------------------------------------------------------


async def test_forward_confirmed_ipv4_and_ipv6(dns_server: DnsServer) -> None:
    sender(dns_server)
    rec = await run(dns_server)
    assert rec.success, rec.result.error
    assert value(rec, "sending_ip_fcrdns", ip=IP4) == 1
    assert value(rec, "sending_ip_fcrdns", ip=IP6) == 1
    assert value(rec, "sending_ip_ptr_info", ip=IP4, ptr=f"out4.{DOMAIN}") == 1
    assert value(rec, "sending_ip_ptr_info", ip=IP6, ptr=f"out6.{DOMAIN}") == 1
    assert (REV6, "PTR") in dns_server.queries
    assert (f"out6.{DOMAIN}", "AAAA") in dns_server.queries
    assert not {"sending_ip_no_ptr", "sending_ip_ptr_mismatch"} & codes(rec.result)


async def test_no_ptr(dns_server: DnsServer) -> None:
    sender(dns_server)
    dns_server.remove(REV4)
    rec = await run(dns_server)
    assert rec.success, rec.result.error
    assert value(rec, "sending_ip_fcrdns", ip=IP4) == 0
    assert value(rec, "sending_ip_ptr_info", ip=IP4, ptr="") == 1
    found = [(f.code, f.subject) for f in rec.result.findings if f.code.startswith("sending_ip")]
    assert found == [("sending_ip_no_ptr", IP4)]
    m = metrics(rec)
    key = ("deliverability_finding", (("code", "sending_ip_no_ptr"), ("probe", "dns"),
                                      ("severity", "critical"), ("target", DOMAIN)))  # fmt: skip
    assert m[key] == 1


async def test_ptr_that_does_not_resolve_back(dns_server: DnsServer) -> None:
    sender(dns_server)
    dns_server.set_records(f"out4.{DOMAIN}", [("A", "198.51.100.1")])
    dns_server.set_records(REV6, [("PTR", "nowhere.example.test.")])  # the name does not exist
    rec = await run(dns_server)
    assert rec.success, rec.result.error
    assert value(rec, "sending_ip_fcrdns", ip=IP4) == 0
    assert value(rec, "sending_ip_fcrdns", ip=IP6) == 0
    assert value(rec, "sending_ip_ptr_info", ip=IP6, ptr="nowhere.example.test") == 1
    mismatches = {f.subject: f.evidence for f in rec.result.findings
                  if f.code == "sending_ip_ptr_mismatch"}  # fmt: skip
    assert set(mismatches) == {IP4, IP6}
    assert "198.51.100.1" in mismatches[IP4]
    assert "no AAAA" in mismatches[IP6]


async def test_ptr_timeout_is_could_not_tell(dns_server: DnsServer) -> None:
    sender(dns_server)
    dns_server.timeout.add(REV4)
    rec = await run(dns_server, lifetime=0.5)
    assert not rec.success
    assert f"FCrDNS of {IP4}" in (rec.result.error or "")
    assert value(rec, "sending_ip_fcrdns", ip=IP4) is None
    assert value(rec, "sending_ip_fcrdns", ip=IP6) == 1
    assert "sending_ip_no_ptr" not in codes(rec.result)
    # fcrdns is unknown, so Gmail (which states it) is unknown; the others still known
    assert value(rec, "sender_requirement", requirement="fcrdns") is None
    assert providers(rec) == {"gmail": None, "yahoo": 1, "microsoft": 1}


# ----- bulk-sender rules ------------------------------------------------------------------------


async def test_every_requirement_met(dns_server: DnsServer) -> None:
    sender(dns_server)
    rec = await run(dns_server)
    assert requirements(rec) == ALL_MET
    assert providers(rec) == {"gmail": 1, "yahoo": 1, "microsoft": 1}
    assert rec.result.details["readiness.gmail"] == "Ready for Gmail bulk senders: yes"
    assert "sender_requirement_unmet" not in codes(rec.result)
    assert table(rec.result, "Bulk-sender readiness") == {
        "Gmail": ("yes", ""), "Yahoo": ("yes", ""), "Microsoft (Outlook.com)": ("yes", ""),
    }  # fmt: skip
    assert table(rec.result, "Bulk-sender requirements")["fcrdns"] == (
        "met", f"FCrDNS passes for {IP4}, {IP6}",
    )  # fmt: skip


def _spf_fails(server: DnsServer) -> dict[str, Any]:
    server.set_records(DOMAIN, [("TXT", '"v=spf1 ip4:192.0.2.0/24 ~all"'),
                                ("MX", f"10 mx.{DOMAIN}.")])  # fmt: skip
    return {}


def _dkim_fails(server: DnsServer) -> dict[str, Any]:
    server.set_records(f"s1._domainkey.{DOMAIN}", [])
    server.add_txt(f"s1._domainkey.{DOMAIN}", f"v=DKIM1; k=rsa; p={KEY_512}")
    return {}


def _dmarc_fails(server: DnsServer) -> dict[str, Any]:
    server.remove(f"_dmarc.{DOMAIN}")
    return {}


def _fcrdns_fails(server: DnsServer) -> dict[str, Any]:
    server.set_records(f"out4.{DOMAIN}", [("A", "198.51.100.1")])
    return {}


@pytest.mark.parametrize(
    ("breaks", "failing", "why", "ready"),
    [
        (_spf_fails, "spf", f"SPF of {DOMAIN} gives softfail for {IP6}",
         {"gmail": 0, "yahoo": 0, "microsoft": 0}),
        (_dkim_fails, "dkim", "no DKIM key of 1024+ bits (s1: no valid key)",
         {"gmail": 0, "yahoo": 0, "microsoft": 0}),
        (_dmarc_fails, "dmarc", "no valid DMARC record applies",
         {"gmail": 0, "yahoo": 0, "microsoft": 0}),
        (_fcrdns_fails, "fcrdns", f"FCrDNS fails for {IP4}",
         {"gmail": 0, "yahoo": 1, "microsoft": 1}),
    ],
)  # fmt: skip
async def test_each_requirement_failing_alone(
    dns_server: DnsServer, breaks: Any, failing: str, why: str, ready: dict[str, int]
) -> None:
    sender(dns_server)
    extra = breaks(dns_server)
    rec = await run(dns_server, **extra)
    assert rec.success, rec.result.error
    assert requirements(rec) == {**ALL_MET, failing: 0}
    assert providers(rec) == ready
    unmet = [f for f in rec.result.findings if f.code == "sender_requirement_unmet"]
    assert [f.subject for f in unmet] == [failing]
    assert why in unmet[0].evidence
    if ready["gmail"] == 0:
        assert rec.result.details["readiness.gmail"].startswith(
            "Ready for Gmail bulk senders: no — "
        )
        assert why in rec.result.details["readiness.gmail"]


async def test_ready_for_gmail_no_names_the_failing_ip(dns_server: DnsServer) -> None:
    sender(dns_server)
    dns_server.remove(REV4)
    rec = await run(dns_server)
    assert rec.result.details["readiness.gmail"] == (
        f"Ready for Gmail bulk senders: no — FCrDNS fails for {IP4}"
    )
    assert rec.result.details["readiness.yahoo"] == "Ready for Yahoo bulk senders: yes"
    assert table(rec.result, "Bulk-sender readiness")["Gmail"] == ("no", f"FCrDNS fails for {IP4}")


async def test_alignment_fails_with_a_foreign_return_path_and_no_dkim(
    dns_server: DnsServer,
) -> None:
    # Alignment cannot fail alone: a valid DKIM key of the domain signs with d=<domain>, which is
    # aligned in either mode. Here the return path is another organization and DKIM is broken.
    sender(dns_server)
    _dkim_fails(dns_server)
    dns_server.add_txt("bounce.esp.test", "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all")
    dns_server.add_txt("_dmarc.esp.test", "v=DMARC1; p=none")
    rec = await run(dns_server, return_path_domain="bounce.esp.test")
    assert requirements(rec) == {**ALL_MET, "dkim": 0, "alignment": 0}
    why = requirement(rec, "alignment")
    assert "bounce.esp.test (organizational domain esp.test)" in why
    assert "organizational domain example.test" in why


async def test_return_path_domain_in_the_same_organization(dns_server: DnsServer) -> None:
    # An SES custom MAIL FROM: SPF is judged at the return-path domain, which shares the
    # organizational domain (by the tree walk) with the From domain.
    sender(dns_server)
    _dkim_fails(dns_server)  # so alignment rests on SPF alone
    dns_server.add_txt("bounce.example.test", "v=spf1 include:amazonses.test -all")
    dns_server.add_txt("amazonses.test", "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all")
    rec = await run(dns_server, return_path_domain="bounce.example.test")
    assert value(rec, "sender_requirement", requirement="spf") == 1
    assert value(rec, "sender_requirement", requirement="alignment") == 1
    assert "bounce.example.test" in requirement(rec, "spf")
    # strict SPF alignment (aspf=s): a subdomain no longer aligns
    dns_server.set_records(f"_dmarc.{DOMAIN}", [])
    dns_server.add_txt(f"_dmarc.{DOMAIN}", f"v=DMARC1; p=reject; aspf=s; rua=mailto:d@{DOMAIN}")
    rec = await run(dns_server, return_path_domain="bounce.example.test")
    assert value(rec, "sender_requirement", requirement="alignment") == 0
    assert "aspf=s" in requirement(rec, "alignment")


async def test_return_path_spf_failing(dns_server: DnsServer) -> None:
    sender(dns_server)
    dns_server.add_txt("bounce.example.test", "v=spf1 -all")
    rec = await run(dns_server, return_path_domain="bounce.example.test")
    assert value(rec, "sender_requirement", requirement="spf") == 0
    assert "SPF of bounce.example.test gives fail" in requirement(rec, "spf")


async def test_nothing_to_judge_by_is_could_not_tell(dns_server: DnsServer) -> None:
    sender(dns_server)
    rec = await run(dns_server, dkim_selectors=[], sending_ips=[])
    assert rec.success, rec.result.error
    reqs = requirements(rec)
    assert reqs["dkim"] is None and reqs["fcrdns"] is None
    assert reqs["spf"] == 1 and reqs["dmarc"] == 1 and reqs["alignment"] == 1
    assert providers(rec) == {"gmail": None, "yahoo": None, "microsoft": None}
    assert rec.result.details["readiness.gmail"] == (
        "Ready for Gmail bulk senders: cannot tell — no dkim_selectors configured;"
        " no sending_ips configured"
    )
    assert "sender_requirement_unmet" not in codes(rec.result)


async def test_unknown_never_hides_a_confirmed_failure(dns_server: DnsServer) -> None:
    sender(dns_server)
    dns_server.remove(f"_dmarc.{DOMAIN}")
    rec = await run(dns_server, sending_ips=[])  # fcrdns unknown, dmarc confirmed missing
    assert providers(rec) == {"gmail": 0, "yahoo": 0, "microsoft": 0}


@given(st.ip_addresses())
def test_reverse_name_is_dnspythons(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    expected = dns.reversename.from_address(str(addr)).to_text().rstrip(".")
    assert reverse_name(addr) == expected
    mapped = ipaddress.IPv6Address(f"::ffff:{addr}") if addr.version == 4 else None
    if mapped is not None:
        assert reverse_name(mapped) == expected

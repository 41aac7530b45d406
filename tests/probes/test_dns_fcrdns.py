"""FCrDNS at its edges: IPv4-mapped IPv6 sending IPs, several PTR names, a PTR to the root."""

from __future__ import annotations

from dnsserver import DnsServer
from probes.test_dns_sender import DOMAIN, IP4, REV4, run, sender, value

from exporter.config import parse_config

MAPPED = f"::ffff:{IP4}"


async def test_ipv4_mapped_ipv6_is_checked_as_ipv4(dns_server: DnsServer) -> None:
    sender(dns_server)
    rec = await run(dns_server, sending_ips=[MAPPED])
    assert rec.success, rec.result.error
    assert (REV4, "PTR") in dns_server.queries
    assert (f"out4.{DOMAIN}", "A") in dns_server.queries
    assert value(rec, "sending_ip_fcrdns", ip=MAPPED) == 1
    assert value(rec, "sending_ip_ptr_info", ip=MAPPED, ptr=f"out4.{DOMAIN}") == 1
    assert not [f for f in rec.result.findings if f.code.startswith("sending_ip")]


async def test_several_ptr_names_are_reported_in_a_stable_order(dns_server: DnsServer) -> None:
    sender(dns_server)
    names = [f"{n}.{DOMAIN}" for n in ("zz", "mm", "aa", "Bb")]
    dns_server.set_records(REV4, [("PTR", f"{n}.") for n in names])
    for _ in range(6):  # the server shuffles the RRset
        rec = await run(dns_server, sending_ips=[IP4])
        assert rec.success, rec.result.error
        assert value(rec, "sending_ip_ptr_info", ip=IP4, ptr=f"aa.{DOMAIN}") == 1
        (finding,) = [f for f in rec.result.findings if f.code == "sending_ip_ptr_mismatch"]
        shown = [part.split(" -> ")[0] for part in finding.evidence.split(": PTR ")[1].split("; ")]
        assert shown == sorted(n.lower() for n in names)


async def test_ptr_to_the_root_is_shown_as_the_root(dns_server: DnsServer) -> None:
    sender(dns_server)
    dns_server.set_records(REV4, [("PTR", ".")])
    rec = await run(dns_server, sending_ips=[IP4])
    assert rec.success, rec.result.error
    assert value(rec, "sending_ip_fcrdns", ip=IP4) == 0
    assert value(rec, "sending_ip_ptr_info", ip=IP4, ptr=".") == 1
    (finding,) = [f for f in rec.result.findings if f.code == "sending_ip_ptr_mismatch"]
    assert finding.evidence == f"{IP4}: PTR . -> no A"
    assert ("", "A") not in dns_server.queries


def test_config_spells_an_ipv4_mapped_address_one_way() -> None:
    config = parse_config(
        {"domains": [{"domain": DOMAIN, "sending_ips": ["::FFFF:c000:0207", "2001:DB8::7"]}]}
    )
    assert config.domains[0].sending_ips == [MAPPED, "2001:db8::7"]

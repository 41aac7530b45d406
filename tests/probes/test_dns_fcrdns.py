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


async def test_classless_delegation_cname_is_followed(dns_server: DnsServer) -> None:
    # RFC 2317: the reverse name of an IP in a small block is a CNAME into the customer's zone
    sender(dns_server)
    dns_server.set_records(REV4, [("CNAME", "7.0-25.2.0.192.in-addr.arpa.")])
    dns_server.set_records("7.0-25.2.0.192.in-addr.arpa", [("PTR", f"out4.{DOMAIN}.")])
    rec = await run(dns_server, sending_ips=[IP4])
    assert rec.success, rec.result.error
    assert value(rec, "sending_ip_fcrdns", ip=IP4) == 1
    assert value(rec, "sending_ip_ptr_info", ip=IP4, ptr=f"out4.{DOMAIN}") == 1


async def test_one_confirmed_name_is_enough_when_another_cannot_be_looked_up(
    dns_server: DnsServer,
) -> None:
    sender(dns_server)
    dns_server.set_records(REV4, [("PTR", f"out4.{DOMAIN}."), ("PTR", f"slow.{DOMAIN}.")])
    dns_server.timeout.add(f"slow.{DOMAIN}")
    rec = await run(dns_server, lifetime=0.5, sending_ips=[IP4])
    assert rec.success, rec.result.error
    assert value(rec, "sending_ip_fcrdns", ip=IP4) == 1


async def test_no_confirmed_name_and_one_failed_lookup_is_could_not_tell(
    dns_server: DnsServer,
) -> None:
    sender(dns_server)
    dns_server.set_records(REV4, [("PTR", f"elsewhere.{DOMAIN}."), ("PTR", f"slow.{DOMAIN}.")])
    dns_server.set_records(f"elsewhere.{DOMAIN}", [("A", "198.51.100.9")])
    dns_server.timeout.add(f"slow.{DOMAIN}")
    rec = await run(dns_server, lifetime=0.5, sending_ips=[IP4])
    assert not rec.success
    assert f"slow.{DOMAIN}" in (rec.result.error or "")
    assert value(rec, "sending_ip_fcrdns", ip=IP4) is None
    assert not [f for f in rec.result.findings if f.code.startswith("sending_ip")]

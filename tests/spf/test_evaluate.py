"""check_host() against a real loopback DNS server: limits, caching, trail, errors."""

from __future__ import annotations

from dnsserver import DnsServer

from exporter.net.dnsclient import DnsClient, make_resolver
from exporter.spf.evaluate import check_host, client_ip, split_sender, valid_check_domain


def client(server: DnsServer, lifetime: float = 1.0) -> DnsClient:
    return DnsClient(make_resolver([server.address], attempt_timeout=lifetime, lifetime=lifetime))


def test_sender_and_ip_normalisation() -> None:
    assert split_sender("", "mail.example.com") == (
        "postmaster@mail.example.com", "postmaster", "mail.example.com",
    )  # fmt: skip
    assert split_sender("@example.net", "h") == (
        "postmaster@example.net",
        "postmaster",
        "example.net",
    )
    assert split_sender("a@b@example.org", "h")[1:] == ("a@b", "example.org")
    assert str(client_ip("::ffff:192.0.2.1")) == "192.0.2.1"
    assert not valid_check_domain("com")
    assert not valid_check_domain("[192.0.2.1]")
    assert not valid_check_domain("a..example.com")
    assert valid_check_domain("example.com.")


async def test_pass_through_nested_include_with_trail(dns_server: DnsServer) -> None:
    dns_server.add_txt("example.test", "v=spf1 include:_spf.provider.test -all")
    dns_server.add_txt("_spf.provider.test", "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 ~all")
    res = await check_host(client(dns_server), "192.0.2.7", "alice@example.test", "mx.example.test")
    assert res.result == "pass"
    assert res.lookups == 1
    assert res.mechanism == "include:_spf.provider.test in example.test"
    assert any("_spf.provider.test" in line for line in res.trail)
    res6 = await check_host(client(dns_server), "2001:db8::1", "alice@example.test")
    assert res6.result == "pass"
    res_fail = await check_host(client(dns_server), "198.51.100.1", "alice@example.test")
    assert res_fail.result == "fail"


async def test_one_cycle_never_queries_a_name_twice(dns_server: DnsServer) -> None:
    dns_server.add_txt("example.test", "v=spf1 a mx include:p.test include:p.test -all")
    dns_server.add_txt("p.test", "v=spf1 a:host.p.test ~all")
    dns_server.add("example.test", "A", "192.0.2.1")
    dns_server.add("example.test", "MX", "10 mx.example.test.")
    dns_server.add("mx.example.test", "A", "192.0.2.2")
    dns_server.add("host.p.test", "A", "192.0.2.3")
    dns = client(dns_server)
    for ip in ("198.51.100.1", "198.51.100.2", "192.0.2.3"):
        await check_host(dns, ip, "x@example.test")
    assert len(dns_server.queries) == len(set(dns_server.queries)) == 6
    assert dns.stats.cache_hits > 0


async def test_lookup_limit_counts_across_includes(dns_server: DnsServer) -> None:
    terms = " ".join(f"include:i{n}.test" for n in range(11))
    dns_server.add_txt("example.test", f"v=spf1 {terms} -all")
    for n in range(11):
        dns_server.add_txt(f"i{n}.test", "v=spf1 -all")
    res = await check_host(client(dns_server), "192.0.2.1", "x@example.test")
    assert res.result == "permerror"
    assert "§4.6.4" in res.problem and res.lookups == 11


async def test_void_lookup_limit(dns_server: DnsServer) -> None:
    dns_server.add_txt("example.test", "v=spf1 a:n1.example.test mx:n2.example.test"
                       " exists:n3.example.test -all")  # fmt: skip
    res = await check_host(client(dns_server), "192.0.2.1", "x@example.test")
    assert res.result == "permerror" and res.void_lookups == 3


async def test_dns_timeout_is_temperror_and_ptr_skips_errors(dns_server: DnsServer) -> None:
    dns_server.add_txt("example.test", "v=spf1 ptr a:slow.example.test -all")
    dns_server.timeout.add("slow.example.test")
    dns_server.timeout.add("1.2.0.192.in-addr.arpa")
    res = await check_host(client(dns_server, 0.3), "192.0.2.1", "x@example.test")
    assert res.result == "temperror" and "slow.example.test" in res.problem
    dns_server.timeout.add("example.test")
    res = await check_host(client(dns_server, 0.3), "192.0.2.1", "x@example.test")
    assert res.result == "temperror"


async def test_ptr_and_p_macro_with_ipv6(dns_server: DnsServer) -> None:
    dns_server.add_txt("example.test", "v=spf1 -ptr exists:%{p}.ok.example.test ?all")
    dns_server.add("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
                   "PTR", "mail.other.test.")  # fmt: skip
    dns_server.add("mail.other.test", "AAAA", "2001:db8::1")
    dns_server.add("mail.other.test.ok.example.test", "A", "127.0.0.2")
    res = await check_host(client(dns_server), "2001:db8::1", "x@example.test")
    assert res.result == "pass"
    assert res.mechanism.startswith("exists:%{p}")


async def test_explanation_only_for_fail_from_the_deciding_record(dns_server: DnsServer) -> None:
    dns_server.add_txt("example.test", "v=spf1 -ip4:192.0.2.1 redirect=r.test exp=e.example.test")
    dns_server.add_txt("e.example.test", "%{i} may not send for %{d}, see %{r}")
    dns_server.add_txt("r.test", "v=spf1 -all exp=e.r.test")
    dns_server.add_txt("e.r.test", "redirected: %{c} via %{d}")
    dns = client(dns_server)
    res = await check_host(dns, "192.0.2.1", "x@example.test", receiver="mx.rcv.test")
    assert (res.result, res.explanation) == (
        "fail", "192.0.2.1 may not send for example.test, see mx.rcv.test",
    )  # fmt: skip
    res = await check_host(dns, "192.0.2.9", "x@example.test")
    assert (res.result, res.explanation) == ("fail", "redirected: 192.0.2.9 via r.test")

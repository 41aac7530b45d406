"""The shared DNS transport and short-lived cache (:class:`exporter.dnsclient.SharedDns`).

Against the real loopback test server: answers read exactly as the plain dnspython path reads
them (records, NXDOMAIN, NODATA, CNAME chains, truncation then TCP, SERVFAIL and timeouts as
temporary failures), and runs that share a :class:`SharedDns` ask a name once.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import subprocess
import sys

import pytest
from dnsserver import DnsServer
from hypothesis import given
from hypothesis import strategies as st

from exporter.dnsclient import DnsClient, DnsTempError, SharedDns, is_ip_address, make_resolver


@pytest.fixture
def server(dns_server: DnsServer) -> DnsServer:
    dns_server.add_txt("a.example", "v=spf1 -all")
    dns_server.add("www.example", "CNAME", "host.example.")
    dns_server.add("host.example", "A", "192.0.2.1")
    dns_server.add("nodata.example", "A", "192.0.2.2")
    dns_server.add_txt("big.example", "x" * 3000)  # over any UDP payload: TC, then TCP
    dns_server.servfail.add("broken.example")
    dns_server.timeout.add("slow.example")
    return dns_server


def _clients(server: DnsServer, n: int = 1) -> tuple[list[DnsClient], list[DnsClient]]:
    resolver = make_resolver([server.address], attempt_timeout=0.3, lifetime=0.6)
    shared = SharedDns(resolver)
    assert shared.enabled
    shared.acquire()
    return (
        [DnsClient(resolver, shared=shared) for _ in range(n)],
        [DnsClient(resolver) for _ in range(n)],
    )


async def test_answers_read_as_the_resolver_reads_them(server: DnsServer) -> None:
    (fast,), (plain,) = _clients(server)
    for name, rdtype in [
        ("a.example", "TXT"),
        ("www.example", "A"),
        ("nodata.example", "TXT"),
        ("missing.example", "A"),
        ("big.example", "TXT"),
    ]:
        ours, theirs = await fast.query(name, rdtype), await plain.query(name, rdtype)
        assert (ours.status, ours.canonical_name) == (theirs.status, theirs.canonical_name)
        assert sorted(r.to_text() for r in ours.rdatas) == sorted(
            r.to_text() for r in theirs.rdatas
        )
    assert (await fast.query("www.example", "A")).canonical_name == "host.example"
    assert (await fast.query("big.example", "TXT")).texts() == ["x" * 3000]
    assert (await fast.query("missing.example", "A")).status == "nxdomain"
    assert (await fast.query("nodata.example", "TXT")).status == "nodata"


async def test_temporary_failures_are_errors_and_not_shared(server: DnsServer) -> None:
    (one, two), _ = _clients(server, 2)
    with pytest.raises(DnsTempError, match="SERVFAIL"):
        await one.query("broken.example", "TXT")
    with pytest.raises(DnsTempError, match="timeout"):
        await one.query("slow.example", "TXT")
    before = len(server.queries)
    with pytest.raises(DnsTempError, match="SERVFAIL"):
        await two.query("broken.example", "TXT")
    assert len(server.queries) == before + 1  # asked again: failures are never cached


async def test_runs_sharing_it_ask_a_name_once(server: DnsServer) -> None:
    clients, _ = _clients(server, 5)
    answers = await asyncio.gather(*(c.query("a.example", "TXT") for c in clients))
    assert {a.texts()[0] for a in answers} == {"v=spf1 -all"}
    assert server.queries.count(("a.example", "TXT")) == 1
    assert sum(c.stats.queries for c in clients) == 1
    assert sum(c.stats.cache_hits for c in clients) == 4
    await clients[0].query("a.example", "TXT")  # its own per-run cache
    later = DnsClient(clients[0].resolver, shared=clients[0].shared)
    await later.query("a.example", "TXT")  # within SHARED_MAX_AGE: shared
    assert server.queries.count(("a.example", "TXT")) == 1


async def test_shared_answers_expire(server: DnsServer) -> None:
    resolver = make_resolver([server.address], attempt_timeout=0.3, lifetime=0.6)
    shared = SharedDns(resolver, max_age=0.05)
    shared.acquire()
    await DnsClient(resolver, shared=shared).query("a.example", "TXT")
    await asyncio.sleep(0.1)
    await DnsClient(resolver, shared=shared).query("a.example", "TXT")
    assert server.queries.count(("a.example", "TXT")) == 2
    shared.release()


def test_refused_nameserver_leaves_no_unretrieved_future() -> None:
    """ICMP 'port unreachable' fails every pending question on the socket, including ones
    whose asker already gave up: those must not be logged as 'never retrieved'."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "check", "--nameserver", dead,
         "a.example", "b.example", "c.example"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "could not tell" in result.stdout
    assert "never retrieved" not in result.stdout + result.stderr


@given(
    st.one_of(
        st.ip_addresses().map(str),
        st.text(alphabet="0123456789abcdefABCDEF.:%-xyz", max_size=45),
        st.text(max_size=20),
    )
)
def test_is_ip_address_agrees_with_ipaddress(text: str) -> None:
    try:
        ipaddress.ip_address(text)
        expected = True
    except ValueError:
        expected = False
    assert is_ip_address(text) is expected


async def test_txt_split_inside_a_utf8_character_reads_back_whole(server: DnsServer) -> None:
    value = "v=spf1 " + "a" * 247 + "é€" + " -all"  # the 255-byte split falls inside "é"
    server.add_txt("utf8.example", value)
    (fast,), _ = _clients(server)
    assert (await fast.query("utf8.example", "TXT")).texts() == [value]

"""Raw DNSSEC queries against real loopback DNS servers: flags, nameserver order, could-not-tell."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest
from dnsserver import DnsServer

from exporter.net.dnsmodel import DnsTempError
from exporter.net.dnsraw import EDNS_PAYLOAD, RawDns

A = dns.rdatatype.A
TXT = dns.rdatatype.TXT


class Recording(DnsServer):
    """Keeps every query message it receives."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[dns.message.Message] = []

    def respond(self, wire: bytes, max_size: int | None) -> bytes | None:
        parsed = self.parse_query(wire)
        if parsed is not None:
            self.messages.append(parsed[0])
        return super().respond(wire, max_size)


async def test_query_asks_for_dnssec_with_checking_disabled() -> None:
    with Recording() as server:
        server.add("www.example.test", "A", "192.0.2.1")
        reply = await RawDns([server.address]).query(dns.name.from_text("www.example.test"), A)
        (query,) = server.messages
    assert reply.answer[0][0].to_text() == "192.0.2.1"
    assert query.ednsflags & dns.flags.DO
    assert query.flags & dns.flags.CD
    assert query.flags & dns.flags.RD
    assert query.payload == EDNS_PAYLOAD


async def test_nxdomain_is_an_answer(dns_server: DnsServer) -> None:
    dns_server.add("www.example.test", "A", "192.0.2.1")
    reply = await RawDns([dns_server.address]).query(dns.name.from_text("nx.example.test"), A)
    assert reply.rcode() == 3


async def test_servfail_moves_on_to_the_next_nameserver() -> None:
    with DnsServer() as bad, DnsServer() as good:
        bad.servfail.add("www.example.test")
        good.add("www.example.test", "A", "192.0.2.7")
        raw = RawDns([bad.address, good.address])
        reply = await raw.query(dns.name.from_text("www.example.test"), A)
        assert reply.answer[0][0].to_text() == "192.0.2.7"
        assert bad.queries and good.queries


async def test_every_nameserver_failing_is_could_not_tell() -> None:
    with DnsServer() as one, DnsServer() as two:
        one.servfail.add("www.example.test")
        two.refused.add("www.example.test")
        raw = RawDns([one.address, two.address])
        with pytest.raises(DnsTempError) as info:
            await raw.query(dns.name.from_text("www.example.test"), A)
    assert f"{one.address} SERVFAIL" in str(info.value)
    assert f"{two.address} REFUSED" in str(info.value)


async def test_timeout_is_could_not_tell(dns_server: DnsServer) -> None:
    dns_server.timeout.add("www.example.test")
    raw = RawDns([dns_server.address], attempt_timeout=0.2, lifetime=0.5)
    with pytest.raises(DnsTempError, match="timeout"):
        await raw.query(dns.name.from_text("www.example.test"), A)


async def test_truncated_answers_are_retried_over_tcp(dns_server: DnsServer) -> None:
    for i in range(40):
        dns_server.add_txt("big.example.test", f"{i:02d}" + "x" * 60)
    reply = await RawDns([dns_server.address]).query(dns.name.from_text("big.example.test"), TXT)
    assert len(reply.answer[0]) == 40
    assert not reply.flags & dns.flags.TC


class Referring(DnsServer):
    """An authoritative server for another zone: answers with a referral (NS, no AA)."""

    def respond(self, wire: bytes, max_size: int | None) -> bytes | None:
        parsed = self.parse_query(wire)
        assert parsed is not None
        response = dns.message.make_response(parsed[0])
        response.find_rrset(
            response.authority,
            dns.name.from_text("example.test"),
            dns.rdataclass.IN,
            dns.rdatatype.NS,
            create=True,
        ).add(dns.rdata.from_text("IN", "NS", "ns.example.test."), 300)
        return response.to_wire()


async def test_a_referral_is_could_not_tell() -> None:
    with Referring() as server, pytest.raises(DnsTempError, match="referral"):
        await RawDns([server.address]).query(dns.name.from_text("www.example.test"), A)


async def test_no_nameserver_at_all() -> None:
    raw = RawDns(["127.0.0.1:9"])
    raw.servers = []
    with pytest.raises(DnsTempError, match="no nameservers"):
        await raw.query(dns.name.from_text("www.example.test"), A)

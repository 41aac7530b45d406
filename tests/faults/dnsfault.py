"""A misbehaving authoritative DNS server for fault-injection tests (UDP and TCP on loopback).

Extends the project's test server (:class:`dnsserver.DnsServer`, which already does ``timeout``,
``servfail`` and ``refused`` per name) with the ways real servers and middleboxes break, per name:

* ``malformed`` — a reply with the query's ID and a header that promises five answers, followed
  by junk (a parser must reject it, not crash or hang); over UDP, or over TCP when the name is
  also ``always_truncated``;
* ``garbage`` — a few bytes that are not even a DNS header;
* ``wrong_id`` — a well-formed answer under another message ID (an off-path spoof: a client must
  ignore it and keep waiting);
* ``cname_loop`` — name -> partner: the answer is ``name CNAME partner`` and ``partner CNAME
  name`` and nothing else, as a recursive resolver passes a loop through;
* ``always_truncated`` — UDP answers are always TC with no records (the client must use TCP);
* ``oversized_udp`` — UDP answers ignore the client's advertised payload size and send the whole
  answer in one datagram (up to 64 KiB);
* ``tcp_close`` — TCP connections for this name are closed without an answer.

And, for the whole server, ``tcp_refused``: the TCP listener is closed after start, so a TCP
connection to the port is refused (UDP keeps working) — with ``always_truncated`` that is
"truncated, and TCP refused".

Everything goes over real sockets; only the bytes written differ from a correct server.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dnsserver import DnsServer, _norm

from exporter.lab.dns import CloseConnection


@dataclass
class FaultDnsServer(DnsServer):
    malformed: set[str] = field(default_factory=set)
    garbage: set[str] = field(default_factory=set)
    wrong_id: set[str] = field(default_factory=set)
    cname_loop: dict[str, str] = field(default_factory=dict)
    always_truncated: set[str] = field(default_factory=set)
    oversized_udp: set[str] = field(default_factory=set)
    tcp_close: set[str] = field(default_factory=set)
    tcp_refused: bool = False
    _rrsets: dict[tuple[str, str, tuple[str, ...]], dns.rrset.RRset] = field(default_factory=dict)

    def start(self) -> FaultDnsServer:
        super().start()
        if self.tcp_refused:
            self.refuse_tcp()
        return self

    def refuse_tcp(self) -> None:
        """Close the TCP listener: from now on TCP connections to the port are refused."""
        assert self._loop is not None

        async def close() -> None:
            if self._tcp is not None:
                self._tcp.close()
                await self._tcp.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._tcp = None

    def _rrset(self, name: str, rdtype: str, texts: list[str]) -> dns.rrset.RRset:
        # Cached: building an RRset of thousands of records from text on every query would make
        # this server, not the client under test, the slow party.
        key = (name, rdtype, tuple(texts))
        cached = self._rrsets.get(key)
        if cached is None:
            cached = self._rrsets[key] = super()._rrset(name, rdtype, texts)
        return cached

    def fault(self, kind: str, *names: str) -> None:
        """Add names to one of the per-name fault sets (``malformed``, ``timeout``...)."""
        target = getattr(self, kind)
        for name in names:
            target.add(_norm(name))

    def respond(self, wire: bytes, max_size: int | None) -> bytes | None:
        parsed = self.parse_query(wire)
        if parsed is None:
            return None
        query, qname, qtype = parsed
        tcp = max_size is None
        if qname in self.garbage:
            self.queries.append((qname, qtype))
            return b"\x00\x01junk"
        if not tcp and qname in self.always_truncated:
            self.queries.append((qname, qtype))
            response = dns.message.make_response(query)
            response.flags |= dns.flags.AA | dns.flags.TC
            return response.to_wire()
        if qname in self.malformed:
            self.queries.append((qname, qtype))
            # ID, flags QR|AA|RD|RA, QDCOUNT 1, ANCOUNT 5, then bytes that are no question.
            return wire[:2] + b"\x85\x80\x00\x01\x00\x05\x00\x00\x00\x00" + b"\xc0\xff" * 12
        if qname in self.cname_loop:
            self.queries.append((qname, qtype))
            partner = self.cname_loop[qname]
            response = dns.message.make_response(query)
            response.answer.append(_cname(qname, partner, self.ttl))
            response.answer.append(_cname(partner, qname, self.ttl))
            return response.to_wire()
        if tcp and qname in self.tcp_close:
            self.queries.append((qname, qtype))
            raise CloseConnection
        out = super().respond(wire, None if qname in self.oversized_udp else max_size)
        if out is not None and qname in self.wrong_id:
            (real_id,) = struct.unpack("!H", out[:2])
            out = struct.pack("!H", (real_id + 1) & 0xFFFF) + out[2:]
        return out


def _cname(owner: str, target: str, ttl: int) -> dns.rrset.RRset:
    return dns.rrset.from_text(
        owner + ".", ttl, dns.rdataclass.IN, dns.rdatatype.CNAME, target + "."
    )


def many_txt_strings(prefix: str, count: int, item: str) -> str:
    """Zone-file text of one TXT record: ``prefix`` then ``count`` strings ``item % i``."""
    parts = [prefix] + [item % i for i in range(count)]
    return " ".join('"' + p.replace('"', '\\"') + '"' for p in parts)

"""A real, in-process authoritative DNS server for tests (UDP and TCP on one loopback port).

Speaks the DNS wire protocol through dnspython; runs its own event loop in a background thread so
that both async tests and a separately started exporter process can query it. The sockets and
the TCP framing are the demo's (:class:`exporter.lab.dns.WireServer`); what is here is the
answering: a flat map of records and faults per name.

Data is a flat map of names to records, so one server can serve many unrelated domains (the
RFC 7208 suite needs that). Behaviours beyond plain answers, per name:

* ``timeout`` — never answer (any type);
* ``timeout_other_types`` — answer the types the name has records of, never answer the others
  (the RFC 7208 suite's ``TIMEOUT`` after a name's records);
* ``servfail`` / ``refused`` — answer with that RCODE;
* CNAMEs are followed within the server's data, as an authoritative server for all zones would.

Negative answers carry a SOA in the authority section; UDP answers larger than the client's
payload are truncated (TC) and the client retries over TCP, which is never capped.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from exporter.lab.dns import WireServer, to_wire_truncating


def _norm(name: str) -> str:
    return name.strip().rstrip(".").lower()


@dataclass
class DnsServer(WireServer):
    """Records keyed by lower-case name without trailing dot -> list of (type, rdata text)."""

    records: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    timeout: set[str] = field(default_factory=set)
    timeout_other_types: set[str] = field(default_factory=set)
    servfail: set[str] = field(default_factory=set)
    refused: set[str] = field(default_factory=set)
    ttl: int = 300
    shuffle: bool = True
    """Shuffle records within an RRset as dnspython does by default (False: zone order)."""
    port: int = 0
    queries: list[tuple[str, str]] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None

    # ----- data -------------------------------------------------------------------------------
    def add(self, name: str, rdtype: str, text: str) -> None:
        """Add one record; TXT text is given in zone-file form (quoted strings)."""
        self.records.setdefault(_norm(name), []).append((rdtype.upper(), text))

    def add_txt(self, name: str, value: str) -> None:
        """Add a TXT record from a raw value, split into 255-byte strings and quoted."""
        raw = value.encode()
        parts = [raw[i : i + 255] for i in range(0, len(raw), 255)] or [b""]
        # A split may cut a UTF-8 sequence: bytes outside printable ASCII are written \DDD.
        quoted = " ".join('"' + "".join(_zone_char(b) for b in p) + '"' for p in parts)
        self.add(name, "TXT", quoted)

    def set_records(self, name: str, entries: Iterable[tuple[str, str]]) -> None:
        self.records[_norm(name)] = [(t.upper(), v) for t, v in entries]

    def remove(self, name: str) -> None:
        self.records.pop(_norm(name), None)

    # ----- lifecycle --------------------------------------------------------------------------
    def start(self) -> DnsServer:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._start())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="test-dns", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("test DNS server did not start")
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        loop = self._loop

        asyncio.run_coroutine_threadsafe(self.stop_serving(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        loop.close()
        self._loop = None

    def __enter__(self) -> DnsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _start(self) -> None:
        await self.start_serving("127.0.0.1", self.port)

    # ----- protocol ---------------------------------------------------------------------------
    @staticmethod
    def parse_query(wire: bytes) -> tuple[dns.message.Message, str, str] | None:
        """(query, normalized name, type) of a query on the wire, or None if it is not one."""
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None
        if not query.question:
            return None
        q = query.question[0]
        return query, _norm(q.name.to_text()), dns.rdatatype.to_text(q.rdtype)

    def answer_wire(self, wire: bytes, udp: bool) -> bytes | None:
        return self.respond(wire, 512 if udp else None)

    def respond(self, wire: bytes, max_size: int | None) -> bytes | None:
        """The answer to ``wire``; ``max_size`` None over TCP (never capped), else UDP."""
        parsed = self.parse_query(wire)
        if parsed is None:
            return None
        query, qname, qtype = parsed
        self.queries.append((qname, qtype))
        if qname in self.timeout:
            return None
        if qname in self.timeout_other_types and qtype not in {
            t for t, _ in self.records.get(qname, [])
        }:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if qname in self.servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
            return response.to_wire()
        if qname in self.refused:
            response.set_rcode(dns.rcode.REFUSED)
            return response.to_wire()
        self._answer(response, qname, query.question[0].rdtype)
        payload = max_size
        if payload is not None:
            payload = max(512, query.payload if query.edns >= 0 else 512)
        return to_wire_truncating(response, payload or 65535, shuffle=self.shuffle)

    def _answer(self, response: dns.message.Message, qname: str, qtype: int) -> None:
        name = qname
        for _ in range(10):  # CNAME chain limit
            entries = self.records.get(name, [])
            cnames = [v for t, v in entries if t == "CNAME"]
            if cnames and qtype != dns.rdatatype.CNAME:
                rrset = self._rrset(name, "CNAME", cnames[:1])
                response.answer.append(rrset)
                target = _norm(cnames[0])
                if target in self.timeout or target in self.servfail:
                    return
                name = target
                continue
            wanted = [v for t, v in entries if dns.rdatatype.from_text(t) == qtype]
            if wanted:
                response.answer.append(self._rrset(name, dns.rdatatype.to_text(qtype), wanted))
                return
            if not response.answer and not self._exists(name):
                response.set_rcode(dns.rcode.NXDOMAIN)
            response.authority.append(self._soa(name))
            return

    def _exists(self, name: str) -> bool:
        if name in self.records:
            return True
        suffix = "." + name
        return any(k.endswith(suffix) for k in self.records)

    def _rrset(self, name: str, rdtype: str, texts: list[str]) -> dns.rrset.RRset:
        rrset = dns.rrset.RRset(
            dns.name.from_text(name), dns.rdataclass.IN, dns.rdatatype.from_text(rdtype)
        )
        for text in texts:
            rrset.add(dns.rdata.from_text(dns.rdataclass.IN, rrset.rdtype, text), self.ttl)
        return rrset

    def _soa(self, name: str) -> dns.rrset.RRset:
        labels = name.split(".")
        apex = ".".join(labels[-2:]) if len(labels) >= 2 else name or "."
        rrset = dns.rrset.RRset(dns.name.from_text(apex), dns.rdataclass.IN, dns.rdatatype.SOA)
        rrset.add(
            dns.rdata.from_text(
                dns.rdataclass.IN, dns.rdatatype.SOA, f"ns.{apex}. hostmaster.{apex}. 1 60 60 60 60"
            ),
            60,
        )
        return rrset


def _zone_char(byte: int) -> str:
    """One byte of a quoted zone-file character-string."""
    if byte in (0x22, 0x5C):  # " and backslash
        return "\\" + chr(byte)
    if 0x20 <= byte < 0x7F:
        return chr(byte)
    return f"\\{byte:03d}"

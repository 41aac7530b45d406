"""A small authoritative DNS server for the demo: zone files in, UDP and TCP on one loopback port.

Zones are ordinary zone-file text parsed by ``dnspython`` (``dns.zone.from_text``), so what the
demo serves can be read like any zone. Answers are built with ``dns.message.make_response`` and
carry the AA flag; CNAMEs are followed inside the served zones; NXDOMAIN and NODATA answers carry
the zone's SOA; UDP answers larger than the client's payload are truncated (TC) so the client
retries over TCP. Names outside every zone are REFUSED, as an authoritative-only server does.
Hand-written (dnspython has no server) and kept apart from the tests' own server so that the
package never imports test code; it runs on the caller's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Iterable
from typing import cast

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone

CNAME_LIMIT = 8
TCP_IDLE_TIMEOUT = 10.0


def zone_text(origin: str, records: Iterable[str], *, ttl: int = 300) -> str:
    """Zone-file text for ``origin`` with a SOA and NS added; ``records`` are zone-file lines."""
    head = [
        f"$ORIGIN {origin.rstrip('.')}.",
        f"$TTL {ttl}",
        f"@ IN SOA ns.{origin}. hostmaster.{origin}. 1 3600 600 86400 300",
        f"@ IN NS ns.{origin}.",
        "ns IN A 127.0.0.1",
    ]
    return "\n".join([*head, *records]) + "\n"


class CloseConnection(Exception):
    """Raised while answering a TCP query to drop the connection without an answer."""


class WireServer:
    """UDP and TCP on one loopback port, answering from :meth:`answer_wire`: the plumbing the
    demo's server and the tests' servers share (tests/dnsserver.py subclasses it)."""

    port: int = 0
    _tcp: asyncio.Server | None = None
    _udp: asyncio.DatagramTransport | None = None

    @property
    def address(self) -> str:
        """``127.0.0.1:port``, as ``global.nameservers`` takes it."""
        return f"127.0.0.1:{self.port}"

    def answer_wire(self, wire: bytes, udp: bool) -> bytes | None:
        """The wire answer to a wire query (None: no answer). May raise
        :class:`CloseConnection` (TCP: the connection is dropped)."""
        raise NotImplementedError

    async def start_serving(self, host: str = "127.0.0.1", port: int = 0) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(50):  # TCP on a free port, then UDP on the same one (retry if taken)
            tcp = await asyncio.start_server(self._handle_tcp, host, port)
            bound = tcp.sockets[0].getsockname()[1]
            try:
                udp, _ = await loop.create_datagram_endpoint(
                    lambda: _Udp(self), local_addr=(host, bound)
                )
            except OSError:
                tcp.close()
                if port:
                    raise
                continue
            self._tcp, self._udp, self.port = tcp, udp, bound
            return
        raise OSError("no free port for the DNS server")

    async def stop_serving(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._tcp.wait_closed(), 5)
            self._tcp = None

    async def _handle_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_TIMEOUT)
                (length,) = struct.unpack("!H", head)
                wire = await asyncio.wait_for(reader.readexactly(length), TCP_IDLE_TIMEOUT)
                try:
                    out = self.answer_wire(wire, udp=False)
                except CloseConnection:
                    return
                if out is None:
                    continue
                writer.write(struct.pack("!H", len(out)) + out)
                await asyncio.wait_for(writer.drain(), TCP_IDLE_TIMEOUT)
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()


def to_wire_truncating(
    response: dns.message.Message, max_size: int, *, shuffle: bool = True
) -> bytes:
    """The response on the wire, or, when it does not fit in ``max_size`` (a UDP payload), an
    empty one with the TC flag so the client retries over TCP."""
    try:
        return response.to_wire(max_size=max_size, want_shuffle=shuffle)
    except dns.exception.TooBig:
        response.answer.clear()
        response.authority.clear()
        response.additional.clear()
        response.flags |= dns.flags.TC
        return response.to_wire()


class LabDnsServer(WireServer):
    """Serves the given zones (zone-file texts with ``$ORIGIN``) on 127.0.0.1."""

    def __init__(self, zones: Iterable[str]) -> None:
        self.zones: list[tuple[dns.name.Name, dns.zone.Zone]] = []
        for text in zones:
            zone = dns.zone.from_text(text, relativize=False)
            assert zone.origin is not None  # from_text requires $ORIGIN
            self.zones.append((zone.origin, zone))
        # Longest origin first, so a child zone wins over its parent.
        self.zones.sort(key=lambda z: len(z[0].labels), reverse=True)
        self.queries = 0

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> LabDnsServer:
        await self.start_serving(host, port)
        return self

    async def stop(self) -> None:
        await self.stop_serving()

    # ----- answering --------------------------------------------------------------------------
    def _zone_of(self, name: dns.name.Name) -> tuple[dns.name.Name, dns.zone.Zone] | None:
        for origin, zone in self.zones:
            if name.is_subdomain(origin):
                return origin, zone
        return None

    def answer_wire(self, wire: bytes, udp: bool) -> bytes | None:
        """The wire answer to a wire query (None for garbage, which gets no answer)."""
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None
        self.queries += 1
        response = dns.message.make_response(query)
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response.to_wire()
        q = query.question[0]
        found = self._zone_of(q.name)
        if found is None or q.rdclass != dns.rdataclass.IN:
            response.set_rcode(dns.rcode.REFUSED)
            return response.to_wire()
        response.flags |= dns.flags.AA
        self._answer(response, found, q.name, q.rdtype)
        limit = max(512, query.payload if query.edns >= 0 else 512) if udp else 65535
        return to_wire_truncating(response, limit)

    def _answer(
        self,
        response: dns.message.Message,
        found: tuple[dns.name.Name, dns.zone.Zone],
        name: dns.name.Name,
        qtype: dns.rdatatype.RdataType,
    ) -> None:
        origin, zone = found
        for _ in range(CNAME_LIMIT):
            node = zone.get_node(name)
            if node is not None:
                cname = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.CNAME)
                if cname is not None and qtype != dns.rdatatype.CNAME:
                    response.answer.append(_rrset(name, cname))
                    target: dns.name.Name = cname[0].target
                    next_zone = self._zone_of(target)
                    if next_zone is None:
                        return  # out of our zones: the resolver follows it
                    (origin, zone), name = next_zone, target
                    continue
                wanted = node.get_rdataset(dns.rdataclass.IN, qtype)
                if wanted is not None:
                    response.answer.append(_rrset(name, wanted))
                    return
            elif not response.answer and not any(
                n.is_subdomain(name) for n in zone.nodes
            ):  # not even an empty non-terminal
                response.set_rcode(dns.rcode.NXDOMAIN)
            soa = zone.get_rdataset(origin, dns.rdatatype.SOA)
            if soa is not None:
                response.authority.append(_rrset(origin, soa))
            return


def _rrset(name: dns.name.Name, rdataset: dns.rdataset.Rdataset) -> dns.rrset.RRset:
    return dns.rrset.from_rdata_list(name, rdataset.ttl, list(rdataset))


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: WireServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        try:
            out = self.server.answer_wire(data, udp=True)
        except CloseConnection:
            return
        if out is not None and self.transport is not None:
            self.transport.sendto(out, addr)

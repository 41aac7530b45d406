"""Raw DNSSEC queries: the whole response message, signatures and denial records included.

The DNSSEC validator (:mod:`exporter.dnssec`) needs what the DNS client's classified answers
leave out: the RRSIGs of every RRset, the NSEC/NSEC3 records and the SOA of the authority
section. So each question goes out with EDNS (payload 1232, the DNS Flag Day 2020 size), the
DO bit (send DNSSEC records) and the CD bit (a validating resolver returns even data that fails
its own validation, so the exporter can say *why* a zone is bogus instead of seeing SERVFAIL),
and the response comes back as a :class:`dns.message.Message`.

The datagrams go over the DNS client's connected UDP sockets
(:class:`exporter.net.dnstransport.UdpSocket`: one per nameserver, replies matched by ID and
question, renewed every 512 questions), kept open between questions, because a socket per
question (dnspython's ``udp_with_fallback``) cost about 1.2 ms of a busy event loop per question
at a thousand questions in flight (bench/dnssec_bench.py); dnspython reads the replies
(``from_wire``) and asks again over TCP when one is truncated. The resolver policy is the DNS
client's: configured nameservers in order (one that times out asked again in turn), a timeout per
attempt and a lifetime per question, and
"could not tell" (:class:`~exporter.net.dnsmodel.DnsTempError`) for a timeout, SERVFAIL,
REFUSED or a malformed reply. A referral (a server that is neither recursive nor authoritative
for the name) is "could not tell" as well: its answer says nothing about the name.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable, Sequence

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.resolver

from exporter.net.addr import parse_nameserver
from exporter.net.dnsmodel import DnsTempError
from exporter.net.dnstransport import Request, UdpSocket, parse_reply

EDNS_PAYLOAD = 1232
"""The EDNS payload advertised: what fits in one unfragmented UDP datagram on any path."""
RD, CD = 0x0100, 0x0010
"""Header flags: recursion desired, checking disabled."""
DO = 0x8000
"""The DO bit of the OPT record's flags (its TTL field): send DNSSEC records."""

RawQuery = Callable[[dns.name.Name, dns.rdatatype.RdataType], Awaitable[dns.message.Message]]
"""What the validator asks through: ``await query(name, rdtype)`` -> the response message;
raises :class:`DnsTempError` when the DNS could not tell."""


def system_nameservers() -> list[tuple[str, int]]:
    """The system resolver's nameservers (resolv.conf), port 53."""
    try:
        resolver = dns.resolver.Resolver(configure=True)
    except dns.exception.DNSException:
        return []
    return [(str(ns), 53) for ns in resolver.nameservers]


class RawDns:
    """Asks the configured nameservers (``host`` or ``host:port``; empty: the system's) for
    DNSSEC-complete answers over UDP sockets kept per event loop; :meth:`aclose` closes them."""

    def __init__(
        self,
        nameservers: Sequence[str] = (),
        *,
        attempt_timeout: float = 2.0,
        lifetime: float = 5.0,
    ) -> None:
        self.servers = [parse_nameserver(ns) for ns in nameservers] or system_nameservers()
        self.attempt_timeout = attempt_timeout
        self.lifetime = lifetime
        self.queries = 0
        """Questions asked (attempts on other servers and TCP retries not counted)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._current: dict[tuple[str, int], UdpSocket] = {}
        self._all: set[UdpSocket] = set()

    async def query(
        self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType
    ) -> dns.message.Message:
        """The response to ``name``/``rdtype`` (NOERROR or NXDOMAIN, not a referral)."""
        qname, qtype = name.to_text(), dns.rdatatype.to_text(rdtype)
        if not self.servers:
            raise DnsTempError(qname, qtype, "no nameservers")
        self.queries += 1
        try:
            wire_name = name.to_wire()
        except dns.exception.DNSException as exc:
            raise DnsTempError(qname, qtype, type(exc).__name__) from None
        assert wire_name is not None
        request = Request(
            qname,
            qtype,
            wire_name + struct.pack("!HH", rdtype, 1),
            wire_name,
            rdtype,
            opt=struct.pack("!BHHIH", 0, 41, EDNS_PAYLOAD, DO, 0),
            flags=RD | CD,
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.lifetime
        # As the DNS client's transport: a nameserver that times out is asked again in turn
        # (a datagram lost in a burst) until the lifetime ends; one that fails is dropped.
        candidates = list(self.servers)
        errors: list[str] = []
        turn = 0
        while candidates and loop.time() < deadline:
            server = candidates[turn % len(candidates)]
            where = f"{server[0]}:{server[1]}"
            try:
                response = await self._exchange(loop, server, request, deadline)
            except (TimeoutError, dns.exception.Timeout):
                turn += 1
                continue
            except (dns.exception.DNSException, OSError, ValueError, EOFError) as exc:
                errors.append(f"{where} {type(exc).__name__}")
                candidates.remove(server)
                continue
            problem = _problem(response)
            if problem is None:
                return response
            errors.append(f"{where} {problem}")
            candidates.remove(server)
        if candidates or not errors:
            errors.append("timeout")
        raise DnsTempError(qname, qtype, "; ".join(errors))

    async def _exchange(
        self,
        loop: asyncio.AbstractEventLoop,
        server: tuple[str, int],
        request: Request,
        deadline: float,
    ) -> dns.message.Message:
        sock = self._socket(loop, server)
        qid, fut = sock.send(request)
        timer = loop.call_later(min(self.attempt_timeout, deadline - loop.time()), _expire, fut)
        try:
            wire = await fut
        finally:
            timer.cancel()
            sock.forget(qid, fut)
        response = parse_reply(wire)
        if response.flags & dns.flags.TC:
            tcp = dns.message.make_query(
                request.name, request.rdtype, want_dnssec=True, use_edns=0, payload=EDNS_PAYLOAD
            )
            tcp.flags |= dns.flags.CD
            response = await dns.asyncquery.tcp(
                tcp, server[0], timeout=max(0.0, deadline - loop.time()), port=server[1]
            )
        return response

    def _socket(self, loop: asyncio.AbstractEventLoop, server: tuple[str, int]) -> UdpSocket:
        if self._loop is not loop:  # sockets belong to the event loop that reads them
            self._close_sockets()
            self._loop = loop
        sock = self._current.get(server)
        if sock is None or sock.retired or sock.closed:
            sock = self._current[server] = UdpSocket(loop, server, self._all)
        return sock

    def _close_sockets(self) -> None:
        for sock in list(self._all):
            sock.close()
        self._current.clear()

    async def aclose(self) -> None:
        self._close_sockets()


def _expire(fut: asyncio.Future[bytes]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())


def _problem(response: dns.message.Message) -> str | None:
    """Why a response says nothing about the name (None: it is an answer)."""
    rcode = response.rcode()
    if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        return dns.rcode.to_text(rcode)
    if response.flags & dns.flags.TC:
        return "truncated answer"
    if (
        rcode == dns.rcode.NOERROR
        and not response.answer
        and not response.flags & dns.flags.AA
        and not any(r.rdtype == dns.rdatatype.SOA for r in response.authority)
        and any(r.rdtype == dns.rdatatype.NS for r in response.authority)
    ):
        return "referral (the nameserver is not a recursive resolver)"
    return None

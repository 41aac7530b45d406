"""Raw DNSSEC queries: the whole response message, signatures and denial records included.

The DNSSEC validator (:mod:`exporter.dnssec`) needs what the DNS client's classified answers
leave out: the RRSIGs of every RRset, the NSEC/NSEC3 records and the SOA of the authority
section. So each question goes out with EDNS (payload 1232, the DNS Flag Day 2020 size), the
DO bit (send DNSSEC records) and the CD bit (a validating resolver returns even data that fails
its own validation, so the exporter can say *why* a zone is bogus instead of seeing SERVFAIL),
and the response comes back as a :class:`dns.message.Message`.

dnspython's ``udp_with_fallback`` does the sending (TCP when the UDP answer is truncated); what is
here is the resolver policy around it, the same as the DNS client's: configured nameservers in
order, a timeout per attempt and a lifetime per question, and "could not tell"
(:class:`~exporter.net.dnsmodel.DnsTempError`) for a timeout, SERVFAIL, REFUSED or a malformed
reply. A referral (a server that is neither recursive nor authoritative for the name) is "could
not tell" as well: its answer says nothing about the name.
"""

from __future__ import annotations

import time
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

EDNS_PAYLOAD = 1232
"""The EDNS payload advertised: what fits in one unfragmented UDP datagram on any path."""

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
    DNSSEC-complete answers. Holds no sockets between questions: :meth:`aclose` is a no-op kept
    for the resource protocol."""

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
        """Questions sent (attempts on other servers and TCP retries not counted)."""

    async def query(
        self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType
    ) -> dns.message.Message:
        """The response to ``name``/``rdtype`` (NOERROR or NXDOMAIN, not a referral)."""
        qname, qtype = name.to_text(), dns.rdatatype.to_text(rdtype)
        if not self.servers:
            raise DnsTempError(qname, qtype, "no nameservers")
        self.queries += 1
        deadline = time.monotonic() + self.lifetime
        errors: list[str] = []
        for host, port in self.servers:
            left = deadline - time.monotonic()
            if left <= 0:
                errors.append("timeout")
                break
            request = dns.message.make_query(
                name, rdtype, want_dnssec=True, use_edns=0, payload=EDNS_PAYLOAD
            )
            request.flags |= dns.flags.CD
            try:
                response, _ = await dns.asyncquery.udp_with_fallback(
                    request,
                    host,
                    timeout=min(self.attempt_timeout, left),
                    port=port,
                    ignore_unexpected=True,
                )
            except dns.exception.Timeout:
                errors.append(f"{host}:{port} timeout")
                continue
            except (dns.exception.DNSException, OSError, ValueError, EOFError) as exc:
                errors.append(f"{host}:{port} {type(exc).__name__}")
                continue
            problem = _problem(response)
            if problem is None:
                return response
            errors.append(f"{host}:{port} {problem}")
        raise DnsTempError(qname, qtype, "; ".join(errors) or "no answer")

    async def aclose(self) -> None:
        return None


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

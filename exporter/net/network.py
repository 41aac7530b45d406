"""The network layer of one config: what every probe run of that config shares.

The runtime (:class:`exporter.runner.Runtime`) makes one :class:`Network` per loaded config and
hands it to every run as ``ctx.net``; a reload makes a new one and closes the old one when its
last run ends. It owns:

* the dnspython resolver for the configured nameservers (``global.nameservers``; empty: the
  system's resolv.conf) — the only resolver any probe uses;
* the :class:`~exporter.net.dnsshared.SharedDns` cache and UDP transport behind every run's
  :class:`~exporter.net.dnsclient.DnsClient` (:meth:`Network.dns_client`);
* bulk lookups (:meth:`Network.bulk_lookups`): the blacklist probe's thousands of small
  questions over a few shared UDP sockets, without the per-run cache.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import dns.asyncresolver

from exporter.net.dnsbulk import BulkLookups
from exporter.net.dnsclient import DnsClient, make_resolver
from exporter.net.dnsmodel import DnsAnswer
from exporter.net.dnsshared import SharedDns, do53_servers

Ask = Callable[[str, str], "asyncio.Future[DnsAnswer]"]
"""Ask (name, rdtype); the future holds a DnsAnswer or a DnsTempError."""

DNS_MAX_IN_FLIGHT = 64
"""Queries in flight per run when the shared transport is not used (dnspython's resolver)."""


class Network:
    """One config's resolver, shared DNS cache and bulk lookups; :meth:`aclose` when retired."""

    def __init__(
        self, resolver: dns.asyncresolver.Resolver, *, dns_max_in_flight: int = DNS_MAX_IN_FLIGHT
    ) -> None:
        self.resolver = resolver
        self.dns_max_in_flight = dns_max_in_flight
        self.shared = SharedDns(resolver)
        self._bulk: dict[int, tuple[asyncio.AbstractEventLoop, BulkLookups]] = {}

    @classmethod
    def for_nameservers(cls, nameservers: Sequence[str], *, timeout: float) -> Network:
        """The network of a config: its nameservers, a lookup lifetime of at most 5 s (less
        when the probes' default timeout is shorter)."""
        lifetime = min(5.0, timeout)
        return cls(
            make_resolver(nameservers, attempt_timeout=min(2.0, lifetime), lifetime=lifetime)
        )

    def dns_client(self) -> DnsClient:
        """A fresh per-run client (its cache lives as long as the run)."""
        return DnsClient(self.resolver, max_in_flight=self.dns_max_in_flight, shared=self.shared)

    def bulk_lookups(self, max_in_flight: int) -> Ask:
        """Ask many small questions (A and TXT) over shared UDP sockets, at most
        ``max_in_flight`` on the wire; no answer cache. Cancelling a question's future withdraws
        it. One engine per event loop and bound, kept until :meth:`aclose`. When a nameserver is
        not plain DNS, questions go through a per-call :class:`DnsClient` instead."""
        servers = do53_servers(self.resolver)
        if servers is None:
            client = self.dns_client()

            def ask(name: str, rdtype: str) -> asyncio.Future[DnsAnswer]:
                return asyncio.ensure_future(client.query(name, rdtype))

            return ask
        loop = asyncio.get_running_loop()
        kept = self._bulk.get(max_in_flight)
        if kept is None or kept[0] is not loop:
            if kept is not None:
                kept[1].close()
            engine = BulkLookups(
                servers,
                attempt_timeout=self.resolver.timeout,
                lifetime=self.resolver.lifetime,
                max_in_flight=max_in_flight,
            )
            kept = self._bulk[max_in_flight] = (loop, engine)
        return kept[1].query

    async def aclose(self) -> None:
        """Close every socket this network opened (questions still open fail)."""
        bulk, self._bulk = self._bulk, {}
        for _, engine in bulk.values():
            engine.close()
        self.shared.close()

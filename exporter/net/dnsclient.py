"""The per-run DNS client every probe uses: cached, bounded, classified.

A thin layer over dnspython's async resolver that gives probes what they need and nothing else:

* answers classified (:mod:`exporter.net.dnsmodel`): records, NXDOMAIN or NODATA versus
  :class:`~exporter.net.dnsmodel.DnsTempError` ("could not tell");
* a cache for the lifetime of one client (one probe run), holding in-flight lookups too, so a
  run never asks the same question twice even when sub-checks run concurrently;
* a bound on the queries in flight;
* the configured nameservers (``host`` or ``host:port``) applied to every lookup;
* :meth:`DnsClient.addresses` / :meth:`DnsClient.resolve_host`: the one way a probe turns a host
  name into addresses to connect to (A first, then AAAA; an IP literal is its own answer);
* optionally a :class:`~exporter.net.dnsshared.SharedDns` (the runtime gives every run one,
  shared by all runs of a config): plain-DNS lookups then go out over a few shared UDP sockets
  with one bound on queries in flight over all runs, and definite answers are shared between
  runs for a few seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.name
import dns.nameserver
import dns.resolver

from exporter.net.addr import is_ip_address, normalize_name, parse_nameserver
from exporter.net.dnsmodel import DnsAnswer, DnsTempError, HostAddresses
from exporter.net.dnsshared import SharedDns


def make_resolver(
    nameservers: Sequence[str] = (), *, attempt_timeout: float = 2.0, lifetime: float = 5.0
) -> dns.asyncresolver.Resolver:
    """A dnspython resolver for the given nameservers (empty: the system's resolv.conf)."""
    if nameservers:
        resolver = dns.asyncresolver.Resolver(configure=False)
        servers: list[str | dns.nameserver.Nameserver] = []
        for spec in nameservers:
            host, port = parse_nameserver(spec)
            servers.append(dns.nameserver.Do53Nameserver(host, port))
        resolver.nameservers = servers
    else:
        resolver = dns.asyncresolver.Resolver(configure=True)
    resolver.timeout = attempt_timeout
    resolver.lifetime = lifetime
    resolver.use_edns(0, 0, 1232)
    return resolver


@dataclass
class DnsStats:
    queries: int = 0
    cache_hits: int = 0


@dataclass
class DnsClient:
    """One probe cycle's view of the DNS: cached, bounded, classified.

    Create one per probe run (the cache lives as long as the client); the dnspython resolver
    underneath may be shared.
    """

    resolver: dns.asyncresolver.Resolver
    max_in_flight: int = 64
    stats: DnsStats = field(default_factory=DnsStats)
    shared: SharedDns | None = None
    """Transport and short-lived answers shared with the other runs (None: this client alone)."""
    _cache: dict[tuple[str, str], asyncio.Future[DnsAnswer]] = field(default_factory=dict)
    _sem: asyncio.Semaphore | None = None

    async def query(self, name: str, rdtype: str) -> DnsAnswer:
        """Look up ``name``/``rdtype``; raise :class:`DnsTempError` when the DNS cannot tell."""
        key = (normalize_name(name), rdtype.upper())
        cached = self._cache.get(key)
        if cached is not None:
            self.stats.cache_hits += 1
            if cached.done():  # its answer or its DnsTempError, as awaiting it gives them
                return cached.result()
            return await asyncio.shield(cached)
        fut: asyncio.Future[DnsAnswer] = asyncio.get_running_loop().create_future()
        self._cache[key] = fut
        shared = self.shared
        try:
            if shared is not None and shared.enabled:
                # Answered by another run moments ago: no wait, no task.
                answer = shared.recent(key)
                if answer is not None:
                    self.stats.cache_hits += 1
                else:
                    # The shared transport bounds the queries in flight over all runs.
                    answer, asked = await shared.lookup(key[0], key[1])
                    if asked:
                        self.stats.queries += 1
                    else:
                        self.stats.cache_hits += 1
            else:
                answer = await self._resolve(key[0], key[1])
        except BaseException as exc:
            if isinstance(exc, DnsTempError):
                fut.set_exception(exc)
                fut.exception()  # mark retrieved: other waiters may not exist
            else:
                # Cancellation or a bug: do not poison the cache for the rest of the cycle.
                del self._cache[key]
                fut.cancel()
            raise
        fut.set_result(answer)
        return answer

    async def _resolve(self, name: str, rdtype: str) -> DnsAnswer:
        """Through dnspython's resolver (a nameserver that is not plain DNS)."""
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.max_in_flight)
        async with self._sem:
            self.stats.queries += 1
            try:
                ans = await self.resolver.resolve(
                    name, rdtype, search=False, raise_on_no_answer=False
                )
            except dns.resolver.NXDOMAIN:
                return DnsAnswer(name, rdtype, "nxdomain")
            except dns.resolver.NoAnswer:
                return DnsAnswer(name, rdtype, "nodata")
            except dns.resolver.LifetimeTimeout:
                raise DnsTempError(name, rdtype, "timeout") from None
            except dns.resolver.NoNameservers as exc:
                raise DnsTempError(name, rdtype, no_nameservers_reason(exc)) from None
            except dns.resolver.YXDOMAIN:
                raise DnsTempError(name, rdtype, "YXDOMAIN") from None
            except dns.name.NameTooLong:
                raise DnsTempError(name, rdtype, "name too long") from None
            except dns.exception.DNSException as exc:
                raise DnsTempError(name, rdtype, type(exc).__name__) from None
            except (OSError, ValueError) as exc:
                raise DnsTempError(name, rdtype, f"{type(exc).__name__}: {exc}") from None
        if ans.response.flags & dns.flags.TC:
            # Truncated even over TCP (the answer does not fit in 64 KiB): an empty answer
            # section here is no evidence that the records do not exist.
            raise DnsTempError(name, rdtype, "truncated answer")
        rrset = ans.rrset
        if rrset is None or len(rrset) == 0:
            return DnsAnswer(name, rdtype, "nodata")
        canonical = normalize_name(ans.canonical_name.to_text())
        return DnsAnswer(
            name,
            rdtype,
            "ok",
            tuple(rrset),
            canonical_name="" if canonical == name else canonical,
        )

    def answers(self) -> list[DnsAnswer] | None:
        """The answer to every question this client was asked, in the order first asked (each
        answer names its question: ``name``, ``rdtype``); None when one of them could not tell
        (a :class:`DnsTempError`), was cancelled or is still in flight: then the answers do not
        say all that the run saw."""
        out: list[DnsAnswer] = []
        for fut in self._cache.values():
            if not fut.done() or fut.cancelled() or fut.exception() is not None:
                return None
            out.append(fut.result())
        return out

    async def resolve_host(self, host: str) -> HostAddresses:
        """The A and AAAA records of ``host`` (both asked at once); an IP literal (also in
        brackets) is its own answer. Never raises :class:`DnsTempError`: a lookup that could
        not tell is in :attr:`HostAddresses.failures`."""
        literal = host.strip().strip("[]")
        if is_ip_address(literal):
            v6 = ":" in literal
            return HostAddresses(host, () if v6 else (literal,), (literal,) if v6 else ())
        found: list[tuple[str, ...]] = []
        failures: list[DnsTempError] = []
        canonical = ""
        for answer in await self.query_both(host, "A", "AAAA"):
            if isinstance(answer, DnsTempError):
                failures.append(answer)
                found.append(())
            else:
                found.append(tuple(answer.addresses()))
                canonical = canonical or answer.canonical_name
        return HostAddresses(host, found[0], found[1], canonical, tuple(failures))

    async def query_both(
        self, name: str, first: str, second: str
    ) -> tuple[DnsAnswer | DnsTempError, DnsAnswer | DnsTempError]:
        """Two lookups of ``name`` at once (A and AAAA): each answer, or the
        :class:`DnsTempError` it raised; any other exception is raised (the other lookup is
        then cancelled, as it is when the caller is).

        Why not ``asyncio.gather``: it makes a task for each and a gathering future, 8 us per
        pair on uvloop here; this asks the first in the caller's own task and makes one task
        for the second, and none when the second is already known (``bench/README.md``)."""
        known = self._known(name, second)
        if known is not None:
            return await self.attempt(name, first), known
        other = asyncio.ensure_future(self.attempt(name, second))
        try:
            answer = await self.attempt(name, first)
        except BaseException:
            other.cancel()
            raise
        return answer, await other

    async def attempt(self, name: str, rdtype: str) -> DnsAnswer | DnsTempError:
        """:meth:`query`, with the :class:`DnsTempError` returned rather than raised (for
        lookups made side by side, each of which may fail on its own)."""
        try:
            return await self.query(name, rdtype)
        except DnsTempError as exc:
            return exc

    def _known(self, name: str, rdtype: str) -> DnsAnswer | DnsTempError | None:
        """The answer this run (or, lately, another run) already has, without waiting."""
        key = (normalize_name(name), rdtype.upper())
        cached = self._cache.get(key)
        if cached is not None:
            if not cached.done() or cached.cancelled():
                return None
            self.stats.cache_hits += 1
            exc = cached.exception()
            return exc if isinstance(exc, DnsTempError) else cached.result()
        shared = self.shared
        if shared is not None and shared.enabled:
            recent = shared.recent(key)
            if recent is not None:
                self._cache[key] = fut = asyncio.get_running_loop().create_future()
                fut.set_result(recent)
                self.stats.cache_hits += 1
                return recent
        return None

    async def addresses(self, host: str) -> list[str]:
        """Addresses to connect to, IPv4 first. Raises :class:`DnsTempError` when none were
        found and a lookup could not tell, :class:`~exporter.net.dnsmodel.NoAddress` when the
        DNS says the host has none."""
        return (await self.resolve_host(host)).usable()


def no_nameservers_reason(exc: dns.resolver.NoNameservers) -> str:
    errors = exc.kwargs.get("errors") or []
    reasons: list[str] = []
    for err in errors:
        # dnspython gives (server, tcp, port, error_or_rcode_text, response) tuples
        detail = err[3] if len(err) > 3 else err
        text = str(detail)
        if text and text not in reasons:
            reasons.append(text)
    return "; ".join(reasons) if reasons else "no nameserver answered"

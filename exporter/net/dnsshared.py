"""What every probe run of one config shares: UDP sockets and a short-lived answer cache.

The runs of a config (one per domain and probe kind) ask many of the same questions: the SPF
includes of a provider that 1,000 monitored domains share. :class:`SharedDns` sends each over
the shared :class:`~exporter.net.dnstransport.UdpTransport` once per burst of runs and bounds
the queries in flight over all runs together (:data:`SHARED_MAX_IN_FLIGHT`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict

import dns.asyncresolver
import dns.nameserver

from exporter.net.dnsmodel import DnsAnswer
from exporter.net.dnstransport import UdpTransport
from exporter.net.limiter import Limiter

SHARED_MAX_AGE = 15.0
"""Seconds a definite answer is shared between runs: long enough for a burst of runs that start
together (the first cycle, a reload), far below any probe interval, so each regular run still
sees the DNS of its own minute."""
SHARED_MAX_ENTRIES = 200_000
SHARED_MAX_IN_FLIGHT = 256
"""Queries on the wire at once over all runs; the rest wait their turn (waiting does not count
against a query's own timeout, only against its run's)."""


class SharedDns:
    """What every probe run of one config shares: UDP sockets and a short-lived answer cache.

    Used only when every configured nameserver is plain DNS (``host[:port]``), otherwise
    :attr:`enabled` is False and clients ask dnspython's resolver as before. The transport
    follows the resolver's semantics (nameservers in order, SERVFAIL/REFUSED move on to the next,
    CNAME chains followed, TCP on truncation, ``timeout`` per attempt and ``lifetime`` per
    question). Temporary failures are never shared beyond the lookups already waiting for them.
    Runs hold it with :meth:`acquire`/:meth:`release`; the sockets close when no run holds it.
    """

    def __init__(
        self,
        resolver: dns.asyncresolver.Resolver,
        *,
        max_in_flight: int = SHARED_MAX_IN_FLIGHT,
        max_age: float = SHARED_MAX_AGE,
        max_entries: int = SHARED_MAX_ENTRIES,
    ) -> None:
        self.resolver = resolver
        self.servers = do53_servers(resolver)
        self.max_in_flight = max_in_flight
        self.max_age = max_age
        self.max_entries = max_entries
        self._answers: OrderedDict[tuple[str, str], tuple[float, DnsAnswer]] = OrderedDict()
        self._inflight: dict[tuple[str, str], asyncio.Future[DnsAnswer]] = {}
        self._sem: Limiter | None = None
        self._udp: UdpTransport | None = None
        self._udp_loop: asyncio.AbstractEventLoop | None = None
        self._users = 0

    @property
    def enabled(self) -> bool:
        return self.servers is not None

    def acquire(self) -> None:
        self._users += 1

    def release(self) -> None:
        self._users -= 1
        if self._users <= 0:
            self._users = 0
            self.close()

    def forget(self) -> None:
        """Drop every shared answer, as if :data:`SHARED_MAX_AGE` had passed since each: the
        next runs ask again (the bench's steady cycle, as the daemon's next cycle would)."""
        self._answers.clear()

    def recent(self, key: tuple[str, str]) -> DnsAnswer | None:
        """The shared answer to (name, type) if it is fresh, else None."""
        hit = self._answers.get(key)
        if hit is not None and hit[0] > asyncio.get_running_loop().time():
            return hit[1]
        return None

    async def lookup(self, name: str, rdtype: str) -> tuple[DnsAnswer, bool]:
        """The answer and whether a query was sent for it (False: shared with another run).

        The first run to ask sends the query itself (no task of its own: one per question was a
        tenth of the transport's CPU); the others wait for its answer. When that run is
        cancelled (its own timeout), the waiting runs ask again rather than fail."""
        key = (name, rdtype)
        loop = asyncio.get_running_loop()
        while True:
            recent = self.recent(key)
            if recent is not None:
                return recent, False
            pending = self._inflight.get(key)
            if pending is None:
                break
            try:
                return await asyncio.shield(pending), False
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if pending.cancelled() and task is not None and not task.cancelling():
                    continue  # the asking run was cancelled, not this one: ask again
                raise
        udp, sem = self._transport(loop)  # first: a new transport forgets what was in flight
        fut: asyncio.Future[DnsAnswer] = loop.create_future()
        self._inflight[key] = fut
        try:
            # The limiter's free slot taken without a coroutine of its own: most questions
            # find one (its acquire and the query itself were two more coroutine levels).
            if not sem.try_acquire():
                await sem.acquire()
            try:
                answer = await udp.query(name, rdtype)
            finally:
                sem.release()
        except BaseException as exc:
            if self._inflight.get(key) is fut:
                del self._inflight[key]
            if fut.done():  # cancelled by _close
                pass
            elif isinstance(exc, Exception):
                fut.set_exception(exc)
                fut.exception()  # marks the error as retrieved: nobody may be waiting
            else:
                fut.cancel()
            raise
        if self._inflight.get(key) is fut:
            del self._inflight[key]
        self._keep(key, answer, loop.time())
        if not fut.done():
            fut.set_result(answer)
        return answer, True

    def _keep(self, key: tuple[str, str], answer: DnsAnswer, now: float) -> None:
        answers = self._answers
        answers.pop(key, None)
        answers[key] = (now + self.max_age, answer)
        # Entries are kept in expiry order: drop the expired ones (and the oldest when full).
        while answers:
            first = next(iter(answers.values()))
            if first[0] > now and len(answers) <= self.max_entries:
                break
            answers.popitem(last=False)

    def _transport(self, loop: asyncio.AbstractEventLoop) -> tuple[UdpTransport, Limiter]:
        if self._udp is None or self._sem is None or self._udp_loop is not loop:
            self.close()
            assert self.servers is not None
            self._udp = UdpTransport(
                loop,
                self.servers,
                attempt_timeout=self.resolver.timeout,
                lifetime=self.resolver.lifetime,
                payload=self.resolver.payload if self.resolver.edns >= 0 else 512,
            )
            self._udp_loop = loop
            self._sem = Limiter(self.max_in_flight)
        return self._udp, self._sem

    def close(self) -> None:
        """Close the sockets; lookups in flight are cancelled (also called when no run holds
        the transport any more)."""
        udp, self._udp, self._udp_loop = self._udp, None, None
        inflight, self._inflight = self._inflight, {}
        # Nobody waits for these any more (or their event loop is gone: then so are they).
        with contextlib.suppress(RuntimeError):
            for fut in inflight.values():
                fut.cancel()
        if udp is not None:
            udp.close()


def do53_servers(resolver: dns.asyncresolver.Resolver) -> list[tuple[str, int]] | None:
    """(host, port) of each nameserver, or None when one of them is not plain DNS."""
    out: list[tuple[str, int]] = []
    for ns in resolver.nameservers:
        if isinstance(ns, str):
            out.append((ns, resolver.port))
        elif isinstance(ns, dns.nameserver.Do53Nameserver):
            out.append((ns.address, ns.port))
        else:
            return None
    return out or None

"""The one DNS client every probe uses.

A thin layer over dnspython's async resolver that gives probes what they need and nothing else:

* answers classified as the RFC 7208 / RFC 7489 world sees them: records (``ok``), ``nxdomain``
  or ``nodata`` — real answers — versus a *temporary failure* (timeout, SERVFAIL, REFUSED,
  malformed reply), raised as :class:`DnsTempError` so that no probe can mistake "could not tell"
  for "record missing";
* a cache for the lifetime of one client (one probe cycle), holding in-flight lookups too, so a
  cycle never asks the same question twice even when sub-checks run concurrently;
* a semaphore bounding the number of queries in flight;
* the configured nameservers (``host`` or ``host:port``) applied to every lookup;
* optionally a :class:`SharedDns` (the runner gives every probe run one, shared by all runs of a
  config): plain-DNS lookups then go out over a few shared UDP sockets (:class:`_UdpTransport`)
  with one bound on queries in flight over all runs, and definite answers are shared between
  runs for :data:`SHARED_MAX_AGE` seconds, so the SPF includes of a provider that 1,000
  monitored domains share are asked once per burst of runs, not 1,000 times.

Why a hand-written UDP transport next to dnspython's resolver: the resolver opens, binds and
closes a socket per query and runs its whole resolution machinery each time, about 1 ms of CPU
per lookup here, which made a cycle of 1,000 domains CPU-bound (bench/README.md). The transport
keeps a connected socket per nameserver (renewed every :data:`QUERIES_PER_SOCKET` questions, for
source-port randomness), writes the query itself (header, the name as dnspython encodes it, an
EDNS OPT record), matches replies by ID, QR flag and question, reads the common simple reply with
:mod:`exporter.dnswire` (the same dnspython rdata objects, for a fraction of ``from_wire``'s CPU)
and leaves the rest to dnspython: ``from_wire``, ``resolve_chaining`` (CNAME chains) and TCP on
truncation, so answers read exactly as the resolver's do (tests/test_dnsclient_shared.py and
tests/test_dnswire.py compare them).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import os
import socket
import struct
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import dns.asyncquery
import dns.asyncresolver
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.nameserver
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.resolver

from exporter.dnswire import FastReply, name_to_wire, rdatatype, read_reply

AnswerStatus = Literal["ok", "nxdomain", "nodata"]


class DnsTempError(Exception):
    """The DNS could not answer (timeout, SERVFAIL, REFUSED, malformed reply): nothing is known."""

    def __init__(self, name: str, rdtype: str, reason: str) -> None:
        super().__init__(f"{name} {rdtype}: {reason}")
        self.name = name
        self.rdtype = rdtype
        self.reason = reason


@dataclass(frozen=True)
class DnsAnswer:
    """A definite answer: records, NXDOMAIN or NODATA."""

    name: str
    rdtype: str
    status: AnswerStatus
    rdatas: tuple[dns.rdata.Rdata, ...] = ()
    canonical_name: str = ""
    """The name the records were found at after following CNAMEs ('' when none were followed)."""

    @property
    def exists(self) -> bool:
        return self.status == "ok" and bool(self.rdatas)

    def texts(self) -> list[str]:
        """TXT records with their character-strings joined (RFC 7208 §3.3), decoded leniently."""
        out: list[str] = []
        for rd in self.rdatas:
            strings = getattr(rd, "strings", None)
            if strings is None:
                continue
            out.append(b"".join(strings).decode("utf-8", errors="replace"))
        return out

    def addresses(self) -> list[str]:
        """A/AAAA records as address strings."""
        return [rd.to_text() for rd in self.rdatas if rd.rdtype in (1, 28)]


def parse_nameserver(spec: str) -> tuple[str, int]:
    """Parse ``host``, ``host:port``, ``v6addr`` or ``[v6addr]:port`` into (address, port).

    Raises ValueError with a human message when the text is not an IP address with optional port.
    """
    text = spec.strip()
    port = 53
    host = text
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"unclosed '[' in nameserver {spec!r}")
        host = text[1:end]
        rest = text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"unexpected text after ']' in nameserver {spec!r}")
            port = _parse_port(rest[1:], spec)
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = _parse_port(port_text, spec)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"nameserver {spec!r} is not an IP address (use 'host' or 'host:port' with an IP)"
        ) from None
    return host, port


def _parse_port(text: str, spec: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"bad port in nameserver {spec!r}")
    return int(text)


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
            return await asyncio.shield(cached)
        fut: asyncio.Future[DnsAnswer] = asyncio.get_running_loop().create_future()
        self._cache[key] = fut
        shared = self.shared
        if shared is not None and shared.enabled:
            # Answered by another run moments ago: no wait, no task.
            recent = shared.recent(key)
            if recent is not None:
                self.stats.cache_hits += 1
                fut.set_result(recent)
                return recent
        try:
            answer = await self._lookup(key[0], key[1])
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

    async def _lookup(self, name: str, rdtype: str) -> DnsAnswer:
        if self.shared is not None and self.shared.enabled:
            # The shared transport bounds the queries in flight over all runs.
            answer, asked = await self.shared.lookup(name, rdtype)
            if asked:
                self.stats.queries += 1
            else:
                self.stats.cache_hits += 1
            return answer
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
                raise DnsTempError(name, rdtype, _no_nameservers_reason(exc)) from None
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


class Limiter:
    """At most ``limit`` holders at once; the others wait in arrival order (``async with``).

    Why not :class:`asyncio.Semaphore`: with hundreds of waiters it costs time quadratic in
    their number (CPython 3.11: each acquire checks every waiter for cancellation, each release
    rescans the waiters already woken), and the DNS cycle of 1,000 domains keeps about a
    thousand lookups waiting for the 256 query slots: about 580,000 ``Future.done`` calls per
    7,000 queries (bench/README.md). Here a release hands its slot to the first waiter still
    waiting: O(1) per acquire and release.
    """

    def __init__(self, limit: int) -> None:
        self.free = limit
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def __aenter__(self) -> None:
        await self.acquire()

    async def acquire(self) -> None:
        if self.free > 0 and not self._waiters:
            self.free -= 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.cancelled():  # still waiting: give up the place in the queue
                with contextlib.suppress(ValueError):
                    self._waiters.remove(fut)
            else:  # the slot was handed over just as the waiter was cancelled: pass it on
                self.release()
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()

    def release(self) -> None:
        waiters = self._waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # the slot goes straight to this waiter
                return
        self.free += 1


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
        self.servers = _do53_servers(resolver)
        self.max_in_flight = max_in_flight
        self.max_age = max_age
        self.max_entries = max_entries
        self._answers: OrderedDict[tuple[str, str], tuple[float, DnsAnswer]] = OrderedDict()
        self._inflight: dict[tuple[str, str], asyncio.Future[DnsAnswer]] = {}
        self._sem: Limiter | None = None
        self._udp: _UdpTransport | None = None
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
            self._close()

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
            answer = await self._ask(udp, sem, name, rdtype)
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

    def _transport(self, loop: asyncio.AbstractEventLoop) -> tuple[_UdpTransport, Limiter]:
        if self._udp is None or self._sem is None or self._udp_loop is not loop:
            self._close()
            assert self.servers is not None
            self._udp = _UdpTransport(
                loop,
                self.servers,
                attempt_timeout=self.resolver.timeout,
                lifetime=self.resolver.lifetime,
                payload=self.resolver.payload if self.resolver.edns >= 0 else 512,
            )
            self._udp_loop = loop
            self._sem = Limiter(self.max_in_flight)
        return self._udp, self._sem

    async def _ask(self, udp: _UdpTransport, sem: Limiter, name: str, rdtype: str) -> DnsAnswer:
        async with sem:
            return await udp.query(name, rdtype)

    def _close(self) -> None:
        udp, self._udp, self._udp_loop = self._udp, None, None
        inflight, self._inflight = self._inflight, {}
        # Nobody waits for these any more (or their event loop is gone: then so are they).
        with contextlib.suppress(RuntimeError):
            for fut in inflight.values():
                fut.cancel()
        if udp is not None:
            udp.close()


QUERIES_PER_SOCKET = 512
RECEIVE_BUFFER = 1 << 20
_ID = struct.Struct("!H")
_HEADER = struct.Struct("!HHHHHH")
"""ID, flags (RD), one question, no answer or authority, one additional (OPT) or none."""
_QUESTION_TAIL = struct.Struct("!HH")
_OPT = struct.Struct("!BHHIH")
"""Root name, type OPT, payload size, extended rcode/version/flags 0, no options."""


@dataclass
class _Request:
    name: str
    rdtype: str
    question: bytes
    wire_name: bytes
    qtype: int
    opt: bytes = b""


class _UdpTransport:
    """Questions over connected UDP sockets, one current socket per nameserver.

    Follows dnspython's resolver: nameservers in order; one that answers SERVFAIL, REFUSED or
    garbage, or is unreachable, is dropped for that question; an attempt that times out moves on
    to the next; the question gives up ``lifetime`` seconds after it was first sent.

    Also the transport of the dnsbl probe (:mod:`exporter.probes.dnsbl_lookup`), which asks
    without EDNS (``payload=None``), names the nameserver in each error (``server_in_errors``),
    takes a reply whose header says NXDOMAIN as one without parsing it (``bare_nxdomain``: most
    blacklist answers are, and parsing them was most of the CPU of a cycle) and passes the name
    already in wire form.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        servers: Sequence[tuple[str, int]],
        *,
        attempt_timeout: float,
        lifetime: float,
        payload: int | None,
        server_in_errors: bool = False,
        bare_nxdomain: bool = False,
    ) -> None:
        self.loop = loop
        self.servers = list(servers)
        self.attempt_timeout = attempt_timeout
        self.lifetime = lifetime
        self.payload = payload
        """EDNS payload size advertised (None: no EDNS)."""
        self.server_in_errors = server_in_errors
        self.bare_nxdomain = bare_nxdomain
        self.sent = 0
        """Datagrams sent (retries included)."""
        self.fast_replies = 0
        """Replies read by :func:`exporter.dnswire.read_reply` (the rest: by dnspython)."""
        self._current: dict[tuple[str, int], _UdpSocket] = {}
        self._all: set[_UdpSocket] = set()

    async def query(self, name: str, rdtype: str, wire_name: bytes | None = None) -> DnsAnswer:
        """``wire_name``: ``name`` already in wire form (None: encoded here)."""
        try:
            if wire_name is None:
                wire_name = name_to_wire(name)
            qtype = rdatatype(rdtype)
        except (dns.exception.DNSException, ValueError) as exc:
            raise DnsTempError(name, rdtype, type(exc).__name__) from None
        # The question (case as asked) and an EDNS OPT record advertising our payload size:
        # what dnspython's make_query writes, without building a Message for each query.
        request = _Request(
            name, rdtype, wire_name + _QUESTION_TAIL.pack(qtype, 1), wire_name, qtype
        )
        if self.payload is not None:
            request.opt = _OPT.pack(0, 41, self.payload, 0, 0)
        deadline = self.loop.time() + self.lifetime
        candidates = list(self.servers)
        errors: list[str] = []
        turn = 0
        while candidates:
            remaining = deadline - self.loop.time()
            if remaining <= 0:
                break
            server = candidates[turn % len(candidates)]
            try:
                response = await self._exchange(server, request, deadline)
            except (TimeoutError, dns.exception.Timeout):
                turn += 1
                continue
            except OSError as exc:
                errors.append(self._error(server, exc.strerror or type(exc).__name__))
                candidates.remove(server)
                continue
            except EOFError:  # TCP retry: the server closed the connection without an answer
                errors.append(self._error(server, "connection closed"))
                candidates.remove(server)
                continue
            except (dns.exception.DNSException, ValueError) as exc:
                errors.append(self._error(server, f"malformed reply ({type(exc).__name__})"))
                candidates.remove(server)
                continue
            if response is None:
                return DnsAnswer(name, rdtype, "nxdomain")
            if isinstance(response, FastReply):
                return _fast_answer(name, rdtype, response)
            outcome = _message_answer(name, rdtype, response)
            if isinstance(outcome, str):
                errors.append(self._error(server, outcome))
                candidates.remove(server)
                continue
            return outcome
        if candidates or not errors:
            raise DnsTempError(name, rdtype, "timeout")
        raise DnsTempError(name, rdtype, "; ".join(dict.fromkeys(errors)))

    def _error(self, server: tuple[str, int], reason: str) -> str:
        if not self.server_in_errors:
            return reason
        host, port = server
        return f"{host}:{port}: {reason}" if port != 53 else f"{host}: {reason}"

    async def _exchange(
        self, server: tuple[str, int], request: _Request, deadline: float
    ) -> dns.message.Message | FastReply | None:
        """One attempt: UDP, then TCP when the reply is truncated. TimeoutError when no reply
        came within the attempt timeout; None for a bare NXDOMAIN (only with ``bare_nxdomain``);
        a :class:`FastReply` when :func:`exporter.dnswire.read_reply` could read the reply."""
        sock = self._socket(server)
        qid, fut = sock.send(request)
        self.sent += 1
        wait = min(self.attempt_timeout, deadline - self.loop.time())
        timer = self.loop.call_later(wait, _time_out, fut)
        try:
            wire = await fut
        finally:
            timer.cancel()
            sock.forget(qid, fut)
        # The socket matched the ID and the question; the reply flag is checked here.
        if self.bare_nxdomain:
            flags = _ID.unpack_from(wire, 2)[0]
            if flags & 0x8000 and not flags & 0x0200 and flags & 0x000F == dns.rcode.NXDOMAIN:
                return None
        fast = read_reply(wire, request.wire_name, request.qtype)
        if fast is not None:
            self.fast_replies += 1
            return fast
        response = _parse_reply(wire)
        if response.flags & dns.flags.TC:
            tcp_query = dns.message.make_query(
                request.name,
                request.rdtype,
                use_edns=False if self.payload is None else 0,
                payload=self.payload,
            )
            budget = max(0.0, deadline - self.loop.time())
            response = await dns.asyncquery.tcp(
                tcp_query, server[0], timeout=budget, port=server[1]
            )
        return response

    def _socket(self, server: tuple[str, int]) -> _UdpSocket:
        sock = self._current.get(server)
        if sock is None or sock.retired or sock.closed:
            sock = _UdpSocket(self.loop, server, self._all)
            self._current[server] = sock
        return sock

    def close(self) -> None:
        for sock in list(self._all):
            sock.close()
        self._current.clear()


def _parse_reply(wire: bytes) -> dns.message.Message:
    """A UDP reply as dnspython reads it (raises its errors; ValueError when it is no reply)."""
    response = dns.message.from_wire(wire, ignore_trailing=True)
    if not response.flags & dns.flags.QR:
        raise ValueError("not a reply")
    return response


def _message_answer(name: str, rdtype: str, response: dns.message.Message) -> DnsAnswer | str:
    """The answer in a reply dnspython read, or why this nameserver gave none (str: its rcode
    or the error reading it). Raises :class:`DnsTempError` for a reply truncated even so."""
    if response.flags & dns.flags.TC:
        # Truncated even over TCP: an empty answer is no evidence of absence.
        raise DnsTempError(name, rdtype, "truncated answer")
    rcode = response.rcode()
    if rcode == dns.rcode.NXDOMAIN:
        return DnsAnswer(name, rdtype, "nxdomain")
    if rcode != dns.rcode.NOERROR:
        return dns.rcode.to_text(rcode)
    try:
        if not isinstance(response, dns.message.QueryMessage):
            raise ValueError("not a query reply")
        chain = response.resolve_chaining()
    except (dns.exception.DNSException, ValueError) as exc:
        return type(exc).__name__
    if chain.answer is None or len(chain.answer) == 0:
        return DnsAnswer(name, rdtype, "nodata")
    canonical = normalize_name(chain.canonical_name.to_text())
    return DnsAnswer(
        name,
        rdtype,
        "ok",
        tuple(chain.answer),
        canonical_name="" if canonical == name else canonical,
    )


def _fast_answer(name: str, rdtype: str, reply: FastReply) -> DnsAnswer:
    """The answer in a reply :func:`exporter.dnswire.read_reply` read: as
    :func:`_message_answer` gives it for the same reply."""
    if reply.rcode == dns.rcode.NXDOMAIN:
        return DnsAnswer(name, rdtype, "nxdomain")
    if not reply.rdatas:
        return DnsAnswer(name, rdtype, "nodata")
    canonical = normalize_name(reply.canonical_text)
    return DnsAnswer(
        name, rdtype, "ok", reply.rdatas, canonical_name="" if canonical == name else canonical
    )


_ids: list[int] = []


def _random_id() -> int:
    """A message ID from the OS's CSPRNG, drawn 1,024 at a time (one syscall, not one each)."""
    if not _ids:
        raw = os.urandom(2048)
        _ids.extend(struct.unpack(f"!{len(raw) // 2}H", raw))
    return _ids.pop()


def _time_out(fut: asyncio.Future[bytes]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())


class _UdpSocket:
    """One connected non-blocking UDP socket, its questions in flight by message ID."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, server: tuple[str, int], registry: set[_UdpSocket]
    ) -> None:
        family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self.sock.setblocking(False)
            # Room for the replies to every question in flight while the loop is busy: the
            # default buffer (about 200 KiB) drops replies that then cost a 2 s retry.
            with contextlib.suppress(OSError):
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            self.sock.connect(server)  # UDP: sets the peer (replies from others are dropped)
            loop.add_reader(self.sock.fileno(), self._readable)
        except BaseException:
            self.sock.close()
            raise
        self.loop = loop
        self.registry = registry
        registry.add(self)
        self.pending: dict[int, tuple[bytes, asyncio.Future[bytes]]] = {}
        self.sent = 0
        self.retired = False
        self.closed = False

    def send(self, request: _Request) -> tuple[int, asyncio.Future[bytes]]:
        qid = _random_id()
        while qid in self.pending:
            qid = _random_id()
        wire = _HEADER.pack(qid, 0x0100, 1, 0, 0, 1 if request.opt else 0)
        wire += request.question + request.opt
        fut: asyncio.Future[bytes] = self.loop.create_future()
        self.pending[qid] = (request.question.lower(), fut)
        self.sent += 1
        if self.sent >= QUERIES_PER_SOCKET:
            self.retired = True
        # A full socket buffer is as good as a lost datagram: the attempt times out.
        with contextlib.suppress(BlockingIOError):
            self.sock.send(wire)
        return qid, fut

    def forget(self, qid: int, fut: asyncio.Future[bytes]) -> None:
        entry = self.pending.get(qid)
        if entry is not None and entry[1] is fut:
            del self.pending[qid]
        if self.retired and not self.pending:
            self.close()

    def _readable(self) -> None:
        while not self.closed:
            try:
                data = self.sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # An ICMP error on a connected socket concerns the nameserver itself.
                pending, self.pending = self.pending, {}
                for _, fut in pending.values():
                    _fail(fut, exc)
                return
            if len(data) < 12:
                continue
            entry = self.pending.get(_ID.unpack_from(data)[0])
            if entry is None:
                continue
            question, fut = entry
            # Only the reply to this very question: same name (case-insensitively), type, class.
            if data[12 : 12 + len(question)].lower() != question or fut.done():
                continue
            fut.set_result(data)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.registry.discard(self)
        with contextlib.suppress(RuntimeError):  # its event loop is already closed
            self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        pending, self.pending = self.pending, {}
        with contextlib.suppress(RuntimeError):  # the event loop is already closed
            for _, fut in pending.values():
                _fail(fut, ConnectionError("socket closed"))


def _fail(fut: asyncio.Future[bytes], exc: BaseException) -> None:
    """Fail a pending reply; its asker may already have gone (timed out, cancelled), so the
    exception is marked as seen rather than logged as 'never retrieved' at garbage collection."""
    if not fut.done():
        fut.set_exception(exc)
        fut.exception()


def _do53_servers(resolver: dns.asyncresolver.Resolver) -> list[tuple[str, int]] | None:
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


def _no_nameservers_reason(exc: dns.resolver.NoNameservers) -> str:
    errors = exc.kwargs.get("errors") or []
    reasons: list[str] = []
    for err in errors:
        # dnspython gives (server, tcp, port, error_or_rcode_text, response) tuples
        detail = err[3] if len(err) > 3 else err
        text = str(detail)
        if text and text not in reasons:
            reasons.append(text)
    return "; ".join(reasons) if reasons else "no nameserver answered"


def normalize_name(name: str) -> str:
    """Lower-case, no trailing dot."""
    return name.strip().rstrip(".").lower()


def is_ip_address(text: str) -> bool:
    """An IPv4 or IPv6 address (not a host name). Host names are told apart without the cost of
    :func:`ipaddress.ip_address` failing on them: an IPv4 address ends in a digit, IPv6 has a
    colon."""
    if ":" not in text and not text[-1:].isdigit():
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True

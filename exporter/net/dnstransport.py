"""The UDP DNS transport: questions over a few connected UDP sockets, TCP on truncation.

Why hand-written next to dnspython's resolver: the resolver opens, binds and closes a socket per
query and runs its whole resolution machinery each time, about 1 ms of CPU per lookup here, which
made a cycle of 1,000 domains CPU-bound (bench/README.md). The transport keeps a connected socket
per nameserver (renewed every :data:`QUERIES_PER_SOCKET` questions, for source-port randomness),
writes the query itself (header, the name as dnspython encodes it, an EDNS OPT record), matches
replies by ID, QR flag and question, reads the common simple reply with
:mod:`exporter.net.dnswire` (the same dnspython rdata objects, for a fraction of ``from_wire``'s
CPU) and leaves the rest to dnspython: ``from_wire``, ``resolve_chaining`` (CNAME chains) and
TCP on truncation, so answers read exactly as the resolver's do (tests/test_dnsclient_shared.py
and tests/test_dnswire.py compare them).

Per question it does as little as it can: questions go out in one batch per turn of the event
loop (:meth:`UdpSocket._flush`), one timer per transport times out the attempts
(:meth:`UdpTransport._time_out_at`), and the shared cache above it takes a free query slot
without a coroutine. With the reply reader's rdata made without dnspython's constructors, CPU
per question in ``bench/transport_bench.py`` (7,000 questions of the scale bench's zones over
the shared client) went from 55-58 us to 37-38 us (same machine, same run, the tree before and
after).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import os
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.rcode

from exporter.net.addr import normalize_name
from exporter.net.dnsmodel import DnsAnswer, DnsTempError
from exporter.net.dnswire import FastReply, name_to_wire, rdatatype, read_reply

QUERIES_PER_SOCKET = 512
RECEIVE_BUFFER = 1 << 20
_ID = struct.Struct("!H")
_HEADER = struct.Struct("!HHHHHH")
"""ID, flags (RD), one question, no answer or authority, one additional (OPT) or none."""
_QUESTION_TAIL = struct.Struct("!HH")
_OPT = struct.Struct("!BHHIH")
"""Root name, type OPT, payload size, extended rcode/version/flags 0, no options."""


@dataclass
class Request:
    name: str
    rdtype: str
    question: bytes
    wire_name: bytes
    qtype: int
    opt: bytes = b""
    flags: int = 0x0100
    """The header flags: RD (the DNSSEC transport adds CD)."""


class UdpTransport:
    """Questions over connected UDP sockets, one current socket per nameserver.

    Follows dnspython's resolver: nameservers in order; one that answers SERVFAIL, REFUSED or
    garbage, or is unreachable, is dropped for that question; an attempt that times out moves on
    to the next; the question gives up ``lifetime`` seconds after it was first sent.

    Also the transport of the dnsbl probe (:mod:`exporter.net.dnsbulk`), which asks
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
        """Replies read by :func:`exporter.net.dnswire.read_reply` (the rest: by dnspython)."""
        self._current: dict[tuple[str, int], UdpSocket] = {}
        self._all: set[UdpSocket] = set()
        self._expiries: list[tuple[float, int, asyncio.Future[bytes]]] = []
        """Attempts in flight by when they time out (a heap; answered ones leave lazily)."""
        self._expiry_timer: asyncio.TimerHandle | None = None
        self._expiry_at = 0.0
        self._expiry_seq = 0

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
        request = Request(name, rdtype, wire_name + _QUESTION_TAIL.pack(qtype, 1), wire_name, qtype)
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
                return fast_answer(name, rdtype, response)
            outcome = message_answer(name, rdtype, response)
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
        self, server: tuple[str, int], request: Request, deadline: float
    ) -> dns.message.Message | FastReply | None:
        """One attempt: UDP, then TCP when the reply is truncated. TimeoutError when no reply
        came within the attempt timeout; None for a bare NXDOMAIN (only with ``bare_nxdomain``);
        a :class:`FastReply` when :func:`exporter.net.dnswire.read_reply` could read the reply."""
        sock = self._socket(server)
        qid, fut = sock.send(request)
        self.sent += 1
        now = self.loop.time()
        self._time_out_at(now + min(self.attempt_timeout, deadline - now), fut)
        try:
            wire = await fut
        finally:
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
        response = parse_reply(wire)
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

    def _time_out_at(self, when: float, fut: asyncio.Future[bytes]) -> None:
        """Fail ``fut`` with TimeoutError at loop time ``when`` unless it is done by then.

        One event-loop timer per transport (for the earliest attempt) rather than one per
        attempt: ``call_later`` and ``cancel`` cost 2.5 us and two more objects for the
        garbage collector to scan per question on uvloop, a heap entry 0.2 us."""
        self._expiry_seq += 1
        heapq.heappush(self._expiries, (when, self._expiry_seq, fut))
        if self._expiry_timer is None or when < self._expiry_at:
            if self._expiry_timer is not None:
                self._expiry_timer.cancel()
            self._expiry_at = when
            self._expiry_timer = self.loop.call_at(when, self._expire)

    def _expire(self) -> None:
        self._expiry_timer = None
        # The loop runs a timer up to its clock's resolution (1 ms on uvloop) early.
        limit = self.loop.time() + 0.001
        heap = self._expiries
        while heap and (heap[0][0] <= limit or heap[0][2].done()):
            _time_out(heapq.heappop(heap)[2])
        if heap:
            self._expiry_at = heap[0][0]
            self._expiry_timer = self.loop.call_at(self._expiry_at, self._expire)

    def _socket(self, server: tuple[str, int]) -> UdpSocket:
        sock = self._current.get(server)
        if sock is None or sock.retired or sock.closed:
            sock = UdpSocket(self.loop, server, self._all)
            self._current[server] = sock
        return sock

    def close(self) -> None:
        for sock in list(self._all):
            sock.close()
        self._current.clear()
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
            self._expiry_timer = None
        self._expiries.clear()


def parse_reply(wire: bytes) -> dns.message.Message:
    """A UDP reply as dnspython reads it (raises its errors; ValueError when it is no reply)."""
    response = dns.message.from_wire(wire, ignore_trailing=True)
    if not response.flags & dns.flags.QR:
        raise ValueError("not a reply")
    return response


def message_answer(name: str, rdtype: str, response: dns.message.Message) -> DnsAnswer | str:
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


def fast_answer(name: str, rdtype: str, reply: FastReply) -> DnsAnswer:
    """The answer in a reply :func:`exporter.net.dnswire.read_reply` read: as
    :func:`message_answer` gives it for the same reply."""
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


class UdpSocket:
    """One connected non-blocking UDP socket, its questions in flight by message ID."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, server: tuple[str, int], registry: set[UdpSocket]
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
        self._outbox: list[tuple[bytes, asyncio.Future[bytes]]] = []

    def send(self, request: Request) -> tuple[int, asyncio.Future[bytes]]:
        """Queue the question; it goes out with the others of this turn of the event loop."""
        qid = _random_id()
        while qid in self.pending:
            qid = _random_id()
        wire = _HEADER.pack(qid, request.flags, 1, 0, 0, 1 if request.opt else 0)
        wire += request.question + request.opt
        fut: asyncio.Future[bytes] = self.loop.create_future()
        self.pending[qid] = (request.question.lower(), fut)
        self.sent += 1
        if self.sent >= QUERIES_PER_SOCKET:
            self.retired = True
        if not self._outbox:
            self.loop.call_soon(self._flush)
        self._outbox.append((wire, fut))
        return qid, fut

    def _flush(self) -> None:
        """Send the datagrams queued during this turn of the event loop, back to back.

        Why not each as its asker runs: on loopback (and on a virtual machine) a datagram to a
        nameserver that sleeps waits for the kernel to wake it. Measured here (2 vCPUs, knot on
        127.0.0.1): 38-70 us of wall time per ``send`` when sends are 100 us of Python apart,
        3 us when 16 go back to back and the server is still awake from the first. In the
        DNS cycle of 1,000 domains ``send`` was the largest single item of the profile
        (0.37-0.55 s under cProfile for 7,030 calls)."""
        outbox, self._outbox = self._outbox, []
        if self.closed:
            return
        send = self.sock.send
        for wire, fut in outbox:
            if fut.done():  # timed out or cancelled before it went out
                continue
            try:
                send(wire)
            except BlockingIOError:
                pass  # a full socket buffer is as good as a lost datagram: the attempt times out
            except OSError as exc:  # the asker reads it as the nameserver's error
                _fail(fut, exc)

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
        self._outbox = []
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

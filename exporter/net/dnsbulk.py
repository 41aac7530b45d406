"""Bulk lookups (the blacklist probe's): many small questions over a few shared UDP sockets.

Offered to probes through :meth:`exporter.net.network.Network.bulk_lookups`.

Why not :class:`exporter.net.dnsclient.DnsClient`: dnspython's resolver opens, binds and closes one
socket per query and runs its whole resolution machinery for each, about 0.8 ms of CPU per
lookup on the project's machines: 6.4 s for one cycle of 1,000 IPs x 8 zones, most of it spent on
answers that are a bare NXDOMAIN. The transport is the shared client's own UDP transport
(:class:`exporter.net.dnstransport.UdpTransport`: one connected socket per nameserver, replaced
every :data:`~exporter.net.dnstransport.QUERIES_PER_SOCKET` questions, replies matched by
message ID and question, TCP on truncation); what this module adds is the blacklist side of it:

* the question's name encoded by :func:`encode_name` (hand-written: dnspython's ``Name``
  parsing was 40% of the CPU of a 1,000-IP cycle), and names that are not host names refused
  before anything is sent;
* no EDNS, and each error naming the nameserver that gave it;
* at most ``max_in_flight`` questions on the wire; the rest wait in order, and cancelling a
  question's future withdraws it;
* not the shared client's answer cache: the probe keeps its own (half an interval), and its
  self-tests must see fresh answers.

Results are the shared client's types: a :class:`~exporter.net.dnsmodel.DnsAnswer`, or a
:class:`~exporter.net.dnsmodel.DnsTempError` (timeout, SERVFAIL, REFUSED, malformed reply) set on
the future, so the probe reads them exactly as it reads :class:`DnsClient` answers.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Any

from exporter.net.addr import normalize_name
from exporter.net.dnsmodel import DnsAnswer, DnsTempError
from exporter.net.dnstransport import UdpTransport
from exporter.net.dnswire import plain_name_to_wire

_RDTYPES = ("A", "TXT")


def encode_name(name: str) -> bytes:
    """A host name (letters, digits, '-', '_') in DNS wire form, lower-cased.

    Hand-written (:func:`exporter.net.dnswire.plain_name_to_wire`) because dnspython's ``Name``
    parsing was 40% of the CPU of a 1,000-IP cycle; blacklist query names are reversed IPs and
    validated zone and domain names, so the plain LDH form is all that is needed. Raises
    ValueError for anything else.
    """
    wire = None if name.endswith(".") else plain_name_to_wire(name.lower())
    if wire is None:
        raise ValueError(f"not a host name of at most 255 bytes: {name!r}")
    return wire


class _Question(asyncio.Future[DnsAnswer]):
    """A question's future: cancelling it withdraws the question."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, name: str, rdtype: str, wire_name: bytes
    ) -> None:
        super().__init__(loop=loop)
        self.name = name
        self.rdtype = rdtype
        self.wire_name = wire_name
        self.task: asyncio.Task[None] | None = None

    def cancel(self, msg: Any = None) -> bool:
        if self.task is not None:
            self.task.cancel()
        return super().cancel(msg)


class BulkLookups:
    """Lookups over shared UDP sockets for one event loop; :meth:`close` when done."""

    def __init__(
        self,
        servers: Sequence[tuple[str, int]],
        *,
        attempt_timeout: float,
        lifetime: float,
        max_in_flight: int,
    ) -> None:
        if not servers:
            raise ValueError("no nameservers")
        self._loop = asyncio.get_running_loop()
        self._transport = UdpTransport(
            self._loop,
            servers,
            attempt_timeout=attempt_timeout,
            lifetime=lifetime,
            payload=None,
            server_in_errors=True,
            bare_nxdomain=True,
        )
        self._max_in_flight = max_in_flight
        self._active: set[_Question] = set()
        self._waiting: deque[_Question] = deque()

    @property
    def sent(self) -> int:
        """Datagrams sent (retries included)."""
        return self._transport.sent

    def query(self, name: str, rdtype: str = "A") -> asyncio.Future[DnsAnswer]:
        """Ask for ``name``/``rdtype``. The future holds the answer or a :class:`DnsTempError`;
        cancelling it withdraws the question."""
        name = normalize_name(name)
        try:
            if rdtype not in _RDTYPES:
                raise ValueError(f"unsupported type {rdtype!r}")
            question = _Question(self._loop, name, rdtype, encode_name(name))
        except ValueError as exc:
            failed: asyncio.Future[DnsAnswer] = self._loop.create_future()
            failed.set_exception(DnsTempError(name, rdtype, f"cannot ask: {exc}"))
            return failed
        if len(self._active) < self._max_in_flight:
            self._begin(question)
        else:
            self._waiting.append(question)
        return question

    def _begin(self, question: _Question) -> None:
        self._active.add(question)
        question.task = self._loop.create_task(self._ask(question))

    async def _ask(self, question: _Question) -> None:
        """Ask, settle the question's future, then free its slot for the next one."""
        try:
            answer = await self._transport.query(question.name, question.rdtype, question.wire_name)
        except asyncio.CancelledError:
            if not question.done():  # closed, not withdrawn
                question.set_exception(
                    DnsTempError(question.name, question.rdtype, "lookups closed")
                )
            raise
        except Exception as exc:  # a DnsTempError
            if not question.done():
                question.set_exception(exc)
        else:
            if not question.done():
                question.set_result(answer)
        finally:
            self._active.discard(question)
            while self._waiting and len(self._active) < self._max_in_flight:
                waiting = self._waiting.popleft()
                if not waiting.done():
                    self._begin(waiting)

    def close(self) -> None:
        """Close every socket; questions still open fail with a DnsTempError."""
        waiting, self._waiting = self._waiting, deque()
        for question in waiting:
            if not question.done():
                question.set_exception(
                    DnsTempError(question.name, question.rdtype, "lookups closed")
                )
        for question in list(self._active):
            if question.task is not None:
                question.task.cancel()
        self._transport.close()

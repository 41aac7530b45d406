"""What HTTP clients can hold of the exporter: connections at once, and time without a request.

113 idle connections at a 128-descriptor limit made every probe fail with "Too many open
files" and ``/metrics`` refuse connections. :class:`ConnectionGuard` sits between the listening
socket and aiohttp's protocol (:class:`GuardedSite`), and :meth:`ConnectionGuard.middleware`
tells it when a request is in progress:

* a connection must complete a request's headers within :data:`HEADER_TIMEOUT` of opening, and
  the next one within :data:`IDLE_TIMEOUT` of the last response (keep-alive); otherwise it is
  closed. A connection with a request in progress, or a response still being written, is never
  closed for time;
* at most :func:`connection_cap` connections are open at once: a quarter of the process's
  descriptor limit (at most :data:`MAX_CONNECTIONS`), so three quarters stay for probes, DNS and
  the store. At the cap, a new connection closes the one idle the longest; when none is idle the
  new one is refused. A scraper that connects is served, however many idle sockets are open.

Hand-written: aiohttp has no cap on connections, and closes a connection that never sends a
request only since 3.14 (with its keep-alive timer, which it also gets here).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import resource
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiohttp import web

log = logging.getLogger("exporter.http")

HEADER_TIMEOUT = 10.0
"""Seconds a new connection has to send its first request's headers."""
IDLE_TIMEOUT = 60.0
"""Seconds a kept-alive connection may wait for its next request (Prometheus scrapes every
15-60 s and reconnects when closed)."""
MAX_CONNECTIONS = 256


def connection_cap(limit: int | None = None) -> int:
    """A quarter of the descriptor limit (``RLIMIT_NOFILE``), between 4 and MAX_CONNECTIONS."""
    if limit is None:
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if limit == resource.RLIM_INFINITY:
            return MAX_CONNECTIONS
    return max(4, min(MAX_CONNECTIONS, limit // 4))


def raise_fd_limit() -> int:
    """Raise the soft descriptor limit to the hard one (at most 65,536), as Go programs do;
    return the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError):
            pass
    return int(soft)


class _Connection(asyncio.Protocol):
    """Wraps aiohttp's protocol for one connection: admission, the request timer."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self.guard = guard
        self.inner = inner
        self.transport: asyncio.Transport | None = None
        self.busy = 0
        self.idle_since = 0.0
        self.admitted = False
        self._timer: asyncio.TimerHandle | None = None

    # ----- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        if not self.guard.admit(self):
            self.transport.abort()
            return
        self.admitted = True
        self.inner.connection_made(transport)
        self.idle(HEADER_TIMEOUT)

    def data_received(self, data: bytes) -> None:
        if self.admitted:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.admitted else None

    def pause_writing(self) -> None:
        if self.admitted:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.admitted:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        self.guard.forget(self)
        if self.admitted:
            self.inner.connection_lost(exc)

    # ----- timer ------------------------------------------------------------------------------
    def idle(self, timeout: float) -> None:
        """No request in progress: close the connection unless one starts within ``timeout``."""
        self._cancel()
        loop = asyncio.get_running_loop()
        self.idle_since = loop.time()
        self._timer = loop.call_later(timeout, self._expire, timeout)

    def start_request(self) -> None:
        self.busy += 1
        self._cancel()

    def end_request(self) -> None:
        self.busy -= 1
        if self.busy == 0 and self.transport is not None and not self.transport.is_closing():
            self.idle(IDLE_TIMEOUT)

    def _expire(self, timeout: float) -> None:
        self._timer = None
        transport = self.transport
        if self.busy or transport is None or transport.is_closing():
            return
        if transport.get_write_buffer_size():  # a response still going out to a slow reader
            self._timer = asyncio.get_running_loop().call_later(timeout, self._expire, timeout)
            return
        transport.close()

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class ConnectionGuard:
    """The connections of one HTTP server (see the module docstring)."""

    def __init__(self, cap: int | None = None) -> None:
        self.cap = cap if cap is not None else connection_cap()
        self._open: collections.OrderedDict[int, _Connection] = collections.OrderedDict()
        self._by_transport: dict[int, _Connection] = {}
        self.refused = 0
        self.evicted = 0

    @property
    def open(self) -> int:
        return len(self._open)

    def factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        return lambda: _Connection(self, inner())

    def admit(self, conn: _Connection) -> bool:
        if len(self._open) >= self.cap:
            idle = [c for c in self._open.values() if not c.busy]
            if not idle:
                self.refused += 1
                return False
            oldest = min(idle, key=lambda c: c.idle_since)
            self.evicted += 1
            self.forget(oldest)
            if oldest.transport is not None:
                oldest.transport.abort()
        self._open[id(conn)] = conn
        if conn.transport is not None:
            self._by_transport[id(conn.transport)] = conn
        return True

    def forget(self, conn: _Connection) -> None:
        self._open.pop(id(conn), None)
        if conn.transport is not None:
            self._by_transport.pop(id(conn.transport), None)

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        conn = self._by_transport.get(id(request.transport))
        if conn is None:
            return await handler(request)
        conn.start_request()
        try:
            return await handler(request)
        finally:
            conn.end_request()


class GuardedSite(web.BaseSite):
    """A TCP site whose connections go through a :class:`ConnectionGuard`."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        guard: ConnectionGuard,
        *,
        ssl_context: Any = None,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context)
        self.host, self.port, self.guard = host, port, guard

    @property
    def name(self) -> str:
        return f"{'https' if self._ssl_context else 'http'}://{self.host}:{self.port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self.guard.factory(server), self.host, self.port, ssl=self._ssl_context
        )

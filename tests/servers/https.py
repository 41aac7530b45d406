"""Real HTTPS servers on loopback for tests: aiohttp's web server with trustme certificates.

Each server runs in the test's own event loop on a loopback address and port of the test's
choosing (port 0: a free one). Every 127/8 address is local, so tests that need the real port 443
(an MTA-STS policy host is always fetched on 443) give each host its own random 127.x.y.z
address (:func:`loopback_address`) and retry when it is taken.

Besides plain aiohttp routes: :func:`silent_server` accepts TCP and never answers (optionally
after completing the TLS handshake), and :func:`raw_tls_server` answers every connection with
fixed bytes after the handshake (a broken HTTP server). :class:`ThreadedHttpsServer` is the
standard library's HTTP server over TLS in a thread of its own, for tests without an event loop
(the end-to-end monitoring test): fixed answers per (host, path).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import random
import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import trustme
from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def loopback_address() -> str:
    """A random 127.x.y.z other than 127.0.0.1 (unlikely to be used by another test)."""
    while True:
        a, b, c = (random.randrange(0, 256) for _ in range(3))
        if (a, b) != (0, 0) and 0 < c < 255:
            return f"127.{a}.{b}.{c}"


def server_context(cert: trustme.LeafCert, seen_sni: list[str] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    if seen_sni is not None:

        def record(sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
            seen_sni.append(name or "")

        ctx.sni_callback = record
    return ctx


def text(body: bytes | str, content_type: str = "text/plain", status: int = 200) -> Handler:
    """A handler answering ``body`` with that content type and status."""
    raw = body.encode() if isinstance(body, str) else body

    async def handle(request: web.Request) -> web.StreamResponse:
        return web.Response(body=raw, status=status, headers={"Content-Type": content_type})

    return handle


def redirect(location: str, status: int = 301) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, headers={"Location": location})

    return handle


@dataclass
class HttpsServer:
    """A running server: where it listens and what it saw."""

    address: str
    port: int
    hits: list[str] = field(default_factory=list)
    sni: list[str] = field(default_factory=list)
    runner: web.AppRunner | None = None


@contextlib.asynccontextmanager
async def https_server(
    cert: trustme.LeafCert,
    routes: dict[str, Handler],
    *,
    address: str = "127.0.0.1",
    port: int = 0,
) -> AsyncIterator[HttpsServer]:
    """Serve ``routes`` (path -> handler) over TLS with ``cert`` on ``address:port``."""
    server = HttpsServer(address, port)

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        server.hits.append(request.path)
        return await handler(request)

    app = web.Application(middlewares=[record])
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, address, port, ssl_context=server_context(cert, server.sni))
    try:
        await site.start()
        server.port = runner.addresses[0][1]
        server.runner = runner
        yield server
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def https_server_on_443(
    cert: trustme.LeafCert, routes: dict[str, Handler]
) -> AsyncIterator[HttpsServer]:
    """:func:`https_server` on port 443 of a random loopback address not in use."""
    for _ in range(20):
        address = loopback_address()
        try:
            async with https_server(cert, routes, address=address, port=443) as server:
                yield server
                return
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
    raise RuntimeError("no free loopback address for port 443")


@contextlib.asynccontextmanager
async def silent_server(
    *, address: str = "127.0.0.1", port: int = 0, tls: trustme.LeafCert | None = None
) -> AsyncIterator[int]:
    """Accept connections and never send a byte (after the TLS handshake, with ``tls``)."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await reader.read()  # until the client gives up

    ctx = server_context(tls) if tls is not None else None
    srv = await asyncio.start_server(hold, address, port, ssl=ctx)
    try:
        yield int(srv.sockets[0].getsockname()[1])
    finally:
        srv.close()
        for writer in held:
            writer.transport.abort()
        await srv.wait_closed()


@contextlib.asynccontextmanager
async def raw_tls_server(
    cert: trustme.LeafCert | None, answer: bytes, *, address: str = "127.0.0.1"
) -> AsyncIterator[int]:
    """Read the request, answer ``answer`` and close (over TLS with ``cert``, else plain TCP)."""

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ssl.SSLError):
            if cert is not None:
                await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
            await writer.drain()
        writer.close()

    ctx = server_context(cert) if cert is not None else None
    srv = await asyncio.start_server(reply, address, 0, ssl=ctx)
    try:
        yield int(srv.sockets[0].getsockname()[1])
    finally:
        srv.close()
        await srv.wait_closed()


Answer = tuple[int, str, bytes]
"""(status, content type, body)."""


class ThreadedHttpsServer:
    """HTTPS with fixed answers keyed by (Host without port, path); 404 for anything else."""

    def __init__(
        self, cert: trustme.LeafCert, answers: dict[tuple[str, str], Answer], address: str
    ) -> None:
        table = answers

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                host = (self.headers.get("Host") or "").rsplit(":", 1)[0].lower()
                status, content_type, body = table.get((host, self.path), (404, "text/plain", b""))
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return None

        self.httpd = ThreadingHTTPServer((address, 443), Handler)
        self.httpd.socket = server_context(cert).wrap_socket(self.httpd.socket, server_side=True)
        self.address = address
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @classmethod
    def on_443(
        cls, cert: trustme.LeafCert, answers: dict[tuple[str, str], Answer]
    ) -> ThreadedHttpsServer:
        """Started on port 443 of a random loopback address not in use."""
        for _ in range(20):
            try:
                server = cls(cert, answers, loopback_address())
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                continue
            server._thread.start()
            return server
        raise RuntimeError("no free loopback address for port 443")

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(10)

"""Misbehaving SMTP and IMAP servers for fault-injection tests: real TCP listeners on loopback.

Each :class:`FaultServer` accepts connections on ``127.0.0.1`` (a free port) in the test's own
event loop and runs one *behaviour* per connection: a coroutine that speaks (or breaks) the
protocol on the raw streams. The server counts connections and how many are still open, so a test
can check that the client closed every connection it opened. Every behaviour ends when the client
goes away, so no server task outlives the connection.

SMTP behaviours: ``smtp_silent`` (accepts, never speaks), ``smtp_garbage_banner`` (binary junk
instead of a 220 greeting), ``smtp_endless_reply`` (a multi-line ``220-`` greeting that never
ends), ``smtp_drop_mid_tls`` (offers STARTTLS, says 220, reads the ClientHello and resets the
connection), ``smtp_tls_stall`` (says 220 to STARTTLS and then never answers the handshake),
``smtp_long_line`` (a greeting of one 1 MB line), ``smtp_huge_reply`` (a greeting of 150 lines of
8,000 bytes).
:func:`refused_port` gives a port where nothing listens.

IMAP behaviours (plain IMAP4rev1, enough for a client to log in): ``imap_drop_after_login``,
``imap_huge_folder`` (a mailbox that claims millions of messages and answers a search with a
multi-megabyte line), ``imap_literals(count, size)`` (SELECT answered by one response carrying
``count`` literals of ``size`` bytes) and ``imap_untagged_flood`` (SELECT answered by untagged
lines that never end).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Awaitable, Callable

Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
IO_TIMEOUT = 30.0
"""No read or write of a fault server waits longer than this (the client's own deadline is
much shorter; this only keeps a broken test from hanging)."""


class FaultServer:
    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.connections = 0
        self.open = 0
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> FaultServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        try:
            await asyncio.wait_for(self.behaviour(reader, writer), IO_TIMEOUT)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
            self.open -= 1
            writer.close()


def refused_port() -> int:
    """A loopback port with no listener (connecting is refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _until_eof(reader: asyncio.StreamReader) -> None:
    while await reader.read(65536):
        pass


# ----- SMTP -----------------------------------------------------------------------------------


async def smtp_silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _until_eof(reader)


async def smtp_garbage_banner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"\x16\x03\x01\x00\xffHELLO? \xfe\xed garbage banner\r\n")
    await writer.drain()
    await _until_eof(reader)


async def smtp_endless_reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    line = b"220-mail.example.test ESMTP " + b"x" * 60 + b"\r\n"
    while not reader.at_eof():
        writer.write(line * 64)
        await writer.drain()


async def smtp_long_line(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A greeting of one 1 MB line."""
    writer.write(b"220 " + b"x" * (1 << 20) + b"\r\n")
    await writer.drain()
    await _until_eof(reader)


async def smtp_huge_reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A multi-line greeting of 150 lines of 8,000 bytes: each line allowed, 1.2 MB together."""
    line = b"220-" + b"x" * 7994 + b"\r\n"
    writer.write(line * 150 + b"220 ready\r\n")
    await writer.drain()
    await _until_eof(reader)


async def _to_starttls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    writer.write(b"220 mail.example.test ESMTP\r\n")
    await writer.drain()
    while True:
        line = await reader.readline()
        if not line:
            return False
        verb = line.strip().upper()
        if verb.startswith((b"EHLO", b"HELO")):
            writer.write(b"250-mail.example.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n")
        elif verb == b"STARTTLS":
            writer.write(b"220 2.0.0 Ready to start TLS\r\n")
            await writer.drain()
            return True
        elif verb == b"QUIT":
            writer.write(b"221 bye\r\n")
            await writer.drain()
            return False
        else:
            writer.write(b"250 OK\r\n")
        await writer.drain()


async def smtp_drop_mid_tls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    if await _to_starttls(reader, writer):
        await reader.read(16)  # the start of the ClientHello
        writer.transport.abort()  # a reset in the middle of the handshake


async def smtp_tls_stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    if await _to_starttls(reader, writer):
        await _until_eof(reader)


# ----- IMAP -----------------------------------------------------------------------------------

CAPABILITIES = b"IMAP4rev1 AUTH=PLAIN IDLE UIDPLUS"


async def _imap_until(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    stop_after: bytes,
    extra: Callable[[bytes, bytes], bytes | None] | None = None,
    streams: dict[bytes, Callable[[bytes], Awaitable[None]]] | None = None,
) -> bool:
    """Serve a minimal IMAP session up to (and including) the command ``stop_after``
    (``LOGIN``, ``SELECT``...); return False when the client left first. ``streams`` maps a
    command to a coroutine that writes its answer itself (given the tag), for large answers."""
    writer.write(b"* OK [CAPABILITY " + CAPABILITIES + b"] fault server ready\r\n")
    await writer.drain()
    while True:
        line = await reader.readline()
        if not line:
            return False
        tag, _, rest = line.strip().partition(b" ")
        command = rest.split(b" ", 1)[0].upper()
        if command == b"UID":
            command = b"UID " + rest.split(b" ")[1].upper()
        if command == b"AUTHENTICATE" and len(rest.split()) == 2:
            writer.write(b"+ \r\n")
            await writer.drain()
            await reader.readline()
        custom = extra(tag, command) if extra else None
        if streams and command in streams:
            await streams[command](tag)
        elif custom is not None:
            writer.write(custom)
        elif command == b"CAPABILITY":
            writer.write(b"* CAPABILITY " + CAPABILITIES + b"\r\n" + tag + b" OK done\r\n")
        elif command == b"LOGOUT":
            writer.write(b"* BYE bye\r\n" + tag + b" OK done\r\n")
            await writer.drain()
            return False
        else:
            writer.write(tag + b" OK done\r\n")
        await writer.drain()
        if command == stop_after or (stop_after == b"LOGIN" and command == b"AUTHENTICATE"):
            return True


async def imap_drop_after_login(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    if await _imap_until(reader, writer, b"LOGIN"):
        writer.transport.abort()


HUGE_SEARCH_UIDS = 300_000
"""UIDs in the huge folder's search answer: a line of about 2 MB."""


def _huge(tag: bytes, command: bytes) -> bytes | None:
    if command in (b"SELECT", b"EXAMINE"):
        return (
            b"* 5000000 EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY 1] UIDs valid\r\n"
            b"* OK [UIDNEXT 5000001] next\r\n" + tag + b" OK [READ-WRITE] SELECT completed\r\n"
        )
    if command in (b"UID SEARCH", b"SEARCH"):
        return _HUGE_SEARCH + tag + b" OK SEARCH completed\r\n"
    return None


# Built once: building it per connection would make the server, not the client, the slow party.
_HUGE_SEARCH = b"* SEARCH " + b" ".join(b"%d" % i for i in range(1, HUGE_SEARCH_UIDS + 1)) + b"\r\n"


async def imap_huge_folder(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        await _imap_until(reader, writer, b"NEVER", _huge)


def imap_literals(count: int, size: int) -> Behaviour:
    """SELECT is answered by one FETCH response with ``count`` literals of ``size`` bytes."""
    chunk = b"x" * size

    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def select(tag: bytes) -> None:
            for i in range(count):
                writer.write(b"* 1 FETCH (BODY[%d] {%d}\r\n" % (i, size) if i == 0
                             else b" BODY[%d] {%d}\r\n" % (i, size))  # fmt: skip
                writer.write(chunk)
                await writer.drain()
            writer.write(b")\r\n" + tag + b" OK done\r\n")

        await _imap_until(reader, writer, b"NEVER", None, {b"SELECT": select})

    return behaviour


FLOOD_LINE = b"* OK [ALERT] " + b"x" * 100 + b"\r\n"


async def imap_untagged_flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    async def select(tag: bytes) -> None:
        while not reader.at_eof():
            writer.write(FLOOD_LINE * 100)
            await writer.drain()
            await asyncio.sleep(0)  # drain() need not yield: the client shares this loop

    await _imap_until(reader, writer, b"NEVER", None, {b"SELECT": select})


async def imap_reject_login(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    def reject(tag: bytes, command: bytes) -> bytes | None:
        if command in (b"LOGIN", b"AUTHENTICATE"):
            return tag + b" NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
        return None

    await _imap_until(reader, writer, b"NEVER", reject)


class ThreadedFaultServer:
    """A :class:`FaultServer` on its own event loop in a thread (for tests that run the exporter
    as a separate process, or synchronously)."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.server = FaultServer(behaviour)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> ThreadedFaultServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(10)
        return self

    @property
    def port(self) -> int:
        return self.server.port

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

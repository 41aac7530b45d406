"""A fake Redis that speaks real RESP on loopback, for replies a real ``redis-server`` never
sends: an ``LLEN`` answered with text or a negative number, a ``SCAN`` cursor that is not a
number, an ``HMGET`` of the wrong length, bytes that are not RESP at all, a reply cut short.

:class:`FakeRedis` reads RESP commands (arrays of bulk strings, as redis-py sends them,
pipelines included) in the test's own event loop and answers each with the bytes
``answer(command)`` returns; :func:`default_answer` handles the connection set-up redis-py
does (``CLIENT SETNAME``, ``CLIENT SETINFO``, ``SELECT``, ``AUTH``, ``PING``, ``HELLO``).
``answer`` returning ``None`` closes the connection there; a :class:`Cut` is sent, then the
connection closed (a server that died mid-reply); ``b""`` sends nothing (a server that hangs).
The encoders (:func:`integer`, :func:`bulk`, :func:`array`, ...) build well-formed RESP2.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from faults.mailfault import FaultServer

Answer = Callable[[list[bytes]], bytes | None]


class Cut(bytes):
    """Reply bytes after which the server closes the connection."""


def simple(text: str) -> bytes:
    return f"+{text}\r\n".encode()


def error(text: str) -> bytes:
    return f"-{text}\r\n".encode()


def integer(n: int) -> bytes:
    return f":{n}\r\n".encode()


def bulk(data: bytes | str | None) -> bytes:
    if data is None:
        return b"$-1\r\n"
    raw = data.encode() if isinstance(data, str) else data
    return b"$%d\r\n%s\r\n" % (len(raw), raw)


def array(items: list[bytes] | None) -> bytes:
    if items is None:
        return b"*-1\r\n"
    return b"*%d\r\n" % len(items) + b"".join(items)


def default_answer(command: list[bytes]) -> bytes | None:
    """What a server answers to redis-py's connection set-up; ``b""`` for anything else (the
    caller's ``answer`` decides)."""
    name = command[0].upper()
    if name in (b"CLIENT", b"SELECT", b"AUTH"):
        return simple("OK")
    if name == b"PING":
        return simple("PONG")
    if name == b"HELLO":
        return error("ERR unknown command 'HELLO'")
    return b""


async def _read_command(reader: asyncio.StreamReader) -> list[bytes]:
    header = await reader.readline()
    if not header:
        raise EOFError
    if not header.startswith(b"*"):
        return header.split()  # inline command
    parts = []
    for _ in range(int(header[1:])):
        size = int((await reader.readline())[1:])
        parts.append((await reader.readexactly(size + 2))[:-2])
    return parts


class FakeRedis:
    """A :class:`~faults.mailfault.FaultServer` whose behaviour answers RESP commands."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.commands: list[list[bytes]] = []
        self.server = FaultServer(self._serve)

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def open(self) -> int:
        return self.server.open

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> FakeRedis:
        await self.server.start()
        return self

    async def stop(self) -> None:
        await self.server.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(EOFError, ValueError):
            while True:
                command = await _read_command(reader)
                self.commands.append(command)
                reply = default_answer(command) or self.answer(command)
                if reply is None:
                    return
                writer.write(reply)
                await writer.drain()
                if isinstance(reply, Cut):
                    return

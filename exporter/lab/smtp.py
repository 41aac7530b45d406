"""A minimal SMTP server that offers STARTTLS, for the demo's TLS targets.

It speaks the real wire protocol (RFC 5321 greeting, EHLO/HELO, NOOP, RSET, QUIT and RFC 3207
STARTTLS, with a TLS upgrade of the same connection) and refuses mail. Hand-written rather than
aiosmtpd because it is only a demo fixture: aiosmtpd is a test dependency, and this subset is all
the ``tls`` probe needs to see.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

LINE_LIMIT = 4096
IDLE_TIMEOUT = 60.0
HANDSHAKE_TIMEOUT = 10.0


class LabSmtpServer:
    """Listens on 127.0.0.1; ``implicit_tls`` serves TLS from the first byte (port 465 style)."""

    def __init__(self, hostname: str, tls: ssl.SSLContext, *, implicit_tls: bool = False) -> None:
        self.hostname = hostname
        self.tls = tls
        self.implicit_tls = implicit_tls
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> LabSmtpServer:
        self._server = await asyncio.start_server(
            self._handle,
            host,
            port,
            ssl=self.tls if self.implicit_tls else None,
            limit=LINE_LIMIT,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tls_active = self.implicit_tls
        try:
            await self._send(writer, f"220 {self.hostname} ESMTP demo lab (accepts no mail)")
            while True:
                try:
                    raw = await asyncio.wait_for(reader.readline(), IDLE_TIMEOUT)
                except ValueError:  # line longer than the limit
                    await self._send(writer, "500 5.5.6 Line too long")
                    return
                if not raw:
                    return
                line = raw.decode("ascii", "replace").rstrip("\r\n")
                verb, _, arg = line.partition(" ")
                verb = verb.upper()
                if verb == "EHLO":
                    lines = [f"{self.hostname} greets {arg or 'you'}", "8BITMIME"]
                    if not tls_active:
                        lines.append("STARTTLS")
                    lines.append("ENHANCEDSTATUSCODES")
                    body = [f"250-{x}" for x in lines[:-1]] + [f"250 {lines[-1]}"]
                    await self._send(writer, "\r\n".join(body))
                elif verb == "HELO":
                    await self._send(writer, f"250 {self.hostname}")
                elif verb in ("NOOP", "RSET"):
                    await self._send(writer, "250 2.0.0 OK")
                elif verb == "QUIT":
                    await self._send(writer, "221 2.0.0 Bye")
                    return
                elif verb == "STARTTLS":
                    if tls_active:
                        await self._send(writer, "503 5.5.1 TLS already active")
                        continue
                    await self._send(writer, "220 2.0.0 Ready to start TLS")
                    await writer.start_tls(self.tls, ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
                    tls_active = True
                elif verb in ("MAIL", "RCPT", "DATA", "AUTH", "BDAT"):
                    if not tls_active:
                        await self._send(writer, "530 5.7.0 Must issue a STARTTLS command first")
                    else:
                        await self._send(writer, "554 5.7.1 This lab server accepts no mail")
                else:
                    await self._send(writer, "500 5.5.2 Command unrecognized")
        except (OSError, ssl.SSLError, TimeoutError, asyncio.IncompleteReadError):
            return  # the client went away or failed the handshake: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 2)

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, text: str) -> None:
        writer.write(text.encode("ascii") + b"\r\n")
        await asyncio.wait_for(writer.drain(), IDLE_TIMEOUT)

"""The SMTP side of the ``tls`` probe: greeting, EHLO, STARTTLS or implicit TLS, optional AUTH.

Written on asyncio streams rather than aiosmtplib because the probe must report what it saw up to
the point a conversation failed: aiosmtplib's ``connect()`` fuses the TCP connect, the implicit TLS
handshake and the greeting and drops the transport when the greeting does not come, which loses
the certificate of an implicit-TLS server that handshakes and then stalls. The probe also connects
to an address it resolved itself (through the configured nameservers) while sending the host name
as SNI. What is hand-written is small: reading (multi-line) replies, EHLO keywords, and AUTH
PLAIN/LOGIN (RFC 4954, 4616).

Every step is a method the caller drives under one deadline (``asyncio.timeout_at``); each records
its ``stage`` first so that a timeout names the step that stalled. The TLS handshake uses a
non-verifying context (any version, any cipher) so that an expired, self-signed or misnamed
certificate is still fetched; judging it is :mod:`exporter.net.certs`'s job.
"""

from __future__ import annotations

import asyncio
import base64
import re
import ssl
from dataclasses import dataclass, field

from exporter.net.certs import accept_any, presented_chain

_REPLY_LINE = re.compile(rb"^(\d{3})([ -]?)(.*?)\r?\n?$", re.S)
MAX_REPLY_LINES = 200
MAX_LINE_BYTES = 8192
"""RFC 5321 §4.5.3.1.5 allows 512 octets a reply line; 16 times that is generous."""
MAX_REPLY_BYTES = 64 << 10
"""All the lines of one reply: an EHLO reply is a few hundred bytes."""

TLS_VERSION_NAMES = {
    "SSLv3": "SSL 3.0",
    "TLSv1": "TLS 1.0",
    "TLSv1.1": "TLS 1.1",
    "TLSv1.2": "TLS 1.2",
    "TLSv1.3": "TLS 1.3",
}


class SmtpProtocolError(Exception):
    """The server broke the SMTP conversation (bad reply, unexpected code, closed connection)."""


@dataclass(frozen=True)
class Reply:
    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return " / ".join(self.lines)

    def __str__(self) -> str:
        return f"{self.code} {self.text}".strip()


@dataclass
class Session:
    """What one conversation saw, filled in step by step."""

    stage: str = "resolving"
    address: str = ""
    greeting: Reply | None = None
    extensions: dict[str, str] = field(default_factory=dict)
    starttls_offered: bool | None = None
    handshake_done: bool = False
    tls_version: str | None = None
    cipher: str | None = None
    """The negotiated cipher suite (OpenSSL's name)."""
    chain_der: list[bytes] = field(default_factory=list)
    full_chain: bool = False
    """False when only the leaf could be read (no get_unverified_chain in this Python)."""


_fetch_context: ssl.SSLContext | None = None


def fetch_context() -> ssl.SSLContext:
    """A client context that accepts any certificate, version and cipher (never verifies)."""
    global _fetch_context
    if _fetch_context is None:
        _fetch_context = accept_any(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    return _fetch_context


def parse_reply_line(line: bytes) -> tuple[int, bool, str]:
    """One reply line -> (code, is_last, text). Raises SmtpProtocolError when malformed."""
    m = _REPLY_LINE.match(line)
    if m is None or (m.group(2) == b"" and m.group(3).strip()):
        shown = line[:80].decode("ascii", "replace").strip()
        raise SmtpProtocolError(f"malformed SMTP reply line {shown!r}")
    text = m.group(3).decode("utf-8", "replace").strip()
    return int(m.group(1)), m.group(2) != b"-", text


def parse_ehlo(reply: Reply) -> dict[str, str]:
    """EHLO keywords (upper case) -> parameters; the first line is the server's greeting name."""
    out: dict[str, str] = {}
    for line in reply.lines[1:]:
        keyword, _, params = line.strip().partition(" ")
        if keyword:
            out[keyword.upper()] = params.strip()
    return out


class SmtpConversation:
    """One SMTP connection; the caller bounds every call with its deadline."""

    def __init__(self, session: Session, ehlo_name: str) -> None:
        self.session = session
        self.ehlo_name = ehlo_name
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    # ----- connection -------------------------------------------------------------------------
    async def connect(
        self, addresses: list[str], port: int, sni: str | None, implicit: bool
    ) -> None:
        """Connect to the first address that accepts; with ``implicit``, handshake at once."""
        last: OSError | None = None
        for address in addresses:
            self.session.stage = f"connecting to {_fmt(address, port)}"
            self.session.address = address
            try:
                if implicit:
                    self.session.stage = f"TLS handshake with {_fmt(address, port)}"
                    self._reader, self._writer = await asyncio.open_connection(
                        address,
                        port,
                        ssl=fetch_context(),
                        server_hostname=sni or address,
                        limit=MAX_LINE_BYTES,
                    )
                    self._record_tls()
                else:
                    self._reader, self._writer = await asyncio.open_connection(
                        address, port, limit=MAX_LINE_BYTES
                    )
                return
            except ssl.SSLError:
                raise
            except OSError as exc:
                last = exc
        assert last is not None
        raise last

    def _record_tls(self) -> None:
        assert self._writer is not None
        obj = self._writer.get_extra_info("ssl_object")
        if not isinstance(obj, ssl.SSLObject):
            raise SmtpProtocolError("TLS session without an SSL object")
        self.session.handshake_done = True
        self.session.tls_version = obj.version()
        cipher = obj.cipher()
        self.session.cipher = cipher[0] if cipher else None
        self.session.chain_der, self.session.full_chain = presented_chain(obj)

    def close(self) -> None:
        """Say QUIT without waiting for the answer, then close (never blocks)."""
        writer = self._writer
        self._writer = None
        if writer is None:
            return
        try:
            if not writer.is_closing():
                writer.write(b"QUIT\r\n")
            writer.close()
        except (OSError, RuntimeError):
            writer.transport.abort()

    def abort(self) -> None:
        writer = self._writer
        self._writer = None
        if writer is not None:
            writer.transport.abort()

    # ----- replies ----------------------------------------------------------------------------
    async def read_reply(self) -> Reply:
        assert self._reader is not None
        lines: list[str] = []
        code = 0
        size = 0
        while True:
            try:
                raw = await self._reader.readline()
            except ValueError:  # asyncio's LimitOverrunError, as readline() reports it
                raise SmtpProtocolError(
                    f"reply line longer than {MAX_LINE_BYTES} bytes ({self.session.stage})"
                ) from None
            size += len(raw)
            if size > MAX_REPLY_BYTES:
                raise SmtpProtocolError(
                    f"reply longer than {MAX_REPLY_BYTES} bytes ({self.session.stage})"
                )
            if not raw:
                raise SmtpProtocolError(f"server closed the connection ({self.session.stage})")
            line_code, last, text = parse_reply_line(raw)
            if lines and line_code != code:
                raise SmtpProtocolError(f"reply code changed mid-reply ({code} then {line_code})")
            code = line_code
            lines.append(text)
            if last:
                return Reply(code, tuple(lines))
            if len(lines) >= MAX_REPLY_LINES:
                raise SmtpProtocolError(f"reply longer than {MAX_REPLY_LINES} lines")

    async def command(self, line: str) -> Reply:
        """Send one command line and read its reply."""
        assert self._writer is not None
        self._writer.write(line.encode("utf-8") + b"\r\n")
        await self._writer.drain()
        return await self.read_reply()

    # ----- steps ------------------------------------------------------------------------------
    async def greeting(self) -> Reply:
        self.session.stage = "waiting for the greeting"
        reply = await self.read_reply()
        self.session.greeting = reply
        if reply.code != 220:
            raise SmtpProtocolError(f"server refused the session: {reply}")
        return reply

    async def ehlo(self) -> dict[str, str]:
        self.session.stage = "waiting for the EHLO reply"
        reply = await self.command(f"EHLO {self.ehlo_name}")
        if reply.code != 250:
            raise SmtpProtocolError(f"EHLO rejected: {reply}")
        self.session.extensions = parse_ehlo(reply)
        return self.session.extensions

    async def starttls(self, sni: str | None) -> Reply:
        """Send STARTTLS; on 220 upgrade the connection. Returns the reply (non-220: no TLS)."""
        assert self._writer is not None
        self.session.stage = "waiting for the STARTTLS reply"
        reply = await self.command("STARTTLS")
        if reply.code != 220:
            return reply
        self.session.stage = "TLS handshake after STARTTLS"
        await self._writer.start_tls(fetch_context(), server_hostname=sni or self.session.address)
        self._record_tls()
        return reply

    async def auth(self, username: str, password: str) -> tuple[bool | None, str]:
        """AUTH PLAIN or LOGIN -> (True accepted / False rejected / None could not tell, why).

        Only server replies go into the explanation; the credentials never do.
        """
        self.session.stage = "EHLO after STARTTLS"
        extensions = await self.ehlo()
        mechanisms = extensions.get("AUTH", "").upper().split()
        self.session.stage = "SMTP AUTH"
        if "PLAIN" in mechanisms:
            token = base64.b64encode(f"\0{username}\0{password}".encode()).decode()
            reply = await self.command(f"AUTH PLAIN {token}")
            if reply.code == 334:  # server wants the initial response separately
                reply = await self.command(token)
        elif "LOGIN" in mechanisms:
            reply = await self.command("AUTH LOGIN")
            if reply.code == 334:
                reply = await self.command(base64.b64encode(username.encode()).decode())
            if reply.code == 334:
                reply = await self.command(base64.b64encode(password.encode()).decode())
        else:
            offered = " ".join(mechanisms) or "none"
            return False, f"no AUTH PLAIN or LOGIN offered (offered: {offered})"
        if reply.code == 235:
            return True, str(reply)
        if 400 <= reply.code < 500:
            return None, f"temporary AUTH failure: {reply}"
        if reply.code == 334:  # a challenge we cannot answer: cancel the exchange
            await self.command("*")
        return False, f"AUTH rejected: {reply}"


def _fmt(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"

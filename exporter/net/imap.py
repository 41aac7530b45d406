"""A small async IMAP4rev1 client: just what the round trip needs, every await bounded.

Hand-written rather than built on aioimaplib (2.0) because the probe needs three things that
library does not offer: STARTTLS (``security: starttls``), connecting to an address resolved
through the configured nameservers while verifying the certificate against the configured host
name (``server_hostname``), and an IDLE wait that can time out and be resumed without leaving the
connection in an unknown state. The subset here: greeting, CAPABILITY, STARTTLS, AUTHENTICATE
PLAIN / LOGIN, SELECT, EXAMINE, LIST, CREATE, UID SEARCH, UID FETCH (header fields, sizes, whole
messages up to a size), UID STORE, UID MOVE (or UID COPY, \\Deleted and an exact expunge),
UID EXPUNGE (or a guarded EXPUNGE), IDLE/DONE and LOGOUT. Responses are read line by line with
literals (``{n}``) taken whole, so a message header containing anything at all cannot
desynchronize it.

Errors: :class:`ImapConnectError` (TCP, timeouts, connection lost), :class:`ImapTlsError`
(handshake or certificate), :class:`ImapLoginError` (credentials refused),
:class:`ImapCommandError` (NO/BAD/BYE) and :class:`ImapLimitError` (the server sent more than a
probe ever needs), all :class:`ImapError`. The password is never sent to a log nor included in an
exception.

Limits: what the probe reads is a few header fields and a search result, so a server cannot make
it hold more than :data:`LINE_LIMIT` per line, :data:`LITERAL_LIMIT` per literal,
:data:`RESPONSE_LIMIT` per response and :data:`COMMAND_LIMIT` bytes or
:data:`UNTAGGED_LIMIT` untagged responses per command (one response of 40 literals of 16 MB
took 767 MB; a flood of untagged lines 1.73 GB). Past one, the connection is dropped and the run
fails with :class:`ImapLimitError` naming the limit.
"""

from __future__ import annotations

import asyncio
import base64
import re
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field

LINE_LIMIT = 1 << 20
"""Bytes in one response line: a UID SEARCH answer of ~100,000 UIDs."""
LITERAL_LIMIT = 1 << 20
"""Bytes in one literal: the probe fetches header fields, a few KB."""
RESPONSE_LIMIT = 4 << 20
"""Bytes in one response, its lines and literals together."""
COMMAND_LIMIT = 16 << 20
"""Bytes of all the untagged responses to one command (or one IDLE wait)."""
UNTAGGED_LIMIT = 10_000
"""Untagged responses to one command (or one IDLE wait)."""

_LITERAL_AT_END = re.compile(rb"\{(\d{1,9})\+?\}\r\n$")
_CAPABILITY_CODE = re.compile(rb"\[CAPABILITY ([^\]]*)\]", re.I)
_FETCH = re.compile(rb"\d+ FETCH ", re.I)
_FETCH_UID = re.compile(rb"\bUID (\d+)", re.I)
_EXISTS = re.compile(rb"^\d+ (EXISTS|RECENT)\b", re.I)
_RFC822_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)", re.I)
_LIST_NAME = re.compile(rb'^LIST \([^)]*\) (?:NIL|"(?:[^"\\]|\\.)*") (.*)$', re.I | re.S)


class ImapError(Exception):
    """Base of every error this client raises."""


class ImapConnectError(ImapError, ConnectionError):
    """The connection could not be made, timed out or was lost."""


class ImapTlsError(ImapError):
    """The TLS handshake failed (certificate not trusted, wrong name, no STARTTLS...)."""


class ImapLoginError(ImapError):
    """The server refused the credentials (or offers no way to log in)."""


class ImapCommandError(ImapError):
    """A command failed (NO/BAD) or the server said BYE."""


class ImapLimitError(ImapError):
    """The server sent more than the client accepts (see the module's limits)."""


@dataclass(frozen=True)
class ImapResponse:
    tag: str
    """``*`` untagged, ``+`` continuation, or the tag of the completed command."""
    text: bytes
    """The response after the tag, literals replaced by their ``{n}`` markers."""
    literals: tuple[bytes, ...] = ()
    size: int = 0
    """Bytes the response took on the wire (lines and literals)."""

    @property
    def status(self) -> str:
        return self.text.split(b" ", 1)[0].decode("ascii", "replace").upper()


def quote(value: str) -> str:
    """An IMAP quoted string (7-bit text without CR/LF)."""
    if any(c in value for c in "\r\n\0") or not value.isascii():
        raise ValueError("value cannot be sent as an IMAP quoted string")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def uid_set(uids: Iterable[int]) -> str:
    """Compact sequence set: 1,2,3,7 -> '1:3,7'."""
    ordered = sorted(set(uids))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}:{ordered[j]}")
        i = j + 1
    return ",".join(parts)


@dataclass
class ImapClient:
    """One IMAP connection. Use :meth:`open`; every network step is bounded by ``timeout``."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    timeout: float
    capabilities: set[str] = field(default_factory=set)
    changed: bool = False
    """Set when the server announced new mail (EXISTS/RECENT) outside :meth:`idle_wait`."""
    broken: bool = False
    """Set when a command was interrupted: the connection must be closed, not reused."""
    literal_limit: int = LITERAL_LIMIT
    """The largest literal (``{n}``) accepted (raised for one command by
    :meth:`fetch_message`); a larger one fails the command and breaks the connection."""
    _tagnum: int = 0
    _idle_tag: str | None = None

    # ----- connection ------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        address: str,
        port: int,
        *,
        security: str,
        server_hostname: str,
        ssl_context: ssl.SSLContext | None,
        op_timeout: float,
    ) -> ImapClient:
        """Connect to ``address`` (an IP), negotiate TLS as configured, read the greeting.

        ``op_timeout`` bounds the connection and then every later network step."""
        use_tls = security == "tls"
        try:
            async with asyncio.timeout(op_timeout):
                reader, writer = await asyncio.open_connection(
                    address,
                    port,
                    ssl=ssl_context if use_tls else None,
                    server_hostname=server_hostname if use_tls else None,
                    limit=LINE_LIMIT,
                )
        except ssl.SSLError as exc:
            raise ImapTlsError(f"TLS handshake failed: {_ssl_reason(exc)}") from None
        except TimeoutError:
            raise ImapConnectError(f"timed out connecting to {address} port {port}") from None
        except OSError as exc:
            raise ImapConnectError(
                f"cannot connect to {address} port {port}: {exc.strerror or exc}"
            ) from None
        client = cls(reader, writer, op_timeout)
        try:
            await client._greeting()
            if security == "starttls":
                await client._starttls(ssl_context, server_hostname)
        except BaseException:
            client.close()
            raise
        return client

    async def _greeting(self) -> None:
        greeting = await self._read()
        if greeting.tag != "*" or greeting.status not in ("OK", "PREAUTH"):
            raise ImapCommandError(f"unexpected greeting: {_short(greeting.text)}")
        code = _CAPABILITY_CODE.search(greeting.text)
        if code:
            self._set_capabilities(code.group(1))
        else:
            await self.refresh_capabilities()

    async def _starttls(self, ctx: ssl.SSLContext | None, server_hostname: str) -> None:
        if "STARTTLS" not in self.capabilities:
            raise ImapTlsError("the server does not offer STARTTLS")
        await self.command("STARTTLS")
        if ctx is None:
            raise ImapTlsError("no TLS context")
        try:
            async with asyncio.timeout(self.timeout):
                await self.writer.start_tls(ctx, server_hostname=server_hostname)
        except ssl.SSLError as exc:
            self.broken = True
            raise ImapTlsError(f"TLS handshake failed: {_ssl_reason(exc)}") from None
        except (TimeoutError, OSError) as exc:
            self.broken = True
            raise ImapTlsError(f"TLS handshake failed: {type(exc).__name__}") from None
        await self.refresh_capabilities()  # RFC 3501 §6.2.1: discard what was learned before

    def _set_capabilities(self, text: bytes) -> None:
        self.capabilities = {c.upper() for c in text.decode("ascii", "replace").split()}

    async def refresh_capabilities(self) -> None:
        untagged, _ = await self.command("CAPABILITY")
        for r in untagged:
            if r.text[:11].upper() == b"CAPABILITY ":
                self._set_capabilities(r.text[11:])

    def close(self) -> None:
        """Drop the connection without waiting (safe in ``finally`` and on cancellation)."""
        transport = self.writer.transport
        if not transport.is_closing():
            transport.abort()

    async def logout(self) -> None:
        """Log out politely when the connection is in a known state, then close it."""
        try:
            if not self.broken:
                if self._idle_tag is not None:
                    await self.idle_done()
                await self.command("LOGOUT")
        except ImapError:
            pass
        finally:
            self.close()

    # ----- reading and commands --------------------------------------------------------------

    async def _readline(self, wait: float) -> bytes:
        try:
            async with asyncio.timeout(wait):
                return await self.reader.readuntil(b"\r\n")
        except TimeoutError:  # an OSError subclass: must not be taken for a lost connection
            raise
        except asyncio.IncompleteReadError:
            self.broken = True
            raise ImapConnectError("the server closed the connection") from None
        except (asyncio.LimitOverrunError, ValueError):
            self.broken = True
            raise ImapLimitError(f"response line too long (over {_mib(LINE_LIMIT)})") from None
        except ssl.SSLError as exc:
            self.broken = True
            raise ImapTlsError(f"TLS error: {_ssl_reason(exc)}") from None
        except OSError as exc:
            self.broken = True
            raise ImapConnectError(f"connection lost: {exc.strerror or exc}") from None

    async def _read(self, first_timeout: float | None = None) -> ImapResponse:
        """One response; ``first_timeout`` bounds the wait for it to start (TimeoutError)."""
        try:
            line = await self._readline(self.timeout if first_timeout is None else first_timeout)
        except TimeoutError:
            if first_timeout is None:
                self.broken = True
                raise ImapConnectError("timed out waiting for the server") from None
            raise  # an idle wait that saw nothing; the connection is still in sync
        parts: list[bytes] = []
        literals: list[bytes] = []
        total = len(line)
        # A whole message fetched on purpose (fetch_message) may exceed the usual limits.
        response_limit = max(RESPONSE_LIMIT, self.literal_limit + LINE_LIMIT)
        try:  # past the first line the response must be read whole or the connection dropped
            while True:
                m = _LITERAL_AT_END.search(line)
                parts.append(line[:-2])
                if m is None:
                    break
                size = int(m.group(1))
                if size > self.literal_limit:
                    raise ImapLimitError(
                        f"literal of {size} bytes (over {_mib(self.literal_limit)})"
                    )
                total += size
                if total > response_limit:
                    raise ImapLimitError(f"response over {_mib(response_limit)}")
                async with asyncio.timeout(self.timeout):
                    literals.append(await self.reader.readexactly(size))
                line = await self._readline(self.timeout)
                total += len(line)
                if total > response_limit:
                    raise ImapLimitError(f"response over {_mib(response_limit)}")
        except (TimeoutError, asyncio.IncompleteReadError):
            self.broken = True
            raise ImapConnectError("connection lost in the middle of a response") from None
        except BaseException:
            self.broken = True
            raise
        text = b"".join(parts)
        tag, _, rest = text.partition(b" ")
        return ImapResponse(tag.decode("ascii", "replace"), rest, tuple(literals), total)

    async def _write(self, data: bytes) -> None:
        try:
            self.writer.write(data)
            async with asyncio.timeout(self.timeout):
                await self.writer.drain()
        except (TimeoutError, OSError) as exc:
            self.broken = True
            raise ImapConnectError(f"cannot send to the server: {type(exc).__name__}") from None

    def _count(self, budget: _Budget, r: ImapResponse, command: str) -> None:
        try:
            budget.spend(r, command)
        except ImapLimitError:
            self.broken = True
            raise

    def _next_tag(self) -> str:
        self._tagnum += 1
        return f"P{self._tagnum:04d}"

    async def command(
        self, line: str, *, continuation: bytes | None = None
    ) -> tuple[list[ImapResponse], ImapResponse]:
        """Send one command; return its untagged responses and the tagged OK.

        ``continuation`` is sent (once) when the server asks for more with ``+``. A NO or BAD
        raises :class:`ImapCommandError` with the server's text. The command line itself never
        appears in an error (it may hold a credential).
        """
        if self.broken:
            raise ImapConnectError("connection is not usable")
        tag = self._next_tag()
        name = line.split(" ", 1)[0].upper()
        untagged: list[ImapResponse] = []
        budget = _Budget(max(COMMAND_LIMIT, self.literal_limit + RESPONSE_LIMIT))
        interrupted = True
        try:
            await self._write(f"{tag} {line}\r\n".encode())
            while True:
                r = await self._read()
                self._count(budget, r, name)
                if r.tag == "*":
                    if r.status == "BYE":
                        self.broken = True
                        raise ImapCommandError(f"server closed the session: {_short(r.text)}")
                    if _EXISTS.match(r.text):
                        self.changed = True
                    untagged.append(r)
                elif r.tag == "+":
                    if continuation is None:
                        await self._write(b"*\r\n")  # cancel what we cannot answer
                    else:
                        await self._write(continuation + b"\r\n")
                        continuation = None
                elif r.tag == tag:
                    interrupted = False
                    if r.status != "OK":
                        raise ImapCommandError(f"{name} failed: {_short(r.text)}")
                    return untagged, r
                else:
                    self.broken = True
                    interrupted = False
                    raise ImapCommandError(f"unexpected response tag {r.tag[:20]!r}")
        finally:
            if interrupted:
                self.broken = True

    # ----- session ---------------------------------------------------------------------------

    async def login(self, username: str, password: str) -> None:
        """AUTHENTICATE PLAIN when offered (any characters), else LOGIN with quoted strings."""
        try:
            if "AUTH=PLAIN" in self.capabilities:
                token = base64.b64encode(f"\0{username}\0{password}".encode()).decode()
                if "SASL-IR" in self.capabilities:
                    await self.command(f"AUTHENTICATE PLAIN {token}")
                else:
                    await self.command("AUTHENTICATE PLAIN", continuation=token.encode())
            elif "LOGINDISABLED" in self.capabilities:
                raise ImapLoginError("the server disables LOGIN and offers no AUTH=PLAIN")
            else:
                try:
                    line = f"LOGIN {quote(username)} {quote(password)}"
                except ValueError:
                    raise ImapLoginError(
                        "the credentials need AUTH=PLAIN, which the server does not offer"
                    ) from None
                await self.command(line)
        except ImapCommandError as exc:
            raise ImapLoginError(str(exc)) from None
        await self.refresh_capabilities()

    async def select(self, mailbox: str) -> None:
        self.changed = False
        await self.command(f"SELECT {quote(mailbox)}")

    async def uid_search(self, criteria: str) -> list[int]:
        untagged, _ = await self.command(f"UID SEARCH {criteria}")
        uids: list[int] = []
        for r in untagged:
            if r.text[:7].upper() == b"SEARCH ":
                uids.extend(int(t) for t in r.text[7:].split() if t.isascii() and t.isdigit())
        return sorted(set(uids))

    async def fetch_header_fields(
        self, uids: Iterable[int], fields: Iterable[str]
    ) -> dict[int, bytes]:
        """The named header fields (raw, as in the message) of each UID."""
        wanted = sorted(set(uids))
        if not wanted:
            return {}
        names = " ".join(fields)
        untagged, _ = await self.command(
            f"UID FETCH {uid_set(wanted)} (UID BODY.PEEK[HEADER.FIELDS ({names})])"
        )
        out: dict[int, bytes] = {}
        for r in untagged:
            if not _FETCH.match(r.text):
                continue
            m = _FETCH_UID.search(r.text)
            if m is None:
                continue  # an unsolicited FLAGS update
            out[int(m.group(1))] = r.literals[0] if r.literals else b""
        return out

    async def delete(self, uids: Iterable[int]) -> bool:
        """Flag the UIDs \\Deleted and expunge exactly them; False when only flagged.

        With UIDPLUS, ``UID EXPUNGE`` removes exactly these. Without it a plain EXPUNGE would
        also remove other messages someone flagged \\Deleted, so it runs only when no other
        message is flagged; otherwise the messages stay flagged for the next run or the owner.
        """
        wanted = sorted(set(uids))
        if not wanted:
            return True
        await self.command(f"UID STORE {uid_set(wanted)} +FLAGS.SILENT (\\Deleted)")
        return await self._expunge_exactly(wanted)

    async def examine(self, mailbox: str) -> None:
        """Open a mailbox read-only (nothing in it changes, not even \\Recent)."""
        self.changed = False
        await self.command(f"EXAMINE {quote(mailbox)}")

    async def list_folders(self, pattern: str = "*") -> set[str]:
        """The names of the mailboxes matching ``pattern`` (LIST, RFC 3501 §6.3.8)."""
        untagged, _ = await self.command(f'LIST "" {quote(pattern)}')
        names: set[str] = set()
        for r in untagged:
            if r.text[:5].upper() == b"LIST ":
                name = _list_name(r)
                if name is not None:
                    names.add(name)
        return names

    async def ensure_folder(self, name: str) -> bool:
        """Create the mailbox unless it exists; True when it was created."""
        if name in await self.list_folders(name):
            return False
        try:
            await self.command(f"CREATE {quote(name)}")
        except ImapCommandError:
            if name in await self.list_folders(name):  # created meanwhile ([ALREADYEXISTS])
                return False
            raise
        return True

    async def fetch_sizes(self, uids: Iterable[int]) -> dict[int, int]:
        """RFC822.SIZE of each UID (what a whole fetch would transfer)."""
        wanted = sorted(set(uids))
        if not wanted:
            return {}
        untagged, _ = await self.command(f"UID FETCH {uid_set(wanted)} (UID RFC822.SIZE)")
        out: dict[int, int] = {}
        for r in untagged:
            uid, size = _FETCH_UID.search(r.text), _RFC822_SIZE.search(r.text)
            if _FETCH.match(r.text) and uid and size:
                out[int(uid.group(1))] = int(size.group(1))
        return out

    async def fetch_message(self, uid: int, limit: int) -> bytes | None:
        """The whole message (without setting \\Seen), or None when it is gone. A message over
        ``limit`` bytes is refused before a byte of it is read (:class:`ImapCommandError`)."""
        previous, self.literal_limit = self.literal_limit, limit
        try:
            untagged, _ = await self.command(f"UID FETCH {uid} (UID BODY.PEEK[])")
        finally:
            self.literal_limit = previous
        for r in untagged:
            found = _FETCH_UID.search(r.text)
            if _FETCH.match(r.text) and found and int(found.group(1)) == uid and r.literals:
                return r.literals[0]
        return None

    async def move(self, uids: Iterable[int], folder: str) -> bool:
        """Move the UIDs to ``folder``: UID MOVE (RFC 6851) when offered, else UID COPY, then
        \\Deleted and an expunge of exactly them. False when the originals could only be
        flagged (no UIDPLUS and other messages flagged \\Deleted: see :meth:`delete`); the
        copies are in ``folder`` either way, and nothing else is ever removed."""
        wanted = sorted(set(uids))
        if not wanted:
            return True
        target = quote(folder)
        if "MOVE" in self.capabilities:
            await self.command(f"UID MOVE {uid_set(wanted)} {target}")
            return True
        await self.command(f"UID COPY {uid_set(wanted)} {target}")
        await self.command(f"UID STORE {uid_set(wanted)} +FLAGS.SILENT (\\Deleted)")
        return await self._expunge_exactly(wanted)

    async def _expunge_exactly(self, wanted: list[int]) -> bool:
        if "UIDPLUS" in self.capabilities:
            await self.command(f"UID EXPUNGE {uid_set(wanted)}")
            return True
        flagged = await self.uid_search("DELETED")
        if set(flagged) <= set(wanted):
            await self.command("EXPUNGE")
            return True
        return False

    # ----- IDLE (RFC 2177) -------------------------------------------------------------------

    @property
    def can_idle(self) -> bool:
        return "IDLE" in self.capabilities

    async def idle_start(self) -> None:
        tag = self._next_tag()
        await self._write(f"{tag} IDLE\r\n".encode())
        budget = _Budget()
        while True:
            r = await self._read()
            self._count(budget, r, "IDLE")
            if r.tag == "+":
                self._idle_tag = tag
                return
            if r.tag == "*":
                if r.status == "BYE":
                    self.broken = True
                    raise ImapCommandError(f"server closed the session: {_short(r.text)}")
                if _EXISTS.match(r.text):
                    self.changed = True
                continue
            if r.tag == tag:
                raise ImapCommandError(f"IDLE failed: {_short(r.text)}")
            self.broken = True
            raise ImapCommandError(f"unexpected response tag {r.tag[:20]!r}")

    async def idle_wait(self, seconds: float) -> bool:
        """Wait in IDLE up to ``seconds``; True when the mailbox reported new mail."""
        if self.changed:
            self.changed = False
            return True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        budget = _Budget()
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                r = await self._read(first_timeout=remaining)
            except TimeoutError:
                return False
            self._count(budget, r, "IDLE")
            if r.tag == "*":
                if r.status == "BYE":
                    self.broken = True
                    raise ImapCommandError(f"server closed the session: {_short(r.text)}")
                if _EXISTS.match(r.text):
                    return True
            elif r.tag == self._idle_tag:  # the server ended IDLE on its own
                self._idle_tag = None
                return True

    async def idle_done(self) -> None:
        tag = self._idle_tag
        if tag is None:
            return
        self._idle_tag = None
        await self._write(b"DONE\r\n")
        budget = _Budget()
        while True:
            r = await self._read()
            self._count(budget, r, "IDLE")
            if r.tag == "*":
                if _EXISTS.match(r.text):
                    self.changed = True
                continue
            if r.tag == tag:
                return
            self.broken = True
            raise ImapCommandError(f"unexpected response tag {r.tag[:20]!r}")


def _list_name(r: ImapResponse) -> str | None:
    """The mailbox name of a LIST response: quoted, a literal or an atom."""
    m = _LIST_NAME.match(r.text)
    if m is None:
        return None
    raw = m.group(1).strip()
    if r.literals and _LITERAL_AT_END.search(raw + b"\r\n"):
        raw = r.literals[-1]
    elif raw[:1] == b'"' and raw[-1:] == b'"' and len(raw) >= 2:
        raw = re.sub(rb"\\(.)", rb"\1", raw[1:-1])
    return raw.decode("utf-8", "replace")


@dataclass
class _Budget:
    """What one command (or IDLE wait) has received so far, against the limits."""

    limit: int = COMMAND_LIMIT
    responses: int = 0
    size: int = 0

    def spend(self, r: ImapResponse, command: str) -> None:
        self.responses += 1
        self.size += r.size
        if self.responses > UNTAGGED_LIMIT:
            raise ImapLimitError(f"more than {UNTAGGED_LIMIT} responses to {command}")
        if self.size > self.limit:
            raise ImapLimitError(f"more than {_mib(self.limit)} in answer to {command}")


def _mib(n: int) -> str:
    return f"{n / (1 << 20):g} MiB"


def _short(text: bytes) -> str:
    return text.decode("utf-8", "replace").strip()[:200]


def _ssl_reason(exc: ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return exc.verify_message or "certificate verify failed"
    return exc.reason or type(exc).__name__

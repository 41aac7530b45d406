"""A minimal IMAP server holding a mailbox of report mail, for the demo's ``reports`` probe.

It speaks the real wire protocol (RFC 3501/9051 subset, plain TCP on loopback): greeting with
capabilities, CAPABILITY, NOOP, AUTHENTICATE PLAIN (SASL-IR), LOGIN, SELECT, EXAMINE, LIST,
CREATE, UID SEARCH, UID FETCH (UID, RFC822.SIZE, BODY.PEEK[] and BODY.PEEK[HEADER.FIELDS ...]),
UID MOVE (RFC 6851), LOGOUT. Mail lives in memory. Hand-written because it is only a demo
fixture (dovecot is what the tests use), and this subset is all the probe asks of a server.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
from dataclasses import dataclass, field

IDLE_TIMEOUT = 60.0
CAPABILITIES = "IMAP4rev1 AUTH=PLAIN SASL-IR MOVE UIDPLUS"
_TOKEN = re.compile(r'"((?:[^"\\]|\\.)*)"|(\S+)')


def _tokens(text: str) -> list[str]:
    return [re.sub(r"\\(.)", r"\1", q) if q or a == "" else a for q, a in _TOKEN.findall(text)]


def _uids(spec: str, present: list[int]) -> list[int]:
    top = max(present, default=0)
    wanted: set[int] = set()
    for part in spec.split(","):
        lo, _, hi = part.partition(":")
        a = top if lo == "*" else int(lo)
        b = a if not hi else (top if hi == "*" else int(hi))
        wanted.update(u for u in present if min(a, b) <= u <= max(a, b))
    return sorted(wanted)


@dataclass
class LabMailbox:
    """Folders of messages by UID; shared by every connection."""

    folders: dict[str, dict[int, bytes]] = field(default_factory=lambda: {"INBOX": {}})
    next_uid: dict[str, int] = field(default_factory=dict)

    def append(self, folder: str, message: bytes) -> int:
        self.folders.setdefault(folder, {})
        uid = self.next_uid.get(folder, 1)
        self.next_uid[folder] = uid + 1
        self.folders[folder][uid] = message
        return uid


class LabImapServer:
    """Listens on 127.0.0.1; one account (``username``/``password``) over ``mailbox``."""

    def __init__(self, username: str, password: str, mailbox: LabMailbox) -> None:
        self.username = username
        self.password = password
        self.mailbox = mailbox
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> LabImapServer:
        self._server = await asyncio.start_server(self._handle, host, port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = _Session(self, writer)
        try:
            await session.send(f"* OK [CAPABILITY {CAPABILITIES}] demo lab IMAP ready")
            while not session.done:
                raw = await asyncio.wait_for(reader.readline(), IDLE_TIMEOUT)
                if not raw:
                    return
                await session.command(raw.decode("utf-8", "replace").rstrip("\r\n"))
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


@dataclass
class _Session:
    server: LabImapServer
    writer: asyncio.StreamWriter
    user: bool = False
    selected: str | None = None
    done: bool = False

    async def send(self, line: str | bytes) -> None:
        data = line if isinstance(line, bytes) else line.encode()
        self.writer.write(data + b"\r\n")
        await self.writer.drain()

    async def command(self, line: str) -> None:
        tag, _, rest = line.partition(" ")
        name, _, args = rest.partition(" ")
        name = name.upper()
        if name == "UID":
            sub, _, args = args.partition(" ")
            name = "UID " + sub.upper()
        try:
            reply = await self._dispatch(name, args)
        except (ValueError, IndexError, KeyError) as exc:
            reply = f"BAD {name or 'command'}: {exc}"
        await self.send(f"{tag} {reply}")

    async def _dispatch(self, name: str, args: str) -> str:
        box = self.server.mailbox
        if name in ("CAPABILITY", "NOOP", "LOGOUT"):
            if name == "CAPABILITY":
                await self.send(f"* CAPABILITY {CAPABILITIES}")
            if name == "LOGOUT":
                await self.send("* BYE demo lab IMAP")
                self.done = True
            return f"OK {name} completed"
        if name in ("AUTHENTICATE", "LOGIN"):
            words = _tokens(args)
            if name == "AUTHENTICATE":
                _, user, password = base64.b64decode(words[1]).decode().split("\0")
            else:
                user, password = words[0], words[1]
            self.user = (user, password) == (self.server.username, self.server.password)
            return "OK logged in" if self.user else "NO [AUTHENTICATIONFAILED] wrong credentials"
        if not self.user:
            return "NO log in first"
        if name in ("SELECT", "EXAMINE"):
            folder = _tokens(args)[0]
            if folder not in box.folders:
                return "NO [NONEXISTENT] no such folder"
            self.selected = folder
            await self.send(f"* {len(box.folders[folder])} EXISTS")
            await self.send(f"* OK [UIDNEXT {box.next_uid.get(folder, 1)}] next")
            mode = "READ-ONLY" if name == "EXAMINE" else "READ-WRITE"
            return f"OK [{mode}] {name} completed"
        if name == "LIST":
            pattern = _tokens(args)[1]
            regex = re.escape(pattern).replace(r"\*", ".*").replace("%", "[^/]*")
            for folder in sorted(box.folders):
                if re.fullmatch(regex, folder):
                    await self.send(f'* LIST () "/" "{folder}"')
            return "OK LIST completed"
        if name == "CREATE":
            folder = _tokens(args)[0]
            if folder in box.folders:
                return "NO [ALREADYEXISTS] folder exists"
            box.folders[folder] = {}
            return "OK CREATE completed"
        if self.selected is None:
            return "NO select a folder first"
        messages = box.folders[self.selected]
        order = sorted(messages)
        if name == "UID SEARCH":
            await self.send("* SEARCH " + " ".join(map(str, order)))
            return "OK SEARCH completed"
        if name == "UID FETCH":
            spec, _, items = args.partition(" ")
            for uid in _uids(spec, order):
                await self._fetch(order.index(uid) + 1, uid, messages[uid], items.upper())
            return "OK FETCH completed"
        if name == "UID MOVE":
            spec, _, folder_arg = args.partition(" ")
            folder = _tokens(folder_arg)[0]
            if folder not in box.folders:
                return "NO [TRYCREATE] no such folder"
            for uid in reversed(_uids(spec, order)):
                box.append(folder, messages.pop(uid))
                await self.send(f"* {order.index(uid) + 1} EXPUNGE")
            return "OK MOVE completed"
        return f"BAD unsupported command {name}"

    async def _fetch(self, seq: int, uid: int, message: bytes, items: str) -> None:
        if "BODY.PEEK[HEADER.FIELDS" in items:
            data = message.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
            head = f"* {seq} FETCH (UID {uid} BODY[HEADER.FIELDS] {{{len(data)}}}"
        elif "BODY.PEEK[]" in items:
            data = message
            head = f"* {seq} FETCH (UID {uid} BODY[] {{{len(data)}}}"
        else:
            await self.send(f"* {seq} FETCH (UID {uid} RFC822.SIZE {len(message)})")
            return
        await self.send(head.encode() + b"\r\n" + data + b")")

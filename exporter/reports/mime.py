"""Report mail: the DMARC aggregate and TLS-RPT reports carried by one message.

The message is parsed with the standard library's :mod:`email` (``compat32`` policy: it never
raises on malformed headers or bodies, it records defects), walked breadth-first with a cap on
parts and nesting (so a message of ten thousand nested multiparts costs nothing). Mail parsers
on PyPI (``mail-parser``, which parsedmarc uses; ``flanker``) add header decoding and
attachment helpers this does not need and bring their own dependency trees.

Which parts may hold a report: attachments named ``.xml``, ``.xml.gz``, ``.gz``, ``.zip``,
``.json``, ``.json.gz`` (names decoded from RFC 2231 and RFC 2047); parts of the types reporters
use (``application/gzip``, ``application/zip``, ``application/xml``, ``text/xml``,
``application/tlsrpt+json``, ``application/tlsrpt+gzip``, ``application/json``,
``application/octet-stream`` and their ``x-`` variants); and an inline text body that starts
like XML or JSON (some reporters put the XML in the body). A forwarded report mail is opened and
walked like the message itself, within the same caps: ``message/rfc822`` (also base64-encoded),
``message/global``, ``application/eml`` and any attachment named ``.eml``. What a part *is* is
decided from its bytes, not its label: gzip or zip magic is inflated
(:mod:`exporter.reports.archive`, with its size and ratio caps), then a document starting with
``<`` is read as a DMARC aggregate report and one starting with ``{`` as a TLS report. At most
:attr:`Limits.attachments` candidate parts are examined, each at most
:attr:`Limits.attachment_bytes` once its transfer encoding is undone.

Errors: :func:`extract` and :func:`parse_message` raise :class:`MessageError` (a
:class:`~exporter.reports.archive.ReportError`) only when the message as a whole is refused
(too large); a part that cannot be read is a ``problem`` in the result, so one broken
attachment does not hide a good one beside it.
"""

from __future__ import annotations

import binascii
import email
import email.errors
import email.header
import email.message
import email.policy
import email.utils
import quopri
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from exporter.reports.archive import (
    Limits,
    ReportError,
    ReportTooLarge,
    ReportTooSlow,
    check_deadline,
    gunzip,
    sniff_archive,
    unzip,
)
from exporter.reports.dmarc import AggregateReport, parse_aggregate
from exporter.reports.tlsrpt import TlsReport, parse_tlsrpt

REPORT_TYPES = frozenset(
    {
        "application/gzip",
        "application/x-gzip",
        "application/x-gzip-compressed",
        "application/zip",
        "application/x-zip",
        "application/x-zip-compressed",
        "application/xml",
        "text/xml",
        "application/tlsrpt+json",
        "application/tlsrpt+gzip",
        "application/json",
        "application/octet-stream",
    }
)
REPORT_SUFFIXES = (".xml", ".gz", ".gzip", ".zip", ".json")

Kind = Literal["dmarc", "tlsrpt"]


class MessageError(ReportError):
    """The message as a whole was refused (larger than :attr:`Limits.message_bytes`)."""


@dataclass(frozen=True, slots=True)
class Document:
    """One report document, decompressed, with what it looks like."""

    kind: Kind
    name: str
    """Where it was found: the attachment's file name (``name:member`` inside a zip) or
    ``part N``."""
    data: bytes


@dataclass(frozen=True, slots=True)
class Extraction:
    documents: tuple[Document, ...]
    problems: tuple[str, ...]
    """Parts that looked like reports but could not be read, each with why."""


@dataclass(frozen=True, slots=True)
class MessageReports:
    """What one message holds: its parsed reports and what could not be read."""

    dmarc: tuple[AggregateReport, ...] = ()
    tlsrpt: tuple[TlsReport, ...] = ()
    problems: tuple[str, ...] = field(default=())

    @property
    def empty(self) -> bool:
        """No parseable report at all: the message belongs in the invalid folder."""
        return not self.dmarc and not self.tlsrpt


def parse_message(raw: bytes, limits: Limits | None = None) -> MessageReports:
    """Every report in one message, parsed; unreadable parts listed in ``problems``. With
    :attr:`Limits.parse_seconds`, a message whose reports take longer to read holds none (each
    document past the deadline is a problem): it is refused as a whole, not half counted."""
    lim = limits or Limits()
    seconds = lim.parse_seconds
    deadline = None if seconds is None else time.monotonic() + seconds
    found = extract(raw, lim)
    dmarc: list[AggregateReport] = []
    tlsrpt: list[TlsReport] = []
    problems = list(found.problems)
    for doc in found.documents:
        try:
            check_deadline(deadline, seconds)
            if doc.kind == "dmarc":
                dmarc.append(parse_aggregate(doc.data, deadline))
            else:
                tlsrpt.append(parse_tlsrpt(doc.data, deadline))
        except ReportTooSlow:
            return MessageReports(problems=(f"{doc.name}: parsing took over {seconds} s",))
        except ReportError as exc:
            problems.append(f"{doc.name}: {exc}")
    return MessageReports(tuple(dmarc), tuple(tlsrpt), tuple(problems))


def extract(raw: bytes, limits: Limits | None = None) -> Extraction:
    """The report documents of one message, decompressed within ``limits``."""
    lim = limits or Limits()
    if len(raw) > lim.message_bytes:
        raise MessageError(f"message of {len(raw)} bytes, over {lim.message_bytes}")
    try:
        message = email.message_from_bytes(raw, policy=email.policy.compat32)
    except (ValueError, LookupError, TypeError, RecursionError) as exc:
        raise MessageError(f"unreadable message ({type(exc).__name__})") from None
    state = _State(lim)
    for index, part in _walk(message, lim, state):
        state.examine(index, part)
    return Extraction(tuple(state.documents), tuple(state.problems))


class _State:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.documents: list[Document] = []
        self.problems: list[str] = []
        self.candidates = 0
        self.total = 0

    def examine(self, index: int, part: email.message.Message) -> None:
        name = _filename(part)
        ctype = _content_type(part)
        labelled = ctype in REPORT_TYPES or name.lower().endswith(REPORT_SUFFIXES)
        if not labelled and not ctype.startswith("text/"):
            return
        payload = _decoded(part)
        if not payload:
            return
        if not labelled and not _looks_like_report(payload):
            return  # an ordinary text body
        where = name or f"part {index}"
        self.candidates += 1
        if self.candidates > self.limits.attachments:
            if self.candidates == self.limits.attachments + 1:
                cap = self.limits.attachments
                self.problems.append(f"more than {cap} attachments: rest ignored")
            return
        if len(payload) > self.limits.attachment_bytes:
            self.problems.append(
                f"{where}: {len(payload)} bytes, over {self.limits.attachment_bytes}: refused"
            )
            return
        try:
            self._add(where, payload, labelled)
        except ReportError as exc:
            self.problems.append(f"{where}: {exc}")

    def _add(self, where: str, payload: bytes, labelled: bool) -> None:
        archive = sniff_archive(payload)
        if archive == "gzip":
            self._document(where, gunzip(payload, self.limits, where))
        elif archive == "zip":
            for member, data in unzip(payload, self.limits, where):
                self._document(f"{where}:{member}", data, quiet=True)
        else:
            self._document(where, payload, quiet=not labelled)

    def _document(self, where: str, data: bytes, quiet: bool = False) -> None:
        self.total += len(data)
        if self.total > self.limits.total_bytes:
            raise ReportTooLarge(f"reports of this message exceed {self.limits.total_bytes} bytes")
        kind = _kind(data)
        if kind is None:
            if not quiet or not _ignorable_member(where):
                self.problems.append(f"{where}: neither XML nor JSON")
            return
        self.documents.append(Document(kind, where, data))


def _walk(
    message: email.message.Message, limits: Limits, state: _State
) -> list[tuple[int, email.message.Message]]:
    """The leaf parts, breadth-first, within the part and depth caps."""
    leaves: list[tuple[int, email.message.Message]] = []
    queue: deque[tuple[email.message.Message, int]] = deque([(message, 0)])
    seen = 0
    while queue:
        part, depth = queue.popleft()
        seen += 1
        if seen > limits.mime_parts:
            state.problems.append(f"more than {limits.mime_parts} MIME parts: rest ignored")
            break
        if part.is_multipart():
            if depth >= limits.mime_depth:
                state.problems.append(f"MIME nesting deeper than {limits.mime_depth}: ignored")
                continue
            children = part.get_payload()
            encoded = _encoded_message(part, children)
            if encoded is not None:
                queue.append((encoded, depth + 1))
            elif isinstance(children, list):
                queue.extend(
                    (c, depth + 1) for c in children if isinstance(c, email.message.Message)
                )
            continue
        if _attached_message(part):
            # a forwarded report mail: message/rfc822 sent base64-encoded (RFC 2046 forbids
            # it; clients do it), or a .eml file attached as application/octet-stream...
            if depth >= limits.mime_depth:
                state.problems.append(f"MIME nesting deeper than {limits.mime_depth}: ignored")
                continue
            inner = _decoded(part)
            if inner:
                queue.append(
                    (email.message_from_bytes(inner, policy=email.policy.compat32), depth + 1)
                )
            continue
        leaves.append((seen, part))
    return leaves


MESSAGE_TYPES = frozenset({"message/rfc822", "message/global", "application/eml",
                           "application/x-eml"})  # fmt: skip
"""Content types of an attached mail message (also: any part whose file name ends ``.eml``)."""


def _attached_message(part: email.message.Message) -> bool:
    return _content_type(part) in MESSAGE_TYPES or _filename(part).lower().endswith(".eml")


def _encoded_message(part: email.message.Message, children: object) -> email.message.Message | None:
    """A forwarded message sent base64- or quoted-printable-encoded (RFC 2046 forbids it; some
    clients do it): the email package parses the encoded text as a message without headers."""
    if _content_type(part) != "message/rfc822" or not isinstance(children, list):
        return None
    encoding = str(part.get("content-transfer-encoding", "")).strip().lower()
    if encoding not in ("base64", "quoted-printable") or len(children) != 1:
        return None
    child = children[0]
    text = child.get_payload() if isinstance(child, email.message.Message) else None
    if not isinstance(text, str) or child.keys():
        return None
    data = text.encode("ascii", "ignore")
    try:
        raw = binascii.a2b_base64(data) if encoding == "base64" else quopri.decodestring(data)
    except ValueError:
        return None
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def _decoded(part: email.message.Message) -> bytes | None:
    try:
        payload = part.get_payload(decode=True)
    except (ValueError, LookupError, TypeError, AssertionError):
        return None
    return payload if isinstance(payload, bytes) else None


def _filename(part: email.message.Message) -> str:
    try:
        name = part.get_filename() or part.get_param("name") or ""
    except (ValueError, LookupError, TypeError, AssertionError):
        return ""
    if isinstance(name, tuple):  # an RFC 2231 value the email package left undecoded
        name = email.utils.collapse_rfc2231_value(name)
    text = str(name)[:2000].replace("\r", "").replace("\n", "").strip()
    if "=?" in text:
        text = _encoded_words(text)
    return "".join(c for c in text if c.isprintable())[:200]


def _encoded_words(text: str) -> str:
    """RFC 2047 encoded-words decoded (``=?utf-8?B?...?=``): not allowed in a parameter, sent
    in file names all the same by many clients. An unknown charset reads as UTF-8 with
    replacements (the ASCII suffix that matters survives); an undecodable text stays as it is."""
    try:
        words = email.header.decode_header(text)
    except (email.errors.HeaderParseError, ValueError, LookupError, UnicodeError):
        return text
    out: list[str] = []
    for chunk, charset in words:
        if isinstance(chunk, str):
            out.append(chunk)
            continue
        try:
            out.append(chunk.decode(charset or "ascii", "replace"))
        except LookupError:
            out.append(chunk.decode("utf-8", "replace"))
    return "".join(out)


def _content_type(part: email.message.Message) -> str:
    try:
        return part.get_content_type().lower()
    except (ValueError, LookupError, TypeError, AttributeError):
        return "application/octet-stream"


def _looks_like_report(payload: bytes) -> bool:
    head = payload[:512]
    if b"\0" in head[:8]:  # UTF-16 (with or without a byte order mark): its ASCII is enough
        head = head.replace(b"\0", b"").lstrip(b"\xff\xfe")
    head = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if sniff_archive(head):
        return True
    if head.startswith(b"{"):
        return b"organization-name" in payload[:4096] or b"policies" in payload[:4096]
    return head.startswith((b"<?xml", b"<feedback")) or b"<feedback" in head


def _kind(data: bytes) -> Kind | None:
    head = data[:1024].lstrip(b"\xef\xbb\xbf\xff\xfe \t\r\n\0")
    if head.startswith(b"<"):
        return "dmarc"
    if head.startswith(b"{"):
        return "tlsrpt"
    return None


def _ignorable_member(where: str) -> bool:
    """Zip members that are not reports and need no mention (``__MACOSX/`` resource forks...)."""
    member = where.rpartition(":")[2].lower()
    return member.startswith("__macosx/") or member.endswith((".txt", ".ds_store"))

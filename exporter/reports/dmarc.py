"""DMARC aggregate report parser: RFC 7489 appendix C and RFC 9990, as real reporters send them.

XML goes through defusedxml's ``iterparse`` over the standard library's expat, with entity
declarations, external DTDs and external references forbidden (``EntitiesForbidden``,
``DTDForbidden``, ``ExternalReferenceForbidden``: no billion laughs, no XXE). A ``DOCTYPE`` that
only names the root (some reporters write one) or whose internal subset declares no entity
(elements, attributes, comments) is harmless and read. The document is fed in 512 KiB pieces and
each record is emptied once read, so memory follows the piece size and the records kept, not the
tree of the whole report. Cost (``bench/reports_bench.py``, a 1 MB report of 1,663 records, 2
shared vCPUs): about 10 reports/s (10 MB/s), 6.4 MiB peak of Python allocations; defusedxml's
parser is the standard library's pure-Python ``XMLParser`` with guards, about three times slower
than the C-accelerated one without them, a price worth paying on mail anyone can send.

Libraries considered: parsedmarc (Apache-2.0) is the reference parser, but it pulls in lxml,
xmltodict, mailparser, expiringdict, geoip2, dnspython-based enrichment and the Elasticsearch,
OpenSearch, Kafka and Splunk clients (dozens of packages) for what is here a few hundred lines;
xmltodict or lxml alone would still need the defusing that defusedxml gives the standard
library parser. defusedxml (PSF licence, no dependencies) is the one new dependency; the
quirk handling below follows what parsedmarc learned from real reports, written afresh.

Tolerated (seen in the wild): any namespace or none (RFC 7489 has none, RFC 9990 has
``urn:ietf:params:xml:ns:dmarc-2.0``, some reporters use ``http://dmarc.org/dmarc-xml/0.1``);
upper-case element names and values; an XML declaration naming the wrong encoding or one Python
does not know; UTF-16 without a byte order mark (told from the byte pattern); junk before the
root or after its end; control characters; an embedded ``xs:schema`` block; an empty
``org_name`` (the reporter is then the domain of ``email``); ``identities`` for ``identifiers``;
empty ``reason`` elements; missing ``auth_results``; RFC 9990's ``pass`` disposition (counted as
``none``: no action taken). A record without a usable source IP or count is skipped and counted
in ``skipped_records``; a report without a policy domain or a date range is refused. A report
without ``report_id`` gets one from the SHA-256 of its content, so a resent copy is still
counted once.

Errors: :class:`DmarcReportError` only (and, past a deadline given to :func:`parse_aggregate`,
:class:`~exporter.reports.archive.ReportTooSlow`).
"""

from __future__ import annotations

import codecs
import hashlib
import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal
from xml.etree.ElementTree import Element, ParseError, TreeBuilder

from defusedxml import DefusedXmlException, DTDForbidden
from defusedxml.ElementTree import DefusedXMLParser, iterparse

from exporter.idn import a_label
from exporter.reports.archive import ReportError, ReportTooSlow, check_deadline

RFC9990_NS = "urn:ietf:params:xml:ns:dmarc-2.0"
MAX_COUNT = 10**9
"""Messages in one record: more is a corrupt or hostile report, not traffic."""
MAX_TIMESTAMP = 1 << 37
CHUNK = 512 << 10

_DECLARATION = re.compile(rb"^\s*<\?xml[^>]*\?>", re.I)
_ENCODING = re.compile(rb"""encoding\s*=\s*["']([A-Za-z0-9._:-]{1,40})["']""", re.I)
_ROOT_END = re.compile(rb"</(?:[\w.-]+:)?feedback\s*>", re.I)
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_SPACE = re.compile(r"\s+")


class DmarcReportError(ReportError):
    """Not a DMARC aggregate report, or one too broken to count."""


@dataclass(frozen=True, slots=True)
class AuthResult:
    """One ``auth_results`` entry: DKIM (``scope`` is the selector) or SPF (``mfrom``/``helo``)."""

    domain: str
    result: str
    scope: str = ""


@dataclass(frozen=True, slots=True)
class AggregateRecord:
    """One ``record``: ``count`` messages from ``source_ip`` evaluated alike."""

    source_ip: str
    count: int
    disposition: Literal["none", "quarantine", "reject"]
    dkim: str
    """DKIM as evaluated for DMARC (aligned): ``pass`` or ``fail``."""
    spf: str
    """SPF as evaluated for DMARC (aligned): ``pass`` or ``fail``."""
    header_from: str
    envelope_from: str = ""
    dkim_results: tuple[AuthResult, ...] = ()
    spf_results: tuple[AuthResult, ...] = ()
    reasons: tuple[str, ...] = ()

    @property
    def dmarc(self) -> Literal["pass", "fail"]:
        """DMARC passes when DKIM or SPF passed aligned."""
        return "pass" if "pass" in (self.dkim, self.spf) else "fail"


@dataclass(frozen=True, slots=True)
class AggregateReport:
    reporter: str
    """The ``org_name`` (or, when empty, the domain of the report's ``email``)."""
    report_id: str
    begin: int
    end: int
    """The period covered, seconds since the epoch."""
    domain: str
    """``policy_published/domain``: the domain the report is about."""
    policy: str
    records: tuple[AggregateRecord, ...]
    schema: Literal["rfc7489", "rfc9990"]
    email: str = ""
    skipped_records: int = 0

    @property
    def key(self) -> tuple[str, str]:
        """How the report names itself: reporter and report id."""
        return (self.reporter, self.report_id)

    @property
    def dedup_key(self) -> tuple[str, str, str, int, int]:
        """What a report is counted once by: reporter, report id, policy domain and period.
        Real reporters reuse a report id across domains and periods (a per-day or per-domain
        counter), so reporter and id alone would drop distinct reports."""
        return (self.reporter, self.report_id, self.domain, self.begin, self.end)


def parse_aggregate(data: bytes, deadline: float | None = None) -> AggregateReport:
    """Parse one DMARC aggregate report (the XML, already decompressed). With a ``deadline``
    (``time.monotonic()``), :class:`~exporter.reports.archive.ReportTooSlow` once it passes."""
    digest = hashlib.sha256(data).hexdigest()[:32]
    try:
        return _parse(_tidy(_utf8(data, transcode=False)), digest, deadline)
    except DmarcReportError:
        if not _fast_path_taken(data) or _valid_utf8(data):
            raise
    # bytes that are not UTF-8 under a UTF-8 (or no) declaration: read them as Latin-1
    return _parse(_tidy(_utf8(data, transcode=True)), digest, deadline)


DEADLINE_EVERY = 512
"""Sections between two looks at the clock."""


def _parse(xml: bytes, digest: str, deadline: float | None) -> AggregateReport:
    builder = _Builder(digest)
    try:
        for n, elem in enumerate(_sections(xml, builder)):
            builder.child(elem)
            if n % DEADLINE_EVERY == 0:
                check_deadline(deadline)
    except ReportTooSlow:
        raise
    except DefusedXmlException as exc:
        raise DmarcReportError(f"refused XML: {type(exc).__name__}") from None
    except (ParseError, LookupError, ValueError) as exc:
        raise DmarcReportError(f"not well-formed XML: {exc}") from None
    except RecursionError:
        raise DmarcReportError("XML nested too deeply") from None
    return builder.report()


def _declared(data: bytes) -> str | None:
    """The codec of the XML declaration's encoding, when it names one that could be right."""
    declared = _DECLARATION.match(data[:1024])
    found = declared and _ENCODING.search(declared.group(0))
    if not found:
        return None
    name = found.group(1).decode("ascii")
    try:
        codec = codecs.lookup(name).name
        # the declaration itself was read as ASCII: an encoding where it is not cannot be right
        return codec if "<?xml".encode(codec) == b"<?xml" else None
    except (LookupError, UnicodeError):
        return None


def _bomless_utf16(data: bytes) -> str | None:
    """``utf-16-le`` or ``utf-16-be`` when the document is UTF-16 without a byte order mark,
    told from its first characters (XML 1.0 appendix F): a document starts with ``<`` or white
    space, ASCII characters whose other byte is zero; UTF-8 XML never holds a zero byte."""
    head = data[:8]
    if len(head) < 8:
        return None
    for codec, text, zeros in (("utf-16-le", head[0::2], head[1::2]),
                               ("utf-16-be", head[1::2], head[0::2])):  # fmt: skip
        if not any(zeros) and all(text):
            start = data[:1024].decode(codec, "replace").lstrip(" \t\r\n")
            return codec if start.startswith("<") else None
    return None


def _fast_path_taken(data: bytes) -> bool:
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or _bomless_utf16(data):
        return False
    return _declared(data) in (None, "utf-8", "ascii")


def _valid_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _utf8(data: bytes, transcode: bool) -> bytes:
    """The document in UTF-8: as it is when it says it is UTF-8 (or says nothing; expat checks
    it), else decoded with its declared encoding, UTF-8 or Latin-1, whichever works first."""
    if data.startswith(codecs.BOM_UTF8):
        return data[3:]
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16", "replace").encode("utf-8")
    utf16 = _bomless_utf16(data)
    if utf16 is not None:  # its declaration (UTF-16, or a wrong one) goes in _tidy
        return data.decode(utf16, "replace").encode("utf-8")
    codec = _declared(data)
    if not transcode and codec in (None, "utf-8", "ascii"):
        return data
    for encoding in (codec or "utf-8", "utf-8", "latin-1"):
        try:
            return data.decode(encoding).encode("utf-8")
        except UnicodeError:
            continue
    return data  # unreachable: Latin-1 decodes anything


def _tidy(xml: bytes) -> bytes:
    """The root element alone: junk before it, the declaration (some reporters write two) and
    processing instructions, anything after its end, an ``xs:schema`` block and control
    characters removed."""
    pos = xml.find(b"<")
    if pos < 0:
        raise DmarcReportError("no XML in the document")
    while xml.startswith(b"<?", pos):
        end = xml.find(b"?>", pos)
        if end < 0:
            break
        pos = end + 2
        while xml[pos : pos + 1].isspace():
            pos += 1
    stop = len(xml)
    for match in _ROOT_END.finditer(xml, pos):
        stop = match.end()
    if pos or stop < len(xml):
        xml = xml[pos:stop]
    for _ in range(4):  # str.find, not a regex: a thousand unclosed blocks stay linear
        start = xml.find(b"<xs:schema")
        end = xml.find(b"</xs:schema>", start)
        if start < 0 or end < 0:
            break
        xml = xml[:start] + xml[end + len(b"</xs:schema>") :]
    if _CONTROL.search(xml):
        xml = _CONTROL.sub(b"", xml)
    return xml


class _Parser(DefusedXMLParser):
    """defusedxml's parser refusing external DTDs, not every DTD: entity declarations are
    refused by ``forbid_entities`` wherever they are."""

    def defused_start_doctype_decl(
        self, name: str, sysid: str | None, pubid: str | None, has_internal_subset: bool
    ) -> None:
        if sysid or pubid:
            raise DTDForbidden(name, sysid, pubid)


def _sections(xml: bytes, builder: _Builder) -> Iterator[Element]:
    """The sections of the report (``report_metadata``, ``policy_published``, each ``record``)
    as they complete, their tags (and their descendants') rewritten to lower-case local names.
    A record is emptied once handled, so memory follows the largest record."""
    names: dict[str, str] = {}
    last: Element | None = None
    last_tag = ""
    parser = _Parser(target=TreeBuilder(), forbid_dtd=True, forbid_entities=True,
                     forbid_external=True)  # fmt: skip
    events = iterparse(_Chunks(xml), events=("end",), parser=parser)
    for _, elem in events:
        tag = elem.tag
        local = names.get(tag)
        if local is None:
            local = names[tag] = tag.rsplit("}", 1)[-1].lower()
        elem.tag = local
        last, last_tag = elem, tag
        if local in _SECTIONS:
            yield elem
            if local == "record":
                elem.clear()
    if last is None:
        raise DmarcReportError("empty document")
    if last.tag != "feedback":
        raise DmarcReportError(f"root element is <{last.tag[:40]}>, not <feedback>")
    builder.namespace = last_tag[1:].split("}")[0] if last_tag[:1] == "{" else ""


_SECTIONS = frozenset({"record", "report_metadata", "policy_published"})


class _Chunks:
    """The document in pieces of :data:`CHUNK` bytes for ``iterparse``, which asks for 16 KiB
    at a time: expat rescans an unfinished token from its start on every feed, so a 10 MB
    token fed 16 KiB at a time costs seconds; a few large feeds cost milliseconds (and the
    elements of one piece are all that wait in the event queue)."""

    def __init__(self, data: bytes) -> None:
        self.view = memoryview(data)
        self.pos = 0

    def read(self, _size: int = -1) -> bytes:
        piece = self.view[self.pos : self.pos + CHUNK]
        self.pos += len(piece)
        return bytes(piece)


def _text(elem: Element | None) -> str:
    if elem is None or elem.text is None:
        return ""
    return _SPACE.sub(" ", elem.text).strip()


def _find(elem: Element | None, *names: str) -> Element | None:
    """The first descendant along ``names``."""
    for name in names:
        if elem is None:
            return None
        elem = elem.find(name)
    return elem


def _all(elem: Element | None, name: str) -> list[Element]:
    return [] if elem is None else elem.findall(name)


def _value(elem: Element | None, *names: str) -> str:
    return _text(_find(elem, *names))


def _number(text: str, limit: int, truncate: bool = False) -> int | None:
    """A non-negative integer (``12``, ``12.0``; ``12.5`` only with ``truncate``: a time may
    have a fraction of a second, a count of messages may not), or None."""
    whole, _, fraction = text.partition(".")
    if not whole.isdecimal() or not whole.isascii() or not (fraction.isdecimal() or not fraction):
        return None
    if fraction.strip("0") and not truncate:
        return None
    if len(whole) > 20:
        return None
    value = int(whole)
    return value if value <= limit else None


def _domain(text: str) -> str:
    """Lower case, A-labels (a name that is not a valid IDN as written), bounded."""
    text = text.strip().rstrip(".").lower()
    return (a_label(text) or text)[:253]


def _label(text: str, limit: int = 128) -> str:
    return "".join(c for c in text if c.isprintable()).strip()[:limit]


class _Builder:
    """Accumulates the report from the root's children as they complete."""

    def __init__(self, digest: str) -> None:
        self.digest = digest
        self.namespace = ""
        self.metadata: Element | None = None
        self.published: Element | None = None
        self.records: list[AggregateRecord] = []
        self.skipped = 0

    def child(self, elem: Element) -> None:
        name = elem.tag
        if name == "record":
            record = _record(elem)
            if record is None:
                self.skipped += 1
            else:
                self.records.append(record)
        elif name == "report_metadata" and self.metadata is None:
            self.metadata = elem
        elif name == "policy_published" and self.published is None:
            self.published = elem

    def report(self) -> AggregateReport:
        meta, published = self.metadata, self.published
        if meta is None:
            raise DmarcReportError("no <report_metadata>")
        if published is None:
            raise DmarcReportError("no <policy_published>")
        domain = _domain(_value(published, "domain"))
        if not domain:
            raise DmarcReportError("no <policy_published><domain>")
        begin = _number(_value(meta, "date_range", "begin"), MAX_TIMESTAMP, truncate=True)
        end = _number(_value(meta, "date_range", "end"), MAX_TIMESTAMP, truncate=True)
        if end is None:
            raise DmarcReportError("no usable <date_range><end>")
        email = _label(_value(meta, "email"), 254)
        reporter = _label(_value(meta, "org_name"))
        if not reporter:
            reporter = _domain(email.rpartition("@")[2]) or "unknown"
        report_id = _label(_value(meta, "report_id").strip("<>"), 256)
        return AggregateReport(
            reporter=reporter,
            report_id=report_id or f"sha256:{self.digest}",
            begin=end if begin is None else min(begin, end),
            end=end,
            domain=domain,
            policy=_value(published, "p").lower()[:16],
            records=tuple(self.records),
            schema="rfc9990" if self.namespace == RFC9990_NS else "rfc7489",
            email=email,
            skipped_records=self.skipped,
        )


def _disposition(text: str) -> Literal["none", "quarantine", "reject"]:
    value = text.lower()
    if value.startswith("reject"):
        return "reject"
    if value.startswith("quarantine"):
        return "quarantine"
    return "none"  # "none", RFC 9990's "pass", and anything unreadable: no action known


def _pass_or_fail(text: str) -> str:
    return "pass" if text.lower() == "pass" else "fail"


def _record(elem: Element) -> AggregateRecord | None:
    row = _find(elem, "row")
    try:
        source_ip = str(ipaddress.ip_address(_value(row, "source_ip")))
    except ValueError:
        return None
    count = _number(_value(row, "count"), MAX_COUNT)
    if count is None:
        return None
    evaluated = _find(row, "policy_evaluated")
    identifiers = _find(elem, "identifiers")
    if identifiers is None:
        identifiers = _find(elem, "identities")  # the 2012 draft's name
    auth = _find(elem, "auth_results")
    types = (_value(reason, "type").lower()[:32] for reason in _all(evaluated, "reason"))
    reasons = tuple(t for t in types if t)
    return AggregateRecord(
        source_ip=source_ip,
        count=count,
        disposition=_disposition(_value(evaluated, "disposition")),
        dkim=_pass_or_fail(_value(evaluated, "dkim")),
        spf=_pass_or_fail(_value(evaluated, "spf")),
        header_from=_domain(_value(identifiers, "header_from")),
        envelope_from=_domain(_value(identifiers, "envelope_from")),
        dkim_results=tuple(
            AuthResult(
                _domain(_value(d, "domain")),
                _value(d, "result").lower()[:16] or "none",
                _label(_value(d, "selector"), 64),
            )
            for d in _all(auth, "dkim")
        ),
        spf_results=tuple(
            AuthResult(
                _domain(_value(s, "domain")),
                _value(s, "result").lower()[:16] or "none",
                _value(s, "scope").lower()[:8],
            )
            for s in _all(auth, "spf")
        ),
        reasons=reasons,
    )

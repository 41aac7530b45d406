"""A fast reader for the common simple DNS reply, and a fast encoder for plain query names.

Why hand-written: the shared UDP transport (:class:`exporter.net.dnstransport.UdpTransport`)
read every reply with dnspython's ``dns.message.from_wire`` and ``resolve_chaining``, 145-245
microseconds of CPU for the one-record replies a probe cycle gets (TXT 147 us, DKIM TXT 164 us,
MX with one glue A 245 us, NODATA with a SOA 240 us): the biggest single piece of the CPU of a
1,000-domain DNS cycle (7,030 replies). ``bench/dnswire_bench.py`` measures both on knot's
replies for the scale bench's zones: reading them here and constructing the same dnspython rdata
objects directly (about 10 us of it per record) costs 23-33 us for a one-record answer and 7-8
us for a NODATA or NXDOMAIN, against 200-390 us through dnspython on the same (loaded) machine,
8-47x less. In the 1,000-domain cycle (``bench/cycle.py --kinds dns``) it reads all 7,030
replies, and the cycle's CPU went from 4.3-5.1 s to 2.7-3.0 s (the same tree with it switched
off and on). Likewise :func:`name_to_wire`: 2-2.5 us where
``dns.name.from_text(name).to_wire()`` costs 8-11 us.

:func:`read_reply` is deliberately *stricter* than dnspython, never more lenient: whenever it
returns a :class:`FastReply`, ``dns.message.from_wire(wire, ignore_trailing=True)`` followed by
the transport's reading of the message (rcode, ``resolve_chaining``, the answer RRset) gives
exactly the same outcome. It accepts only:

* a header with QR set, opcode QUERY, TC clear, rcode NOERROR or NXDOMAIN and one question,
  which is the question asked (name compared case-insensitively, type, class IN), of type A,
  AAAA, TXT, MX, CNAME or PTR;
* answer RRs of class IN whose type is the question's or CNAME, with rdata of type A (4 bytes),
  AAAA (16), TXT (one or more character-strings exactly filling the rdata; an empty TXT rdata
  is an error in dnspython), MX (preference and a name exactly filling it), CNAME or PTR (a name
  exactly filling it);
* authority RRs of class IN: SOA (two names and 20 bytes, exactly) or NS (one name, exactly);
* additional RRs: A/AAAA glue of class IN (4/16 bytes) and at most one OPT with the root as
  owner, no options and an extended-rcode byte of 0 (any EDNS version: dnspython reads them
  all alike);
* names as ``dns.name.from_wire_parser`` reads them: labels under 64 bytes, compression pointers
  only backwards and only to bytes before the part of the name already read (its
  ``restrict_end``), at most :data:`dns.name.MAX_COMPRESSION_POINTER_CHAIN` hops, at most 255
  bytes in all; in addition, no pointer into the 12-byte header;
* anything after the counted RRs is ignored (the transport reads with ``ignore_trailing``).

Everything else (other types or classes, DNSSEC records, DNAME, EDNS options, SERVFAIL,
truncation, malformed replies, CNAME chains of :data:`dns.message.MAX_CHAIN` links) gets None,
and the transport hands the reply to dnspython as before, so every error reads as it did.

For an accepted reply it then does what ``resolve_chaining`` does (the RRset of the question's
name and type, else the CNAME at that name followed to its target, up to ``MAX_CHAIN`` links)
with dnspython's RRset semantics: RRs of one owner (case-insensitively) and type form one RRset
wherever they stand, equal rdatas (dnspython's equality: names compared case-insensitively)
appear once, first one first, and a CNAME RRset holds only its last RR (a singleton type).

How equivalence is tested: tests/test_dnswire.py generates replies with dnspython (every type
above and others, CNAME chains and loops, duplicates, scattered RRsets, names with upper case and
odd bytes, every rcode, NXDOMAIN with and without answers, EDNS on and off, compressed and not),
mutates their bytes and adds plain garbage; for each, a result of :func:`read_reply` must equal
what the transport's own dnspython path (``_parse_reply`` + ``_message_answer``) gives for the
same bytes, to the rdata classes and their text, and every reply that is simple by construction
must be accepted. Hand-built replies cover what generators rarely hit: pointer chains of 16 and
17 hops, names of 255 and 256 bytes through pointers, ``restrict_end``, rdata lengths off by one.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterable
from typing import NamedTuple

import dns.message
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
from dns.rdtypes.ANY.CNAME import CNAME
from dns.rdtypes.ANY.MX import MX
from dns.rdtypes.ANY.PTR import PTR
from dns.rdtypes.ANY.TXT import TXT
from dns.rdtypes.IN.A import A
from dns.rdtypes.IN.AAAA import AAAA

_HEADER = struct.Struct("!HHHHHH")
_RR = struct.Struct("!HHIH")
_QUESTION_TAIL = struct.Struct("!HH")

_T_A, _T_NS, _T_CNAME, _T_SOA, _T_PTR, _T_MX, _T_TXT, _T_AAAA, _T_OPT = (
    1, 2, 5, 6, 12, 15, 16, 28, 41,
)  # fmt: skip
_ANSWER_TYPES = frozenset((_T_A, _T_AAAA, _T_TXT, _T_MX, _T_CNAME, _T_PTR))
_NOERROR, _NXDOMAIN = 0, 3
_IN = dns.rdataclass.IN
_MAX_HOPS = dns.name.MAX_COMPRESSION_POINTER_CHAIN
_MAX_CHAIN = dns.message.MAX_CHAIN

# The rdata classes dnspython's from_wire picks for class IN (typed: their __init__ is not).
_MAKE_AAAA: Callable[..., dns.rdata.Rdata] = AAAA

_PLAIN_LABEL = re.compile(rb"[A-Za-z0-9_-]+")
_PLAIN_NAME = re.compile(r"(?:[A-Za-z0-9_-]{1,63}\.)*[A-Za-z0-9_-]{1,63}\.?")

_QTYPES = {
    "A": dns.rdatatype.A,
    "AAAA": dns.rdatatype.AAAA,
    "TXT": dns.rdatatype.TXT,
    "MX": dns.rdatatype.MX,
    "CNAME": dns.rdatatype.CNAME,
    "PTR": dns.rdatatype.PTR,
    "NS": dns.rdatatype.NS,
    "SOA": dns.rdatatype.SOA,
}


class FastReply(NamedTuple):
    """What the transport needs of a reply: as ``resolve_chaining`` would have found it."""

    rcode: int
    """0 (NOERROR) or 3 (NXDOMAIN)."""
    rdatas: tuple[dns.rdata.Rdata, ...]
    """The answer RRset in dnspython's order (empty: none; always empty for NXDOMAIN)."""
    canonical_text: str
    """``to_text()`` of the name the answer was found at ('' when there is no answer)."""


class _Reject(Exception):
    """Not a simple reply: dnspython reads it."""


def rdatatype(text: str) -> int:
    """``dns.rdatatype.from_text`` with the common types looked up in a dict."""
    found = _QTYPES.get(text)
    return found if found is not None else dns.rdatatype.from_text(text)


def plain_name_to_wire(name: str) -> bytes | None:
    """A plain name in wire form (case kept), or None when it is not plain.

    Plain: labels of 1-63 letters, digits, '-' and '_', an optional final dot, at most 255 bytes
    in wire form. Also the encoder of the dnsbl probe's query names
    (:func:`exporter.net.dnsbulk.encode_name`).
    """
    if not (name.isascii() and _PLAIN_NAME.fullmatch(name)):
        return None
    # A final dot leaves an empty last label: it encodes as the root's zero byte.
    wire = b"".join([bytes((len(label),)) + label for label in name.encode().split(b".")])
    if name[-1] != ".":
        wire += b"\0"
    return wire if len(wire) <= 255 else None


def name_to_wire(name: str) -> bytes:
    """``dns.name.from_text(name).to_wire()``, written directly for plain names
    (:func:`plain_name_to_wire`); anything else (escapes, IDNA, the root, too long) goes to
    dnspython, which also raises its errors as before.
    """
    wire = plain_name_to_wire(name)
    if wire is not None:
        return wire
    encoded = dns.name.from_text(name).to_wire()
    assert encoded is not None
    return encoded


def _rr(wire: bytes, pos: int, size: int) -> tuple[bytes, int, int, int, int, int]:
    """An RR's owner, type, class and TTL, and where its rdata starts and ends."""
    owner, pos = _name(wire, pos, size)
    if pos + 10 > size:
        raise _Reject
    rtype, rclass, ttl, rdlen = _RR.unpack_from(wire, pos)
    pos += 10
    end = pos + rdlen
    if end > size:
        raise _Reject
    return owner, rtype, rclass, ttl, pos, end


def read_reply(wire: bytes, qname_wire: bytes, qtype: int) -> FastReply | None:
    """The reply read as dnspython would read it, or None when it is not a simple reply.

    ``qname_wire``: the question's name as sent (uncompressed wire form); ``qtype``: its type.
    Never raises.
    """
    try:
        return _read(wire, qname_wire, qtype)
    except _Reject:
        return None


def _name(wire: bytes, pos: int, end: int) -> tuple[bytes, int]:
    """The name at ``pos`` (read within ``end``) in uncompressed wire form, and the position
    after it, as ``dns.name.from_wire_parser`` reads it."""
    seg = pos  # start of the part being read; also dnspython's biggest_pointer
    limit = end
    parts: list[bytes] = []
    after = -1
    hops = 0
    while True:
        if pos >= limit:
            raise _Reject
        length = wire[pos]
        if length == 0:
            pos += 1
            break
        if length < 64:
            pos += 1 + length
            if pos > limit:
                raise _Reject
            continue
        if length < 192 or pos + 2 > limit:
            raise _Reject
        target = ((length & 0x3F) << 8) | wire[pos + 1]
        hops += 1
        if target >= seg or target < 12 or hops > _MAX_HOPS:
            raise _Reject
        parts.append(wire[seg:pos])
        if after < 0:
            after = pos + 2
        limit = seg  # the target must lie wholly before what was read so far
        pos = seg = target
    if parts:
        parts.append(wire[seg:pos])
        out = b"".join(parts)
    else:
        out = wire[seg:pos]
        after = pos
    if len(out) > 255:
        raise _Reject
    return out, after


def _labels(name: bytes) -> list[bytes]:
    """The labels of a name in uncompressed wire form, the root's empty label last."""
    labels = []
    i = 0
    length = name[0]
    while length:
        labels.append(name[i + 1 : i + 1 + length])
        i += 1 + length
        length = name[i]
    labels.append(b"")
    return labels


def _to_text(name: bytes) -> str:
    """``dns.name.Name.to_text()`` of a name in uncompressed wire form."""
    labels = _labels(name)
    if len(labels) == 1:
        return "."
    for label in labels[:-1]:
        if not _PLAIN_LABEL.fullmatch(label):
            return dns.name.Name(labels).to_text()  # escapes: dnspython's own rules
    return b".".join(labels).decode("ascii")


def _read(wire: bytes, qname_wire: bytes, qtype: int) -> FastReply:
    size = len(wire)
    if size < 12:
        raise _Reject
    _, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(wire)
    # QR set, opcode QUERY (0), TC clear; NOERROR or NXDOMAIN; one question.
    if flags & 0xFA00 != 0x8000 or qdcount != 1 or qtype not in _ANSWER_TYPES:
        raise _Reject
    rcode = flags & 0x000F
    if rcode != _NOERROR and rcode != _NXDOMAIN:
        raise _Reject
    qname, pos = _name(wire, 12, size)
    if qname.lower() != qname_wire.lower() or pos + 4 > size:
        raise _Reject
    if _QUESTION_TAIL.unpack_from(wire, pos) != (qtype, 1):
        raise _Reject
    pos += 4

    # Answer: RRsets keyed by (owner lower-cased, type) -> {rdata equality key: rdata}, the
    # rdata with its names uncompressed (the key: with them lower-cased, as dnspython compares).
    rrsets: dict[tuple[bytes, int], dict[bytes, bytes]] = {}
    for _ in range(ancount):
        owner, rtype, rclass, _ttl, pos, end = _rr(wire, pos, size)
        rdlen = end - pos
        if rclass != 1 or (rtype != qtype and rtype != _T_CNAME):
            raise _Reject
        if rtype in (_T_CNAME, _T_PTR):
            target, after = _name(wire, pos, end)
            if after != end:
                raise _Reject
            key = target.lower()
            item = target
        elif rtype == _T_TXT:
            p = pos
            while p < end:
                p += 1 + wire[p]
            if p != end or rdlen == 0:
                raise _Reject
            key = item = wire[pos:end]
        elif rtype == _T_MX:
            exchange, after = _name(wire, pos + 2, end)
            if after != end:
                raise _Reject
            item = wire[pos : pos + 2] + exchange
            key = item[:2] + exchange.lower()
        elif rtype == _T_A:
            if rdlen != 4:
                raise _Reject
            key = item = wire[pos:end]
        else:  # AAAA: the only other type in _ANSWER_TYPES
            if rdlen != 16:
                raise _Reject
            key = item = wire[pos:end]
        rrkey = (owner.lower(), rtype)
        rrset = rrsets.get(rrkey)
        if rrset is None or rtype == _T_CNAME:  # a singleton type: the last RR replaces it
            rrsets[rrkey] = {key: item}
        elif key not in rrset:
            rrset[key] = item
        pos = end

    for _ in range(nscount):
        _, rtype, rclass, _ttl, pos, end = _rr(wire, pos, size)
        if rclass != 1:
            raise _Reject
        if rtype == _T_SOA:
            _, after = _name(wire, pos, end)
            _, after = _name(wire, after, end)
            after += 20
        elif rtype == _T_NS:
            _, after = _name(wire, pos, end)
        else:
            raise _Reject
        if after != end:
            raise _Reject
        pos = end

    opt = False
    for _ in range(arcount):
        owner, rtype, rclass, ttl, pos, end = _rr(wire, pos, size)
        rdlen = end - pos
        if rtype == _T_OPT:
            if opt or owner != b"\0" or rdlen != 0 or ttl >> 24:
                raise _Reject
            opt = True
        elif rclass != 1 or not (
            (rtype == _T_A and rdlen == 4) or (rtype == _T_AAAA and rdlen == 16)
        ):
            raise _Reject
        pos = end

    if rcode == _NXDOMAIN:
        return FastReply(rcode, (), "")

    # resolve_chaining: the question's RRset, else follow the CNAME at the current name.
    current = qname
    key = qname.lower()
    found = None
    links = 0
    while links < _MAX_CHAIN:
        found = rrsets.get((key, qtype))
        if found is not None or qtype == _T_CNAME:
            break
        cname = rrsets.get((key, _T_CNAME))
        if cname is None:
            break
        (current,) = cname.values()
        key = current.lower()
        links += 1
    if links >= _MAX_CHAIN:
        raise _Reject  # ChainTooLong: dnspython reports it
    if found is None:
        return FastReply(rcode, (), "")
    return FastReply(rcode, _rdatas(qtype, found.values()), _to_text(current))


def _rdatas(rtype: int, items: Iterable[bytes]) -> tuple[dns.rdata.Rdata, ...]:
    """The dnspython rdata objects, with the values their ``from_wire_parser`` gives them.

    TXT, A, MX, CNAME and PTR rdata are made with their slots set directly (:func:`_made`),
    not through their ``__init__``: dnspython's constructors re-validate every value under
    its immutability guard (a context variable set and reset per object), 6 us for a TXT rdata
    of two strings and 4.4 us for an A, against 0.5 us (``bench/README.md``); about 6,000 of
    them per DNS cycle of 1,000 domains. What is set is what ``__init__`` would set from the
    same wire bytes, which :func:`_read` has already checked (string and label lengths, rdata
    sizes): tests/test_dnswire.py compares every slot with dnspython's own reading."""
    out: list[dns.rdata.Rdata] = []
    for item in items:
        if rtype == _T_TXT:
            strings = []
            p, end = 0, len(item)
            while p < end:
                length = item[p]
                strings.append(item[p + 1 : p + 1 + length])
                p += 1 + length
            out.append(_made(TXT, _TXT_TYPE, strings=tuple(strings)))
        elif rtype == _T_A:
            out.append(_made(A, _A_TYPE, address=f"{item[0]}.{item[1]}.{item[2]}.{item[3]}"))
        elif rtype == _T_AAAA:
            out.append(_MAKE_AAAA(_IN, dns.rdatatype.AAAA, item))
        elif rtype == _T_MX:
            preference = (item[0] << 8) | item[1]
            out.append(_made(MX, _MX_TYPE, preference=preference, exchange=_name_of(item[2:])))
        elif rtype == _T_CNAME:
            out.append(_made(CNAME, _CNAME_TYPE, target=_name_of(item)))
        else:
            out.append(_made(PTR, _PTR_TYPE, target=_name_of(item)))
    return tuple(out)


_new = object.__new__
_set = object.__setattr__
_IN_CLASS = dns.rdataclass.RdataClass.IN
_TXT_TYPE = dns.rdatatype.RdataType.TXT
_A_TYPE = dns.rdatatype.RdataType.A
_MX_TYPE = dns.rdatatype.RdataType.MX
_CNAME_TYPE = dns.rdatatype.RdataType.CNAME
_PTR_TYPE = dns.rdatatype.RdataType.PTR


def _made(cls: type[dns.rdata.Rdata], rdtype: int, **slots: object) -> dns.rdata.Rdata:
    """An rdata of class IN with its slots set as its ``__init__`` sets them."""
    rd = _new(cls)
    _set(rd, "rdclass", _IN_CLASS)
    _set(rd, "rdtype", rdtype)
    _set(rd, "rdcomment", None)
    for slot, value in slots.items():
        _set(rd, slot, value)
    return rd


def _name_of(wire: bytes) -> dns.name.Name:
    """``dns.name.Name`` of a name :func:`_name` read (labels and length already valid)."""
    name = _new(dns.name.Name)
    _set(name, "labels", tuple(_labels(wire)))
    return name

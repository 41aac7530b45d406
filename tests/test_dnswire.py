"""The fast DNS reply reader (:mod:`exporter.net.dnswire`) against dnspython, which it replaces.

* Differential property: replies generated with dnspython (A, AAAA, TXT, MX, CNAME, PTR answers,
  SOA/NS authority, glue, EDNS on and off, CNAME chains and loops, duplicates, scattered RRsets,
  names with upper case and odd bytes, every rcode, compressed or not) and mutated copies of them
  (bytes flipped, cut, inserted, deleted) and plain garbage: whenever the fast reader gives a
  result, it is what the transport's dnspython path gives for the same bytes (the very functions
  the transport calls: ``parse_reply`` and ``message_answer``), to the rdata classes and their
  text; it never raises; and every reply that is simple by construction is accepted.
* The replies the probes get (knot's, as the scale bench has them) are accepted.
* End to end through :class:`exporter.net.dnsclient.UdpTransport` against the loopback test server:
  answers equal the resolver's and were read by the fast reader; replies it declines (malformed,
  SERVFAIL) give the same errors as before.
"""

from __future__ import annotations

import asyncio
import enum
import io
import random
import struct
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from dnsserver import DnsServer
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from exporter.net.addr import normalize_name
from exporter.net.dnsclient import DnsClient, make_resolver
from exporter.net.dnsmodel import DnsAnswer, DnsTempError
from exporter.net.dnstransport import UdpTransport, fast_answer, message_answer, parse_reply
from exporter.net.dnswire import FastReply, name_to_wire, rdatatype, read_reply

IN = dns.rdataclass.IN
T = dns.rdatatype
ANSWER_TYPES = (T.A, T.AAAA, T.TXT, T.MX, T.CNAME, T.PTR)


# ----- the reference: the transport's own dnspython path --------------------------------------


def reference(wire: bytes, name: str, rdtype: str) -> DnsAnswer | str:
    """What ``UdpTransport`` makes of a UDP reply through dnspython: an answer, or a string
    naming why not (its error, the rcode, or 'tcp' for a truncated reply it would retry)."""
    try:
        message = parse_reply(wire)
    except Exception as exc:  # whatever dnspython raises: the fast reader must not accept it
        return f"error: {type(exc).__name__}"
    if message.flags & dns.flags.TC:
        return "tcp"
    return message_answer(name, rdtype, message)


def _slots(rd: dns.rdata.Rdata) -> dict[str, Any]:
    """An rdata's slots with names as their labels and enums as (type, value)."""
    out: dict[str, Any] = {}
    for slot, value in rd.__getstate__().items():
        if isinstance(value, dns.name.Name):
            value = ("name", value.labels)
        elif isinstance(value, enum.Enum):
            value = (type(value), value.value)
        out[slot] = (type(value), value)
    return out


def check(wire: bytes, qname_wire: bytes, qtype: int, name: str) -> FastReply | None:
    """Read ``wire`` both ways; when the fast reader accepts, the two must agree exactly."""
    rdtype = dns.rdatatype.to_text(qtype)
    fast = read_reply(wire, qname_wire, qtype)  # must never raise
    if fast is None:
        return None
    ref = reference(wire, name, rdtype)
    assert isinstance(ref, DnsAnswer), ref
    ours = fast_answer(name, rdtype, fast)
    assert ours == ref
    # Stronger than Rdata equality (which ignores the case of names): same classes, same text.
    assert [type(rd) for rd in ours.rdatas] == [type(rd) for rd in ref.rdatas]
    assert [rd.to_text() for rd in ours.rdatas] == [rd.to_text() for rd in ref.rdatas]
    assert [(rd.rdclass, rd.rdtype) for rd in ours.rdatas] == [
        (rd.rdclass, rd.rdtype) for rd in ref.rdatas
    ]
    # Every slot as dnspython sets it (the fast reader sets them without __init__), names
    # label for label (Name equality ignores case).
    assert [_slots(rd) for rd in ours.rdatas] == [_slots(rd) for rd in ref.rdatas]
    if ref.status == "ok":
        message = dns.message.from_wire(wire, ignore_trailing=True)
        assert isinstance(message, dns.message.QueryMessage)
        assert fast.canonical_text == message.resolve_chaining().canonical_name.to_text()
    return fast


# ----- generated replies ----------------------------------------------------------------------
#
# One generator, two sources of choices: hypothesis draws (shrinkable, a few hundred examples)
# and a seeded random.Random (thousands of examples in seconds: hypothesis' own bookkeeping for
# the ~150 choices of one reply costs ten times what building and reading the reply does).


class Choices(Protocol):
    def integer(self, lo: int, hi: int) -> int: ...
    def pick(self, options: Sequence[Any]) -> Any: ...
    def binary(self, lo: int, hi: int) -> bytes: ...


class DrawChoices:
    def __init__(self, data: st.DataObject) -> None:
        self.data = data

    def integer(self, lo: int, hi: int) -> int:
        return self.data.draw(st.integers(lo, hi))

    def pick(self, options: Sequence[Any]) -> Any:
        return self.data.draw(st.sampled_from(options))

    def binary(self, lo: int, hi: int) -> bytes:
        return self.data.draw(st.binary(min_size=lo, max_size=hi))


class RandomChoices:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def pick(self, options: Sequence[Any]) -> Any:
        return self.rng.choice(options)

    def binary(self, lo: int, hi: int) -> bytes:
        return self.rng.randbytes(self.rng.randint(lo, hi))


_PLAIN = "abcxyzABCXYZ0189-_"
_ODD = b'. \\"@$();*\x00\x7f\xc0\xff'
_ADDRESSES = [b"\xc0\x00\x02\x01", b"\xc0\x00\x02\x02", b"\x7f\x00\x00\x01"]
_ADDRESSES6 = [b"\x20\x01\x0d\xb8" + bytes(11) + b"\x01", bytes(15) + b"\x01"]
_STRINGS = [b"v=spf1 -all", b"", b"v=DKIM1; k=rsa; p=MIIB", b'\x00\xff"\\ x', b"x" * 255]


def gen_label(c: Choices) -> bytes:
    kind = c.integer(0, 3)
    if kind <= 1:  # plain: letters of both cases, digits, '-', '_'
        return "".join(c.pick(_PLAIN) for _ in range(c.integer(1, 10))).encode()
    if kind == 2:  # odd bytes too: escapes in text form
        alphabet = _PLAIN.encode() + _ODD
        return bytes(c.pick(alphabet) for _ in range(c.integer(1, 8)))
    return c.binary(50, 63)  # long, anything


def gen_name(c: Choices) -> dns.name.Name:
    labels: list[bytes] = []
    total = 1
    for _ in range(c.integer(1, 5)):
        label = gen_label(c)
        if total + len(label) + 1 > 255:
            break
        labels.append(label)
        total += len(label) + 1
    return dns.name.Name([*labels, b""])


def vary_case(name: dns.name.Name, mask: int) -> dns.name.Name:
    """The same name with the case of some letters flipped (bit i of ``mask``: letter i)."""
    out = []
    i = 0
    for label in name.labels:
        chars = bytearray(label)
        for j, ch in enumerate(chars):
            if 65 <= ch <= 90 or 97 <= ch <= 122:
                if mask >> (i % 16) & 1:
                    chars[j] = ch ^ 0x20
                i += 1
        out.append(bytes(chars))
    return dns.name.Name(out)


@dataclass
class Reply:
    wire: bytes
    qname: dns.name.Name
    qtype: int
    simple: bool
    """Only what the fast reader must accept (unless a CNAME chain is too long)."""
    compressed: bool


def gen_reply(c: Choices) -> Reply:
    """A reply to a question; half of them simple (only what the fast reader reads)."""
    plain = c.integer(0, 1) == 1  # only choices that keep the reply simple
    qname = gen_name(c)
    qtype = c.pick(ANSWER_TYPES if plain else [*ANSWER_TYPES, T.NS, T.SOA, T.SRV])
    pool = [qname] + [gen_name(c) for _ in range(c.integer(1, 3))]
    simple = qtype in ANSWER_TYPES

    def pick_name() -> dns.name.Name:
        return vary_case(c.pick(pool), c.integer(0, 0xFFFF))

    def rdata(rtype: int, rdclass: int = IN) -> dns.rdata.Rdata:
        make: Callable[..., dns.rdata.Rdata] = dns.rdata.get_rdata_class(rdclass, rtype)
        if rtype == T.A:
            return make(rdclass, rtype, c.pick(_ADDRESSES))
        if rtype == T.AAAA:
            return make(rdclass, rtype, c.pick(_ADDRESSES6))
        if rtype == T.TXT:
            return make(rdclass, rtype, [c.pick(_STRINGS) for _ in range(c.integer(1, 3))])
        if rtype == T.MX:
            return make(rdclass, rtype, c.pick([0, 10, 0xFFFF]), pick_name())
        if rtype in (T.CNAME, T.PTR, T.NS, T.DNAME):
            return make(rdclass, rtype, pick_name())
        if rtype == T.SOA:
            numbers = [c.pick([0, 1, 2**31, 2**32 - 1]) for _ in range(5)]
            return make(rdclass, rtype, pick_name(), pick_name(), *numbers)
        assert rtype == T.SRV
        return make(rdclass, rtype, 1, 2, 3, pick_name())

    def rrset(rtype: int, rdclass: int = IN) -> dns.rrset.RRset:
        out = dns.rrset.RRset(pick_name(), rdclass, rtype)
        for _ in range(c.integer(1, 3)):
            out.add(rdata(rtype, rdclass), c.pick([0, 300, 2**31 - 1, 2**32 - 1]))
        return out

    query = dns.message.make_query(qname, qtype, use_edns=False)
    response = dns.message.make_response(query)
    response.flags |= dns.flags.Flag(c.pick([0, 0x0400, 0x0080, 0x0040, 0x0020, 0x0010]))
    edns = c.pick([None, 0, 0, 1])
    if edns is not None:
        options = c.pick([[]] if plain else [[], [], [dns.edns.GenericOption(65001, b"x")]])
        payload = c.pick([512, 1232, 4096, 100])
        response.use_edns(edns, c.pick([0, dns.flags.DO]), payload, options=options)
        simple &= not options
    rcodes = [dns.rcode.NOERROR, dns.rcode.NOERROR, dns.rcode.NXDOMAIN]
    if not plain:
        rcodes += [dns.rcode.SERVFAIL, dns.rcode.REFUSED]
        rcodes += [dns.rcode.BADVERS] if edns is not None else []
    rcode = c.pick(rcodes)
    response.set_rcode(rcode)
    simple &= rcode in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN)
    if not plain and c.integer(0, 9) == 0:
        response.flags |= dns.flags.TC
        simple = False
    if not plain and c.integer(0, 9) == 0:
        response.set_opcode(c.pick([dns.opcode.NOTIFY, dns.opcode.STATUS]))
        simple = False

    for _ in range(c.integer(0, 6)):
        kind = c.pick(["question", "question", "cname"] + ([] if plain else ["other"]))
        if kind == "question":
            rtype = qtype
        elif kind == "cname":
            rtype = T.CNAME
        else:
            rtype = c.pick([T.A, T.TXT, T.NS, T.SOA, T.MX, T.DNAME])
        odd_class = not plain and rtype == T.TXT and c.integer(0, 4) == 0
        rdclass = dns.rdataclass.CH if odd_class else IN
        simple &= rtype in (qtype, T.CNAME) and rdclass == IN
        response.answer.append(rrset(rtype, rdclass))
    for _ in range(c.integer(0, 2)):
        rtype = c.pick([T.SOA, T.SOA, T.NS] + ([] if plain else [T.A]))
        simple &= rtype != T.A
        response.authority.append(rrset(rtype))
    for _ in range(c.integer(0, 3)):
        rtype = c.pick([T.A, T.AAAA, T.A] + ([] if plain else [T.TXT]))
        simple &= rtype != T.TXT
        response.additional.append(rrset(rtype))

    compressed = bool(c.integer(0, 1))
    if compressed:
        wire = response.to_wire(max_size=65535, want_shuffle=False)
    else:
        wire = _uncompressed(response)
    return Reply(wire, qname, qtype, simple, compressed)


def _uncompressed(response: dns.message.Message) -> bytes:
    body = io.BytesIO()
    counts = []
    for section in (response.answer, response.authority, response.additional):
        counts.append(sum(rrset.to_wire(body, None, want_shuffle=False) for rrset in section))
    if response.opt is not None:
        counts[2] += response.opt.to_wire(body, None)
    (question,) = response.question
    head = struct.pack("!HHHHHH", response.id, response.flags, 1, *counts)
    head += question.name.to_wire() + struct.pack("!HH", question.rdtype, question.rdclass)
    return head + body.getvalue()


def gen_mutated(c: Choices, wire: bytes) -> bytes:
    """``wire`` with up to three bytes flipped, cut, inserted or deleted."""
    out = bytearray(wire)
    for _ in range(c.integer(0, 3)):
        if not out:
            break
        op, i = c.integer(0, 3), c.integer(0, len(out) - 1)
        if op == 0:
            out[i] = c.integer(0, 255)
        elif op == 1:
            del out[i:]
        elif op == 2:
            out[i:i] = c.binary(1, 4)
        else:
            del out[i : i + c.integer(1, 4)]
    return bytes(out)


def agree_on_generated(c: Choices) -> None:
    reply = gen_reply(c)
    text = reply.qname.to_text()
    name = normalize_name(text) if c.integer(0, 1) else text
    mutated = c.integer(0, 1) == 1
    wire = gen_mutated(c, reply.wire) if mutated else reply.wire
    fast = check(wire, reply.qname.to_wire(), reply.qtype, name)
    if not mutated and reply.simple:
        rdtype = dns.rdatatype.to_text(reply.qtype)
        if reference(wire, name, rdtype) != "ChainTooLong":
            assert fast is not None, (reply.compressed, wire)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_fast_reader_agrees_with_dnspython(data: st.DataObject) -> None:
    agree_on_generated(DrawChoices(data))


@settings(max_examples=2500, deadline=None)
@given(st.integers(0, 2**64))
def test_fast_reader_agrees_with_dnspython_in_bulk(seed: int) -> None:
    agree_on_generated(RandomChoices(seed))


names = st.builds(lambda seed: gen_name(RandomChoices(seed)), st.integers(0, 2**32))


@settings(max_examples=600, deadline=None)
@given(
    st.binary(max_size=12),
    st.binary(max_size=300),
    names,
    st.sampled_from(ANSWER_TYPES),
    st.sampled_from(
        [
            b"",
            b"\0\1\x81\x80\0\1",
            b"\0\1\x81\x83\0\1\0\1\0\1\0\1",
            b"\0\1\x81\x80\0\1\0\2\0\0\0\1",
        ]
    ),
)
def test_garbage_is_declined_or_read_alike(
    head: bytes, tail: bytes, qname: dns.name.Name, qtype: int, prefix: bytes
) -> None:
    """Random bytes, also after a header and the question: never an exception, never a result
    dnspython would not give."""
    question = qname.to_wire() + struct.pack("!HH", qtype, 1)
    header = (prefix + head)[:12].ljust(12, b"\0")
    for wire in (head + tail, header + question + tail):
        check(wire, qname.to_wire(), qtype, qname.to_text())


class Wire:
    """A reply written byte by byte, for the edge cases generators rarely hit."""

    QNAME = dns.name.from_text("a.example.").to_wire()

    def __init__(self, qtype: int = T.TXT, flags: int = 0x8180) -> None:
        self.qtype = qtype
        self.flags = flags
        self.body = self.QNAME + struct.pack("!HH", qtype, 1)
        self.counts = [0, 0, 0]

    def here(self) -> int:
        """The offset the next byte will have in the message."""
        return 12 + len(self.body)

    def rr(self, section: int, owner: bytes, rtype: int, rdata: bytes, **kw: int) -> int:
        """Add an RR; the offset of its rdata."""
        self.body += owner + struct.pack(
            "!HHIH", rtype, kw.get("rdclass", 1), kw.get("ttl", 60), len(rdata)
        )
        self.counts[section] += 1
        at = self.here()
        self.body += rdata
        return at

    def bytes(self) -> bytes:
        return struct.pack("!HHHHHH", 1, self.flags, 1, *self.counts) + self.body

    def check(self) -> bool:
        """Read both ways (they must agree); whether the fast reader accepted it."""
        return check(self.bytes(), self.QNAME, self.qtype, "a.example") is not None


BACK = b"\xc0\x0c"  # a pointer to the question's name


def ptr(offset: int) -> bytes:
    return struct.pack("!H", 0xC000 | offset)


def test_compression_as_dnspython_allows_it() -> None:
    # The answer RR starts at offset 27, its rdata at 39.
    cases = {
        "backwards": (BACK, BACK, True),
        "label then pointer": (BACK, b"\x01b" + BACK, True),
        "forwards": (BACK, b"\xc0\xff", False),
        "to itself": (ptr(27), BACK, False),
        "into what was read": (b"\x01c" + ptr(26), BACK, False),
        "rdata longer than the name": (BACK, BACK + b"\0", False),
        "label type 0x40": (b"\x41xxx", BACK, False),
        "label type 0x80": (b"\x81x\0", BACK, False),
        "into the header": (BACK, b"\xc0\x02", False),
        "cut pointer": (BACK, b"\xc0", False),
    }
    for label, (owner, rdata, accepted) in cases.items():
        w = Wire(T.CNAME)
        w.rr(0, owner, T.CNAME, rdata)
        assert w.check() is accepted, label


def test_pointer_chains_and_lengths() -> None:
    for hops, accepted in [(16, True), (17, False)]:
        # Names x.x.x...a.example. in TXT rdata, each pointing to the one before.
        w = Wire()
        segments = [b"\x01x" + BACK]
        for _ in range(hops - 2):
            segments.append(b"\x01x")  # its pointer added once the previous offset is known
        at = w.here() + 10 + 2 + 1  # this RR's owner (2) and header (10), the string's length
        offsets = []
        raw = b""
        for seg in segments:
            offsets.append(at + len(raw))
            raw += seg if seg.endswith(BACK) else seg + ptr(offsets[-2])
        w.rr(0, BACK, T.TXT, bytes([len(raw)]) + raw)
        w.rr(0, ptr(offsets[-1]), T.TXT, b"\x01y")  # one hop more to get to the last name
        assert w.check() is accepted, hops
    for first, accepted in [(61, True), (62, False)]:  # names of 255 and 256 bytes
        w = Wire()
        seg = bytes([first]) + b"a" * first + b"\0"
        last = w.rr(0, BACK, T.TXT, bytes([len(seg)]) + seg) + 1
        for _ in range(3):  # three 63-byte labels in front, each pointing to the one before
            last = w.rr(0, BACK, T.TXT, b"\x42\x3f" + b"b" * 63 + ptr(last)) + 1
        w.rr(0, ptr(last), T.TXT, b"\x01y")
        assert w.check() is accepted, first


def test_what_was_read_of_a_name_cannot_be_read_again() -> None:
    """dnspython's restrict_end: after a pointer, reading must stop before the part of the name
    already read, even where the bytes there would make a name."""
    w = Wire()
    w.rr(0, BACK, T.TXT, b"\x01\x03")  # its last byte (offset 40) reads as a length 3 label
    start = w.here()  # 41
    assert start == 41
    # Owner: label "q", then a pointer to offset 40, whose label covers the owner's own first
    # three bytes, then a 40-byte label over the header and rdata, ending on a zero byte.
    w.rr(0, b"\x01q" + ptr(40), T.TXT, b"\x1e" + b"x" * 29 + b"\0")
    assert not w.check()
    ok = Wire()  # the same without the overlap
    ok.rr(0, BACK, T.TXT, b"\x01\x03")
    ok.rr(0, b"\x01q" + BACK, T.TXT, b"\x1e" + b"x" * 29 + b"\0")
    assert ok.check()


@pytest.mark.parametrize(
    ("qtype", "rtype", "rdata", "accepted"),
    [
        (T.A, T.A, b"\1\2\3\4", True),
        (T.A, T.A, b"\1\2\3", False),
        (T.A, T.A, b"\1\2\3\4\5", False),
        (T.AAAA, T.AAAA, bytes(16), True),
        (T.AAAA, T.AAAA, bytes(15), False),
        (T.AAAA, T.AAAA, bytes(17), False),
        (T.TXT, T.TXT, b"\0", True),
        (T.TXT, T.TXT, b"\2ab\0\1c", True),
        (T.TXT, T.TXT, b"", False),
        (T.TXT, T.TXT, b"\3ab", False),
        (T.MX, T.MX, b"\0\1" + BACK, True),
        (T.MX, T.MX, b"\0\1\0", True),
        (T.MX, T.MX, b"\0\1" + BACK + b"\0", False),
        (T.MX, T.MX, b"\0\1", False),
        (T.CNAME, T.CNAME, BACK + b"\0", False),
        (T.PTR, T.PTR, b"\1p" + BACK, True),
        (T.PTR, T.PTR, b"\1p" + BACK + b"\0", False),
        (T.PTR, T.PTR, b"\1p", False),
        (T.A, T.TXT, b"\1x", False),
        (T.A, T.DNAME, BACK, False),
        (T.TXT, T.RRSIG, b"\0" * 30, False),
    ],
)
def test_rdata_must_fill_its_length(qtype: int, rtype: int, rdata: bytes, accepted: bool) -> None:
    w = Wire(qtype)
    w.rr(0, BACK, rtype, rdata)
    assert w.check() is accepted


SOA = b"\2ns" + BACK + b"\4host" + BACK + bytes(20)


@pytest.mark.parametrize(
    ("section", "rtype", "rdata", "kw", "accepted"),
    [
        (1, T.SOA, SOA, {}, True),
        (1, T.SOA, SOA + b"\0", {}, False),
        (1, T.SOA, SOA[:-1], {}, False),
        (1, T.SOA, SOA, {"rdclass": 3}, False),
        (1, T.NS, b"\2ns" + BACK, {}, True),
        (1, T.NS, b"\2ns" + BACK + b"\0", {}, False),
        (1, T.A, b"\1\2\3\4", {}, False),
        (2, T.A, b"\1\2\3\4", {}, True),
        (2, T.AAAA, bytes(16), {}, True),
        (2, T.A, b"\1\2\3\4\5", {}, False),
        (2, T.A, b"\1\2\3\4", {"rdclass": 3}, False),
        (2, T.TXT, b"\1x", {}, False),
        (2, T.OPT, b"", {"rdclass": 1232}, True),
        (2, T.OPT, b"", {"rdclass": 1232, "ttl": 0x00018000}, True),  # version 1, DO
        (2, T.OPT, b"", {"rdclass": 1232, "ttl": 0x01000000}, False),  # extended rcode
        (2, T.OPT, b"\0\x0a\0\0", {"rdclass": 1232}, False),  # an option
        (2, T.TSIG, b"", {"rdclass": 255}, False),
    ],
)
def test_authority_and_additional(
    section: int, rtype: int, rdata: bytes, kw: dict[str, int], accepted: bool
) -> None:
    w = Wire()
    w.rr(0, BACK, T.TXT, b"\1x")
    owner = b"\0" if rtype in (T.OPT, T.TSIG) else BACK
    w.rr(section, owner, rtype, rdata, **kw)
    assert w.check() is accepted
    if rtype == T.OPT and accepted:  # a second OPT, or one not owned by the root: BadEDNS
        w.rr(section, owner, rtype, rdata, **kw)
        assert not w.check()
        w = Wire()
        w.rr(2, BACK, rtype, rdata, **kw)
        assert not w.check()


def test_header() -> None:
    for flags, accepted in [
        (0x8180, True),
        (0x8183, True),  # NXDOMAIN
        (0x8000, True),
        (0x0180, False),  # not a reply
        (0x8380, False),  # truncated
        (0x8980, False),  # opcode 1
        (0xA180, False),  # opcode 4
        (0x8182, False),  # SERVFAIL
        (0x8185, False),  # REFUSED
        (0x8189, False),  # rcode 9
    ]:
        w = Wire(flags=flags)
        w.rr(0, BACK, T.TXT, b"\1x")
        assert w.check() is accepted, hex(flags)
    # The question must be the one asked.
    wire = Wire().bytes()
    assert read_reply(wire, Wire.QNAME, T.TXT) is not None
    assert read_reply(wire, Wire.QNAME.upper(), T.TXT) is not None
    assert read_reply(wire, b"\1b\7example\0", T.TXT) is None
    assert read_reply(wire, Wire.QNAME, T.A) is None
    assert read_reply(wire[:4] + b"\0\2" + wire[6:], Wire.QNAME, T.TXT) is None
    assert read_reply(wire[:-1] + b"\3", Wire.QNAME, T.TXT) is None  # class CH
    assert read_reply(wire[:11], Wire.QNAME, T.TXT) is None
    assert read_reply(wire + b"trailing junk", Wire.QNAME, T.TXT) is not None


# ----- the replies the probes get --------------------------------------------------------------


def _knot_like(qname: str, qtype: str, *, rcode: int = 0, edns: bool = True) -> dns.message.Message:
    query = dns.message.make_query(qname, qtype, use_edns=0 if edns else False, payload=1232)
    response = dns.message.make_response(query)
    response.flags |= dns.flags.AA
    response.set_rcode(rcode)
    return response


def _add(section: list[dns.rrset.RRset], name: str, rdtype: str, *texts: str) -> None:
    section.append(dns.rrset.from_text(name, 300, "IN", rdtype, *texts))


def _probe_replies() -> dict[str, tuple[bytes, str, str]]:
    dkim = " ".join(f'"{c * 200}"' for c in "abc")
    soa = "ns.bench.test. hostmaster.bench.test. 1 3600 600 86400 300"
    out: dict[str, tuple[bytes, str, str]] = {}

    r = _knot_like("d00001.bench.test", "TXT")
    _add(
        r.answer, "d00001.bench.test.", "TXT", '"v=spf1 ip4:198.18.0.2 include:_spf.esp1.test ~all"'
    )
    out["spf"] = (r.to_wire(want_shuffle=False), "d00001.bench.test", "TXT")
    r = _knot_like("s1._domainkey.d00001.bench.test", "TXT")
    _add(r.answer, "s1._domainkey.d00001.bench.test.", "TXT", dkim)
    out["dkim"] = (r.to_wire(want_shuffle=False), "s1._domainkey.d00001.bench.test", "TXT")
    r = _knot_like("d00001.bench.test", "MX")
    _add(r.answer, "d00001.bench.test.", "MX", "10 mx.d00001.bench.test.")
    _add(r.additional, "mx.d00001.bench.test.", "A", "127.0.0.1")
    out["mx with glue"] = (r.to_wire(want_shuffle=False), "d00001.bench.test", "MX")
    r = _knot_like("mx.d00001.bench.test", "AAAA")
    _add(r.authority, "bench.test.", "SOA", soa)
    out["nodata"] = (r.to_wire(want_shuffle=False), "mx.d00001.bench.test", "AAAA")
    r = _knot_like("_dmarc.nx.bench.test", "TXT", rcode=dns.rcode.NXDOMAIN)
    _add(r.authority, "bench.test.", "SOA", soa)
    out["nxdomain"] = (r.to_wire(want_shuffle=False), "_dmarc.nx.bench.test", "TXT")
    r = _knot_like("www.example.test", "A", edns=False)
    _add(r.answer, "www.example.test.", "CNAME", "edge.cdn.test.")
    _add(r.answer, "edge.cdn.test.", "CNAME", "host.cdn.test.")
    _add(r.answer, "host.cdn.test.", "A", "192.0.2.1", "192.0.2.2")
    out["cname chain"] = (r.to_wire(want_shuffle=False), "www.example.test", "A")
    r = _knot_like("mta.esp1.test", "AAAA")
    _add(r.answer, "mta.esp1.test.", "AAAA", "2001:db8::25")
    _add(r.authority, "esp1.test.", "NS", "ns.esp1.test.")
    out["aaaa"] = (r.to_wire(want_shuffle=False), "mta.esp1.test", "AAAA")
    r = _knot_like("1.2.0.192.in-addr.arpa", "PTR")
    _add(r.answer, "1.2.0.192.in-addr.arpa.", "PTR", "Mail.Example.TEST.")
    out["ptr"] = (r.to_wire(want_shuffle=False), "1.2.0.192.in-addr.arpa", "PTR")
    return out


@pytest.mark.parametrize("kind", list(_probe_replies()))
def test_probe_replies_are_read_fast(kind: str) -> None:
    wire, name, rdtype = _probe_replies()[kind]
    fast = check(wire, name_to_wire(name), rdatatype(rdtype), name)
    assert fast is not None
    ref = reference(wire, name, rdtype)
    assert isinstance(ref, DnsAnswer)
    expected = {"nodata": "nodata", "nxdomain": "nxdomain"}.get(kind, "ok")
    assert ref.status == expected
    if kind == "cname chain":
        assert ref.canonical_name == "host.cdn.test"
        assert ref.addresses() == ["192.0.2.1", "192.0.2.2"]
    if kind == "ptr":
        assert [rd.to_text() for rd in ref.rdatas] == ["Mail.Example.TEST."]


def test_rdata_classes_are_dnspython_s() -> None:
    wire, name, rdtype = _probe_replies()["mx with glue"]
    fast = read_reply(wire, name_to_wire(name), rdatatype(rdtype))
    assert fast is not None
    (mx,) = fast.rdatas
    assert type(mx) is dns.rdata.get_rdata_class(IN, T.MX)
    assert (mx.preference, mx.exchange) == (10, dns.name.from_text("mx.d00001.bench.test."))


# ----- the question's encoding ----------------------------------------------------------------

_host = st.lists(st.text(_PLAIN, min_size=1, max_size=63), min_size=1, max_size=6).map(".".join)


@settings(max_examples=500, deadline=None)
@given(
    _host | st.text(max_size=30) | st.text(_PLAIN + ".\\", max_size=300),
    st.booleans(),
)
@example("a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 61, False)  # 255 bytes
@example("a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 62, False)  # 256 bytes
@example(".", False)
@example("", False)
@example("a..b", False)
def test_name_to_wire_is_dnspython_s(name: str, final_dot: bool) -> None:
    if final_dot:
        name += "."
    try:
        expected: bytes | str | None = dns.name.from_text(name).to_wire()
    except (dns.exception.DNSException, ValueError) as exc:
        expected = type(exc).__name__
    try:
        got: bytes | str = name_to_wire(name)
    except (dns.exception.DNSException, ValueError) as exc:
        got = type(exc).__name__
    assert got == expected


@pytest.mark.parametrize(
    "text", ["A", "AAAA", "TXT", "MX", "CNAME", "PTR", "NS", "SOA", "SRV", "mx"]
)
def test_rdatatype_is_dnspython_s(text: str) -> None:
    assert rdatatype(text) == dns.rdatatype.from_text(text)


# ----- end to end through the transport ---------------------------------------------------------


@dataclass
class _BrokenServer(DnsServer):
    """Test server whose replies for some names are spoiled after the question."""

    spoil: dict[str, Callable[[bytes], bytes]] = field(default_factory=dict)

    def respond(self, wire: bytes, max_size: int | None) -> bytes | None:
        out = super().respond(wire, max_size)
        parsed = self.parse_query(wire)
        if out is None or parsed is None or parsed[1] not in self.spoil:
            return out
        return self.spoil[parsed[1]](out)


def _cut_last_byte(wire: bytes) -> bytes:
    return wire[:-1]


def _forward_pointer(wire: bytes) -> bytes:
    # The answer's owner (a pointer to the question, 0xC00C) made to point past the end.
    i = wire.index(b"\xc0\x0c", 12)
    return wire[:i] + b"\xc0\xff" + wire[i + 2 :]


@pytest.fixture
def server() -> Iterator[_BrokenServer]:
    srv = _BrokenServer(shuffle=False)
    srv.add_txt("a.example", "v=spf1 -all")
    srv.add("dkim.example", "TXT", '"v=DKIM1; k=rsa; " "p=' + "Q" * 200 + '"')
    srv.add("a.example", "MX", "10 Mail.A.example.")
    srv.add("a.example", "MX", "20 backup.a.example.")
    srv.add("host.example", "A", "192.0.2.1")
    srv.add("host.example", "A", "192.0.2.2")
    srv.add("host.example", "AAAA", "2001:db8::1")
    srv.add("www.example", "CNAME", "alias.example.")
    srv.add("alias.example", "CNAME", "host.example.")
    srv.add_txt("cut.example", "v=spf1 -all")
    srv.add_txt("pointer.example", "v=spf1 -all")
    srv.spoil = {"cut.example": _cut_last_byte, "pointer.example": _forward_pointer}
    srv.servfail.add("broken.example")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


QUESTIONS = [
    ("a.example", "TXT", "ok"),
    ("dkim.example", "TXT", "ok"),
    ("a.example", "MX", "ok"),
    ("host.example", "A", "ok"),
    ("host.example", "AAAA", "ok"),
    ("www.example", "A", "ok"),
    ("www.example", "CNAME", "ok"),
    ("missing.example", "TXT", "nxdomain"),
    ("host.example", "TXT", "nodata"),
]


@pytest.fixture
async def udp(server: _BrokenServer) -> AsyncIterator[UdpTransport]:
    transport = UdpTransport(
        asyncio.get_running_loop(),
        [("127.0.0.1", server.port)],
        attempt_timeout=1.0,
        lifetime=2.0,
        payload=1232,
    )
    try:
        yield transport
    finally:
        transport.close()


async def test_transport_reads_fast_what_the_resolver_reads(
    server: _BrokenServer, udp: UdpTransport
) -> None:
    resolver = make_resolver([server.address], attempt_timeout=1.0, lifetime=2.0)
    plain = DnsClient(resolver)
    for name, rdtype, status in QUESTIONS:
        ours, theirs = await udp.query(name, rdtype), await plain.query(name, rdtype)
        assert ours == theirs
        assert ours.status == status
        assert [rd.to_text() for rd in ours.rdatas] == [rd.to_text() for rd in theirs.rdatas]
    assert udp.fast_replies == len(QUESTIONS) == udp.sent
    www = await udp.query("www.example", "A")
    assert (www.canonical_name, www.addresses()) == ("host.example", ["192.0.2.1", "192.0.2.2"])
    mx = await udp.query("a.example", "MX")
    # The exchange's case as written (dnspython compresses "A.example." into the owner's).
    assert [rd.to_text() for rd in mx.rdatas] == ["10 Mail.a.example.", "20 backup.a.example."]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("cut.example", "malformed reply (FormError)"),
        ("pointer.example", "malformed reply (BadPointer)"),
        ("broken.example", "SERVFAIL"),
    ],
)
async def test_declined_replies_fail_as_before(udp: UdpTransport, name: str, reason: str) -> None:
    with pytest.raises(DnsTempError) as info:
        await udp.query(name, "TXT")
    assert info.value.reason == reason
    assert udp.fast_replies == 0

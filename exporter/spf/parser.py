"""SPF record grammar (RFC 7208 §4.5, §4.6, §5, §6 and the ABNF of §12).

Hand-written: the candidate libraries (pyspf, checkdmarc) parse while they evaluate, are
synchronous, and accept things the ABNF forbids; a parser that checks the whole record before
evaluation (§4.6: "syntax errors anywhere in the record") is the base of both check_host() and
the static analysis. Every failure raises :class:`SpfSyntaxError` and nothing else.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from functools import cached_property, lru_cache

from exporter.spf.errors import SpfSyntaxError
from exporter.spf.macro import EXP_LETTERS, MacroString, parse_domain_spec, parse_macro_string

QUALIFIERS = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}
MECHANISMS = ("all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists")
DNS_MECHANISMS = frozenset({"include", "a", "mx", "ptr", "exists"})
"""Mechanisms that count against the limit of 10 DNS-querying terms (§4.6.4)."""

_MODIFIER = re.compile(r"([A-Za-z][A-Za-z0-9_.\-]*)=(.*)\Z", re.S)
_MECHANISM = re.compile(r"([+\-~?]?)([A-Za-z0-9]*)(.*)\Z", re.S)
_DUAL_CIDR = re.compile(r"(?::(.*?))?(?:/([0-9]+))?(?://([0-9]+))?\Z", re.S)
_IP_NET = re.compile(r":([^/]*)(?:/([0-9]+))?\Z", re.S)
_VERSION = re.compile(r"v=spf1(?: |\Z)", re.I)
_QNUM = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_IP4 = re.compile(rf"{_QNUM}(?:\.{_QNUM}){{3}}\Z")


@dataclass(frozen=True)
class Mechanism:
    """A directive: qualifier + mechanism."""

    qualifier: str
    kind: str
    text: str
    domain: MacroString | None = None
    cidr4: int = 32
    cidr6: int = 128
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None

    @property
    def result(self) -> str:
        """The check_host() result when this mechanism matches."""
        return QUALIFIERS[self.qualifier]


@dataclass(frozen=True)
class Modifier:
    name: str
    """Lower-case modifier name."""
    value: MacroString
    text: str


@dataclass(frozen=True)
class Record:
    """A parsed, syntactically valid SPF record."""

    text: str
    mechanisms: tuple[Mechanism, ...]
    redirect: Modifier | None = None
    exp: Modifier | None = None
    modifiers: tuple[Modifier, ...] = field(default=())

    @cached_property
    def all(self) -> Mechanism | None:
        """The first ``all`` mechanism (mechanisms after it are never evaluated). Found once per
        record: parsed records are shared (kept by text) and asked this on every walk."""
        return next((m for m in self.mechanisms if m.kind == "all"), None)


def is_spf_record(text: str) -> bool:
    """The record-selection test of §4.5: starts with ``v=spf1`` then a space or the end."""
    return _VERSION.match(text) is not None


PARSED_RECORDS_KEPT = 2048
"""Parsed records kept by text: the include records of a provider that thousands of monitored
domains share are parsed once, not once per domain and run (a :class:`Record` is immutable)."""


def parse_record(text: str) -> Record:
    """Parse a whole SPF record; raise :class:`SpfSyntaxError` on any problem."""
    if not isinstance(text, str):
        raise SpfSyntaxError("record is not text")
    return _parse_record(text)


@lru_cache(maxsize=PARSED_RECORDS_KEPT)
def _parse_record(text: str) -> Record:
    if not is_spf_record(text):
        raise SpfSyntaxError("record does not start with 'v=spf1'")
    if not text.isascii():
        raise SpfSyntaxError("record contains non-ASCII characters (RFC 7208 §3.1)")
    mechanisms: list[Mechanism] = []
    modifiers: list[Modifier] = []
    redirect: Modifier | None = None
    exp: Modifier | None = None
    for term in text[6:].split(" "):
        if not term:
            continue
        mod = _MODIFIER.match(term)
        if mod is not None:
            modifier = _parse_modifier(mod.group(1), mod.group(2), term)
            if modifier.name == "redirect":
                if redirect is not None:
                    raise SpfSyntaxError("'redirect' appears more than once (RFC 7208 §6)")
                redirect = modifier
            elif modifier.name == "exp":
                if exp is not None:
                    raise SpfSyntaxError("'exp' appears more than once (RFC 7208 §6)")
                exp = modifier
            modifiers.append(modifier)
            continue
        mechanisms.append(parse_mechanism(term))
    return Record(text, tuple(mechanisms), redirect, exp, tuple(modifiers))


def _parse_modifier(name: str, value: str, term: str) -> Modifier:
    lname = name.lower()
    if lname in ("redirect", "exp"):
        try:
            ms = parse_domain_spec(value)
        except SpfSyntaxError as exc:
            raise SpfSyntaxError(f"{term!r}: {exc}") from None
    else:
        try:
            ms = parse_macro_string(value, letters=EXP_LETTERS)
        except SpfSyntaxError as exc:
            raise SpfSyntaxError(f"unknown modifier {term!r}: {exc}") from None
    return Modifier(lname, ms, term)


def parse_mechanism(term: str) -> Mechanism:
    """Parse one directive (``[qualifier] mechanism``)."""
    m = _MECHANISM.match(term)
    if m is None:  # pragma: no cover - the pattern matches every string
        raise SpfSyntaxError(f"unparsable term {term!r}")
    qualifier = m.group(1) or "+"
    kind = m.group(2).lower()
    rest = m.group(3)
    if kind not in MECHANISMS:
        raise SpfSyntaxError(f"unknown mechanism or malformed term {term!r}")
    try:
        if kind == "all":
            if rest:
                raise SpfSyntaxError("'all' takes no argument")
            return Mechanism(qualifier, kind, term)
        if kind in ("include", "exists"):
            if not rest.startswith(":"):
                raise SpfSyntaxError(f"'{kind}' needs ':domain'")
            return Mechanism(qualifier, kind, term, domain=parse_domain_spec(rest[1:]))
        if kind == "ptr":
            if not rest:
                return Mechanism(qualifier, kind, term)
            if not rest.startswith(":"):
                raise SpfSyntaxError("'ptr' takes only ':domain'")
            return Mechanism(qualifier, kind, term, domain=parse_domain_spec(rest[1:]))
        if kind in ("a", "mx"):
            if rest and rest[0] not in ":/":
                raise SpfSyntaxError("malformed argument")
            dual = _DUAL_CIDR.match(rest)
            if dual is None:
                raise SpfSyntaxError("malformed argument")
            spec, c4, c6 = dual.groups()
            domain = None if spec is None else parse_domain_spec(spec)
            return Mechanism(
                qualifier,
                kind,
                term,
                domain=domain,
                cidr4=_cidr(c4, 32),
                cidr6=_cidr(c6, 128),
            )
        # ip4 / ip6
        net = _IP_NET.match(rest)
        if net is None:
            raise SpfSyntaxError(f"'{kind}' needs ':<address>[/<prefix>]'")
        addr, length = net.groups()
        if kind == "ip4":
            if not _IP4.match(addr):
                raise SpfSyntaxError(f"invalid IPv4 address {addr!r}")
            prefix = _cidr(length, 32)
            network: ipaddress.IPv4Network | ipaddress.IPv6Network = ipaddress.IPv4Network(
                f"{addr}/{prefix}", strict=False
            )
        else:
            if "%" in addr or not addr or not re.fullmatch(r"[0-9A-Fa-f:.]+", addr):
                raise SpfSyntaxError(f"invalid IPv6 address {addr!r}")
            try:
                ipaddress.IPv6Address(addr)
            except ValueError:
                raise SpfSyntaxError(f"invalid IPv6 address {addr!r}") from None
            prefix = _cidr(length, 128)
            network = ipaddress.IPv6Network(f"{addr}/{prefix}", strict=False)
        return Mechanism(qualifier, kind, term, network=network)
    except SpfSyntaxError as exc:
        raise SpfSyntaxError(f"{term!r}: {exc}") from None


def _cidr(text: str | None, maximum: int) -> int:
    if text is None:
        return maximum
    if len(text) > 1 and text[0] == "0":
        raise SpfSyntaxError(f"prefix length /{text} has a leading zero")
    value = int(text) if len(text) <= 4 else maximum + 1
    if value > maximum:
        raise SpfSyntaxError(f"prefix length /{text} is over {maximum}")
    return value

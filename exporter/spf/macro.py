"""SPF macro strings (RFC 7208 §7): parsing, validation and expansion.

Hand-written because no maintained Python library exposes RFC 7208 macro expansion as a
function of its own (pyspf folds it into its query object and is synchronous); the grammar is
small and the RFC is precise.

A macro string is parsed once, when the record is parsed, into literal text and
:class:`MacroExpand` tokens, so a syntax error anywhere in a record is found before evaluation
(§4.6) and expansion cannot fail.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from functools import cached_property

from exporter.spf.errors import SpfSyntaxError

DOMAIN_LETTERS = frozenset("slodiphv")
"""Macro letters allowed in domain-specs (§7.2)."""
EXP_LETTERS = frozenset("slodiphvcrt")
"""Macro letters allowed in explanation strings (§7.2: c, r and t only there)."""
DELIMITERS = frozenset(".-+,/_=")

_EXPAND = re.compile(r"%\{([A-Za-z])([0-9]*)([rR]?)([.\-+,/_=]*)\}")
_TOPLABEL = re.compile(
    r"(?:[A-Za-z0-9]*[A-Za-z][A-Za-z0-9]*|[A-Za-z0-9]+-[A-Za-z0-9-]*[A-Za-z0-9])\Z"
)


@dataclass(frozen=True)
class MacroExpand:
    """One ``%{...}`` expression."""

    letter: str
    """Lower-case macro letter."""
    url_escape: bool
    """The letter was upper case: URL-escape the expansion (§7.3)."""
    digits: int | None
    reverse: bool
    delimiters: str

    def text(self) -> str:
        letter = self.letter.upper() if self.url_escape else self.letter
        digits = "" if self.digits is None else str(self.digits)
        return f"%{{{letter}{digits}{'r' if self.reverse else ''}{self.delimiters}}}"


Token = str | MacroExpand


@dataclass(frozen=True)
class MacroString:
    """A parsed macro string: literal chunks and macro expressions, in order."""

    tokens: tuple[Token, ...]
    text: str
    ends_with_macro: bool
    """The last element was a macro-expand (``%{..}``, ``%%``, ``%_`` or ``%-``)."""

    @cached_property
    def letters(self) -> frozenset[str]:
        return frozenset(t.letter for t in self.tokens if isinstance(t, MacroExpand))

    @cached_property
    def has_macros(self) -> bool:
        return any(isinstance(t, MacroExpand) for t in self.tokens)


def parse_macro_string(
    text: str, *, letters: frozenset[str] = EXP_LETTERS, allow_space: bool = False
) -> MacroString:
    """Parse ``macro-string`` (or ``explain-string`` with ``allow_space``); raise on bad syntax."""
    tokens: list[Token] = []
    literal: list[str] = []
    ends_with_macro = False
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "%":
            nxt = text[i + 1] if i + 1 < n else ""
            if nxt in ("%", "_", "-"):
                literal.append({"%": "%", "_": " ", "-": "%20"}[nxt])
                i += 2
                ends_with_macro = True
                continue
            if nxt != "{":
                raise SpfSyntaxError(
                    f"'%' must be followed by '{{', '%', '_' or '-' in {text!r} (RFC 7208 §7.1)"
                )
            m = _EXPAND.match(text, i)
            if m is None:
                raise SpfSyntaxError(f"malformed macro at {text[i : i + 12]!r} in {text!r}")
            letter = m.group(1)
            if letter.lower() not in letters:
                raise SpfSyntaxError(f"macro letter {letter!r} not allowed here in {text!r}")
            digits: int | None = None
            if m.group(2):
                digits = int(m.group(2))
                if digits == 0:
                    raise SpfSyntaxError(f"macro transformer digit must be nonzero in {text!r}")
            if literal:
                tokens.append("".join(literal))
                literal = []
            tokens.append(
                MacroExpand(
                    letter=letter.lower(),
                    url_escape=letter.isupper(),
                    digits=digits,
                    reverse=bool(m.group(3)),
                    delimiters=m.group(4),
                )
            )
            i = m.end()
            ends_with_macro = True
            continue
        code = ord(ch)
        if not (0x21 <= code <= 0x7E or (allow_space and code == 0x20)):
            raise SpfSyntaxError(f"invalid character {ch!r} in {text!r} (visible ASCII only)")
        literal.append(ch)
        ends_with_macro = False
        i += 1
    if literal:
        tokens.append("".join(literal))
    return MacroString(tuple(tokens), text, ends_with_macro)


def parse_domain_spec(text: str) -> MacroString:
    """Parse ``domain-spec`` (§7.1): a macro string ending in a macro or ``.toplabel[.]``."""
    if not text:
        raise SpfSyntaxError("empty domain-spec")
    ms = parse_macro_string(text, letters=DOMAIN_LETTERS)
    if ms.ends_with_macro:
        return ms
    last = ms.tokens[-1] if ms.tokens else ""
    assert isinstance(last, str)
    # The trailing literal run is `... "." toplabel [ "." ]`; only characters typed literally
    # count (a literal produced by %% or %_ cannot form the toplabel).
    raw_tail = _literal_tail(text)
    tail = raw_tail[:-1] if raw_tail.endswith(".") else raw_tail
    dot = tail.rfind(".")
    if dot < 0 or not _TOPLABEL.match(tail[dot + 1 :]):
        raise SpfSyntaxError(
            f"domain {text!r} must end in a macro or '.<top-label>' (a top label is not all"
            " digits and not only one label; RFC 7208 §7.1)"
        )
    return ms


def _literal_tail(text: str) -> str:
    """The characters after the last macro expression (``%x`` pairs and ``%{...}``)."""
    cut = 0
    for m in re.finditer(r"%\{[^}]*\}|%.", text):
        cut = m.end()
    return text[cut:]


@dataclass(frozen=True)
class MacroContext:
    """The values macros expand to (§7.3)."""

    sender: str
    local_part: str
    sender_domain: str
    domain: str
    ip: str
    """The client address in dot format for %{i}: dotted quad or 32 dot-separated nibbles."""
    client_ip: str
    """The client address as usually written, for %{c}."""
    ip_version: str
    """'in-addr' or 'ip6' (%{v})."""
    helo: str
    receiver: str = "unknown"
    timestamp: int = 0
    ptr_name: str = "unknown"
    """The validated PTR name (%{p}); the caller resolves it when the string uses 'p'."""

    def value(self, letter: str) -> str:
        return {
            "s": self.sender,
            "l": self.local_part,
            "o": self.sender_domain,
            "d": self.domain,
            "i": self.ip,
            "p": self.ptr_name,
            "v": self.ip_version,
            "h": self.helo,
            "c": self.client_ip,
            "r": self.receiver,
            "t": str(self.timestamp),
        }[letter]


def expand(ms: MacroString, ctx: MacroContext) -> str:
    """Expand a parsed macro string (no domain-name post-processing)."""
    out: list[str] = []
    for tok in ms.tokens:
        if isinstance(tok, str):
            out.append(tok)
            continue
        value = ctx.value(tok.letter)
        delims = tok.delimiters or "."
        parts = re.split("[" + re.escape(delims) + "]", value)
        if tok.reverse:
            parts.reverse()
        if tok.digits is not None and tok.digits < len(parts):
            parts = parts[-tok.digits :]
        value = ".".join(parts)
        if tok.url_escape:
            value = urllib.parse.quote(value, safe="")
        out.append(value)
    return "".join(out)


def expand_domain(ms: MacroString, ctx: MacroContext) -> str:
    """Expand a domain-spec and fit it for a query (§7.3: trailing dot dropped, left-truncated
    to 253 characters by whole labels)."""
    name = expand(ms, ctx)
    if name.endswith("."):
        name = name[:-1]
    while len(name) > 253 and "." in name:
        name = name.split(".", 1)[1]
    return name

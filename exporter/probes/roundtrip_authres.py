"""A parser for the ``Authentication-Results`` header field (RFC 8601).

Hand-written because no maintained Python library parses RFC 8601 on its own (``authres`` is
unmaintained and untyped; the stdlib ``email`` package leaves the field as text). The parser is
lenient where real receivers are sloppy (unknown methods and results, properties whose values
contain ``/``, ``=`` or ``@``) and strict only about the structure: quoted strings and comments
must be closed and every result is ``method[/version]=result``. It raises
:class:`AuthResError` (a ``ValueError``) and nothing else on any input.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

# Results a state set exposes: the union of the values RFC 8601 §2.7 defines for spf, dkim and
# dmarc (``softfail`` is spf-only, ``policy`` dkim/spf).
RESULTS = ("pass", "fail", "softfail", "neutral", "none", "temperror", "permerror", "policy")
METHODS = ("spf", "dkim", "dmarc")


class AuthResError(ValueError):
    """The field value is not a parseable Authentication-Results header."""


@dataclass(frozen=True)
class MethodResult:
    """One ``method=result`` with its optional reason and properties (``header.d`` -> value)."""

    method: str
    result: str
    version: int | None = None
    reason: str | None = None
    properties: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AuthenticationResults:
    authserv_id: str
    results: tuple[MethodResult, ...]
    version: int | None = None

    def result_of(self, method: str) -> str | None:
        """The verdict for one method: ``pass`` if any instance passed (several DKIM signatures,
        of which one aligned pass is enough), else the first one reported; None when absent."""
        found = [r.result for r in self.results if r.method == method]
        if not found:
            return None
        return "pass" if "pass" in found else found[0]


_KEYWORD = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_METHOD_RE = re.compile(
    rf"\s*({_KEYWORD})\s*(?:/\s*(\d{{1,9}})\s*)?=\s*({_KEYWORD})(?=\s|$)", re.ASCII | re.DOTALL
)
# A property (ptype.property=value), the reason, or a bare key=value some receivers add
# (Microsoft's action=, compauth=); accepted in any order.
_ITEM_RE = re.compile(
    rf"\s*({_KEYWORD}(?:\s*\.\s*[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*)?)\s*=\s*({_QUOTED}|[^\s\"]*)"
    r"(?=\s|$)",
    re.ASCII | re.DOTALL,
)
_VALUE_RE = re.compile(rf"\s*({_QUOTED}|[^\s\"]+)\s*(?:(\d{{1,9}})\s*)?$", re.ASCII | re.DOTALL)


def _segments(value: str) -> list[str]:
    """Split on top-level ``;``, replacing comments by a space and keeping quoted strings."""
    segments: list[str] = []
    current: list[str] = []
    i, n = 0, len(value)
    while i < n:
        ch = value[i]
        if ch == '"':
            j = i + 1
            while j < n and value[j] != '"':
                j += 2 if value[j] == "\\" else 1
            if j >= n:
                raise AuthResError("unterminated quoted string")
            current.append(value[i : j + 1])
            i = j + 1
        elif ch == "(":
            depth, j = 1, i + 1
            while j < n and depth:
                c = value[j]
                if c == "\\":
                    j += 1
                elif c == "(":
                    depth += 1
                elif c == ")":
                    depth -= 1
                j += 1
            if depth:
                raise AuthResError("unterminated comment")
            current.append(" ")
            i = j
        elif ch == ")":
            raise AuthResError("unbalanced ')'")
        elif ch == ";":
            segments.append("".join(current))
            current = []
            i += 1
        else:
            current.append(ch)
            i += 1
    segments.append("".join(current))
    return segments


def _unquote(token: str) -> str:
    if len(token) >= 2 and token[0] == '"' and token[-1] == '"':
        return re.sub(r"\\(.)", r"\1", token[1:-1], flags=re.DOTALL)
    return token


def _parse_resinfo(segment: str) -> MethodResult:
    m = _METHOD_RE.match(segment)
    if m is None:
        raise AuthResError(f"expected method=result, got {segment.strip()[:60]!r}")
    pos = m.end()
    reason = None
    props: dict[str, str] = {}
    while segment[pos:].strip():
        item = _ITEM_RE.match(segment, pos)
        if item is None:
            raise AuthResError(f"bad property in {segment.strip()[:60]!r}")
        key = re.sub(r"\s+", "", item.group(1)).lower()
        if key == "reason" and reason is None:
            reason = _unquote(item.group(2))
        else:
            props.setdefault(key, _unquote(item.group(2)))
        pos = item.end()
    return MethodResult(
        method=m.group(1).lower(),
        result=m.group(3).lower(),
        version=int(m.group(2)) if m.group(2) else None,
        reason=reason,
        properties=props,
    )


def parse(value: str) -> AuthenticationResults:
    """Parse one Authentication-Results field value (unfolded or folded)."""
    if not isinstance(value, str):
        raise AuthResError("expected text")
    segments = _segments(value.replace("\r", " ").replace("\n", " "))
    head = _VALUE_RE.fullmatch(segments[0])
    if head is None:
        raise AuthResError("missing authserv-id")
    authserv_id = _unquote(head.group(1))
    version = int(head.group(2)) if head.group(2) else None
    rest = segments[1:]
    if len(rest) == 1 and rest[0].strip().lower() == "none":
        return AuthenticationResults(authserv_id, (), version)
    if rest and not rest[-1].strip():
        rest = rest[:-1]  # a trailing ';' is common in the wild
    if not rest:
        raise AuthResError("no results (expected '; none' or method=result)")
    return AuthenticationResults(authserv_id, tuple(_parse_resinfo(s) for s in rest), version)


def verdicts(fields: Iterable[str]) -> tuple[dict[str, str], AuthenticationResults | None]:
    """The spf/dkim/dmarc verdicts of the topmost parseable field (the receiver's own, as it is
    added last and so appears first), plus that parsed field; ``({}, None)`` if none parses."""
    for value in fields:
        try:
            parsed = parse(value)
        except AuthResError:
            continue
        out = {}
        for method in METHODS:
            result = parsed.result_of(method)
            if result is not None:
                out[method] = result
        return out, parsed
    return {}, None

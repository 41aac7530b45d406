"""The MTA-STS policy file (RFC 8461 §3.2) and MX host matching (§4.1).

The grammar, to the letter: lines ``name: value`` separated by LF or CRLF, an optional line
terminator after the last line and no blank line anywhere else; no whitespace before a name or
the colon, spaces or tabs after the colon and at the end of a line; field names case-sensitive.
``version: STSv1``, ``mode`` (``enforce``/``testing``/``none``) and ``max_age`` (1 to 10 digits,
at most 31557600) are required; ``mx`` (``[*.]domain``) at least once unless the mode is
``none``. Other fields are ignored once they are syntactically valid (a name of letters, digits
and ``_-.``; a value of printable characters, UTF-8 included, spaces only inside). A repeated
field other than ``mx`` counts once, the first, and its repeats are not looked at (RFC 8461 §3.2:
"all entries except for the first SHOULD be ignored").

Matching (§4.1): an MX host matches ``mx: mail.example.com`` exactly (case-insensitive, a final
dot ignored), and ``mx: *.example.com`` when it is exactly one label more than ``example.com``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

MAX_AGE_LIMIT = 31557600
"""The largest ``max_age`` (365.25 days, RFC 8461 §3.2)."""

Mode = Literal["enforce", "testing", "none"]
MODES: tuple[Mode, ...] = ("enforce", "testing", "none")

_LINE = re.compile(r"([A-Za-z0-9][A-Za-z0-9_.-]{0,31}):[ \t]*(.*?)[ \t]*")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
_MAX_AGE = re.compile(r"[0-9]{1,10}")
_KNOWN = ("version", "mode", "max_age")


class PolicyError(ValueError):
    """The policy file does not follow RFC 8461 §3.2."""


def is_hostname(name: str, labels: int = 1) -> bool:
    """``name`` is an RFC 5321 ``Domain`` (letters, digits, inner hyphens; no final dot) with at
    least ``labels`` labels, each at most 63 characters, at most 253 in all."""
    parts = name.split(".")
    return (
        len(parts) >= labels
        and len(name) <= 253
        and all(len(p) <= 63 and _LABEL.fullmatch(p) for p in parts)
    )


def show(text: str, limit: int = 48) -> str:
    """``text`` quoted for a message, cut at ``limit`` characters."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


def case_hint(fields: Iterable[tuple[str, str]], wanted: str) -> str:
    """A hint when a field is missing but present in another case ('' otherwise)."""
    for name, _ in fields:
        if name.lower() == wanted:
            return f" (field names are case-sensitive: {name!r} is not {wanted!r})"
    return ""


def _host(name: str) -> str:
    return name.strip().rstrip(".").lower()


@dataclass(frozen=True)
class MxPattern:
    """One ``mx:`` value: a host name, or ``*.`` and the domain one label below which it matches."""

    domain: str
    """Lower case, without the ``*.``."""
    wildcard: bool = False

    def __str__(self) -> str:
        return f"*.{self.domain}" if self.wildcard else self.domain

    def matches(self, host: str) -> bool:
        return mx_matches(self, host)


def mx_matches(pattern: MxPattern, host: str) -> bool:
    """RFC 8461 §4.1: does the MX host name ``host`` match ``pattern``?"""
    name = _host(host)
    if not pattern.wildcard:
        return name == pattern.domain
    first, dot, rest = name.partition(".")
    return bool(first) and bool(dot) and rest == pattern.domain


def parse_mx_pattern(value: str) -> MxPattern:
    """One ``mx`` value (``["*."] Domain``); raises :class:`PolicyError`."""
    wildcard = value.startswith("*.")
    domain = value[2:] if wildcard else value
    if domain.endswith(".") and is_hostname(domain[:-1]):
        raise PolicyError(f"mx {value!r} ends with a dot (the grammar has no final dot)")
    if "*" in domain:
        raise PolicyError(f"mx {value!r}: a wildcard is only allowed as a whole first label '*.'")
    if not is_hostname(domain):
        raise PolicyError(f"mx {value!r} is not a host name (letters, digits, hyphens, dots)")
    return MxPattern(domain.lower(), wildcard)


@dataclass(frozen=True)
class Policy:
    """A valid STSv1 policy."""

    mode: Mode
    max_age: int
    mx: tuple[MxPattern, ...]
    extensions: tuple[tuple[str, str], ...] = ()
    notes: tuple[str, ...] = ()
    """Things senders ignore without rejecting the policy (repeated fields)."""

    def covers(self, host: str) -> bool:
        """Does an ``mx`` pattern match the MX host name ``host``?"""
        return any(mx_matches(p, host) for p in self.mx)

    def canonical(self) -> str:
        """The policy's meaning as text: the same for the same fields in any order, line endings
        or spacing, so that a hash of it changes only when what senders read changes."""
        lines = ["version: STSv1", f"mode: {self.mode}", f"max_age: {self.max_age}"]
        lines += sorted({f"mx: {p}" for p in self.mx})
        lines += sorted(f"{k}: {v}" for k, v in self.extensions)
        return "\n".join(lines) + "\n"

    def digest(self) -> str:
        """SHA-256 (hex) of :meth:`canonical`."""
        return hashlib.sha256(self.canonical().encode()).hexdigest()


def _lines(text: str) -> list[str]:
    """Split on LF or CRLF; the terminator after the last line is optional."""
    if not text:
        raise PolicyError("the policy is empty")
    terminated = text.endswith("\n")
    lines = text.split("\n")
    if terminated:
        lines.pop()
    out: list[str] = []
    for number, line in enumerate(lines, 1):
        if line.endswith("\r") and (terminated or number < len(lines)):
            line = line[:-1]
        if "\r" in line:
            raise PolicyError(f"line {number}: a CR not followed by LF")
        if not line:
            raise PolicyError(f"line {number} is blank (the grammar allows no blank line)")
        if number == len(lines) > 1 and not line.strip(" \t"):
            raise PolicyError(
                f"whitespace after the last line's terminator (line {number} {show(line)}):"
                " the grammar ends the policy at the last LF or CRLF"
            )
        out.append(line)
    return out


def _field(number: int, line: str) -> tuple[str, str]:
    m = _LINE.fullmatch(line)
    if m is None:
        if line[:1] in (" ", "\t"):
            hint = "whitespace before the field name"
        elif re.match(r"[A-Za-z0-9_.-]+[ \t]+:", line):
            hint = "whitespace before the colon"
        elif line.startswith("\ufeff"):
            hint = "a byte-order mark before the first field"
        else:
            hint = "expected 'name: value'"
        raise PolicyError(f"line {number} {show(line)}: {hint}")
    name, value = m.group(1), m.group(2)
    if not value:
        raise PolicyError(f"line {number}: {name} has no value")
    if any(c < " " or c == "\x7f" for c in value):
        raise PolicyError(f"line {number}: {name} has a control character in its value")
    return name, value


def _version(value: str) -> None:
    if value != "STSv1":
        raise PolicyError(f"version {show(value)} is not STSv1")


def _mode(value: str) -> Mode:
    for mode in MODES:
        if value == mode:
            return mode
    raise PolicyError(f"mode {show(value)} is not enforce, testing or none (case-sensitive)")


def _max_age(value: str) -> int:
    if not _MAX_AGE.fullmatch(value):
        raise PolicyError(f"max_age {show(value)} is not a whole number of seconds (1-10 digits)")
    seconds = int(value)
    if seconds > MAX_AGE_LIMIT:
        raise PolicyError(f"max_age {seconds} is over {MAX_AGE_LIMIT} (365.25 days)")
    return seconds


def parse_policy(body: bytes | str) -> Policy:
    """Parse a policy file (bytes are decoded as UTF-8); raises :class:`PolicyError`."""
    if isinstance(body, bytes):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PolicyError(f"not UTF-8 text (byte {exc.start})") from None
    else:
        text = body
    values: dict[str, str] = {}
    mx: list[MxPattern] = []
    extensions: list[tuple[str, str]] = []
    notes: list[str] = []
    for number, line in enumerate(_lines(text), 1):
        name, value = _field(number, line)
        if name == "mx":
            try:
                mx.append(parse_mx_pattern(value))
            except PolicyError as exc:
                raise PolicyError(f"line {number}: {exc}") from None
        elif name in _KNOWN:
            if name in values:
                notes.append(f"line {number}: a repeated {name} is ignored (only the first counts)")
            else:
                values[name] = value
        else:
            extensions.append((name, value))
    for name in _KNOWN:
        if name not in values:
            raise PolicyError(f"no {name} field" + case_hint(extensions, name))
    _version(values["version"])
    mode = _mode(values["mode"])
    max_age = _max_age(values["max_age"])
    if not mx and mode != "none":
        raise PolicyError(f"no mx field (required in {mode} mode)" + case_hint(extensions, "mx"))
    for name, _ in extensions:
        if name != name.lower() and name.lower() in (*_KNOWN, "mx"):
            notes.append(
                f"a {name!r} field is ignored (field names are case-sensitive: {name!r} is not"
                f" {name.lower()!r})"
            )
    return Policy(mode, max_age, tuple(mx), tuple(extensions), tuple(notes))

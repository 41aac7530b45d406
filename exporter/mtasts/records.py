"""The ``_mta-sts.<domain>`` (RFC 8461 §3.1) and ``_smtp._tls.<domain>`` (RFC 8460 §3) TXT records.

Both are tag lists after a fixed version: ``v=STSv1; id=...`` and ``v=TLSRPTv1; rua=...``. The
grammar is followed to the letter (it is what strict senders apply): the version first and
case-sensitive, fields ``name=value`` separated by ``;`` with optional spaces or tabs around it,
no empty field, no whitespace at the end except inside the optional final delimiter (both
grammars end with ``[field-delim]``, and their delimiter is ``*WSP ";" *WSP``: mox, a strict
parser, accepts ``v=STSv1; id=1; `` too). Unknown fields are ignored once
they are syntactically valid; a repeated known field counts once, the first (RFC 8461 §3.2 says
so for both of its formats; RFC 8460 says nothing, and the same rule is applied).

:func:`discover_sts` / :func:`discover_tlsrpt` take a whole TXT RRset and say what senders see:
records that do not begin with the version and a ``;`` are discarded (as mox does, spaces are
allowed before the ``;``, which the grammar permits); more than one left means no policy
(``duplicate``); one left is ``valid`` or ``invalid``. A record that only looks like one (another
case, a leading space, no ``;``) is reported as ``invalid`` when there is no real one, since that
is almost always a typo that makes senders see nothing.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

from exporter.mtasts.policy import case_hint, is_hostname, show

STS_VERSION = "v=STSv1"
TLSRPT_VERSION = "v=TLSRPTv1"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
_DELIM = re.compile(r"[ \t]*;[ \t]*")
_EXT_VALUE = re.compile(r"[\x21-\x3a\x3c\x3e-\x7e]+")
_STS_ID = re.compile(r"[A-Za-z0-9]{1,32}")
_URI_SPLIT = re.compile(r"[ \t]*,[ \t]*")
_URI_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@$&'()*+=%]+")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):(.*)", re.S)
_LOCAL_PART = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")


class StsRecordError(ValueError):
    """The ``_mta-sts`` TXT record does not follow RFC 8461 §3.1."""


class TlsRptError(ValueError):
    """The ``_smtp._tls`` TXT record does not follow RFC 8460 §3."""


E = TypeVar("E", bound=ValueError)
T = TypeVar("T")


def split_tags(text: str, version: str, error: type[E]) -> list[tuple[str, str]]:
    """The ``name=value`` fields after ``version``, in order; raises ``error`` on bad syntax.

    Values end before the next ``;`` (whitespace before it belongs to the delimiter); what a
    value may contain is the caller's to check.
    """
    if not text.startswith(version):
        raise error(f"the record does not begin with {version!r}")
    n = len(text)
    pos = len(version)
    fields: list[tuple[str, str]] = []
    while pos < n:
        delim = _DELIM.match(text, pos)
        if delim is None:
            raise error(f"expected ';' before {show(text[pos:])}")
        pos = delim.end()
        if pos == n:  # the optional final delimiter, whitespace around it included
            break
        name = _NAME.match(text, pos)
        if name is None or not text.startswith("=", name.end()):
            raise error(f"malformed field {show(text[pos:])}: expected name=value")
        start = name.end() + 1
        semi = text.find(";", start)
        end = n if semi < 0 else semi
        value = text[start:end].rstrip(" \t")
        if end == n and start + len(value) != n:
            raise error("whitespace at the end of the record")
        if not value:
            raise error(f"{name.group()}= has no value")
        fields.append((name.group(), value))
        pos = start + len(value)
    return fields


def _first_wins(
    fields: list[tuple[str, str]], known: tuple[str, ...]
) -> tuple[dict[str, str], list[tuple[str, str]], list[str]]:
    """(first value of each known field, extensions in order, notes about ignored repeats)."""
    values: dict[str, str] = {}
    extensions: list[tuple[str, str]] = []
    notes: list[str] = []
    for name, value in fields:
        if name in known:
            if name in values:
                notes.append(f"a repeated {name}= is ignored (only the first counts)")
            else:
                values[name] = value
        else:
            extensions.append((name, value))
    return values, extensions, notes


def _check_extensions(extensions: list[tuple[str, str]], error: type[E]) -> None:
    for name, value in extensions:
        if not _EXT_VALUE.fullmatch(value):
            raise error(
                f"{name}= value {show(value)} has a character outside printable ASCII"
                " (or '=', space)"
            )


# ----- MTA-STS ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StsRecord:
    """A valid ``v=STSv1`` record: its policy ``id`` and any extension fields."""

    id: str
    extensions: tuple[tuple[str, str], ...] = ()
    notes: tuple[str, ...] = ()
    """Things senders ignore without rejecting the record (repeated fields)."""


def parse_sts_record(text: str) -> StsRecord:
    """Parse one ``_mta-sts`` TXT record (strings joined); raises :class:`StsRecordError`."""
    fields = split_tags(text, STS_VERSION, StsRecordError)
    values, extensions, notes = _first_wins(fields, ("id",))
    _check_extensions(extensions, StsRecordError)
    policy_id = values.get("id")
    if policy_id is None:
        raise StsRecordError("no id= field" + case_hint(extensions, "id"))
    if not _STS_ID.fullmatch(policy_id):
        raise StsRecordError(f"id={show(policy_id)} is not 1 to 32 letters and digits")
    return StsRecord(policy_id, tuple(extensions), tuple(notes))


# ----- TLS-RPT ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsRptRecord:
    """A valid ``v=TLSRPTv1`` record: where reports go (``mailto:``/``https:`` URIs)."""

    rua: tuple[str, ...]
    extensions: tuple[tuple[str, str], ...] = ()
    notes: tuple[str, ...] = ()


def _check_uri(uri: str) -> None:
    if not _URI_CHARS.fullmatch(uri):
        raise TlsRptError(
            f"rua URI {show(uri)} has a character a URI may not contain unencoded"
            " (commas and '!' must be percent-encoded, RFC 8460 §3)"
        )
    scheme = _SCHEME.fullmatch(uri)
    kind = scheme.group(1).lower() if scheme else ""
    if scheme is None or kind not in ("mailto", "https"):
        raise TlsRptError(f"rua URI {show(uri)}: only mailto: and https: are allowed")
    rest = scheme.group(2)
    if kind == "mailto":
        try:
            address = urllib.parse.unquote(rest.partition("?")[0], errors="strict")
        except UnicodeDecodeError:
            raise TlsRptError(f"rua URI {show(uri)}: percent-encoded bytes are not UTF-8") from None
        local, at, domain = address.rpartition("@")
        if not at or not _LOCAL_PART.fullmatch(local) or not is_hostname(domain, labels=2):
            raise TlsRptError(f"rua URI {show(uri)}: not a mailto: with one address")
        return
    try:
        parts = urllib.parse.urlsplit(uri)
        port = parts.port
    except ValueError as exc:
        raise TlsRptError(f"rua URI {show(uri)}: {exc}") from None
    host = parts.hostname or ""
    if not rest.startswith("//") or port == 0 or not (_is_ip(host) or is_hostname(host, 2)):
        raise TlsRptError(f"rua URI {show(uri)}: not an https:// URI with a host name")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def parse_tlsrpt_record(text: str) -> TlsRptRecord:
    """Parse one ``_smtp._tls`` TXT record; raises :class:`TlsRptError`."""
    fields = split_tags(text, TLSRPT_VERSION, TlsRptError)
    values, extensions, notes = _first_wins(fields, ("rua",))
    _check_extensions(extensions, TlsRptError)
    rua = values.get("rua")
    if rua is None:
        raise TlsRptError("no rua= field" + case_hint(extensions, "rua"))
    uris = _URI_SPLIT.split(rua)
    for uri in uris:
        if not uri:
            raise TlsRptError(f"rua={show(rua)} has an empty URI")
        _check_uri(uri)
    return TlsRptRecord(tuple(uris), tuple(extensions), tuple(notes))


# ----- what senders see in an RRset -------------------------------------------------------------

Status = Literal["absent", "valid", "invalid", "duplicate"]


@dataclass(frozen=True)
class Discovery(Generic[T]):
    """What senders make of a TXT RRset: ``absent``, ``valid``, ``invalid`` or ``duplicate``."""

    status: Status
    record: T | None = None
    text: str = ""
    """The record senders read (valid or invalid), or the look-alike reported as invalid."""
    error: str = ""
    claims: tuple[str, ...] = ()
    """Every record that begins with the version."""
    ignored: tuple[str, ...] = field(default=())
    """Look-alikes senders discard (other case, leading space) beside a real record."""


def _discover(
    texts: Iterable[str], version: str, parse: Callable[[str], T], error: type[ValueError]
) -> Discovery[T]:
    claim = re.compile(re.escape(version) + r"[ \t]*;")
    claims: list[str] = []
    lookalikes: list[str] = []
    for text in texts:
        if claim.match(text):
            claims.append(text)
        elif re.sub(r"\s+", "", text).lower().startswith(version.lower()):
            lookalikes.append(text)
    if len(claims) > 1:
        return Discovery(
            "duplicate",
            error=f"{len(claims)} records begin with '{version};': senders use none of them",
            claims=tuple(claims),
            ignored=tuple(lookalikes),
        )
    if not claims:
        if not lookalikes:
            return Discovery("absent")
        text = lookalikes[0]
        try:
            parse(text)
            reason = f"it does not begin with '{version};'"
        except error as exc:
            reason = str(exc)
        return Discovery(
            "invalid",
            text=text,
            error=f"{reason}; senders ignore a record that does not begin with '{version};'",
            ignored=tuple(lookalikes),
        )
    text = claims[0]
    try:
        record = parse(text)
    except error as exc:
        return Discovery(
            "invalid", text=text, error=str(exc), claims=(text,), ignored=tuple(lookalikes)
        )
    return Discovery("valid", record, text, claims=(text,), ignored=tuple(lookalikes))


def discover_sts(texts: Iterable[str]) -> Discovery[StsRecord]:
    """The ``_mta-sts`` record senders use out of a TXT RRset (RFC 8461 §3.1). Never raises."""
    return _discover(texts, STS_VERSION, parse_sts_record, StsRecordError)


def discover_tlsrpt(texts: Iterable[str]) -> Discovery[TlsRptRecord]:
    """The ``_smtp._tls`` record senders use out of a TXT RRset (RFC 8460 §3). Never raises."""
    return _discover(texts, TLSRPT_VERSION, parse_tlsrpt_record, TlsRptError)

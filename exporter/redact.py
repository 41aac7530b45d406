"""Secrets out of every text the exporter shows: one redactor, applied at the two doors.

Servers answer with text we did not write: an SES endpoint echoing the request's headers, an SMTP
``535`` or an IMAP ``NO`` repeating the ``AUTH`` command, an exception quoting bytes of a file.
Per-probe patterns missed some; so redaction is by value, in one place each kind of output passes:

* every probe result, in :func:`exporter.runner.run_probe` (its error, findings, details and
  tables): what ``/metrics``, the status page and ``check`` (text and JSON) show;
* every log line, in the formatters of :mod:`exporter.logs` (message, fields and traceback).

What is redacted (:data:`REDACTED` instead):

* every secret value the exporter has read (:func:`add`: passwords from ``password_env`` and
  ``password_file``, the AWS credentials it signs with), and the forms they travel in: base64
  (AUTH LOGIN), URL and form encoding; a base64 run whose decoding contains a secret (AUTH PLAIN
  ``\\0user\\0password`` with any user name, at any alignment) goes whole;
* what credentials look like when the value is unknown: AWS access key ids, the values of
  ``Authorization``, ``X-Amz-Security-Token`` and ``Cookie`` headers, ``Credential=`` and
  ``Signature=`` material of a SigV4 header or query string, the initial response of an
  ``AUTH PLAIN|LOGIN|XOAUTH2|...`` command quoted by a server; and, through
  :func:`scrub_sasl` where remote text is quoted (Postfix deferral reasons), any base64 run
  that decodes to a SASL PLAIN or XOAUTH2 response.

Values shorter than :data:`MIN_SECRET` are not registered (redacting a 3-letter password would
redact every word containing it). The registry is the process's: secrets are read per run, and
a value once seen stays redacted until the process ends (a rotated password included).
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
import urllib.parse
from collections.abc import Iterable

REDACTED = "[redacted]"
MIN_SECRET = 6

_MECHANISMS = (
    "plain|login|xoauth2|oauthbearer|cram-md5|digest-md5|ntlm|scram-sha-1|scram-sha-256|external"
)
"""SASL mechanisms whose initial response, quoted after ``AUTH <mechanism>``, is redacted."""
_PATTERNS = re.compile(
    r"(?P<key>(?:AKIA|ASIA|AROA|AIDA|ABIA|ACCA|AGPA|ANPA|ANVA|APKA)[A-Z0-9]{12,})"
    r"|(?P<header>(?i:authorization|proxy-authorization|x-amz-security-token|cookie)"
    r"\s*[:=]\s*)[^\r\n,;'\"]+"
    r"|(?P<sigv4>(?i:credential|signature|x-amz-credential|x-amz-signature|x-amz-security-token)"
    r"=)[^\s,;&'\"]+"
    # An SMTP/IMAP AUTH command with its initial response, quoted back by a server (Postfix
    # puts a relay's reply in the deferral reason): the response holds the credentials.
    rf"|(?P<sasl>(?ai:\bauth(?:enticate)?\s+(?:{_MECHANISMS})\s+)(?!(?ai:command)\b))"
    r"[^\s,;'\"()]+"
)
_BASE64 = re.compile(r"[A-Za-z0-9+/]{8,}={0,2}")
_SASL_BASE64 = re.compile(r"[A-Za-z0-9+/]{6,}={0,2}")  # "\0a\0b" is AGEAYg==: 6 and padding
# Cheap tests before the regular expressions (a result's details run through here every run):
# the patterns above cannot match a text that contains none of these.
_TRIGGERS = ("authoriz", "token", "cookie", "credential", "signature")
_SASL_AT = re.compile(rf"auth(?:enticate)?\s+(?:{_MECHANISMS})\s+(?!command\b)[^\s,;'\"()]")
"""An AUTH command with an initial response, matched (lower case) where "auth" was found:
"auth" is in many plain texts (Authentication-Results), where running :data:`_PATTERNS` at
every position costs ten times more."""


def _triggered(text: str, low: str) -> bool:
    """Whether :data:`_PATTERNS` can match ``text`` (``low`` is it in lower case)."""
    if any(t in low for t in _TRIGGERS) or any(p in text for p in _KEY_PREFIXES):
        return True
    at = low.find("auth")
    while at != -1:
        if _SASL_AT.match(low, at):
            return True
        at = low.find("auth", at + 4)
    return False


_KEY_PREFIXES = ("AKIA", "ASIA", "AROA", "AIDA", "ABIA", "ACCA", "AGPA", "ANPA", "ANVA", "APKA")


class Redactor:
    """The secret values to remove and the text shapes of credentials (see the module)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # secrets are added from the ses probe's threads too
        self._secrets: frozenset[bytes] = frozenset()
        self._forms: tuple[str, ...] = ()
        self._shortest = 0
        """Characters of the shortest base64 run that can hold a whole secret."""

    def add(self, values: Iterable[str | None]) -> None:
        new = {v for v in values if v and len(v) >= MIN_SECRET}
        if not new:
            return
        with self._lock:
            raw = set(self._secrets) | {v.encode("utf-8", "surrogateescape") for v in new}
            forms = set(self._forms)
            for value in new:
                forms.update(_forms_of(value))
            self._secrets = frozenset(raw)
            self._shortest = min(len(s) for s in raw) * 4 // 3
            # Longest first, so a form is never left half-replaced by a shorter one inside it.
            self._forms = tuple(sorted(forms, key=len, reverse=True))

    def redact(self, text: str) -> str:
        forms, secrets = self._forms, self._secrets
        for form in forms:
            if form in text:
                text = text.replace(form, REDACTED)
        if _triggered(text, text.lower()):
            text = _PATTERNS.sub(_replace_pattern, text)
        if secrets:
            shortest = self._shortest
            text = _BASE64.sub(lambda m: _replace_base64(m, secrets, shortest), text)
        return text

    def clean(self, texts: Iterable[str]) -> bool:
        """Whether :meth:`redact` would return every one of ``texts`` unchanged.

        One pass over the texts joined rather than one per text: a ``dns`` result is about 40
        texts (details, evidence, table cells), nearly always without anything to redact. What
        matches in one text matches in the join, so a False here only costs the full pass."""
        joined = "\0".join(texts)
        forms, secrets = self._forms, self._secrets
        if any(form in joined for form in forms):
            return False
        if _triggered(joined, joined.lower()):
            return False
        if secrets:
            shortest = self._shortest
            for m in _BASE64.finditer(joined):  # "\0" is no base64: no run spans two texts
                if _replace_base64(m, secrets, shortest) != m.group(0):
                    return False
        return True


def _forms_of(value: str) -> set[str]:
    data = value.encode("utf-8", "surrogateescape")
    out = {urllib.parse.quote(data, safe=""), urllib.parse.quote_plus(data)}
    # As text: itself when it is text, else how a decoder would show its bytes.
    try:
        out.add(data.decode("utf-8"))
    except UnicodeDecodeError:
        out.update({data.decode("latin-1"), data.decode("utf-8", "replace")})
        out.update(p for p in data.decode("utf-8", "replace").split("\ufffd") if len(p) >= 8)
    for encoded in (base64.b64encode(data), base64.urlsafe_b64encode(data)):
        out.add(encoded.decode().rstrip("="))
    return {f for f in out if len(f) >= MIN_SECRET}


def _replace_pattern(m: re.Match[str]) -> str:
    for group in ("header", "sigv4", "sasl"):
        prefix = m.group(group)
        if prefix is not None:
            return prefix + REDACTED
    return REDACTED


def _replace_base64(m: re.Match[str], secrets: frozenset[bytes], shortest: int) -> str:
    token = m.group(0)
    stripped = token.rstrip("=")
    if len(stripped) < shortest:
        return token
    # Decode at each of the 4 alignments: an echo may start in the middle of a base64 string.
    for start in range(min(4, len(stripped))):
        chunk = stripped[start:]
        if len(chunk) % 4 == 1:  # a lone character carries no whole byte
            chunk = chunk[:-1]
        chunk += "=" * (-len(chunk) % 4)
        try:
            decoded = base64.b64decode(chunk, validate=True)
        except (binascii.Error, ValueError):
            continue
        if any(s in decoded for s in secrets):
            return REDACTED
    return token


def _sasl_shape(data: bytes) -> bool:
    """``data`` is a SASL PLAIN response (``authzid\\0authcid\\0password``, RFC 4616) or an
    XOAUTH2 one (``user=...\\x01auth=Bearer ...``)."""
    if b"\x01auth=" in data:
        return True
    parts = data.split(b"\0")
    return len(parts) == 3 and bool(parts[1]) and bool(parts[2])


def _replace_sasl(m: re.Match[str]) -> str:
    token = m.group(0)
    stripped = token.rstrip("=")
    chunk = stripped[: len(stripped) - (len(stripped) % 4 == 1)]
    try:
        decoded = base64.b64decode(chunk + "=" * (-len(chunk) % 4), validate=True)
    except (binascii.Error, ValueError):
        return token
    return REDACTED if _sasl_shape(decoded) else token


def scrub_sasl(text: str) -> str:
    """``text`` without SASL PLAIN or XOAUTH2 responses (base64), wherever they stand, with or
    without the AUTH command before them: for text quoted from remote servers (Postfix's
    deferral reasons), whose credentials the exporter never read and so cannot know."""
    return _SASL_BASE64.sub(_replace_sasl, text) if len(text) >= 6 else text


REDACTOR = Redactor()
"""The process's redactor: what :func:`add` registers, :func:`redact` removes."""


def add(*values: str | None) -> None:
    """Register secret values (passwords, keys, tokens) the exporter has read."""
    REDACTOR.add(values)


def clean(texts: Iterable[str]) -> bool:
    """Whether :func:`redact` leaves every one of ``texts`` as it is."""
    return REDACTOR.clean(texts)


def redact(text: str) -> str:
    """``text`` without any registered secret, in any of its forms, nor credential material."""
    return REDACTOR.redact(text)

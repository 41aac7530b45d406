"""SMTP TLS reporting (RFC 8460) report parser.

The report is JSON, read with the standard library's :mod:`json` (the document is small and
flat; nothing on PyPI adds what matters here, which is being forgiving in the right places and
strict in the others). parsedmarc's ``parse_smtp_tls_report_json`` was the reference for what
reporters send; its package is not used (see :mod:`exporter.reports.dmarc` for why).

Tolerated: a document in Latin-1 rather than UTF-8; counts written as numeric strings; a missing
``summary`` count (0) or ``failure-details`` (none); ``mx-host`` as a string or a list; an empty
``organization-name`` (the reporter is then the domain of ``contact-info``); a missing
``report-id`` (one is made from the SHA-256 of the document, so a resent copy is counted once);
date-times without a zone (taken as UTC), with a lower-case ``t`` or ``z``, a space for ``T`` or
a leap second. Refused: anything that is not a JSON object with a ``date-range`` end and a
``policies`` list whose every entry names its ``policy-domain``. A ``result-type`` outside RFC
8460 section 4.3 is reported as ``other`` (its text kept in ``detail``), so a reporter's
invention cannot grow the metric's label set. A ``failure-details`` row that cannot be read (not
an object, a count that is negative, fractional, a boolean or over :data:`MAX_COUNT`) is skipped
and counted in ``skipped_records``; the summary's counts are still counted.

Errors: :class:`TlsReportError` only (and, past a deadline given to :func:`parse_tlsrpt`,
:class:`~exporter.reports.archive.ReportTooSlow`).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from exporter.idn import a_label
from exporter.reports.archive import ReportError, check_deadline

MAX_COUNT = 10**12
RESULT_TYPES = frozenset(
    {
        "starttls-not-supported",
        "certificate-host-mismatch",
        "certificate-expired",
        "certificate-not-trusted",
        "validation-failure",
        "tlsa-invalid",
        "dnssec-invalid",
        "dane-required",
        "sts-policy-fetch-error",
        "sts-policy-invalid",
        "sts-webpki-invalid",
    }
)
"""RFC 8460 section 4.3 result types."""


class TlsReportError(ReportError):
    """Not an RFC 8460 TLS report, or one too broken to count."""


@dataclass(frozen=True, slots=True)
class TlsFailure:
    result_type: str
    """An RFC 8460 result type, or ``other``."""
    count: int
    sending_mta_ip: str = ""
    receiving_mx_hostname: str = ""
    receiving_ip: str = ""
    detail: str = ""
    """The reporter's own result type when it is not one of RFC 8460's, or its
    ``failure-reason-code``."""


@dataclass(frozen=True, slots=True)
class TlsPolicy:
    policy_type: str
    """``sts``, ``tlsa`` or ``no-policy-found``."""
    domain: str
    """``policy-domain``: the recipient domain the sessions were for."""
    successful: int
    failed: int
    failures: tuple[TlsFailure, ...] = ()
    mx_hosts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TlsReport:
    reporter: str
    """``organization-name`` (or the domain of ``contact-info`` when empty)."""
    report_id: str
    begin: float
    end: float
    """The period covered, seconds since the epoch."""
    policies: tuple[TlsPolicy, ...]
    contact: str = ""
    skipped_records: int = 0
    """``failure-details`` rows that could not be read (not an object, a count that is not a
    session count): skipped, the rest of the report counted."""

    @property
    def key(self) -> tuple[str, str]:
        """How the report names itself: reporter and report id."""
        return (self.reporter, self.report_id)

    @property
    def dedup_key(self) -> tuple[str, str, float, float]:
        """What a report is counted once by: reporter, report id and period (a report id
        reused for another period is another report)."""
        return (self.reporter, self.report_id, self.begin, self.end)


def parse_tlsrpt(data: bytes, deadline: float | None = None) -> TlsReport:
    """Parse one TLS report (the JSON, already decompressed). With a ``deadline``
    (``time.monotonic()``), :class:`~exporter.reports.archive.ReportTooSlow` once it passes."""
    try:
        try:
            doc = json.loads(data)
        except UnicodeDecodeError:  # not UTF-8 (nor UTF-16/32): Latin-1, as some reporters write
            doc = json.loads(data.decode("latin-1"))
    except (ValueError, RecursionError) as exc:
        raise TlsReportError(f"not JSON: {type(exc).__name__}") from None
    if not isinstance(doc, dict):
        raise TlsReportError("not a JSON object")
    date_range = doc.get("date-range")
    if not isinstance(date_range, dict):
        raise TlsReportError("no date-range")
    end = _timestamp(date_range.get("end-datetime"))
    if end is None:
        raise TlsReportError("no usable date-range end-datetime")
    begin = _timestamp(date_range.get("start-datetime"))
    policies = doc.get("policies")
    if not isinstance(policies, list):
        raise TlsReportError("no policies list")
    contact = _string(doc.get("contact-info"), 254)
    reporter = _string(doc.get("organization-name"), 128)
    if not reporter:
        reporter = _domain(contact.rpartition("@")[2]) or "unknown"
    report_id = _string(doc.get("report-id"), 256)
    read: list[tuple[TlsPolicy, int]] = []
    for n, entry in enumerate(policies):
        if n % 512 == 0:
            check_deadline(deadline)
        read.append(_policy(entry))
    return TlsReport(
        reporter=reporter,
        report_id=report_id or f"sha256:{hashlib.sha256(data).hexdigest()[:32]}",
        begin=end if begin is None else min(begin, end),
        end=end,
        policies=tuple(policy for policy, _ in read),
        contact=contact,
        skipped_records=sum(skipped for _, skipped in read),
    )


def _string(value: Any, limit: int) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return ""
    return "".join(c for c in str(value) if c.isprintable()).strip()[:limit]


def _domain(value: Any) -> str:
    """Lower case, A-labels (a name that is not a valid IDN as written), bounded."""
    text = _string(value, 1024).rstrip(".").lower()
    return (a_label(text) or text)[:253]


def _count(value: Any, what: str) -> int:
    if value is None:
        return 0
    if isinstance(value, str) and value.strip().isdecimal() and value.strip().isascii():
        value = int(value.strip()) if len(value.strip()) <= 20 else -1
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise TlsReportError(f"{what} is not a session count")
    return value


_LEAP_SECOND = re.compile(r"(?<=[0-9]{2}:[0-9]{2}):60(?![0-9])")


def _timestamp(value: Any) -> float | None:
    """An RFC 3339 date-time: ``T`` and ``Z`` in either case (section 5.6), a space for ``T``,
    a leap second (``23:59:60``, read as the next second)."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    text, leap = _LEAP_SECOND.subn(":59", value.strip().upper(), count=1)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        return when.timestamp() + leap
    except (OverflowError, ValueError):
        return None


def _policy(entry: Any) -> tuple[TlsPolicy, int]:
    """The policy and how many of its failure-details rows were skipped."""
    if not isinstance(entry, dict) or not isinstance(entry.get("policy"), dict):
        raise TlsReportError("a policies entry has no policy object")
    policy = entry["policy"]
    domain = _domain(policy.get("policy-domain"))
    if not domain:
        raise TlsReportError("a policy has no policy-domain")
    summary = entry.get("summary")
    summary = summary if isinstance(summary, dict) else {}
    details = entry.get("failure-details")
    details = details if isinstance(details, list) else []
    mx = policy.get("mx-host")
    mx_hosts = mx if isinstance(mx, list) else [mx]
    failures: list[TlsFailure] = []
    for detail in details:
        try:
            failures.append(_failure(detail))
        except TlsReportError:
            continue
    read = TlsPolicy(
        policy_type=_string(policy.get("policy-type"), 32).lower() or "no-policy-found",
        domain=domain,
        successful=_count(summary.get("total-successful-session-count"), "successful sessions"),
        failed=_count(summary.get("total-failure-session-count"), "failed sessions"),
        failures=tuple(failures),
        mx_hosts=tuple(h for h in (_domain(m) for m in mx_hosts[:50]) if h),
    )
    return read, len(details) - len(failures)


def _failure(entry: Any) -> TlsFailure:
    if not isinstance(entry, dict):
        raise TlsReportError("a failure-details entry is not an object")
    raw = _string(entry.get("result-type"), 64).lower()
    known = raw in RESULT_TYPES
    return TlsFailure(
        result_type=raw if known else "other",
        count=_count(entry.get("failed-session-count"), "failed-session-count"),
        sending_mta_ip=_string(entry.get("sending-mta-ip"), 64),
        receiving_mx_hostname=_domain(entry.get("receiving-mx-hostname")),
        receiving_ip=_string(entry.get("receiving-ip"), 64),
        detail=raw if not known else _string(entry.get("failure-reason-code"), 128),
    )

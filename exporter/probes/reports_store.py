"""The ``reports`` probe's rows in the store: what a report adds, and what the metrics, findings
and status page read back.

Everything a message adds is written by one function in one transaction
(:func:`record_reports`, :func:`record_invalid`): the counters, the "seen" mark of each report
(namespace ``reports.dmarc`` / ``reports.tlsrpt``, see :func:`dedup_key`) and the per-source
rows. A crash before the commit loses nothing (the message is still in the folder and is read
again), a crash after it double-counts nothing (the report is seen: the message is only moved).

Own tables (created on first use):

* ``report_sources`` — one row per (domain, source IP): when reports first listed it (the
  report's period, not the time it was read, so reading an old backlog marks nothing new);
* ``report_source_days`` — messages per (domain, source IP, day of the report's period end):
  total, SPF and DKIM passing (aligned, as evaluated for DMARC), DMARC failing; kept for the
  7-day window only (:func:`prune_days`);
* ``report_tls_days`` — failed TLS sessions per (policy domain, day, result type), as long;
* ``report_last`` — the end of the newest report's period per (domain, kind);
* ``report_ptr`` — the PTR name of a source IP, and when it was looked up;
* ``report_labels`` — the (kind, domain, reporter) label values counted so far, for
  :class:`LabelCaps`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from exporter.reports.dmarc import AggregateReport
from exporter.reports.mime import MessageReports
from exporter.reports.tlsrpt import TlsReport
from exporter.storage import Tx

NS_DMARC = "reports.dmarc"
NS_TLSRPT = "reports.tlsrpt"
NS_INVALID = "reports.invalid"
WINDOW_DAYS = 7
DAY = 86400

DMARC_MESSAGES = "dmarc_report_messages_total"
TLS_SESSIONS = "tlsrpt_sessions_total"
TLS_FAILURES = "tlsrpt_failure_sessions_total"
INVALID = "reports_invalid_total"
COUNTERS = (DMARC_MESSAGES, TLS_SESSIONS, TLS_FAILURES, INVALID)

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS report_sources (
        domain TEXT NOT NULL, ip TEXT NOT NULL, first_seen REAL NOT NULL,
        PRIMARY KEY (domain, ip))""",
    """CREATE TABLE IF NOT EXISTS report_source_days (
        domain TEXT NOT NULL, ip TEXT NOT NULL, day INTEGER NOT NULL,
        messages INTEGER NOT NULL, spf_pass INTEGER NOT NULL, dkim_pass INTEGER NOT NULL,
        dmarc_fail INTEGER NOT NULL, PRIMARY KEY (domain, ip, day))""",
    """CREATE TABLE IF NOT EXISTS report_tls_days (
        domain TEXT NOT NULL, day INTEGER NOT NULL, result_type TEXT NOT NULL,
        sessions INTEGER NOT NULL, PRIMARY KEY (domain, day, result_type))""",
    """CREATE TABLE IF NOT EXISTS report_last (
        domain TEXT NOT NULL, kind TEXT NOT NULL, ts REAL NOT NULL, PRIMARY KEY (domain, kind))""",
    """CREATE TABLE IF NOT EXISTS report_ptr (
        ip TEXT PRIMARY KEY, name TEXT NOT NULL, checked REAL NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS report_labels (
        kind TEXT NOT NULL, domain TEXT NOT NULL, reporter TEXT NOT NULL,
        PRIMARY KEY (kind, domain, reporter))""",
)
LABELS_FILLED = "labels_filled"
"""``kv`` key (namespace ``reports.dmarc``): ``report_labels`` holds the series counted before it
existed."""
OTHER_REPORTER = "other"


@dataclass(frozen=True)
class LabelCaps:
    """Label values report mail may create: anyone can mail the report address, and each new
    ``org_name`` (or subdomain of a counted domain) was a new set of series."""

    reporters: int = 200
    """Reporters per domain and kind; later ones are counted as reporter ``other``."""
    domains: int = 1000
    """Domains per kind; reports about a later one are not counted (``capped``)."""


def ensure_schema(tx: Tx) -> None:
    for statement in _SCHEMA:
        tx.execute(statement)


@dataclass
class Outcome:
    """What one message added."""

    dmarc: int = 0
    tlsrpt: int = 0
    duplicates: int = 0
    """Reports already counted (from an earlier message, or this one read again)."""
    ignored: int = 0
    """Reports (or TLS-RPT policies) about domains this mailbox does not count."""
    capped: int = 0
    """Reports (or TLS-RPT policies) not counted: their domain would pass
    :attr:`LabelCaps.domains`."""
    records_skipped: int = 0
    """Malformed records (DMARC rows, TLS-RPT failure details) left out of counted reports."""
    skipped_in: list[str] = field(default_factory=list)
    """Which reports those were: ``reporter report-id (domain): n``."""

    def add(self, other: Outcome) -> None:
        self.dmarc += other.dmarc
        self.tlsrpt += other.tlsrpt
        self.duplicates += other.duplicates
        self.ignored += other.ignored
        self.capped += other.capped
        self.records_skipped += other.records_skipped
        self.skipped_in += other.skipped_in


def report_key(reporter: str, report_id: str) -> str:
    """The mark of the first versions: reporter + report id (see :func:`_already_counted`)."""
    return f"{reporter}\x1f{report_id}"


def dedup_key(report: AggregateReport | TlsReport) -> str:
    """The mark of a counted report: reporter, report id, the DMARC report's policy domain and
    the period. Reporters reuse ids across domains and periods; the fields cannot hold
    ``\x1f`` (the parsers drop control characters), so the key never reads as an old one."""
    parts = [str(p) if isinstance(p, str | int) else repr(p) for p in report.dedup_key]
    return "\x1f".join(parts)


LEGACY_SKEW = 3600.0
"""Clock difference allowed between a reporter and us when matching an old mark."""


def _already_counted(tx: Tx, namespace: str, report: AggregateReport | TlsReport) -> bool:
    """Whether the report was counted already (the caller marks it when not).

    Marks written before the key had the domain and period (:func:`report_key`) still
    count: a report read again after the upgrade (a crash between the commit and the move)
    is not counted twice. Such a mark cannot tell which of the reports sharing its id it
    stands for, so it is matched by at most one, and only by a report whose period had ended
    when the mark was made (a later period under the same id is another report); once
    matched it is replaced by that report's full key."""
    key = dedup_key(report)
    if tx.seen(namespace, key):
        return True
    legacy = report_key(*report.key)
    marked = tx.seen_at(namespace, legacy)
    if marked is not None and report.end <= marked + LEGACY_SKEW:
        tx.forget(namespace, legacy)
        tx.mark_seen(namespace, key, marked)
        return True
    return False


def _label(tx: Tx, caps: LabelCaps, kind: str, domain: str, reporter: str) -> str | None:
    """The reporter label to count a report under (``other`` past the reporter cap), or None
    when its domain would pass the domain cap."""
    if tx.execute("SELECT 1 FROM report_labels WHERE kind = ? AND domain = ? AND reporter = ?",
                  (kind, domain, reporter)):  # fmt: skip
        return reporter
    ((known,),) = tx.execute(
        "SELECT count(*) FROM report_labels WHERE kind = ? AND domain = ?", (kind, domain)
    )
    if not known:
        ((domains,),) = tx.execute(
            "SELECT count(DISTINCT domain) FROM report_labels WHERE kind = ?", (kind,)
        )
        if domains >= caps.domains:
            return None
    if known >= caps.reporters:
        reporter = OTHER_REPORTER
    tx.execute("INSERT OR IGNORE INTO report_labels VALUES (?, ?, ?)", (kind, domain, reporter))
    return reporter


def _fill_labels(tx: Tx) -> None:
    """Register the series counted before ``report_labels`` existed (once): they keep their
    names whatever the caps."""
    if tx.get(NS_DMARC, LABELS_FILLED) is not None:
        return
    for name, kind in ((DMARC_MESSAGES, "dmarc"), (TLS_SESSIONS, "tlsrpt")):
        tx.executemany(
            "INSERT OR IGNORE INTO report_labels VALUES (?, ?, ?)",
            [(kind, lb.get("domain", ""), lb.get("reporter", "")) for lb, _ in tx.counters(name)],
        )
    tx.put(NS_DMARC, LABELS_FILLED, "1")


def record_reports(
    tx: Tx,
    found: MessageReports,
    accept: Callable[[str], bool],
    now: float,
    caps: LabelCaps | None = None,
) -> Outcome:
    """Count the reports of one message that were not counted before, and mark them seen."""
    ensure_schema(tx)
    _fill_labels(tx)
    caps = caps or LabelCaps()
    out = Outcome()
    for report in found.dmarc:
        if _already_counted(tx, NS_DMARC, report):
            out.duplicates += 1
            continue
        tx.mark_seen(NS_DMARC, dedup_key(report), now)
        if not accept(report.domain):
            out.ignored += 1
            continue
        reporter = _label(tx, caps, "dmarc", report.domain, report.reporter)
        if reporter is None:
            out.capped += 1
            continue
        _count_dmarc(tx, report, reporter, now)
        out.dmarc += 1
        if report.skipped_records:
            out.records_skipped += report.skipped_records
            out.skipped_in.append(
                f"{report.reporter} {report.report_id} ({report.domain}): {report.skipped_records}"
            )
    for tls in found.tlsrpt:
        if _already_counted(tx, NS_TLSRPT, tls):
            out.duplicates += 1
            continue
        tx.mark_seen(NS_TLSRPT, dedup_key(tls), now)
        counted, capped = _count_tls(tx, tls, accept, now, caps)
        out.tlsrpt += counted
        out.capped += capped
        out.ignored += len(tls.policies) - counted - capped
        if counted and tls.skipped_records:
            out.records_skipped += tls.skipped_records
            out.skipped_in.append(f"{tls.reporter} {tls.report_id}: {tls.skipped_records}")
    return out


def record_invalid(tx: Tx, target: str, digest: str, now: float) -> bool:
    """Count one message that holds no report (once, however often it is read)."""
    key = f"{target}\x1f{digest}"
    if tx.seen(NS_INVALID, key):
        return False
    tx.mark_seen(NS_INVALID, key, now)
    tx.add(INVALID, {"target": target}, 1)
    return True


def _last(tx: Tx, domain: str, kind: str, ts: float) -> None:
    tx.execute(
        "INSERT INTO report_last (domain, kind, ts) VALUES (?, ?, ?) ON CONFLICT (domain, kind)"
        " DO UPDATE SET ts = max(ts, excluded.ts)",
        (domain, kind, ts),
    )


def _period(begin: float, end: float, now: float) -> tuple[float, float]:
    """The report's period, ending no later than when it was read: a period in the future (a
    reporter's clock, a typo) would pin the newest report's time and keep its sources in the
    window for as long as it lies."""
    end = min(end, now)
    return min(begin, end), end


def _count_dmarc(tx: Tx, report: AggregateReport, reporter: str, now: float) -> None:
    totals: dict[tuple[str, str], int] = defaultdict(int)
    sources: dict[str, list[int]] = {}
    for r in report.records:
        totals[(r.dmarc, r.disposition)] += r.count
        row = sources.setdefault(r.source_ip, [0, 0, 0, 0])
        row[0] += r.count
        row[1] += r.count if r.spf == "pass" else 0
        row[2] += r.count if r.dkim == "pass" else 0
        row[3] += r.count if r.dmarc == "fail" else 0
    for (dmarc, disposition), count in sorted(totals.items()):
        labels = {"domain": report.domain, "reporter": reporter, "dmarc": dmarc,
                  "disposition": disposition}  # fmt: skip
        tx.add(DMARC_MESSAGES, labels, count)
    begin, end = _period(report.begin, report.end, now)
    day = int(end // DAY)
    tx.executemany(
        "INSERT INTO report_sources (domain, ip, first_seen) VALUES (?, ?, ?)"
        " ON CONFLICT (domain, ip) DO UPDATE SET first_seen = min(first_seen, excluded.first_seen)",
        [(report.domain, ip, begin) for ip in sources],
    )
    tx.executemany(
        "INSERT INTO report_source_days VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (domain, ip, day) DO UPDATE SET messages = messages + excluded.messages,"
        " spf_pass = spf_pass + excluded.spf_pass, dkim_pass = dkim_pass + excluded.dkim_pass,"
        " dmarc_fail = dmarc_fail + excluded.dmarc_fail",
        [(report.domain, ip, day, *row) for ip, row in sources.items()],
    )
    _last(tx, report.domain, "dmarc", end)


def _count_tls(
    tx: Tx, report: TlsReport, accept: Callable[[str], bool], now: float, caps: LabelCaps
) -> tuple[int, int]:
    """Count the policies of one TLS report about accepted domains: (how many were, how many
    were not for the domain cap)."""
    counted = capped = 0
    _, end = _period(report.begin, report.end, now)
    day = int(end // DAY)
    for policy in report.policies:
        if not accept(policy.domain):
            continue
        reporter = _label(tx, caps, "tlsrpt", policy.domain, report.reporter)
        if reporter is None:
            capped += 1
            continue
        counted += 1
        for result, sessions in (("success", policy.successful), ("failure", policy.failed)):
            labels = {"domain": policy.domain, "reporter": reporter, "result": result}
            tx.add(TLS_SESSIONS, labels, sessions)
        by_type: dict[str, int] = defaultdict(int)
        for failure in policy.failures:
            by_type[failure.result_type] += failure.count
        for result_type, sessions in sorted(by_type.items()):
            tx.add(TLS_FAILURES, {"domain": policy.domain, "result_type": result_type}, sessions)
            tx.execute(
                "INSERT INTO report_tls_days VALUES (?, ?, ?, ?) ON CONFLICT"
                " (domain, day, result_type) DO UPDATE SET sessions = sessions + excluded.sessions",
                (policy.domain, day, result_type, sessions),
            )
        _last(tx, policy.domain, "tlsrpt", end)
    return counted, capped


# ----- reading back ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One source IP of a domain over the window."""

    domain: str
    ip: str
    ptr: str
    messages: int
    spf_pass: int
    dkim_pass: int
    dmarc_fail: int
    first_seen: float


@dataclass
class Snapshot:
    counters: dict[str, list[tuple[dict[str, str], float]]] = field(default_factory=dict)
    last: list[tuple[str, str, float]] = field(default_factory=list)
    """(domain, kind, end of the newest report's period)."""
    sources: list[Source] = field(default_factory=list)
    """Sources of the window, failing first, then by messages."""
    tls_failures: list[tuple[str, str, int]] = field(default_factory=list)
    """(domain, result type, failed sessions) over the window."""


PRUNED = "days_pruned"
"""``kv`` key (namespace ``reports.dmarc``): when day rows past the window were last deleted."""
PRUNE_EVERY = 3600.0


def prune_days(tx: Tx, now: float) -> None:
    """Delete the per-day rows no window reads any more (at most once an hour: it scans). The
    first-seen date of each source stays: it is what tells a new source from an old one."""
    last = tx.get(NS_DMARC, PRUNED)
    if last is not None and last.isdigit() and 0 <= now - int(last) < PRUNE_EVERY:
        return
    since = int(now // DAY) - WINDOW_DAYS + 1
    tx.execute("DELETE FROM report_source_days WHERE day < ?", (since,))
    tx.execute("DELETE FROM report_tls_days WHERE day < ?", (since,))
    tx.put(NS_DMARC, PRUNED, str(int(now)))


def snapshot(tx: Tx, now: float) -> Snapshot:
    """Everything the probe shows, read in one transaction (day rows past the window deleted
    first, see :func:`prune_days`)."""
    ensure_schema(tx)
    prune_days(tx, now)
    since = int(now // DAY) - WINDOW_DAYS + 1
    snap = Snapshot()
    for name in COUNTERS:
        snap.counters[name] = tx.counters(name)
    snap.last = [(d, k, float(ts)) for d, k, ts in tx.execute(
        "SELECT domain, kind, ts FROM report_last ORDER BY domain, kind")]  # fmt: skip
    rows = tx.execute(
        "SELECT d.domain, d.ip, coalesce(p.name, ''), sum(d.messages), sum(d.spf_pass),"
        " sum(d.dkim_pass), sum(d.dmarc_fail), s.first_seen FROM report_source_days d"
        " JOIN report_sources s ON s.domain = d.domain AND s.ip = d.ip"
        " LEFT JOIN report_ptr p ON p.ip = d.ip WHERE d.day >= ?"
        " GROUP BY d.domain, d.ip ORDER BY d.domain, sum(d.dmarc_fail) > 0 DESC,"
        " sum(d.dmarc_fail) DESC, sum(d.messages) DESC, d.ip",
        (since,),
    )
    snap.sources = [Source(str(r[0]), str(r[1]), str(r[2]), int(r[3]), int(r[4]), int(r[5]),
                           int(r[6]), float(r[7])) for r in rows]  # fmt: skip
    snap.tls_failures = [(str(d), str(t), int(n)) for d, t, n in tx.execute(
        "SELECT domain, result_type, sum(sessions) FROM report_tls_days WHERE day >= ?"
        " GROUP BY domain, result_type ORDER BY domain, sum(sessions) DESC", (since,))]  # fmt: skip
    return snap


def ptr_pending(tx: Tx, now: float, limit: int) -> list[str]:
    """Source IPs of the window whose PTR name was never looked up, or not for a week."""
    ensure_schema(tx)
    since = int(now // DAY) - WINDOW_DAYS + 1
    rows = tx.execute(
        "SELECT DISTINCT d.ip FROM report_source_days d LEFT JOIN report_ptr p ON p.ip = d.ip"
        " WHERE d.day >= ? AND (p.checked IS NULL OR p.checked < ?) ORDER BY d.ip LIMIT ?",
        (since, now - WINDOW_DAYS * DAY, limit),
    )
    return [str(r[0]) for r in rows]


def save_ptr(tx: Tx, names: dict[str, str], now: float) -> None:
    tx.executemany(
        "INSERT INTO report_ptr (ip, name, checked) VALUES (?, ?, ?) ON CONFLICT (ip)"
        " DO UPDATE SET name = excluded.name, checked = excluded.checked",
        [(ip, name, now) for ip, name in names.items()],
    )

"""The reports probe's store rows on a real SQLite file: what a report adds, and when a report
counts as one already counted (the de-duplication key), also across a restart."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from reportmail import aggregate_xml, report_mail, tlsrpt_json

from exporter import storage
from exporter.probes import reports_store as rs
from exporter.reports.mime import MessageReports, parse_message
from exporter.storage import Store, Tx

DAY = 86400
END = 1_700_086_400


def _dmarc(report_id: str = "r-1", domain: str = "example.test", end: int = END,
           count: int = 3) -> MessageReports:  # fmt: skip
    xml = aggregate_xml(report_id=report_id, domain=domain, end=end,
                        records=[("192.0.2.1", count, "none", "pass", "fail")])  # fmt: skip
    found = parse_message(report_mail([("r.xml", "text/xml", xml)]))
    assert len(found.dmarc) == 1, found.problems
    return found


def _tls(report_id: str = "t-1", day: str = "2024-09-03", success: int = 10) -> MessageReports:
    raw = tlsrpt_json(report_id=report_id, success=success)
    raw = raw.replace(b"2024-09-03", day.encode())
    found = parse_message(report_mail([("s.json", "application/tlsrpt+json", raw)]))
    assert len(found.tlsrpt) == 1, found.problems
    return found


async def _record(store: Store, found: MessageReports, now: float = END + DAY) -> rs.Outcome:
    return await store.transact(lambda tx: rs.record_reports(tx, found, lambda d: True, now))


async def _total(store: Store, name: str) -> float:
    return sum(v for _, v in await store.counters(name))


async def test_a_report_id_reused_for_another_domain_or_period_is_another_report(
    tmp_path: Path,
) -> None:
    store = await Store.open(tmp_path)
    try:
        first = await _record(store, _dmarc("r-1", "example.test", END, count=3))
        other_domain = await _record(store, _dmarc("r-1", "other.test", END, count=5))
        other_period = await _record(store, _dmarc("r-1", "example.test", END + DAY, count=7))
        again = await _record(store, _dmarc("r-1", "example.test", END, count=3))
        assert (first.dmarc, other_domain.dmarc, other_period.dmarc) == (1, 1, 1)
        assert (again.dmarc, again.duplicates) == (0, 1)
        assert await _total(store, rs.DMARC_MESSAGES) == 15

        t1 = await _record(store, _tls("t-1", "2024-09-03", success=10))
        t2 = await _record(store, _tls("t-1", "2024-09-04", success=20))
        t_again = await _record(store, _tls("t-1", "2024-09-04", success=20))
        assert (t1.tlsrpt, t2.tlsrpt, t_again.tlsrpt, t_again.duplicates) == (1, 1, 0, 1)
        assert await _total(store, rs.TLS_SESSIONS) == 30
    finally:
        await store.aclose()


async def test_marks_written_before_the_new_key_still_dedupe_after_a_restart(
    tmp_path: Path,
) -> None:
    """A store written by the version keyed by reporter + report id only: the report it counted,
    read again after the upgrade (a crash between the commit and the move), is not counted
    again; a report of a later period under the same id is."""
    counted_at = END + 3600.0
    store = await Store.open(tmp_path)
    old = _dmarc("r-1", "example.test", END, count=3)

    def legacy(tx: Tx) -> None:  # what the old version wrote for that report
        rs.ensure_schema(tx)
        tx.add(rs.DMARC_MESSAGES, {"domain": "example.test", "reporter": "Reporter",
                                   "dmarc": "pass", "disposition": "none"}, 3)  # fmt: skip
        tx.mark_seen(rs.NS_DMARC, "Reporter\x1fr-1", counted_at)
        tx.mark_seen(rs.NS_TLSRPT, "Sender Inc.\x1ft-1", 1_725_408_000.0)  # 2024-09-04 00:00

    await store.transact(legacy)
    await store.aclose()

    store = await Store.open(tmp_path)  # the upgraded exporter starts
    try:
        again = await _record(store, old, now=END + 2 * DAY)
        assert (again.dmarc, again.duplicates) == (0, 1)
        assert await _total(store, rs.DMARC_MESSAGES) == 3
        later = await _record(store, _dmarc("r-1", "example.test", END + DAY, count=4))
        assert (later.dmarc, later.duplicates) == (1, 0)
        # the old mark, once matched, stands for that report only
        twice = await _record(store, _dmarc("r-1", "example.test", END, count=3))
        assert twice.duplicates == 1
        assert await _total(store, rs.DMARC_MESSAGES) == 7

        tls_old = await _record(store, _tls("t-1", "2024-09-03"))
        tls_new = await _record(store, _tls("t-1", "2024-09-05"))
        assert (tls_old.duplicates, tls_new.tlsrpt) == (1, 1)
    finally:
        await store.aclose()


_ID = st.sampled_from(["r-1", "r-2"])
_DOMAIN = st.sampled_from(["example.test", "other.test"])
_END = st.sampled_from([END, END + DAY])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(_ID, _DOMAIN, _END, st.integers(1, 50)), max_size=12))
def test_each_distinct_report_is_counted_exactly_once(
    reports: list[tuple[str, str, int, int]],
) -> None:
    """Whatever order and repetition: one count per (id, domain, period), the first one read."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.executescript(storage._SCHEMA)
    tx = Tx(conn)
    want: dict[tuple[str, str, int], int] = {}
    for report_id, domain, end, count in reports:
        rs.record_reports(tx, _dmarc(report_id, domain, end, count), lambda d: True, END + 9 * DAY)
        want.setdefault((report_id, domain, end), count)
    assert sum(v for _, v in tx.counters(rs.DMARC_MESSAGES)) == sum(want.values())
    conn.close()


async def test_records_skipped_in_counted_reports_are_reported(tmp_path: Path) -> None:
    bad = aggregate_xml(report_id="s-1", records=[("192.0.2.1", 3, "none", "pass", "fail"),
                        ("not-an-ip", 1, "none", "pass", "pass"),
                        ("192.0.2.2", -5, "none", "pass", "pass")])  # fmt: skip
    found = parse_message(report_mail([("r.xml", "text/xml", bad)]))
    store = await Store.open(tmp_path)
    try:
        first = await _record(store, found)
        assert (first.dmarc, first.records_skipped) == (1, 2)
        assert first.skipped_in == ["Reporter s-1 (example.test): 2"]
        again = await _record(store, found)  # already counted: nothing skipped this time
        assert (again.duplicates, again.records_skipped, again.skipped_in) == (1, 0, [])
    finally:
        await store.aclose()


async def test_a_report_dated_in_the_future_is_counted_as_of_when_it_was_read(
    tmp_path: Path,
) -> None:
    """A period ending in 2100 (a reporter's clock, a typo, or on purpose) pinned the newest
    report's time in the future: the "no report for 3 days" alert could never fire again, and
    its sources stayed in the 7-day window for decades."""
    now = 1_760_000_000.0
    future = 4_102_444_800  # 2100-01-01
    store = await Store.open(tmp_path)
    try:
        await _record(store, _dmarc("f-1", end=future), now=now)
        await _record(store, _tls("f-2", day="2100-01-01"), now=now)
        snap = await store.transact(lambda tx: rs.snapshot(tx, now))
        assert {(d, k): ts for d, k, ts in snap.last} == {
            ("example.test", "dmarc"): now,
            ("example.test", "tlsrpt"): now,
        }
        assert [s.first_seen for s in snap.sources] == [now]
        later = await store.transact(lambda tx: rs.snapshot(tx, now + 8 * DAY))
        assert later.sources == [] and later.tls_failures == []
    finally:
        await store.aclose()


def _from(reporter: str, domain: str, report_id: str, count: int = 1) -> MessageReports:
    xml = aggregate_xml(report_id=report_id, reporter=reporter, domain=domain,
                        records=[("192.0.2.1", count, "none", "pass", "pass")])  # fmt: skip
    return parse_message(report_mail([("r.xml", "text/xml", xml)]))


def _memory_tx() -> tuple[sqlite3.Connection, Tx]:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.executescript(storage._SCHEMA)
    return conn, Tx(conn)


def test_label_values_from_report_mail_are_capped() -> None:
    """Anyone can mail the rua address: a thousand made-up org_names (or subdomains) became a
    thousand sets of series. Past the caps, a new reporter counts as "other" and a new domain
    is not counted (and says so)."""
    conn, tx = _memory_tx()
    caps = rs.LabelCaps(reporters=3, domains=2)
    outcomes = [
        rs.record_reports(tx, _from(f"Org {i}", "example.test", f"r{i}"), lambda d: True, END, caps)
        for i in range(5)
    ]
    assert [o.dmarc for o in outcomes] == [1] * 5
    reporters = {lb["reporter"] for lb, v in tx.counters(rs.DMARC_MESSAGES) if v}
    assert reporters == {"Org 0", "Org 1", "Org 2", "other"}
    assert sum(v for _, v in tx.counters(rs.DMARC_MESSAGES)) == 5  # nothing lost
    again = rs.record_reports(tx, _from("Org 1", "example.test", "r9"), lambda d: True, END, caps)
    assert again.dmarc == 1 and again.capped == 0
    rs.record_reports(tx, _from("Org 0", "b.example.test", "r10"), lambda d: True, END, caps)
    third = rs.record_reports(tx, _from("Org 0", "c.example.test", "r11"), lambda d: True, END,
                              caps)  # fmt: skip
    assert (third.dmarc, third.capped) == (0, 1)
    assert {lb["domain"] for lb, _ in tx.counters(rs.DMARC_MESSAGES)} == {
        "example.test", "b.example.test"}  # fmt: skip
    tls = rs.record_reports(tx, _tls("t-cap"), lambda d: True, END, rs.LabelCaps(domains=0))
    assert (tls.tlsrpt, tls.capped) == (0, 1)
    conn.close()


def test_series_counted_before_the_caps_keep_their_names() -> None:
    conn, tx = _memory_tx()
    for i in range(4):  # what an earlier version counted: four reporters, no label table
        tx.add(rs.DMARC_MESSAGES, {"domain": "example.test", "reporter": f"Org {i}",
                                   "dmarc": "pass", "disposition": "none"}, 1)  # fmt: skip
    caps = rs.LabelCaps(reporters=3, domains=5)
    rs.record_reports(tx, _from("Org 3", "example.test", "x1"), lambda d: True, END, caps)
    rs.record_reports(tx, _from("Org 9", "example.test", "x2"), lambda d: True, END, caps)
    values = {lb["reporter"]: v for lb, v in tx.counters(rs.DMARC_MESSAGES) if v}
    assert values == {"Org 0": 1, "Org 1": 1, "Org 2": 1, "Org 3": 2, "other": 1}
    conn.close()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 4)), max_size=25),
       st.integers(0, 4), st.integers(0, 3))  # fmt: skip
def test_caps_hold_whatever_arrives(
    reports: list[tuple[int, int]], max_reporters: int, max_domains: int
) -> None:
    conn, tx = _memory_tx()
    caps = rs.LabelCaps(reporters=max_reporters, domains=max_domains)
    counted = 0
    for n, (reporter, domain) in enumerate(reports):
        found = _from(f"Org {reporter}", f"d{domain}.example.test", f"r{n}")
        counted += rs.record_reports(tx, found, lambda d: True, END, caps).dmarc
    series = [lb for lb, v in tx.counters(rs.DMARC_MESSAGES) if v]
    domains = {lb["domain"] for lb in series}
    assert len(domains) <= max_domains
    for d in domains:
        assert len({lb["reporter"] for lb in series if lb["domain"] == d}) <= max_reporters + 1
    assert sum(v for _, v in tx.counters(rs.DMARC_MESSAGES)) == counted
    conn.close()


async def test_day_rows_older_than_the_window_are_pruned(tmp_path: Path) -> None:
    """Per-source and TLS day rows were kept forever (a row per domain, source IP and day: a
    big sender's 5,000 sources a day are 1.8 million rows a year) though only the last 7 days
    are ever read. First-seen dates stay."""
    now = 1_760_000_000.0
    store = await Store.open(tmp_path)
    try:
        old_end = int(now - 40 * DAY)
        await _record(store, _dmarc("old", end=old_end), now=now)
        tls_raw = tlsrpt_json("old-t", failures={"certificate-expired": 2})
        tls_old = tls_raw.replace(b"2024-09-03", b"2025-08-30")
        await _record(store, parse_message(report_mail([("t.json", "application/tlsrpt+json",
                                                         tls_old)])), now=now)  # fmt: skip
        await _record(store, _dmarc("new", end=int(now - DAY)), now=now)
        snap = await store.transact(lambda tx: rs.snapshot(tx, now))
        assert [s.messages for s in snap.sources] == [3]

        def rows(tx: Tx) -> tuple[int, int, list[float]]:
            ((days,),) = tx.execute("SELECT count(*) FROM report_source_days")
            ((tls,),) = tx.execute("SELECT count(*) FROM report_tls_days")
            firsts = [r[0] for r in tx.execute("SELECT first_seen FROM report_sources")]
            return days, tls, firsts

        days, tls, firsts = await store.transact(rows)
        assert (days, tls) == (1, 0)
        assert firsts == [old_end - DAY]  # the source was first listed 40 days ago, still
    finally:
        await store.aclose()

"""The reports probe against a real dovecot: report mail APPENDed to the folder, read, counted
once into a real SQLite store, and moved (never deleted), accounted for message by message.

Each test has its own mailbox (one dovecot for the module, a user per test). Host names are
resolved through a real loopback DNS server and certificates checked against a trustme CA.
"""

from __future__ import annotations

import email
import imaplib
import json
import random
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dnsserver import DnsServer
from reportmail import (
    XXE,
    aggregate_xml,
    gz,
    report_mail,
    tlsrpt_json,
    zip_bomb,
    zipped,
)
from reportsamples import sample
from servers.mail import HOST, MAIL_NAME, NOIDLE_HOST, Dovecot, MailCerts, _tempdir

from exporter.config import parse_config
from exporter.net.dnsclient import make_resolver
from exporter.probes import PROBES, reports_store
from exporter.probes.reports import ReportsProbe
from exporter.reports.mime import parse_message
from exporter.results import RunRecord
from exporter.runner import Runtime, run_probe
from exporter.storage import Store

PASSWORD = "reports-S3cret-pw"
USERS = [f"dmarc{i}@example.test" for i in range(11)]


@pytest.fixture(autouse=True, scope="module")
def _servers_installed() -> None:
    assert shutil.which("dovecot"), (
        "needs Debian packages dovecot-imapd dovecot-lmtpd (scripts/test installs them)"
    )


@pytest.fixture(scope="module")
def certs() -> Iterator[MailCerts]:
    d = _tempdir("certs-")
    yield MailCerts(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def dovecot(certs: MailCerts) -> Iterator[Dovecot]:
    server = Dovecot(dict.fromkeys(USERS, PASSWORD), certs).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    server = DnsServer()
    server.add(MAIL_NAME, "A", HOST)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def store(tmp_path: Path) -> Any:
    opened = await Store.open(tmp_path / "data")
    yield opened
    await opened.aclose()


def config(dns: DnsServer, certs: MailCerts, dovecot: Dovecot, user: str, pwfile: Path,
           **imap: Any) -> Any:  # fmt: skip
    section = {"host": MAIL_NAME, "port": dovecot.imaps_port, "security": "tls",
               "username": user, "password_file": str(pwfile), "ca_file": str(certs.ca_file),
               **imap}  # fmt: skip
    return parse_config({
        "global": {"nameservers": [dns.address], "timeout": "30s"},
        "reports": [{"name": "rua", "imap": section}],
    })  # fmt: skip


@pytest.fixture
def pwfile(tmp_path: Path) -> Path:
    path = tmp_path / "password"
    path.write_text(PASSWORD + "\n")
    return path


async def run(cfg: Any, dns: DnsServer, store: Store | None) -> RunRecord:
    probe = ReportsProbe()
    (target,) = probe.targets(cfg)
    resolver = make_resolver([dns.address], attempt_timeout=1.0, lifetime=1.0)
    return await run_probe(probe, target, Runtime(resolver, cfg, store=store))


def subjects(dovecot: Dovecot, user: str, folder: str) -> list[str]:
    """The Subject of every message in the folder ([] when the folder does not exist)."""
    conn = imaplib.IMAP4(HOST, dovecot.imap_port, timeout=10)
    try:
        conn.login(user, PASSWORD)
        typ, _ = conn.select(f'"{folder}"', readonly=True)
        if typ != "OK":
            return []
        _, data = conn.uid("SEARCH", "ALL")
        out = []
        for uid in data[0].split() if data and data[0] else []:
            _, fetched = conn.uid("FETCH", uid, "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            for item in fetched:
                if isinstance(item, tuple):
                    out.append(str(email.message_from_bytes(item[1])["Subject"]))
        return sorted(out)
    finally:
        conn.logout()


def series(rec: RunRecord, metric: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {s.labels: s.value for s in rec.result.samples if s.metric == metric}


def codes(rec: RunRecord) -> set[str]:
    return {f.code for f in rec.result.findings}


# ----- the mailbox of the first test: every format, duplicates, non-reports, hostile input ---

DMARC_ROWS = {
    "a1": [("192.0.2.1", 5, "none", "pass", "pass"), ("198.51.100.7", 2, "reject", "fail", "fail")],
    "a2": [("192.0.2.1", 7, "none", "pass", "fail")],
    "a3": [("203.0.113.9", 3, "quarantine", "fail", "fail")],
    "a4": [("192.0.2.1", 11, "none", "fail", "pass")],
    "a5": [("2001:db8::5", 13, "pass", "pass", "fail")],  # RFC 9990: disposition pass = none
}


def mailbox() -> dict[str, tuple[bytes, str]]:
    """Subject -> (message, where it must end up)."""
    xml = {rid: aggregate_xml(report_id=rid, records=rows, domain="example.test")
           for rid, rows in DMARC_ROWS.items()}  # fmt: skip
    xml["a5"] = aggregate_xml(report_id="a5", records=DMARC_ROWS["a5"], domain="example.test",
                              namespace="urn:ietf:params:xml:ns:dmarc-2.0")  # fmt: skip
    tls = {
        "t1": tlsrpt_json("t1", domain="example.test", success=100,
                          failures={"certificate-expired": 4, "starttls-not-supported": 1}),
        "t2": tlsrpt_json("t2", domain="example.test", success=50),
        "t3": tlsrpt_json("t3", domain="example.test", success=10,
                          failures={"validation-failure": 2}),
    }  # fmt: skip
    ok, bad = "Processed", "Invalid"
    mails = {
        "xml attachment": ([("r!example.test!1!2.xml", "text/xml", xml["a1"])], ok),
        "gzip attachment": ([("r.xml.gz", "application/gzip", gz(xml["a2"]))], ok),
        "zip attachment": ([("r.zip", "application/zip", zipped({"r.xml": xml["a3"]}))], ok),
        "rfc9990 xml": ([("r.xml", "application/xml", xml["a5"])], ok),
        "tlsrpt json": ([("s.json", "application/tlsrpt+json", tls["t1"])], ok),
        "tlsrpt gzip": ([("s.json.gz", "application/tlsrpt+gzip", gz(tls["t2"]))], ok),
        "tlsrpt unnamed": ([("", "application/tlsrpt+json", tls["t3"])], ok),
        "duplicate of a1": ([("again.xml.gz", "application/gzip", gz(xml["a1"]))], ok),
        "outlook sample": ([("o.xml", "text/xml",
                             sample("protection.outlook.com_example.com_1711756800_1711843200.xml"))],
                           ok),
        "not a report": ([("photo.png", "image/png", b"\x89PNG\r\n\x1a\n" + b"\0" * 64)], bad),
        "corrupt archive": ([("r.zip", "application/zip", b"PK\x03\x04" + b"\0" * 90)], bad),
        "zip bomb": ([("r.zip", "application/zip", zip_bomb())], bad),
        "xxe": ([("r.xml", "text/xml", XXE)], bad),
    }  # fmt: skip
    out = {subject: (report_mail(parts, subject=subject), where)
           for subject, (parts, where) in mails.items()}  # fmt: skip
    out["inline xml"] = (report_mail(body=xml["a4"], subject="inline xml", inline_type="text/xml"),
                         "Processed")  # fmt: skip
    google = sample("google.com_smtp_tls_report.eml")
    out["google"] = (google, "Processed")
    return out


async def test_every_format_counted_once_and_every_message_accounted_for(
    dns_server: DnsServer, certs: MailCerts, dovecot: Dovecot, store: Store, pwfile: Path
) -> None:
    user = USERS[0]
    box = mailbox()
    for raw, _ in box.values():
        dovecot.append(user, "INBOX", raw)
    cfg = config(dns_server, certs, dovecot, user, pwfile)
    rec = await run(cfg, dns_server, store)
    assert rec.success, rec.result.error

    # Message by message: nothing left, nothing lost, nothing deleted.
    google_subject = str(email.message_from_bytes(box["google"][0])["Subject"])
    expected = {"Processed": [], "Invalid": []}  # type: dict[str, list[str]]
    for subject, (_, where) in box.items():
        expected[where].append(google_subject if subject == "google" else subject)
    assert subjects(dovecot, user, "INBOX") == []
    assert subjects(dovecot, user, "Processed") == sorted(expected["Processed"])
    assert subjects(dovecot, user, "Invalid") == sorted(expected["Invalid"])
    assert rec.result.details["messages_processed"] == str(len(expected["Processed"]))
    assert rec.result.details["messages_invalid"] == "4"
    assert rec.result.details["reports_already_counted"] == "1"  # the duplicate of a1

    # DMARC counters: exactly the records put in, a1 once.
    want: dict[tuple[str, str, str], float] = {}
    for rows in DMARC_ROWS.values():
        for _ip, count, disposition, dkim, spf in rows:
            dmarc = "pass" if "pass" in (dkim, spf) else "fail"
            key = ("example.test", dmarc, "none" if disposition == "pass" else disposition)
            want[key] = want.get(key, 0) + count
    got = {
        (lb["domain"], lb["dmarc"], lb["disposition"]): v
        for labels, v in series(rec, "dmarc_report_messages_total").items()
        for lb in [dict(labels)]
        if lb["reporter"] == "Reporter" and v
    }
    assert got == want
    # the sibling series a later report may start are there at 0 (so increase() sees it)
    assert len([v for lb, v in series(rec, "dmarc_report_messages_total").items()
                if ("reporter", "Reporter") in lb]) == 6  # fmt: skip
    outlook = parse_message(box["outlook sample"][0]).dmarc[0]
    assert series(rec, "dmarc_report_messages_total")[
        (("disposition", "none"), ("dmarc", "fail"), ("domain", "example.com"),
         ("reporter", "Outlook.com"))
    ] == sum(r.count for r in outlook.records)  # fmt: skip
    # TLS-RPT counters
    sessions = series(rec, "tlsrpt_sessions_total")
    key = lambda result: (("domain", "example.test"), ("reporter", "Sender Inc."),  # noqa: E731
                          ("result", result))  # fmt: skip
    assert sessions[key("success")] == 160 and sessions[key("failure")] == 7
    assert sessions[(("domain", "cardinalhealth.ca"), ("reporter", "Google Inc."),
                     ("result", "success"))] == 48  # fmt: skip
    failures = series(rec, "tlsrpt_failure_sessions_total")
    assert failures[(("domain", "example.test"), ("result_type", "dnssec-invalid"))] == 0
    assert {k: v for k, v in failures.items() if v} == {
        (("domain", "example.test"), ("result_type", "certificate-expired")): 4,
        (("domain", "example.test"), ("result_type", "starttls-not-supported")): 1,
        (("domain", "example.test"), ("result_type", "validation-failure")): 2,
    }
    assert series(rec, "reports_invalid_total") == {(("target", "rua"),): 4}
    last = series(rec, "report_last_timestamp_seconds")
    assert last[(("domain", "example.test"), ("kind", "dmarc"))] == 1_700_086_400
    # failing sources of the last 7 days: the reports' periods are old, so none in the window
    assert series(rec, "dmarc_report_failing_sources")[(("domain", "example.test"),)] == 0
    assert "reports_invalid_messages" in codes(rec)
    assert "tlsrpt_failure_sessions" not in codes(rec)  # 2023-2024 reports: outside the window

    # A second run, and the same report again in a new message: nothing counted twice.
    dovecot.append(
        user,
        "INBOX",
        report_mail(
            [
                (
                    "x.xml",
                    "text/xml",
                    aggregate_xml(report_id="a2", records=DMARC_ROWS["a2"], domain="example.test"),
                )
            ],
            subject="a2 again",
        ),
    )
    again = await run(cfg, dns_server, store)
    assert again.success
    for metric in ("dmarc_report_messages_total", "tlsrpt_sessions_total",
                   "tlsrpt_failure_sessions_total", "reports_invalid_total"):  # fmt: skip
        assert series(again, metric) == series(rec, metric), metric
    assert "a2 again" in subjects(dovecot, user, "Processed")
    assert again.result.details["reports_already_counted"] == "1"


async def test_a_report_counted_before_a_crash_is_only_moved(
    dns_server: DnsServer, certs: MailCerts, dovecot: Dovecot, store: Store, pwfile: Path
) -> None:
    """The state a crash between the commit and the move leaves: counted, still in INBOX."""
    user = USERS[1]
    raw = report_mail([("r.xml", "text/xml", aggregate_xml(report_id="c1"))], subject="c1")
    dovecot.append(user, "INBOX", raw)
    await store.transact(lambda tx: reports_store.record_reports(
        tx, parse_message(raw), lambda d: True, 0.0))  # fmt: skip
    before = await store.counters("dmarc_report_messages_total")
    rec = await run(config(dns_server, certs, dovecot, user, pwfile), dns_server, store)
    assert rec.success, rec.result.error
    assert subjects(dovecot, user, "INBOX") == [] and subjects(dovecot, user, "Processed") == ["c1"]
    assert await store.counters("dmarc_report_messages_total") == before
    assert rec.result.details["reports_already_counted"] == "1"


async def test_stored_counts_are_served_after_a_restart_even_when_imap_fails(
    dns_server: DnsServer, certs: MailCerts, dovecot: Dovecot, pwfile: Path, tmp_path: Path
) -> None:
    user = USERS[2]
    dovecot.append(user, "INBOX", report_mail([("r.xml", "text/xml", aggregate_xml(
        report_id="s1", records=[("192.0.2.1", 9, "none", "fail", "fail")]))]))  # fmt: skip
    cfg = config(dns_server, certs, dovecot, user, pwfile)
    first_store = await Store.open(tmp_path / "restart")
    first = await run(cfg, dns_server, first_store)
    await first_store.aclose()
    assert first.success
    reopened = await Store.open(tmp_path / "restart")
    try:
        broken = config(dns_server, certs, dovecot, user, pwfile, port=1)
        rec = await run(broken, dns_server, reopened)
    finally:
        await reopened.aclose()
    assert not rec.success and "reports_imap_failed" in codes(rec)
    for metric in ("dmarc_report_messages_total", "reports_invalid_total",
                   "report_last_timestamp_seconds"):  # fmt: skip
        assert series(rec, metric) == series(first, metric), metric
    assert sum(series(rec, "dmarc_report_messages_total").values()) == 9


async def test_check_mode_reads_nothing_and_moves_nothing(
    dns_server: DnsServer, certs: MailCerts, dovecot: Dovecot, pwfile: Path
) -> None:
    user = USERS[3]
    for i in range(3):
        dovecot.append(
            user,
            "INBOX",
            report_mail([("r.xml", "text/xml", aggregate_xml(report_id=f"k{i}"))], subject=f"k{i}"),
        )
    rec = await run(config(dns_server, certs, dovecot, user, pwfile), dns_server, None)
    assert rec.success, rec.result.error
    assert rec.result.details["waiting"] == "3"
    assert subjects(dovecot, user, "INBOX") == ["k0", "k1", "k2"]
    assert subjects(dovecot, user, "Processed") == []  # not even created
    assert series(rec, "dmarc_report_messages_total") == {}


async def test_starttls_and_a_server_without_move_or_uidplus(
    dns_server: DnsServer, certs: MailCerts, dovecot: Dovecot, store: Store, pwfile: Path
) -> None:
    user = USERS[4]
    dovecot.append(user, "INBOX", report_mail([("r.xml", "text/xml", aggregate_xml("m1"))],
                                              subject="m1"))  # fmt: skip
    dovecot.append(user, "INBOX", report_mail(body="hello"), flags="")
    starttls = config(dns_server, certs, dovecot, user, pwfile, port=dovecot.imap_port,
                      security="starttls", processed_folder="Archive/DMARC",
                      invalid_folder="Archive/Junk")  # fmt: skip
    rec = await run(starttls, dns_server, store)
    assert rec.success, rec.result.error
    assert subjects(dovecot, user, "Archive/DMARC") == ["m1"]
    assert len(subjects(dovecot, user, "Archive/Junk")) == 1
    # 127.0.0.2: the same dovecot announcing neither MOVE nor UIDPLUS: COPY, \Deleted, EXPUNGE
    dovecot.append(user, "INBOX", report_mail([("r.xml", "text/xml", aggregate_xml("m2"))],
                                              subject="m2"))  # fmt: skip
    no_move = config(dns_server, certs, dovecot, user, pwfile, host=NOIDLE_HOST,
                     processed_folder="Archive/DMARC", invalid_folder="Archive/Junk")  # fmt: skip
    rec = await run(no_move, dns_server, store)
    assert rec.success, rec.result.error
    assert subjects(dovecot, user, "INBOX") == []
    assert subjects(dovecot, user, "Archive/DMARC") == ["m1", "m2"]


async def test_a_message_over_the_size_limit_is_not_read(
    dns_server: DnsServer, certs: MailCerts, dovecot: Dovecot, store: Store, pwfile: Path
) -> None:
    user = USERS[5]
    big = aggregate_xml("big", records=[("192.0.2.1", 1, "none", "pass", "pass")] * 200)
    dovecot.append(user, "INBOX", report_mail([("r.xml", "text/xml", big)], subject="big"))
    section = config(dns_server, certs, dovecot, user, pwfile).model_dump(by_alias=True)
    section["reports"][0]["max_message_bytes"] = 4096
    rec = await run(parse_config(section), dns_server, store)
    assert rec.success, rec.result.error
    assert subjects(dovecot, user, "Invalid") == ["big"]
    assert "over 4096" in next(f.evidence for f in rec.result.findings
                               if f.code == "reports_invalid_messages")  # fmt: skip
    assert series(rec, "dmarc_report_messages_total") == {}


async def test_recent_reports_sources_findings_and_the_domain_filter(
    dns_server: DnsServer, certs: MailCerts, dovecot: Dovecot, store: Store, pwfile: Path
) -> None:
    user = USERS[6]
    now = int(time.time())
    dns_server.add("7.100.51.198.in-addr.arpa", "PTR", "mail.spoofer.example.")
    rows = [
        ("192.0.2.1", 90, "none", "pass", "pass"),
        ("198.51.100.7", 30, "reject", "fail", "fail"),
    ]
    for rid, domain in (("r1", "example.test"), ("r2", "sub.example.test"), ("r3", "other.test")):
        xml = aggregate_xml(report_id=rid, domain=domain, records=rows, end=now)
        dovecot.append(user, "INBOX", report_mail([("r.xml", "text/xml", xml)], subject=rid))
    tls = tlsrpt_json("t9", domain="example.test", success=5, failures={"sts-policy-invalid": 3})
    doc = json.loads(tls)
    doc["date-range"]["end-datetime"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    dovecot.append(
        user,
        "INBOX",
        report_mail(
            [("t.json", "application/tlsrpt+json", json.dumps(doc).encode())], subject="t9"
        ),
    )
    section = config(dns_server, certs, dovecot, user, pwfile).model_dump(by_alias=True)
    section["domains"] = [{"domain": "example.test"}]  # reports about other.test are not counted
    rec = await run(parse_config(section), dns_server, store)
    assert rec.success, rec.result.error
    assert subjects(dovecot, user, "Processed") == ["r1", "r2", "r3", "t9"]
    assert rec.result.details["reports_ignored"].startswith("1 ")
    reported = {dict(lb)["domain"] for lb, v in series(rec, "dmarc_report_messages_total").items()}
    assert reported == {"example.test", "sub.example.test"}
    assert series(rec, "dmarc_report_failing_sources") == {
        (("domain", "example.test"),): 1,
        (("domain", "sub.example.test"),): 1,
    }
    findings = {(f.code, f.subject): f.evidence for f in rec.result.findings}
    evidence = findings[("dmarc_report_new_failing_source", "example.test 198.51.100.7")]
    assert "30 of 30 messages fail DMARC" in evidence
    assert "dmarc_report_failure_share_high" in codes(rec)  # 30 of 120 fail
    assert "sts-policy-invalid: 3" in findings[("tlsrpt_failure_sessions", "example.test")]
    table = next(t for t in rec.result.tables if t.title.endswith(": example.test"))
    assert [r[0] for r in table.rows] == ["198.51.100.7", "192.0.2.1"]  # failing first
    assert table.rows[0][1] == "mail.spoofer.example"  # PTR, looked up through the DNS server
    assert table.rows[0][2:6] == ("30", "0/30", "0/30", "30/30")
    assert table.rows[1][2:6] == ("90", "90/90", "90/90", "0/90")


async def test_records_skipped_are_shown_and_logged(
    dns_server: DnsServer, certs: MailCerts, dovecot: Dovecot, store: Store, pwfile: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    user = USERS[7]
    rows = [("192.0.2.1", 4, "none", "pass", "pass"), ("999.1.1.1", 2, "none", "pass", "pass"),
            ("192.0.2.2", -3, "none", "pass", "pass")]  # fmt: skip
    dovecot.append(user, "INBOX", report_mail([("r.xml", "text/xml", aggregate_xml(
        "sk1", records=rows))], subject="sk1"))  # fmt: skip
    doc = json.loads(tlsrpt_json("tk1", failures={"certificate-expired": 2}))
    doc["policies"][0]["failure-details"].append({"result-type": "x", "failed-session-count": -1})
    tls = json.dumps(doc).encode()
    dovecot.append(user, "INBOX", report_mail([("t.json", "application/tlsrpt+json", tls)],
                                              subject="tk1"))  # fmt: skip
    cfg = config(dns_server, certs, dovecot, user, pwfile)
    with caplog.at_level("WARNING", logger="exporter.probe.reports"):
        rec = await run(cfg, dns_server, store)
    assert rec.success, rec.result.error
    assert rec.result.details["records_skipped"] == (
        "3: Reporter sk1 (example.test): 2; Sender Inc. tk1: 1"
    )
    assert sum(series(rec, "dmarc_report_messages_total").values()) == 4
    logged = [r for r in caplog.records if r.getMessage() == "report records skipped"]
    assert len(logged) == 1 and logged[0].__dict__["records_skipped"] == 3
    assert subjects(dovecot, user, "Processed") == ["sk1", "tk1"]
    quiet = await run(cfg, dns_server, store)  # nothing new: nothing skipped
    assert quiet.result.details["records_skipped"] == "0"


async def test_real_world_shapes_end_to_end(
    dns_server: DnsServer, certs: MailCerts, dovecot: Dovecot, store: Store, pwfile: Path
) -> None:
    """Shapes the first versions refused or dropped, through a real IMAP server into the store:
    one report id reused by one reporter for two domains and two days, a DOCTYPE, UTF-16
    without a byte order mark, a report mail forwarded as a .eml attachment, an RFC 2047 file
    name, a TLS-RPT report dated in lower case."""
    user = USERS[8]
    row = [("192.0.2.1", 5, "none", "pass", "pass")]
    same_id = [aggregate_xml("daily", domain=d, end=e, records=row)
               for d, e in (("example.test", 1_700_086_400), ("sub.example.test", 1_700_086_400),
                            ("example.test", 1_700_172_800))]  # fmt: skip
    doctype = aggregate_xml("dt", records=row).replace(
        b"<feedback>", b"<!DOCTYPE feedback [<!ELEMENT feedback ANY>]><feedback>"
    )
    utf16 = aggregate_xml("u16", records=row).decode().replace(
        'encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16-le")  # fmt: skip
    inner = report_mail([("r.xml", "text/xml", aggregate_xml("fwd", records=row))])
    encoded = gz(aggregate_xml("enc", records=row))
    tls = tlsrpt_json("lower", success=7).replace(b"T00:00:00Z", b"t00:00:00z").replace(
        b"T23:59:59Z", b"t23:59:59z")  # fmt: skip
    for i, xml in enumerate(same_id):
        dovecot.append(user, "INBOX", report_mail([("r.xml", "text/xml", xml)], subject=f"d{i}"))
    dovecot.append(user, "INBOX", report_mail([("r.xml", "text/xml", doctype)], subject="dt"))
    dovecot.append(user, "INBOX", report_mail([("r.xml", "application/xml", utf16)],
                                              subject="u16"))  # fmt: skip
    dovecot.append(user, "INBOX", report_mail([("fwd.eml", "application/octet-stream", inner)],
                                              subject="fwd"))  # fmt: skip
    raw = report_mail([("placeholder.bin", "application/x-download", encoded)], subject="enc")
    raw = raw.replace(b'filename="placeholder.bin"',
                      b'filename="=?utf-8?B?csOpcG9ydC54bWwuZ3o=?="')  # fmt: skip
    dovecot.append(user, "INBOX", raw)
    dovecot.append(user, "INBOX", report_mail([("t.json", "application/tlsrpt+json", tls)],
                                              subject="lower"))  # fmt: skip
    rec = await run(config(dns_server, certs, dovecot, user, pwfile), dns_server, store)
    assert rec.success, rec.result.error
    assert rec.result.details["messages_invalid"] == "0", rec.result.findings
    assert rec.result.details["reports_counted"] == "dmarc 7, tlsrpt 1"
    assert rec.result.details["reports_already_counted"] == "0"
    messages = series(rec, "dmarc_report_messages_total")
    key = (("disposition", "none"), ("dmarc", "pass"), ("domain", "example.test"),
           ("reporter", "Reporter"))  # fmt: skip
    assert messages[key] == 5 * 6  # daily twice, dt, u16, fwd, enc
    assert messages[(*key[:2], ("domain", "sub.example.test"), key[3])] == 5
    assert (
        series(rec, "tlsrpt_sessions_total")[
            (("domain", "example.test"), ("reporter", "Sender Inc."), ("result", "success"))
        ]
        == 7
    )
    assert len(subjects(dovecot, user, "Processed")) == 8


def _slow_report(records: int) -> bytes:
    """A mail (gzip) whose report takes seconds of CPU to parse: many tiny records."""
    rng = random.Random(7)  # varied rows: identical ones compress past the ratio cap
    rows = b"".join(
        b"<record><row><source_ip>10.%d.%d.%d</source_ip><count>%d</count></row></record>"
        % (rng.randrange(256), rng.randrange(256), rng.randrange(256), rng.randrange(10**6))
        for _ in range(records)
    )
    xml = aggregate_xml("slow").replace(b"</feedback>", rows + b"</feedback>")
    return report_mail([("slow.xml.gz", "application/gzip", gz(xml))], subject="slow")


async def test_a_report_too_slow_to_parse_goes_to_invalid_instead_of_wedging_the_folder(
    dns_server: DnsServer, certs: MailCerts, dovecot: Dovecot, store: Store, pwfile: Path
) -> None:
    """A report of 400,000 tiny records (a 7 MB mail) takes over ten seconds of CPU: the run
    timed out while parsing it, it stayed first in the folder, and every later run did the
    same, so no report behind it was ever read. Now each message has a parse budget (40% of
    the timeout) and one over it is moved to the invalid folder."""
    user = USERS[9]
    dovecot.append(user, "INBOX", _slow_report(400_000))
    dovecot.append(user, "INBOX", report_mail([("r.xml", "text/xml", aggregate_xml("after"))],
                                              subject="after"))  # fmt: skip
    section = config(dns_server, certs, dovecot, user, pwfile).model_dump(by_alias=True)
    section["global"]["timeout"] = "4s"
    rec = await run(parse_config(section), dns_server, store)
    assert rec.success, rec.result.error
    assert subjects(dovecot, user, "Invalid") == ["slow"]
    evidence = next(f.evidence for f in rec.result.findings if f.code == "reports_invalid_messages")
    assert "slow.xml.gz: parsing took over 1.6 s" in evidence
    if subjects(dovecot, user, "INBOX"):  # the batch's time was spent: the next run reads it
        rec = await run(parse_config(section), dns_server, store)
        assert rec.success, rec.result.error
    assert subjects(dovecot, user, "INBOX") == []
    assert subjects(dovecot, user, "Processed") == ["after"]


async def test_an_unreadable_part_beside_a_report_is_shown(
    dns_server: DnsServer, certs: MailCerts, dovecot: Dovecot, store: Store, pwfile: Path
) -> None:
    """A message with one good report and one broken attachment: the good one is counted and
    the message processed; the broken one was dropped without a word."""
    user = USERS[10]
    dovecot.append(user, "INBOX", report_mail([
        ("good.xml", "text/xml", aggregate_xml("good")),
        ("broken.xml.gz", "application/gzip", gz(aggregate_xml("b"))[:40]),
    ], subject="mixed"))  # fmt: skip
    rec = await run(config(dns_server, certs, dovecot, user, pwfile), dns_server, store)
    assert rec.success, rec.result.error
    assert subjects(dovecot, user, "Processed") == ["mixed"]
    assert rec.result.details["reports_counted"] == "dmarc 1, tlsrpt 0"
    assert rec.result.details["parts_unreadable"].startswith(
        "1: UID 1: broken.xml.gz: broken.xml.gz: truncated gzip data"
    )


def test_registered() -> None:
    assert "reports" in PROBES

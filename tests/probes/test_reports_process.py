"""The real exporter process reading a report mailbox on a real dovecot, killed with SIGKILL in
the middle of a batch and started again on the same ``--storage.path``: every report counted
exactly once, every message moved exactly once, nothing left behind."""

from __future__ import annotations

import imaplib
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from dnsserver import DnsServer
from prometheus_client.parser import text_string_to_metric_families
from reportmail import aggregate_xml, report_mail
from servers.mail import HOST, Dovecot, free_port, running_dovecot

USER = "rua@example.test"
PASSWORD = "rua-S3cret-pw"
MESSAGES = 30
RECORDS = 3000  # about 1.3 MB of XML per report: a batch takes seconds, long enough to kill


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    with running_dovecot({USER: PASSWORD}) as server:
        yield server


def count(dovecot: Dovecot, folder: str) -> int:
    conn = imaplib.IMAP4(HOST, dovecot.imap_port, timeout=10)
    try:
        conn.login(USER, PASSWORD)
        typ, data = conn.status(folder, "(MESSAGES)")
        if typ != "OK":
            return 0
        return int(data[0].split(b"MESSAGES ")[1].split(b")")[0])
    finally:
        conn.logout()


def subjects(dovecot: Dovecot, folder: str) -> list[str]:
    return [m.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0].decode()
            for m in dovecot.messages(USER, folder)]  # fmt: skip


def start(config: Path, port: int, storage: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "exporter", "--config.file", str(config),
             "--web.listen-address", f"127.0.0.1:{port}", "--storage.path", str(storage)],
            stdout=subprocess.DEVNULL, stderr=out,
        )  # fmt: skip


def dmarc_total(port: int) -> float | None:
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    except OSError:
        return None
    total = None
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            if s.name == "deliverability_dmarc_report_messages_total":
                total = (total or 0.0) + s.value
    return total


def test_sigkill_in_the_middle_of_a_batch_loses_and_doubles_nothing(
    dovecot: Dovecot, tmp_path: Path
) -> None:
    expected = 0
    for i in range(MESSAGES):
        rows = [(f"10.{i}.{j // 256}.{j % 256}", 1 + (i + j) % 5, "none", "pass", "fail")
                for j in range(RECORDS)]  # fmt: skip
        expected += sum(r[1] for r in rows)
        xml = aggregate_xml(report_id=f"k{i:02d}", records=rows)
        dovecot.append(
            USER, "INBOX", report_mail([("r.xml", "text/xml", xml)], subject=f"k{i:02d}")
        )
    pwfile = tmp_path / "pw"
    pwfile.write_text(PASSWORD)
    with DnsServer() as dns:  # loopback only: no lookup may leave the machine
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump({
            "global": {"interval": "1s", "timeout": "60s", "nameservers": [dns.address],
                       "allow_short_intervals": True},
            "reports": [{"name": "rua", "imap": {
                "host": HOST, "port": dovecot.imaps_port, "username": USER,
                "password_file": str(pwfile), "ca_file": str(dovecot.certs.ca_file)}}],
        }))  # fmt: skip
        storage = tmp_path / "data"
        log = tmp_path / "exporter.log"
        port = free_port()
        proc = start(config, port, storage, log)
        try:
            deadline = time.monotonic() + 60
            while count(dovecot, "Processed") < 1:
                assert proc.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, "nothing processed in 60 s"
                time.sleep(0.05)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        at_kill = count(dovecot, "Processed")
        assert 1 <= at_kill < MESSAGES, f"not killed in the middle of the batch ({at_kill})"
        assert count(dovecot, "INBOX") == MESSAGES - at_kill

        proc = start(config, port, storage, log)
        try:
            deadline = time.monotonic() + 120
            while count(dovecot, "INBOX") or dmarc_total(port) != expected:
                assert proc.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, (
                    f"inbox {count(dovecot, 'INBOX')}, counted {dmarc_total(port)} of {expected}"
                    + log.read_text()[-3000:]
                )
                time.sleep(0.2)
            time.sleep(1.5)  # one more run: still exactly the same
            assert dmarc_total(port) == expected
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)
    assert sorted(subjects(dovecot, "Processed")) == [f"k{i:02d}" for i in range(MESSAGES)]
    assert count(dovecot, "INBOX") == 0 and count(dovecot, "Invalid") == 0

"""The dashboard's reports row against a real Prometheus scraping the real exporter, which reads
report mail from a real dovecot: every panel's query returns data, and the bundled rules see the
failing source and the TLS failures (``for:`` shortened as in the end-to-end test)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from dnsserver import DnsServer
from monitoring_support import DASHBOARDS
from promstack import PromStack, free_port, wait_for
from reportmail import aggregate_xml, report_mail, tlsrpt_json
from servers.mail import HOST, Dovecot, running_dovecot

USER = "rua@example.test"
PASSWORD = "rua-S3cret-pw"
REPORT_PANELS = range(1900, 2000)
SCRAPED_TWICE = (
    'count_over_time(deliverability_tlsrpt_failure_sessions_total{result_type="certificate-expired"}'
    "[1m]) >= 2"
)


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    with running_dovecot({USER: PASSWORD}) as server:
        yield server


def reports_panels() -> list[tuple[str, str]]:
    (overview,) = [p for p in DASHBOARDS if p.stem == "deliverability-overview"]
    panels = json.loads(overview.read_text())["panels"]
    out = [(p["title"], t["expr"]) for p in panels if p["id"] in REPORT_PANELS
           for t in p.get("targets", [])]  # fmt: skip
    assert len(out) == 6
    return out


def test_reports_row_returns_data(dovecot: Dovecot, tmp_path: Path) -> None:
    now = int(time.time())
    rows = [
        ("192.0.2.1", 40, "none", "pass", "pass"),
        ("198.51.100.7", 9, "reject", "fail", "fail"),
    ]
    for i, reporter in enumerate(("google.com", "Outlook.com")):
        xml = aggregate_xml(report_id=f"r{i}", reporter=reporter, records=rows, end=now)
        dovecot.append(USER, "INBOX", report_mail([("r.xml", "text/xml", xml)]))
    dovecot.append(USER, "INBOX", report_mail([("t.json", "application/tlsrpt+json", tlsrpt_json(
        "t1", failures={"certificate-expired": 3}))]))  # fmt: skip
    pwfile = tmp_path / "pw"
    pwfile.write_text(PASSWORD)
    port = free_port()
    with DnsServer() as dns:
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump({
            "global": {"interval": "2s", "timeout": "20s", "nameservers": [dns.address],
                       "allow_short_intervals": True},
            "reports": [{"name": "rua", "imap": {
                "host": HOST, "port": dovecot.imaps_port, "username": USER,
                "password_file": str(pwfile), "ca_file": str(dovecot.certs.ca_file)}}],
        }))  # fmt: skip
        log = (tmp_path / "exporter.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "exporter", "--config.file", str(config),
             "--web.listen-address", f"127.0.0.1:{port}", "--storage.path", str(tmp_path / "d")],
            stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
        stack = None
        try:
            (tmp_path / "stack").mkdir()
            stack = PromStack(tmp_path / "stack", f"127.0.0.1:{port}")
            wait_for(
                "reports counted and scraped twice",
                lambda: len(stack.query(SCRAPED_TWICE)),
                timeout=60,
            )  # fmt: skip
            values = {"job": ".+", "instance": ".+"}
            for title, expr in reports_panels():
                for name, value in values.items():
                    expr = expr.replace(f"${name}", value)
                assert stack.query(expr), f"{title}: {expr}"
            firing = wait_for(
                "the new failing source alert",
                lambda: {a["labels"]["alertname"] for a in stack.rule_alerts()
                         if a["state"] == "firing"} & {"EmailDeliverabilityDMARCNewFailingSource"},
                timeout=60,
            )  # fmt: skip
            assert firing
        finally:
            if stack is not None:
                stack.stop()
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)
            log.close()
